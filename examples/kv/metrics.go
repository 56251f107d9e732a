package kv

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/distkit/distkit/detector/swim"
)

// MaxPeerLabels bounds the peers that get series of their own in
// [Metrics]: the members of the current ring ([Metrics.SetPeers]), at
// most this many. Replica RPCs, hints and exchanges of any other node
// are counted under the peer "other".
const MaxPeerLabels = 256

// otherLabel is the label value of every method, route or peer outside
// the bounded set.
const otherLabel = "other"

// Metrics is a node's Prometheus registry: its client and RPC requests by
// route, method and status code; its replica RPCs, anti-entropy
// exchanges and hints per peer; the siblings per read; its bbolt files'
// sizes and commit latency; SWIM's counters and health score; and the Go
// runtime's and the process's standard collectors. Every label takes
// values from a fixed set (routes, methods, codes the API writes,
// membership event kinds) or from the ring's current members
// ([MaxPeerLabels]), so no client or peer can add series by inventing
// methods, paths or node IDs.
//
// It is safe for concurrent use; the zero value is ready, and a nil
// *Metrics counts nothing.
type Metrics struct {
	once sync.Once
	reg  *prometheus.Registry

	requests    *prometheus.CounterVec   // route, method, code
	latency     *prometheus.HistogramVec // route, method
	siblings    prometheus.Histogram
	rpcDuration *prometheus.HistogramVec // peer
	rpcFailures *prometheus.CounterVec   // peer
	rpcSent     *prometheus.CounterVec   // peer
	rpcReceived *prometheus.CounterVec   // peer
	aeExchanges *prometheus.CounterVec   // peer, result
	aeDuration  *prometheus.HistogramVec // peer
	aeLast      *prometheus.GaugeVec     // peer
	aeRepaired  *prometheus.CounterVec   // peer
	aeBytes     *prometheus.CounterVec   // peer
	commit      prometheus.Histogram
	membership  *prometheus.CounterVec // event

	node atomic.Pointer[Node]
	swim atomic.Pointer[swim.Node]

	mu    sync.Mutex
	peers map[string]bool // members with series of their own
}

var (
	// latencyBuckets are the upper bounds, in seconds, of the request and
	// replica RPC latency histograms.
	latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}
	// exchangeBuckets are those of anti-entropy exchanges.
	exchangeBuckets = []float64{0.001, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60}
	// commitBuckets are those of the write-ahead log's appends and fsyncs.
	commitBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1}
)

func (m *Metrics) init() {
	m.once.Do(func() {
		m.reg = prometheus.NewRegistry()
		m.requests = counterVec("kv_requests_total",
			"HTTP requests by route, method and status code; unknown routes and methods are \"other\".", "route", "method", "code")
		m.latency = histogramVec("kv_request_duration_seconds", "HTTP request latency by route and method.", latencyBuckets, "route", "method")
		m.siblings = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kv_read_siblings",
			Help: "Values a successful client read returned (0: not found; more than 1: siblings).", Buckets: []float64{0, 1, 2, 3, 5, 10, 20, 50}})
		m.rpcDuration = histogramVec("kv_peer_round_trip_time_seconds",
			"Round-trip time of replica RPCs to each peer, successful or failed (not cancelled).", latencyBuckets, "peer")
		m.rpcFailures = counterVec("kv_peer_rpc_failures_total",
			"Replica RPCs to each peer that failed (cancelled calls, such as hedged reads' losers, excluded).", "peer")
		m.rpcSent = counterVec("kv_peer_sent_bytes_total", "Bytes of replica RPC requests sent to each peer.", "peer")
		m.rpcReceived = counterVec("kv_peer_received_bytes_total", "Bytes of replica RPC responses received from each peer.", "peer")
		m.aeExchanges = counterVec("kv_antientropy_exchanges_total", "Anti-entropy exchanges with each peer, by result (ok, error).", "peer", "result")
		m.aeDuration = histogramVec("kv_antientropy_exchange_duration_seconds", "Duration of anti-entropy exchanges with each peer.", exchangeBuckets, "peer")
		m.aeLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kv_antientropy_last_success_timestamp_seconds",
			Help: "Unix time at which the last successful anti-entropy exchange with each peer ended."}, []string{"peer"})
		m.aeRepaired = counterVec("kv_antientropy_peer_keys_repaired_total", "Keys anti-entropy with each peer found different and repaired.", "peer")
		m.aeBytes = counterVec("kv_antientropy_tree_bytes_total", "Bytes of Merkle tree levels anti-entropy with each peer moved.", "peer")
		m.commit = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kv_commit_write_duration_seconds",
			Help: "Time each commit of a batch of writes spent appending it to the write-ahead log and fsyncing it.", Buckets: commitBuckets})
		m.membership = counterVec("kv_swim_events_total", "SWIM membership events by kind (joined, suspected, failed, left, updated, conflict).", "event")
		m.reg.MustRegister(m.requests, m.latency, m.siblings, m.rpcDuration, m.rpcFailures, m.rpcSent, m.rpcReceived,
			m.aeExchanges, m.aeDuration, m.aeLast, m.aeRepaired, m.aeBytes, m.commit, m.membership,
			collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			(*nodeCollector)(m))
	})
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
}

// Registry returns the registry the metrics are registered in, to add
// more or to serve them elsewhere.
func (m *Metrics) Registry() *prometheus.Registry {
	m.init()
	return m.reg
}

// SetPeers makes ids (the ring's members) the peers with series of their
// own, at most [MaxPeerLabels] of them in sorted order, and deletes the
// series of every peer no longer among them.
func (m *Metrics) SetPeers(ids []string) {
	if m == nil {
		return
	}
	m.init()
	ids = slices.Sorted(slices.Values(ids))
	next := make(map[string]bool, min(len(ids), MaxPeerLabels))
	for _, id := range ids {
		if len(next) == MaxPeerLabels {
			break
		}
		if utf8.ValidString(id) && id != otherLabel {
			next[id] = true
		}
	}
	m.mu.Lock()
	gone := make([]string, 0)
	for id := range m.peers {
		if !next[id] {
			gone = append(gone, id)
		}
	}
	m.peers = next
	m.mu.Unlock()
	for _, id := range gone {
		for _, v := range []interface {
			DeletePartialMatch(prometheus.Labels) int
		}{m.rpcDuration, m.rpcFailures, m.rpcSent, m.rpcReceived, m.aeExchanges, m.aeDuration, m.aeLast, m.aeRepaired, m.aeBytes} {
			v.DeletePartialMatch(prometheus.Labels{"peer": id})
		}
	}
}

// peer returns the label value of node id: its ID when it is one of the
// peers ([Metrics.SetPeers]), "other" otherwise.
func (m *Metrics) peer(id string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.peers[id] {
		return id
	}
	return otherLabel
}

// MembershipChanged counts one SWIM membership event of the given kind.
func (m *Metrics) MembershipChanged(kind swim.EventKind) {
	if m == nil {
		return
	}
	m.init()
	m.membership.WithLabelValues(eventLabel(kind)).Inc()
}

// eventLabel is the label of a membership event kind.
func eventLabel(k swim.EventKind) string {
	switch k {
	case swim.EventJoined:
		return "joined"
	case swim.EventSuspected:
		return "suspected"
	case swim.EventFailed:
		return "failed"
	case swim.EventLeft:
		return "left"
	case swim.EventUpdated:
		return "updated"
	case swim.EventConflict:
		return "conflict"
	}
	return otherLabel
}

// Transport returns t with every call counted per peer: its round-trip
// time, its failure, and the bytes it sent and received.
func (m *Metrics) Transport(t Transport) Transport {
	m.init()
	return &meteredTransport{next: t, m: m}
}

type meteredTransport struct {
	next Transport
	m    *Metrics
}

var _ asyncTransport = (*meteredTransport)(nil)

func (t *meteredTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	start := time.Now()
	resp, err := t.next.Call(ctx, to, req)
	return t.record(start, to, req, resp, err)
}

func (t *meteredTransport) startCall(ctx context.Context, to string, req []byte, deliver func([]byte, error)) {
	start := time.Now()
	record := func(resp []byte, err error) { deliver(t.record(start, to, req, resp, err)) }
	if a, ok := t.next.(asyncTransport); ok {
		a.startCall(ctx, to, req, record)
		return
	}
	go func() { record(t.next.Call(ctx, to, req)) }()
}

// record counts the call to node to of req that began at start and
// ended with resp and err, and returns them.
func (t *meteredTransport) record(start time.Time, to string, req, resp []byte, err error) ([]byte, error) {
	m, peer := t.m, t.m.peer(to)
	m.rpcSent.WithLabelValues(peer).Add(float64(len(req)))
	m.rpcReceived.WithLabelValues(peer).Add(float64(len(resp)))
	if errors.Is(err, context.Canceled) {
		return resp, err // the caller no longer wanted it: neither a failure nor a round trip
	}
	m.rpcDuration.WithLabelValues(peer).Observe(time.Since(start).Seconds())
	if err != nil {
		m.rpcFailures.WithLabelValues(peer).Inc()
	}
	return resp, err
}

// exchanged records one anti-entropy exchange with peer that began at
// start; call it deferred, with the exchange's named results.
func (m *Metrics) exchanged(peer string, start time.Time, repaired, moved *int, err *error) {
	if m == nil {
		return
	}
	m.init()
	end := time.Now()
	p := m.peer(peer)
	m.aeDuration.WithLabelValues(p).Observe(end.Sub(start).Seconds())
	m.aeRepaired.WithLabelValues(p).Add(float64(*repaired))
	m.aeBytes.WithLabelValues(p).Add(float64(*moved))
	if *err != nil {
		m.aeExchanges.WithLabelValues(p, "error").Inc()
		return
	}
	m.aeExchanges.WithLabelValues(p, "ok").Inc()
	m.aeLast.WithLabelValues(p).Set(float64(end.UnixNano()) / 1e9)
}

// ObserveCommit records the time a commit of a batch of writes spent
// appending it to the write-ahead log and syncing it: a
// [StoreConfig.OnCommit].
func (m *Metrics) ObserveCommit(d time.Duration) {
	if m == nil {
		return
	}
	m.init()
	m.commit.Observe(d.Seconds())
}

// observeRead records the values a successful read returned.
func (m *Metrics) observeRead(values int) {
	if m == nil {
		return
	}
	m.init()
	m.siblings.Observe(float64(values))
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap gives http.ResponseController the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// instrument counts and times every request mux serves, by route (the
// pattern mux matched, which it records in the request) and method.
func (m *Metrics) instrument(mux *http.ServeMux) http.Handler {
	m.init()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		mux.ServeHTTP(rec, r)
		route, method := routeLabel(r.Pattern), methodLabel(r.Method)
		m.requests.WithLabelValues(route, method, codeLabel(cmp.Or(rec.code, http.StatusOK))).Inc()
		m.latency.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	})
}

// routeLabel is the label of a request's route: the path of the mux
// pattern that served it, or "other" when none matched.
func routeLabel(pattern string) string {
	if pattern == "" {
		return otherLabel
	}
	if _, path, ok := strings.Cut(pattern, " "); ok {
		return path
	}
	return pattern
}

// methodLabel is the label a request's method is counted under: the
// methods the API serves by name, and "other" for any other, so that
// clients cannot add series to /metrics by inventing methods.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
		return method
	}
	return otherLabel
}

// codeLabel is the label of a status code: the code, for the valid
// range of three digits.
func codeLabel(code int) string {
	if code < 100 || code > 599 {
		return otherLabel
	}
	return string([]byte{byte('0' + code/100), byte('0' + code/10%10), byte('0' + code%10)})
}

// handler serves the metrics in the Prometheus text format.
func (m *Metrics) handler() http.Handler {
	m.init()
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{MaxRequestsInFlight: 4})
}

// nodeCollector reads, at each scrape, the counters the node, its store
// and SWIM keep themselves.
type nodeCollector Metrics

var (
	descHintsPending = prometheus.NewDesc("kv_hints_pending", "Hints held now, by target.", []string{"target"}, nil)
	descHintAge      = prometheus.NewDesc("kv_hints_oldest_age_seconds",
		"Age of the oldest hint held for each target: since its hints last went from none to some (for hints already in the file at start, since the file was opened).", []string{"target"}, nil)
	descFileBytes  = prometheus.NewDesc("kv_bbolt_file_bytes", "Size of the node's bbolt files (data, hints).", []string{"file"}, nil)
	descSwimState  = prometheus.NewDesc("kv_swim_members", "Members SWIM knows, by state.", []string{"state"}, nil)
	descSwimHealth = prometheus.NewDesc("kv_swim_health_score",
		"Lifeguard's local health score: 0 is healthy; higher scales this node's probe timeouts up because it is missing acks.", nil, nil)
	nodeCounters = []struct {
		desc *prometheus.Desc
		get  func(Stats) int64
	}{
		{prometheus.NewDesc("kv_hints_stored_total", "Writes taken for a down replica, with a hint.", nil, nil), func(s Stats) int64 { return s.HintsStored }},
		{prometheus.NewDesc("kv_hints_delivered_total", "Hints handed back to their home replica.", nil, nil), func(s Stats) int64 { return s.HintsDelivered }},
		{prometheus.NewDesc("kv_read_repairs_total", "Stale replicas a read sent the merged object to.", nil, nil), func(s Stats) int64 { return s.ReadRepairs }},
		{prometheus.NewDesc("kv_antientropy_keys_repaired_total", "Keys anti-entropy found different and repaired.", nil, nil), func(s Stats) int64 { return s.KeysRepaired }},
		{prometheus.NewDesc("kv_tombstones_reaped_total", "Dead keys whose tombstones this replica reaped.", nil, nil), func(s Stats) int64 { return s.Reaped }},
	}
	swimCounters = []struct {
		desc *prometheus.Desc
		get  func(swim.Stats) int
	}{
		{prometheus.NewDesc("kv_swim_probes_total", "SWIM probes started.", nil, nil), func(s swim.Stats) int { return s.Probes }},
		{prometheus.NewDesc("kv_swim_probes_failed_total", "SWIM probes that ended without an ack.", nil, nil), func(s swim.Stats) int { return s.FailedProbes }},
		{prometheus.NewDesc("kv_gossip_packets_sent_total", "Gossip packets sent.", nil, nil), func(s swim.Stats) int { return s.PacketsSent }},
		{prometheus.NewDesc("kv_gossip_packets_received_total", "Gossip packets received.", nil, nil), func(s swim.Stats) int { return s.PacketsReceived }},
		{prometheus.NewDesc("kv_gossip_sent_bytes_total", "Gossip bytes sent.", nil, nil), func(s swim.Stats) int { return s.BytesSent }},
		{prometheus.NewDesc("kv_gossip_received_bytes_total", "Gossip bytes received.", nil, nil), func(s swim.Stats) int { return s.BytesReceived }},
		{prometheus.NewDesc("kv_gossip_packets_unopened_total", "Gossip packets dropped because the cluster's key and name did not open them.", nil, nil), func(s swim.Stats) int { return s.Unopened }},
		{prometheus.NewDesc("kv_gossip_packets_malformed_total", "Gossip packets dropped as malformed.", nil, nil), func(s swim.Stats) int { return s.Malformed }},
		{prometheus.NewDesc("kv_gossip_conflicts_total", "Gossip claims refused because they would have moved a live member to another address.", nil, nil), func(s swim.Stats) int { return s.Conflicts }},
		{prometheus.NewDesc("kv_gossip_implausible_total", "Gossip updates ignored for an implausible incarnation.", nil, nil), func(s swim.Stats) int { return s.Implausible }},
		{prometheus.NewDesc("kv_gossip_unknown_targets_total", "Ping-reqs refused because their target is not a known member.", nil, nil), func(s swim.Stats) int { return s.UnknownTargets }},
		{prometheus.NewDesc("kv_gossip_rate_limited_total", "Push-pull replies refused by the per-sender rate limit.", nil, nil), func(s swim.Stats) int { return s.RateLimited }},
		{prometheus.NewDesc("kv_gossip_cookies_total", "Push-pull requests answered with an address validation cookie instead of the state.", nil, nil), func(s swim.Stats) int { return s.Cookies }},
		{prometheus.NewDesc("kv_gossip_bad_cookies_total", "Address validation cookies refused: forged, late, echoed by another address or not asked for.", nil, nil), func(s swim.Stats) int { return s.BadCookies }},
		{prometheus.NewDesc("kv_gossip_packets_replayed_total", "Sealed gossip packets dropped because they were accepted before.", nil, nil), func(s swim.Stats) int { return s.Replayed }},
		{prometheus.NewDesc("kv_gossip_packets_stale_total", "Sealed gossip packets dropped because they were sealed outside the replay window.", nil, nil), func(s swim.Stats) int { return s.Stale }},
		{prometheus.NewDesc("kv_swim_events_dropped_total", "Membership events dropped because their queue was full.", nil, nil), func(s swim.Stats) int { return int(s.DroppedEvents) }},
	}
)

// Bulk work (anti-entropy exchanges, rebalances, handovers), from
// [Node.Progress], labelled by task.
var (
	descBulkRunning = prometheus.NewDesc("kv_bulk_running", "Runs of bulk work in progress.", []string{"task"}, nil)
	descBulkDone    = prometheus.NewDesc("kv_bulk_done", "Units passed by the last run: keys for a rebalance or handover, tree segments for an exchange.", []string{"task"}, nil)
	descBulkTotal   = prometheus.NewDesc("kv_bulk_total", "Units of the last run in all (see kv_bulk_done).", []string{"task"}, nil)
	bulkCounters    = []struct {
		desc *prometheus.Desc
		get  func(TaskProgress) int64
	}{
		{prometheus.NewDesc("kv_bulk_runs_total", "Runs of bulk work started.", []string{"task"}, nil), func(t TaskProgress) int64 { return t.Runs }},
		{prometheus.NewDesc("kv_bulk_failures_total", "Runs of bulk work that ended with an error.", []string{"task"}, nil), func(t TaskProgress) int64 { return t.Failures }},
		{prometheus.NewDesc("kv_bulk_keys_total", "Keys repaired by exchanges, or copies sent by rebalances and handovers.", []string{"task"}, nil), func(t TaskProgress) int64 { return t.Keys }},
		{prometheus.NewDesc("kv_bulk_bytes_total", "Bytes moved by bulk work.", []string{"task"}, nil), func(t TaskProgress) int64 { return t.Bytes }},
	}
)

// Describe sends nothing: the collector is unchecked, as the node and
// SWIM may be attached after registration.
func (c *nodeCollector) Describe(chan<- *prometheus.Desc) {}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	m := (*Metrics)(c)
	if n := m.node.Load(); n != nil {
		s := n.Stats()
		for _, x := range nodeCounters {
			ch <- prometheus.MustNewConstMetric(x.desc, prometheus.CounterValue, float64(x.get(s)))
		}
		now := time.Now()
		held := map[string]float64{}
		oldest := map[string]time.Time{}
		pending, _ := n.store.Hints().Pending() // a file that cannot be read has no series; /healthz says why
		for _, p := range pending {
			l := m.peer(p.Target)
			held[l] += float64(p.Count)
			if o, ok := oldest[l]; !ok || p.Since.Before(o) {
				oldest[l] = p.Since
			}
		}
		for l, k := range held {
			ch <- prometheus.MustNewConstMetric(descHintsPending, prometheus.GaugeValue, k, l)
			ch <- prometheus.MustNewConstMetric(descHintAge, prometheus.GaugeValue, now.Sub(oldest[l]).Seconds(), l)
		}
		p := n.Progress()
		for task, t := range map[string]TaskProgress{"anti_entropy": p.AntiEntropy, "rebalance": p.Rebalance, "handover": p.Handover} {
			ch <- prometheus.MustNewConstMetric(descBulkRunning, prometheus.GaugeValue, float64(t.Running), task)
			ch <- prometheus.MustNewConstMetric(descBulkDone, prometheus.GaugeValue, float64(t.Done), task)
			ch <- prometheus.MustNewConstMetric(descBulkTotal, prometheus.GaugeValue, float64(t.Total), task)
			for _, x := range bulkCounters {
				ch <- prometheus.MustNewConstMetric(x.desc, prometheus.CounterValue, float64(x.get(t)), task)
			}
		}
		for file, path := range map[string]string{"data": n.store.Path(), "hints": n.store.Hints().Path()} {
			if fi, err := os.Stat(path); err == nil {
				ch <- prometheus.MustNewConstMetric(descFileBytes, prometheus.GaugeValue, float64(fi.Size()), file)
			}
		}
	}
	sw := m.swim.Load()
	if sw == nil {
		return
	}
	st := sw.Stats()
	for _, x := range swimCounters {
		ch <- prometheus.MustNewConstMetric(x.desc, prometheus.CounterValue, float64(x.get(st)))
	}
	ch <- prometheus.MustNewConstMetric(descSwimHealth, prometheus.GaugeValue, float64(sw.Health()))
	states := map[swim.State]int{}
	for _, mem := range sw.Members(nil) {
		states[mem.State]++
	}
	for _, s := range []swim.State{swim.StateAlive, swim.StateSuspect, swim.StateDead, swim.StateLeft} {
		ch <- prometheus.MustNewConstMetric(descSwimState, prometheus.GaugeValue, float64(states[s]), s.String())
	}
}
