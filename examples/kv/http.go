package kv

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/detector/swim"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

// HTTP header fields of the client API.
const (
	HeaderContext = "X-Context" // the opaque causal context of a read or write
	HeaderDot     = "X-Dot"     // the opaque identity of a write, for checkers
)

// Limits of the HTTP API.
const (
	MaxValueLen   = 1 << 20  // bytes in a PUT body
	MaxRPCLen     = 64 << 20 // bytes in a replica RPC
	rpcPath       = "/internal/rpc"
	maxErrorBytes = 4096
)

// HTTPTransport is a [Transport] over HTTP: a call POSTs the request to
// http://addr/internal/rpc of the target's address, which a node serves
// with its [API] handler. It is safe for concurrent use; the zero value
// has no addresses and uses http.DefaultClient.
type HTTPTransport struct {
	Client *http.Client // nil: http.DefaultClient
	// Key, when set, is the cluster key every call is authenticated with
	// ([HeaderAuth]); the receivers' [APIConfig.ClusterKey] must match.
	Key []byte

	mu    sync.RWMutex
	addrs map[string]string // node ID → host:port
}

var _ Transport = (*HTTPTransport)(nil)

// SetAddr records the HTTP address (host:port) of node id.
func (t *HTTPTransport) SetAddr(id, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.addrs == nil {
		t.addrs = map[string]string{}
	}
	t.addrs[id] = addr
}

// Call POSTs req to node to and returns the response body. A status other
// than 200 is an error carrying the node's text; it wraps [ErrKeyReused]
// for 422, the node's answer to a write that reused an idempotency key,
// and [ErrUnauthenticated] for 401, its answer to a call without the
// cluster key.
func (t *HTTPTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	t.mu.RLock()
	addr, ok := t.addrs[to]
	t.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("kv: no address for node %q", to)
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+rpcPath, bytes.NewReader(req))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/msgpack")
	if t.Key != nil {
		hr.Header.Set(HeaderAuth, authenticator(t.Key, time.Now(), req))
	}
	c := t.Client
	if c == nil {
		c = http.DefaultClient
	}
	resp, err := c.Do(hr)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		text, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
		err := fmt.Errorf("kv: node %s: %s: %s", to, resp.Status, bytes.TrimSpace(text))
		switch resp.StatusCode {
		case http.StatusUnprocessableEntity:
			err = fmt.Errorf("%w: %w", ErrKeyReused, err)
		case http.StatusUnauthorized:
			err = fmt.Errorf("%w: %w", ErrUnauthenticated, err)
		}
		return nil, err
	}
	return io.ReadAll(io.LimitReader(resp.Body, MaxRPCLen))
}

// APIConfig configures [API]. The zero value has no idempotency keys and
// no metrics.
type APIConfig struct {
	// Guard, when set, makes PUT and DELETE requests that carry an
	// Idempotency-Key apply once per key on this node, replaying the
	// first recorded answer (a 503 is not recorded: its retry runs again).
	// Give it a durable store, [NewIdempotencyStore], so that records
	// survive a crash. With or without a Guard, the key also travels with
	// the write to its coordinator, which deduplicates retries sent
	// through any node (see [Node.Write]).
	Guard *idempotency.Guard
	// Metrics, when set, counts the requests and their latencies.
	Metrics *Metrics
	// Ready reports readiness for /readyz; nil: always ready.
	Ready func() bool
	// Membership lists the failure detector's members for /cluster; nil:
	// states from the node's Alive alone.
	Membership func() []swim.Member
	// ClusterKey, when set, is the secret shared by the cluster's nodes:
	// a replica RPC is served only with a valid authenticator under it
	// ([HeaderAuth], from an [HTTPTransport] with the same Key), and is
	// otherwise refused with 401. nil: replica RPCs are served to anyone
	// who can reach /internal/rpc, so keep it on a private network. The
	// key authenticates requests; it does not encrypt them (put TLS in
	// front of the listeners for that).
	ClusterKey []byte
}

// API returns the HTTP handler of node n: the client API on /kv/{key}
// (PUT, GET, DELETE with X-Context, Idempotency-Key, ?w= and ?r=), the
// replica RPCs on /internal/rpc, /cluster, /healthz, /readyz and, with
// cfg.Metrics, /metrics.
func API(n *Node, cfg APIConfig) http.Handler {
	a := &api{n: n, cfg: cfg}
	mux := http.NewServeMux()
	kv := http.Handler(http.HandlerFunc(a.serveKV))
	if cfg.Guard != nil {
		// The client API has no principals: every client may read every
		// key, so one namespace of idempotency keys leaks nothing.
		kv = idempotency.Middleware(cfg.Guard, idempotency.MiddlewareOptions{
			Methods: []string{http.MethodPut, http.MethodDelete}, Optional: true, MaxBody: MaxValueLen,
			GlobalScope: true,
		})(kv)
	}
	if cfg.Metrics != nil {
		kv = cfg.Metrics.instrument(kv)
		mux.Handle("GET /metrics", cfg.Metrics.handler(n))
	}
	mux.Handle("/kv/{key}", kv)
	mux.HandleFunc("POST "+rpcPath, a.serveRPC)
	mux.HandleFunc("GET /cluster", a.serveCluster)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

type api struct {
	n   *Node
	cfg APIConfig
}

func (a *api) serveRPC(w http.ResponseWriter, r *http.Request) {
	var auth parsedAuth
	if a.cfg.ClusterKey != nil {
		// A request without a well-formed, current authenticator is
		// refused before its body is read.
		var err error
		if auth, err = parseAuth(r.Header.Get(HeaderAuth), time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}
	req, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRPCLen))
	if err != nil {
		http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
		return
	}
	if a.cfg.ClusterKey != nil {
		if err := auth.check(a.cfg.ClusterKey, req); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}
	resp, err := a.n.Handle(r.Context(), req)
	switch {
	case errors.Is(err, ErrMalformed):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrKeyReused):
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/msgpack")
		_, _ = w.Write(resp)
	}
}

func (a *api) serveKV(w http.ResponseWriter, r *http.Request) {
	key := []byte(r.PathValue("key"))
	if err := checkKey(key); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	switch r.Method {
	case http.MethodGet:
		a.get(w, r, key)
	case http.MethodPut, http.MethodDelete:
		a.write(w, r, key)
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// quorumParam reads the query parameter name (r or w); 0 when absent.
func quorumParam(r *http.Request, name string) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("kv: ?%s=%q is not a number", name, s)
	}
	return v, nil
}

func (a *api) get(w http.ResponseWriter, r *http.Request, key []byte) {
	q, err := quorumParam(r, "r")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	res, err := a.n.Get(r.Context(), key, q)
	if err != nil {
		writeError(w, err)
		return
	}
	if res.Context.Len() > 0 {
		w.Header().Set(HeaderContext, EncodeContext(res.Context))
	}
	switch len(res.Values) {
	case 0:
		http.Error(w, "not found", http.StatusNotFound)
	case 1:
		w.Header().Set("Content-Type", "application/octet-stream")
		_, _ = w.Write(res.Values[0])
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusMultipleChoices)
		_ = json.NewEncoder(w).Encode(struct {
			Siblings [][]byte `json:"siblings"` // base64 in JSON
		}{res.Values})
	}
}

func (a *api) write(w http.ResponseWriter, r *http.Request, key []byte) {
	q, err := quorumParam(r, "w")
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var cctx vclock.VClock
	if h := r.Header.Get(HeaderContext); h != "" {
		if cctx, err = DecodeContext(h); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	} else if r.Method == http.MethodDelete {
		http.Error(w, "DELETE needs the X-Context of a read", http.StatusPreconditionRequired)
		return
	}
	v := Version{Deleted: r.Method == http.MethodDelete}
	if v.IdempotencyKey, err = idempotencyKey(r); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !v.Deleted {
		if v.Value, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxValueLen)); err != nil {
			http.Error(w, err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
	}
	res, err := a.n.Write(r.Context(), key, cctx, v, q)
	if res.Dot.Counter > 0 {
		w.Header().Set(HeaderDot, EncodeDot(res.Dot))
	}
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set(HeaderContext, EncodeContext(res.Context))
	w.WriteHeader(http.StatusNoContent)
}

// idempotencyKey returns the request's Idempotency-Key field as sent
// (without surrounding spaces; "": none), which identifies the write at
// its coordinator, or an error for several fields or a key longer than
// MaxIdempotencyKeyLen.
func idempotencyKey(r *http.Request) (string, error) {
	fields := r.Header.Values(idempotency.KeyHeader)
	switch {
	case len(fields) == 0:
		return "", nil
	case len(fields) > 1:
		return "", fmt.Errorf("kv: %d Idempotency-Key fields, want one", len(fields))
	}
	k := strings.TrimSpace(fields[0])
	if len(k) > MaxIdempotencyKeyLen {
		return "", fmt.Errorf("kv: Idempotency-Key of %d bytes, want at most %d", len(k), MaxIdempotencyKeyLen)
	}
	return k, nil
}

// writeError answers err: 400 for bad input, 422 for an idempotency key
// reused with another value, 503 for too few replicas.
func writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadKey), errors.Is(err, quorum.ErrInvalid):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrKeyReused):
		http.Error(w, err.Error()+"\nthis Idempotency-Key was used for a different value", http.StatusUnprocessableEntity)
	default:
		http.Error(w, "too few replicas answered: "+err.Error()+
			"\nthe outcome is indeterminate; a retry with the same Idempotency-Key is safe", http.StatusServiceUnavailable)
	}
}

// clusterView is the JSON of GET /cluster.
type clusterView struct {
	ID      string       `json:"id"`
	N       int          `json:"n"`
	R       int          `json:"r"`
	W       int          `json:"w"`
	Members []memberView `json:"members"`
	Ranges  []ownedRange `json:"ranges"`
	Stats   Stats        `json:"stats"`
}

type memberView struct {
	ID          string `json:"id"`
	Zone        string `json:"zone"`
	State       string `json:"state"`            // as the failure detector sees it
	Incarnation uint64 `json:"incarnation"`      // SWIM's; 0 without SWIM
	Gossip      string `json:"gossip,omitempty"` // SWIM address
}

type ownedRange struct {
	Start    uint64   `json:"start"` // the hash range (start, end]
	End      uint64   `json:"end"`
	Replicas []string `json:"replicas"`
}

func (a *api) serveCluster(w http.ResponseWriter, _ *http.Request) {
	n := a.n
	r := n.Ring()
	q := n.Quorum()
	v := clusterView{ID: n.ID(), N: q.N, R: q.R, W: q.W, Stats: n.Stats()}
	var swimMembers []swim.Member
	if a.cfg.Membership != nil {
		swimMembers = a.cfg.Membership()
	}
	for _, m := range r.Nodes() {
		mv := memberView{ID: m.ID, Zone: m.Zone, State: "alive"}
		if !n.Alive(m.ID) {
			mv.State = "down"
		}
		if i := slices.IndexFunc(swimMembers, func(s swim.Member) bool { return s.ID == m.ID }); i >= 0 {
			sm := swimMembers[i]
			mv.State, mv.Incarnation, mv.Gossip = sm.State.String(), sm.Incarnation, sm.Addr
		}
		v.Members = append(v.Members, mv)
	}
	for _, m := range ring.ReplicaMoves(nil, r, q.N) {
		for _, id := range m.To {
			if id == n.ID() {
				v.Ranges = append(v.Ranges, ownedRange{Start: m.Start, End: m.End, Replicas: m.To})
			}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// EncodeContext returns the X-Context form of a causal context: base64url
// (unpadded) of its msgpack encoding.
func EncodeContext(c vclock.VClock) string { return encode64(c) }

// DecodeContext parses an X-Context value. Errors wrap [ErrMalformed].
func DecodeContext(s string) (vclock.VClock, error) {
	var c vclock.VClock
	return c, decode64(HeaderContext, s, &c)
}

// EncodeDot returns the X-Dot form of a write's dot.
func EncodeDot(d vclock.Dot) string { return encode64(d) }

// DecodeDot parses an X-Dot value. Errors wrap [ErrMalformed].
func DecodeDot(s string) (vclock.Dot, error) {
	var d vclock.Dot
	return d, decode64(HeaderDot, s, &d)
}

func encode64(v any) string {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic("kv: " + err.Error()) // clocks and dots always encode
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decode64(what, s string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return unmarshalExact(what, b, v)
}
