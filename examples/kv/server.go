package kv

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/detector"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
)

// Member is a node of a statically configured cluster: its ID, HTTP
// address (host:port) and zone.
type Member struct {
	ID, Addr, Zone string
}

// ServerConfig configures [StartServer]. ID, Listen, Data and Members are
// required; zero durations take defaults.
type ServerConfig struct {
	ID      string
	Listen  string   // HTTP address to listen on, host:port (port 0: any)
	Data    string   // directory of the node's bbolt file
	Members []Member // every node of the cluster, this one included (its Addr is ignored)
	Quorum  quorum.Config
	Logger  *slog.Logger // nil: discard
	// Client makes the replica RPCs and health probes; nil: a client
	// with a 2-second timeout.
	Client *http.Client
	// ProbeEvery is the period of the health probes that feed the failure
	// detector; a node unanswered for 3×ProbeEvery is suspected. 0: 500ms.
	ProbeEvery time.Duration
	Maintain   MaintainConfig
	Store      StoreConfig // Group is set by the node
}

// Server is one store node as a process would run it: its store, its
// [Node], the HTTP API on a listener, a failure detector fed by health
// probes of the other members, and the node's maintenance. It is safe for
// concurrent use.
type Server struct {
	node    *Node
	store   *Store
	http    *http.Server
	ln      net.Listener
	metrics *Metrics
	cancel  context.CancelFunc
	wg      sync.WaitGroup // the probe, maintenance and HTTP goroutines
	ready   atomic.Bool
}

// StartServer opens the store in cfg.Data, starts listening and serving
// and starts the background work; it returns once the node serves. Stop
// it with [Server.Shutdown]. It returns the errors of [Open], [NewNode]
// and net.Listen.
func StartServer(cfg ServerConfig) (*Server, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.ID)
	client := cfg.Client
	if client == nil {
		client = &http.Client{Timeout: 2 * time.Second}
	}
	probeEvery := cfg.ProbeEvery
	if probeEvery <= 0 {
		probeEvery = 500 * time.Millisecond
	}
	tr := &HTTPTransport{Client: client}
	var nodes []ring.Node
	for _, m := range cfg.Members {
		nodes = append(nodes, ring.Node{ID: m.ID, Zone: m.Zone})
		if m.ID != cfg.ID {
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
	store, err := Open(filepath.Join(cfg.Data, "kv.db"), cfg.Store)
	if err != nil {
		return nil, err
	}
	reg := detector.NewRegistry(func() *detector.Timeout { return detector.NewTimeout(3 * probeEvery) }, detector.RegistryConfig{})
	for _, m := range cfg.Members { // monitored from the start: one never heard from is suspected too
		if m.ID != cfg.ID {
			reg.Heartbeat(m.ID, time.Now())
		}
	}
	alive := func(id string) bool {
		phi, ok := reg.Phi(id, time.Now())
		return !ok || phi <= 1 // ok is false only for this node
	}
	node, err := NewNode(NodeConfig{ID: cfg.ID, Ring: r, Store: store, Transport: tr, Quorum: cfg.Quorum, Alive: alive, Logger: log})
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	s := &Server{node: node, store: store, ln: ln, metrics: &Metrics{}}
	guard := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	s.http = &http.Server{
		Handler:           API(node, APIConfig{Guard: guard, Metrics: s.metrics, Ready: s.ready.Load}),
		ReadHeaderTimeout: 5 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() {
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serve", "err", err)
		}
	})
	s.wg.Go(func() { node.Maintain(ctx, cfg.Maintain) })
	s.wg.Go(func() { s.probe(ctx, client, cfg, reg, probeEvery, log) })
	s.ready.Store(true)
	log.Info("serving", "addr", ln.Addr().String(), "n", node.quorum.N, "r", node.quorum.R, "w", node.quorum.W)
	return s, nil
}

// probe GETs every other member's /healthz each period and feeds the
// failure detector, logging and counting changes of liveness, until ctx
// is done.
func (s *Server) probe(ctx context.Context, client *http.Client, cfg ServerConfig, reg *detector.Registry[*detector.Timeout], every time.Duration, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	up := map[string]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, m := range cfg.Members {
			if m.ID == cfg.ID {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, every)
			req, err := http.NewRequestWithContext(pctx, http.MethodGet, "http://"+m.Addr+"/healthz", nil)
			if err == nil {
				var resp *http.Response
				if resp, err = client.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						reg.Heartbeat(m.ID, time.Now())
					}
				}
			}
			cancel()
			if now := s.node.alive(m.ID); now != up[m.ID] {
				if _, seen := up[m.ID]; seen {
					s.metrics.MembershipChanged()
					log.Info("membership", "member", m.ID, "alive", now)
				}
				up[m.ID] = now
			}
		}
	}
}

// Node returns the server's node.
func (s *Server) Node() *Node { return s.node }

// Addr returns the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server: it stops accepting requests and waits for
// those in flight until ctx is done (then closes their connections),
// stops the background work, waits for the node's replication and
// repairs, and closes the store. A ctx that is already done makes it a
// hard stop, as close to a crash as a process can do to itself: every
// acknowledged write is on disk either way.
func (s *Server) Shutdown(ctx context.Context) error {
	s.ready.Store(false)
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = s.http.Close()
	}
	s.cancel()
	s.wg.Wait()
	s.node.Close()
	return errors.Join(err, s.store.Close())
}
