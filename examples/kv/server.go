package kv

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/detector/swim"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
)

// Member is a node of a statically configured cluster: its ID, HTTP
// address (host:port) and zone. It is a plain value.
type Member struct {
	ID, Addr, Zone string
}

// ServerConfig configures [StartServer]. ID, Listen, Gossip and Data are
// required; zero durations take defaults. It is a plain value.
type ServerConfig struct {
	ID     string
	Listen string   // HTTP address to listen on, host:port
	Zone   string   // this node's zone
	Gossip string   // UDP address of SWIM, host:port
	Join   []string // gossip addresses of other nodes to join through
	Data   string   // directory of the node's bbolt file
	// Members are the nodes the ring starts with (this one is added if
	// absent; its Addr is ignored); nil: this node alone. The ring then
	// follows SWIM: a node that joins with its address in its metadata is
	// added, one that leaves is removed, and moved keys are streamed to
	// their new replicas ([Node.ApplyRing]). A failed node stays: its
	// writes go to fallbacks with hints until it returns.
	Members []Member
	Quorum  quorum.Config
	// ReplicaTimeout bounds each replica call of a read or a write (the
	// node's NodeConfig.Timeout); 0: DefaultTimeout.
	ReplicaTimeout time.Duration
	// RPCBatch and RPCBatchesInFlight are the replica transport's
	// [HTTPTransport.MaxBatch] and [HTTPTransport.BatchesInFlight].
	RPCBatch, RPCBatchesInFlight int
	// RPCMux makes the replica transport multiplex its calls to a peer
	// on one connection ([HTTPTransport.Mux]).
	RPCMux bool
	Logger *slog.Logger // nil: discard
	// Client makes the replica RPCs; nil: a client with a timeout of 2
	// seconds (or ReplicaTimeout, if longer) that keeps up to DefaultMaxConcurrentRPC idle connections
	// per peer.
	Client *http.Client
	// ProbeInterval is SWIM's protocol period; 0: 1s, memberlist's LAN
	// default. The other periods scale with it: the probe timeout is half
	// of it and the push-pull period [pushPullProbes] times it (30s at
	// 1s, memberlist's LAN ratio). Push-pull is what heals a partition
	// (each side has declared the other dead and no longer probes it), so
	// a shorter ProbeInterval also heals partitions proportionally sooner.
	ProbeInterval time.Duration
	// WrapGossip, when set, wraps the UDP transport of SWIM, to inject
	// faults in tests and demos.
	WrapGossip func(swim.Transport) swim.Transport
	Maintain   MaintainConfig
	Store      StoreConfig // Group is set by the node
	// Repair is the node's [NodeConfig.Repair]: the pages and bandwidth
	// of anti-entropy, rebalances and handovers.
	Repair RepairConfig
	// OnReap is the node's [NodeConfig.OnReap].
	OnReap func(key []byte, tombstone Object)
	// ClusterKey, when set (at least [MinClusterKeyLen] bytes), is the
	// secret every node of the cluster shares: replica RPCs are
	// authenticated with it (see [APIConfig.ClusterKey]), and SWIM's
	// packets are sealed and authenticated with a key derived from it
	// ([GossipKey]) and the cluster's name, so membership and every
	// replica address come only from nodes holding the key: a packet
	// from anyone else is dropped and counted (kv_gossip_* in /metrics).
	// Nodes with and without a key, or with no key in common, or with
	// different names, do not see each other: set the key on every node
	// of a cluster at once (a node restarted with it alone joins no one,
	// and the others take it for failed). To change it without a
	// partition, rotate it at runtime with [Server.SetClusterKeys].
	// nil: neither RPCs nor gossip are authenticated.
	ClusterKey []byte
	// OtherClusterKeys are accepted besides ClusterKey, the primary, which
	// alone signs RPCs and seals gossip (see [ClusterKeys]); at most
	// MaxClusterKeys keys in all. Used only with a ClusterKey.
	OtherClusterKeys [][]byte
	// ClusterName names the cluster in its sealed gossip (swim's
	// Config.Label), so two clusters sharing a key never merge; at most
	// 128 bytes. Empty: "kv". Used only with a ClusterKey.
	ClusterName string
	// Limits are the HTTP API's bounds on clients ([APIConfig.Limits]).
	Limits Limits
	// TLS, when set, makes the node serve its HTTP API over TLS and
	// speak mutual TLS with its peers ([PeerTLS]): replica RPCs are
	// served only to peers whose certificate chains to the CA. The
	// cluster key, if any, still authenticates every RPC too. With TLS,
	// Client's Transport, if set, must be an *http.Transport; the server
	// uses a copy of it with the node's certificate. Members' addresses
	// must be names or IP addresses that their certificates hold.
	TLS *PeerTLS
}

// pushPullProbes is SWIM's push-pull period in probe intervals.
const pushPullProbes = 30

// swimConfig returns the SWIM configuration of a server over cfg, whose
// gossip listens on addr, with meta as its metadata; with a ClusterKey,
// its packets are sealed under [GossipKey] and labelled with the
// cluster's name.
func swimConfig(cfg ServerConfig, addr string, meta []byte) (swim.Config, error) {
	interval := cmp.Or(cfg.ProbeInterval, time.Second)
	c := swim.Config{ID: cfg.ID, Addr: addr, Meta: meta, Seeds: cfg.Join,
		ProbeInterval: interval, ProbeTimeout: interval / 2, PushPullInterval: pushPullProbes * interval}
	if cfg.ClusterKey != nil {
		var others [][]byte
		for _, k := range cfg.OtherClusterKeys {
			others = append(others, GossipKey(k))
		}
		kr, err := swim.NewKeyring(GossipKey(cfg.ClusterKey), others...)
		if err != nil {
			return swim.Config{}, err
		}
		c.Keyring, c.Label = kr, cmp.Or(cfg.ClusterName, "kv")
	}
	return c, nil
}

// Server is one store node as a process would run it: its store, its
// [Node], the HTTP API on a listener, SWIM over UDP as the failure
// detector, and the node's maintenance. It is safe for concurrent use.
type Server struct {
	node    *Node
	store   *Store
	http    *http.Server
	ln      net.Listener
	udp     *swim.UDP
	swim    *swim.Node
	metrics *Metrics
	tr      *HTTPTransport
	conns   *muxConns     // the multiplexed connections it serves
	keys    *ClusterKeys  // nil without a cluster key
	keyring *swim.Keyring // gossip's, under the keys' GossipKeys
	keysMu  sync.Mutex    // serialises SetClusterKeys
	log     *slog.Logger
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the events, maintenance and HTTP goroutines
	ready   atomic.Bool    // serving
	joined  atomic.Bool    // has seen another live member
	health  health
}

// health is what /healthz of a [Server] reports: the last probe of the
// disk ([Store.Probe]) and what the membership loop is busy with. It is
// safe for concurrent use.
type health struct {
	mu        sync.Mutex
	disk      error     // of the last probe
	probed    time.Time // when the last probe ended
	busy      string    // what the membership loop is doing; "": waiting for events
	busySince time.Time
}

// Health checks of a [Server].
const (
	// ProbeDiskEvery is how often a server probes its disk.
	ProbeDiskEvery = 2 * time.Second
	// DiskProbeStale is how long the last probe may have ended before
	// /healthz takes the disk for hung.
	DiskProbeStale = 5 * ProbeDiskEvery
	// loopStallProbes is how many probe intervals the membership loop may
	// spend on one batch of events (a ring change's rebalance included)
	// before /healthz reports it stuck.
	loopStallProbes = pushPullProbes
)

// probedAt records the result of a probe of the disk that ended at now.
func (h *health) probedAt(now time.Time, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.disk, h.probed = err, now
}

// setBusy records what the membership loop is doing from now on; "":
// waiting for events.
func (h *health) setBusy(now time.Time, what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.busy, h.busySince = what, now
}

// check returns why the server is unhealthy at now, or nil: the last
// probe of the disk failed or ended more than [DiskProbeStale] ago, or the
// membership loop has been busy with one thing for longer than stall.
func (h *health) check(now time.Time, stall time.Duration) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var errs []error
	if h.disk != nil {
		errs = append(errs, fmt.Errorf("disk: %w", h.disk))
	}
	if age := now.Sub(h.probed); age > DiskProbeStale {
		errs = append(errs, fmt.Errorf("disk: no probe ended for %v (hung?)", age.Round(time.Millisecond)))
	}
	if d := now.Sub(h.busySince); h.busy != "" && d > stall {
		errs = append(errs, fmt.Errorf("membership loop: %s for %v, more than %v", h.busy, d.Round(time.Millisecond), stall))
	}
	return errors.Join(errs...)
}

// probeDisk probes the store's disk every [ProbeDiskEvery] until ctx is
// done, and logs when the probes start failing and when they pass again.
func (s *Server) probeDisk(ctx context.Context) {
	t := time.NewTicker(ProbeDiskEvery)
	defer t.Stop()
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			err := s.store.Probe()
			switch {
			case err != nil && !failing:
				s.log.Error("disk probe failed: /healthz answers 503", "err", err)
			case err == nil && failing:
				s.log.Info("disk probe passed again")
			}
			failing = err != nil
			s.health.probedAt(time.Now(), err)
		}
	}
}

// StartServer opens the store in cfg.Data, joins the SWIM cluster,
// starts listening and serving and starts the background work; it
// returns once the node serves. Stop it with [Server.Shutdown]. It
// returns the errors of [Open], [NewIdempotencyStore], [NewNode], swim.New
// and listening, and an error for a ClusterKey shorter than
// [MinClusterKeyLen]. Idempotency keys are recorded durably in the store's file
// ([IdempotencyStore]) and kept for the Guard's default retention.
func StartServer(cfg ServerConfig) (s *Server, err error) {
	var keys *ClusterKeys
	if cfg.ClusterKey != nil {
		if keys, err = NewClusterKeys(cfg.ClusterKey, cfg.OtherClusterKeys...); err != nil {
			return nil, err
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.ID)
	client := cfg.Client
	if client == nil {
		// Idle connections are kept for as many RPCs to a peer as it
		// serves at once (Go's default keeps 2), so that replication
		// under load reuses connections instead of dialling per call.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = DefaultMaxConcurrentRPC
		client = &http.Client{Timeout: max(2*time.Second, cfg.ReplicaTimeout), Transport: t}
	}
	if cfg.TLS != nil {
		if client, err = cfg.TLS.client(client); err != nil {
			return nil, err
		}
	}
	tr := &HTTPTransport{Client: client, Keys: keys, TLS: cfg.TLS != nil, MaxBatch: cfg.RPCBatch, BatchesInFlight: cfg.RPCBatchesInFlight, Mux: cfg.RPCMux}
	nodes := []ring.Node{{ID: cfg.ID, Zone: cfg.Zone}}
	for _, m := range cfg.Members {
		if m.ID != cfg.ID {
			nodes = append(nodes, ring.Node{ID: m.ID, Zone: m.Zone})
			tr.SetAddr(m.ID, m.Addr)
		}
	}
	r, err := ring.New(nodes, ring.Config{})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Data, 0o755); err != nil {
		return nil, err
	}
	s = &Server{metrics: &Metrics{}, tr: tr, keys: keys, log: log, conns: &muxConns{}}
	cfg.Store.OnCommit = s.metrics.ObserveCommit
	var closers []func() error // undone in reverse on failure
	defer func() {
		if err != nil {
			for _, c := range slices.Backward(closers) {
				err = errors.Join(err, c())
			}
		}
	}()
	if s.store, err = Open(filepath.Join(cfg.Data, "kv.db"), cfg.Store); err != nil {
		return nil, err
	}
	closers = append(closers, s.store.Close)
	s.health.probedAt(time.Now(), s.store.Probe())
	if s.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, err
	}
	closers = append(closers, s.ln.Close)
	if cfg.TLS != nil {
		s.ln = tls.NewListener(s.ln, cfg.TLS.serverConfig())
	}
	if s.udp, err = swim.ListenUDP(cfg.Gossip); err != nil {
		return nil, err
	}
	closers = append(closers, s.udp.Close)
	meta, err := json.Marshal(nodeMeta{HTTP: s.ln.Addr().String(), Zone: cfg.Zone})
	if err != nil {
		return nil, err
	}
	swimCfg, err := swimConfig(cfg, s.udp.Addr(), meta)
	if err != nil {
		return nil, err
	}
	s.keyring = swimCfg.Keyring
	core, err := swim.New(swimCfg, time.Now())
	if err != nil {
		return nil, err
	}
	var gossip swim.Transport = s.udp
	if cfg.WrapGossip != nil {
		gossip = cfg.WrapGossip(gossip)
	}
	s.swim = swim.Start(context.Background(), core, gossip, log)
	closers = append(closers, s.swim.Close)
	s.metrics.swim.Store(s.swim)
	s.metrics.SetPeers(ids(r))
	alive := func(id string) bool {
		m, known := s.swim.Member(id)
		return !known || m.State == swim.StateAlive || m.State == swim.StateSuspect // unknown: presumed alive
	}
	if s.node, err = NewNode(NodeConfig{ID: cfg.ID, Ring: r, Store: s.store, Transport: s.metrics.Transport(tr), Quorum: cfg.Quorum, Timeout: cfg.ReplicaTimeout, Alive: alive, OnReap: cfg.OnReap, Repair: cfg.Repair, Logger: log, Metrics: s.metrics}); err != nil {
		return nil, err
	}
	idem, err := NewIdempotencyStore(s.store, IdempotencyConfig{})
	if err != nil {
		return nil, err
	}
	guard := idempotency.New(idem, idempotency.Config{})
	s.http = &http.Server{
		Handler: API(s.node, APIConfig{Guard: guard, Metrics: s.metrics, Keys: keys, Limits: cfg.Limits, PeerCertificates: cfg.TLS != nil, conns: s.conns, Ready: func() bool {
			// Serving, and joined once unless it has no one to join.
			return s.ready.Load() && (len(cfg.Join) == 0 || s.joined.Load())
		},
			Health: func() error {
				return s.health.check(time.Now(), loopStallProbes*cmp.Or(cfg.ProbeInterval, time.Second))
			},
			Membership: func() []swim.Member { return s.swim.Members(nil) }}),
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       DefaultIdleTimeout,
		// Room for the longest X-Context allowed, and no more.
		MaxHeaderBytes: 64<<10 + 2*cmp.Or(cfg.Limits.MaxContextLen, DefaultMaxContextLen),
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() {
		if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	})
	s.wg.Go(func() { s.node.Maintain(ctx, cfg.Maintain) })
	s.wg.Go(func() { s.watch(ctx, log) })
	s.wg.Go(func() { s.probeDisk(ctx) })
	if len(cfg.Join) > 0 {
		s.wg.Go(func() { s.warnUnjoined(ctx, log, cfg.Join, joinGrace*cmp.Or(cfg.ProbeInterval, time.Second)) })
	}
	s.ready.Store(true)
	log.Info("serving", "addr", s.ln.Addr().String(), "actor", s.node.Actor(), "tls", cfg.TLS != nil, "gossip", s.udp.Addr(), "n", s.node.Quorum().N, "r", s.node.Quorum().R, "w", s.node.Quorum().W)
	return s, nil
}

// joinGrace is how many probe intervals a node waits to have seen
// another member through its join addresses before it warns.
const joinGrace = 10

// warnUnjoined logs a warning when no other member has been seen after
// wait (the join addresses are unreachable, or wrong), and again each
// wait until one has or ctx is done.
func (s *Server) warnUnjoined(ctx context.Context, log *slog.Logger, join []string, wait time.Duration) {
	t := time.NewTicker(wait)
	defer t.Stop()
	for !s.joined.Load() {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !s.joined.Load() {
				log.Warn("no member reached through the join addresses", "join", join, "waited", wait)
			}
		}
	}
}

// nodeMeta is what a node tells the cluster about itself in its SWIM
// metadata (JSON).
type nodeMeta struct {
	HTTP string `json:"http"`
	Zone string `json:"zone,omitempty"`
}

// watch logs and counts SWIM's membership events and makes the ring
// follow them, until ctx is done.
func (s *Server) watch(ctx context.Context, log *slog.Logger) {
	var events []swim.Event
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.swim.Changed():
		}
		events = s.swim.PopEvents(events[:0])
		s.health.setBusy(time.Now(), fmt.Sprintf("following %d membership events", len(events)))
		if s.swim.NumLive() > 1 {
			s.joined.Store(true)
		}
		cur := s.node.Ring()
		next := cur
		for _, e := range events {
			s.metrics.MembershipChanged(e.Kind)
			level := slog.LevelInfo
			if e.Kind == swim.EventSuspected || e.Kind == swim.EventFailed || e.Kind == swim.EventConflict {
				level = slog.LevelWarn
			}
			if e.Kind == swim.EventResync {
				log.Warn("membership events were dropped; the ring follows a snapshot of the members")
				for _, e := range resyncEvents(s.swim.Members(nil)) {
					next = s.follow(next, e, log)
				}
				continue
			}
			log.Log(ctx, level, "membership", "event", e.Kind.String(), "member", e.Member.ID, "incarnation", e.Member.Incarnation)
			next = s.follow(next, e, log)
		}
		if next != cur {
			s.health.setBusy(time.Now(), fmt.Sprintf("rebalancing to a ring of %d members", next.Len()))
			s.metrics.SetPeers(ids(next))
			start := time.Now()
			k, err := s.node.ApplyRing(ctx, next)
			if err != nil {
				log.Error("ring changed, rebalance failed", "members", next.Len(), "streamed", k, "took", time.Since(start), "err", err)
			} else {
				log.Info("ring changed", "members", next.Len(), "streamed", k, "took", time.Since(start))
			}
		}
		s.health.setBusy(time.Now(), "")
	}
}

// resyncEvents turns a snapshot of SWIM's members, taken when its event
// queue overflowed ([swim.EventResync]), into the events [Server.follow]
// brings a ring up to date with: a member that left is a leave, any other
// a join, which adds it if the ring lacks it and refreshes its address.
// That is the ring the dropped events would have led to: follow keeps a
// failed member, as it keeps one that joined and then failed.
func resyncEvents(members []swim.Member) []swim.Event {
	events := make([]swim.Event, 0, len(members))
	for _, m := range members {
		kind := swim.EventJoined
		if m.State == swim.StateLeft {
			kind = swim.EventLeft
		}
		events = append(events, swim.Event{Kind: kind, Member: m})
	}
	return events
}

// follow returns r changed by the event e: a member that joined is added
// (its HTTP address and zone from its metadata), one that left is
// removed; a failed one stays.
func (s *Server) follow(r *ring.Ring, e swim.Event, log *slog.Logger) *ring.Ring {
	id := e.Member.ID
	if id == s.node.ID() {
		return r
	}
	in := slices.ContainsFunc(r.Nodes(), func(n ring.Node) bool { return n.ID == id })
	switch e.Kind {
	case swim.EventJoined, swim.EventUpdated:
		var m nodeMeta
		if err := json.Unmarshal(e.Member.Meta, &m); err != nil || m.HTTP == "" {
			log.Warn("member without an HTTP address in its metadata", "member", id, "err", err)
			return r
		}
		s.tr.SetAddr(id, m.HTTP)
		if !in {
			if next, err := r.With(ring.Node{ID: id, Zone: m.Zone}); err == nil {
				return next
			}
		}
	case swim.EventLeft:
		if in {
			return r.Without(id)
		}
	}
	return r
}

// ids returns the IDs of r's nodes.
func ids(r *ring.Ring) []string {
	var out []string
	for _, n := range r.Nodes() {
		out = append(out, n.ID)
	}
	return out
}

// ErrNoClusterKey is returned by [Server.SetClusterKeys] on a server
// started without a cluster key.
var ErrNoClusterKey = errors.New("kv: the server was started without a cluster key")

// SetClusterKeys replaces the server's cluster keys while it runs: primary
// signs its replica RPCs and seals its gossip from now on, and RPCs and
// gossip under any of primary and others are accepted. Gossip keys not
// yet installed are added before the primary switches, and the keys no
// longer wanted are removed last, so no packet in flight under a key
// kept is refused. It returns [ErrNoClusterKey] on a server started
// without a key (one cannot be added to a running unkeyed cluster), and
// the errors of [ClusterKeys.Set], changing nothing.
func (s *Server) SetClusterKeys(primary []byte, others ...[]byte) error {
	if s.keys == nil {
		return ErrNoClusterKey
	}
	next, err := NewClusterKeys(primary, others...)
	if err != nil {
		return err
	}
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	var gossip [][]byte
	for _, k := range next.all() {
		g := GossipKey(k)
		gossip = append(gossip, g)
		if err := s.keyring.AddKey(g); err != nil {
			return err // a GossipKey is always of the keyring's size
		}
	}
	if err := s.keyring.UseKey(gossip[0]); err != nil {
		return err
	}
	s.keys.keys.Store(next.keys.Load())
	for _, g := range s.keyring.Keys() {
		if !slices.ContainsFunc(gossip, func(w []byte) bool { return bytes.Equal(w, g) }) {
			if err := s.keyring.RemoveKey(g); err != nil {
				return err
			}
		}
	}
	return nil
}

// Node returns the server's node.
func (s *Server) Node() *Node { return s.node }

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server: it hands its keys and hints over to the
// nodes that remain ([Node.Leave]; not when it is alone in its ring, nor
// when the caller ran Node.Leave before),
// leaves the SWIM cluster, stops accepting requests and waits for those
// in flight until ctx is done (then closes their connections), stops the
// background work, waits for the node's replication and repairs, and
// closes the store. Once it left, its data directory may be discarded.
// When the handover fails (a key found no node, or ctx ended), it stops
// without leaving SWIM, so the others take it for failed and keep it in
// their rings, and returns the handover's error: its disk then holds
// what was not handed over, and restarting the node on it loses nothing.
// A ctx that is already done makes it a hard stop, as close to a crash as
// a process can do to itself (it neither hands over nor leaves): every
// acknowledged write is on disk either way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	hard := ctx.Err() != nil
	var left error
	if !hard && s.node.Ring().Len() > 1 && !s.node.Leaving() {
		start := time.Now()
		h, err := s.node.Leave(ctx)
		left = err
		attrs := []any{"keys", h.Keys, "copies", h.Copies, "failed", h.Failed, "hints", h.Hints, "unplaced", h.Unplaced, "took", time.Since(start)}
		if err != nil {
			s.log.Error("handover failed", append(attrs, "err", err)...)
		} else {
			s.log.Info("handed over", attrs...)
		}
	}
	if !hard && left == nil { // its data is on the others: leave, even if ctx ended since
		s.swim.Leave(ctx)
	}
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = s.http.Close()
	}
	s.conns.shutdown(ctx) // upgraded connections, which the HTTP server no longer tracks
	s.cancel()
	s.wg.Wait()
	s.node.Close()
	s.tr.closeMux()
	return errors.Join(left, err, s.swim.Close(), s.udp.Close(), s.store.Close())
}
