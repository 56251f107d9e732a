package kv

import (
	"cmp"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/detector/swim"
)

// latencyBuckets are the upper bounds, in seconds, of the request latency
// histogram.
var latencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// Metrics counts a node's client requests by method and status, their
// latencies by method, and membership changes, and exposes them with the
// node's [Stats] (and, in a [Server], the gossip packets SWIM refused) in
// the Prometheus text format. It is safe for concurrent use; the zero
// value is ready.
type Metrics struct {
	mu        sync.Mutex
	requests  map[requestClass]int64
	latencies map[string]*histogram // by method

	membership atomic.Int64
	// gossip, when set (before serving), reports SWIM's counters.
	gossip func() swim.Stats
}

type requestClass struct {
	method string
	code   int
}

type histogram struct {
	counts []int64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      int64
}

// MembershipChanged counts one change of the cluster's membership.
func (m *Metrics) MembershipChanged() { m.membership.Add(1) }

// observe records one request.
func (m *Metrics) observe(method string, code int, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.requests == nil {
		m.requests, m.latencies = map[requestClass]int64{}, map[string]*histogram{}
	}
	m.requests[requestClass{method, code}]++
	h := m.latencies[method]
	if h == nil {
		h = &histogram{counts: make([]int64, len(latencyBuckets)+1)}
		m.latencies[method] = h
	}
	s := d.Seconds()
	i, _ := slices.BinarySearch(latencyBuckets, s)
	h.counts[i]++
	h.sum += s
	h.n++
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

func (m *Metrics) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		m.observe(methodLabel(r.Method), cmp.Or(rec.code, http.StatusOK), time.Since(start))
	})
}

// methodLabel is the label a request's method is counted under: the
// methods the API serves by name, and "other" for any other, so that
// clients cannot add series to /metrics by inventing methods.
func methodLabel(method string) string {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete:
		return method
	}
	return "other"
}

// handler serves the metrics of m and n in the Prometheus text format.
func (m *Metrics) handler(n *Node) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		m.write(w, n.Stats())
	})
}

func (m *Metrics) write(w http.ResponseWriter, s Stats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintln(w, "# HELP kv_requests_total Client requests by method and status code.")
	fmt.Fprintln(w, "# TYPE kv_requests_total counter")
	classes := slices.SortedFunc(maps.Keys(m.requests), func(a, b requestClass) int {
		if a.method != b.method {
			return cmp.Compare(a.method, b.method)
		}
		return a.code - b.code
	})
	for _, c := range classes {
		fmt.Fprintf(w, "kv_requests_total{method=%q,code=\"%d\"} %d\n", c.method, c.code, m.requests[c])
	}
	fmt.Fprintln(w, "# HELP kv_request_duration_seconds Client request latency by method.")
	fmt.Fprintln(w, "# TYPE kv_request_duration_seconds histogram")
	for _, method := range slices.Sorted(maps.Keys(m.latencies)) {
		h := m.latencies[method]
		var cum int64
		for i, ub := range latencyBuckets {
			cum += h.counts[i]
			fmt.Fprintf(w, "kv_request_duration_seconds_bucket{method=%q,le=%q} %d\n", method, strconv.FormatFloat(ub, 'g', -1, 64), cum)
		}
		fmt.Fprintf(w, "kv_request_duration_seconds_bucket{method=%q,le=\"+Inf\"} %d\n", method, h.n)
		fmt.Fprintf(w, "kv_request_duration_seconds_sum{method=%q} %g\n", method, h.sum)
		fmt.Fprintf(w, "kv_request_duration_seconds_count{method=%q} %d\n", method, h.n)
	}
	for _, c := range []struct {
		name, help, kind string
		v                int64
	}{
		{"kv_hints_stored_total", "Writes taken for a down replica, with a hint.", "counter", s.HintsStored},
		{"kv_hints_delivered_total", "Hints handed back to their home replica.", "counter", s.HintsDelivered},
		{"kv_hints_pending", "Hints held now.", "gauge", int64(s.HintsPending)},
		{"kv_read_repairs_total", "Stale replicas a read sent the merged object to.", "counter", s.ReadRepairs},
		{"kv_antientropy_keys_repaired_total", "Keys anti-entropy found different and repaired.", "counter", s.KeysRepaired},
		{"kv_tombstones_reaped_total", "Dead keys whose tombstones this replica reaped.", "counter", s.Reaped},
		{"kv_membership_changes_total", "Changes of the cluster's membership.", "counter", m.membership.Load()},
	} {
		writeMetric(w, c.name, c.help, c.kind, c.v)
	}
	if m.gossip == nil {
		return
	}
	g := m.gossip()
	writeMetric(w, "kv_gossip_packets_unopened_total", "Gossip packets dropped because the cluster's key and name did not open them.", "counter", int64(g.Unopened))
	writeMetric(w, "kv_gossip_packets_malformed_total", "Gossip packets dropped as malformed.", "counter", int64(g.Malformed))
	writeMetric(w, "kv_gossip_conflicts_total", "Gossip claims refused because they would have moved a live member to another address.", "counter", int64(g.Conflicts))
}

// writeMetric writes one sample of a metric without labels, with its
// help and type.
func writeMetric(w http.ResponseWriter, name, help, kind string, v int64) {
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %d\n", name, help, name, kind, name, v)
}
