package kv

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
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
	// DefaultMaxContextLen bounds an X-Context field, in bytes, unless
	// [APIConfig.MaxContextLen] says otherwise.
	DefaultMaxContextLen = 16 << 10
	// DefaultMaxContextEntries bounds the writers an X-Context names,
	// unless [APIConfig.MaxContextEntries] says otherwise.
	DefaultMaxContextEntries = 256
	// DefaultMaxConcurrent, DefaultMaxConcurrentRPC and
	// DefaultBodyTimeout are the defaults of [Limits]: at most 512 MiB of
	// client bodies in memory at once, and a 64 MiB RPC at 2 MiB/s.
	DefaultMaxConcurrent    = 512
	DefaultMaxConcurrentRPC = 512
	DefaultBodyTimeout      = 30 * time.Second
	// DefaultIdleTimeout is how long a [Server] keeps a keep-alive
	// connection on which no request comes: longer than Go's HTTP client
	// keeps an idle one (90 s), so that the client closes it first.
	DefaultIdleTimeout = 2 * time.Minute
	MaxValueLen        = 1 << 20  // bytes in a PUT body
	MaxRPCLen          = 64 << 20 // bytes in a replica RPC
	rpcPath            = "/internal/rpc"
	maxErrorBytes      = 4096
)

// HTTPTransport is a [Transport] over HTTP: a call to a node is POSTed
// to http://addr/internal/rpc of its address, and concurrent calls to one
// node are coalesced into one request to /internal/rpc/batch (see
// [DefaultMaxBatch]), which a node serves with its [API] handler. It is safe for concurrent use; the
// zero value has no addresses and uses http.DefaultClient.
type HTTPTransport struct {
	Client *http.Client // nil: http.DefaultClient
	// Key, when set before the first call, is the cluster key every call
	// is authenticated with ([HeaderAuth]); the receivers'
	// [APIConfig.ClusterKey] must match.
	Key []byte
	// Keys, when set, replaces Key: calls are authenticated with its
	// primary key at the time of the call.
	Keys *ClusterKeys
	// TLS makes calls use https; the Client then presents the node's
	// certificate and verifies the peers' ([PeerTLS]).
	TLS bool
	// MaxBatch bounds the calls one batch carries; 0: DefaultMaxBatch.
	// 1 sends each call as a request of its own to /internal/rpc.
	MaxBatch int
	// BatchesInFlight bounds the batches outstanding to one node; a call
	// made while that many are waits for the first to end and leaves in
	// the next. 0: DefaultBatchesInFlight.
	BatchesInFlight int
	// Mux, when set, sends the calls to a node on one long-lived
	// connection to it, upgraded from HTTP (GET /internal/mux, to the
	// kv-mux/1 protocol: length-prefixed frames, each authenticated under
	// the cluster key), which carries many at once, answered in any
	// order; calls to a node that does not serve the upgrade go over HTTP
	// as without it. Every guarantee of Call holds as over HTTP.
	Mux bool

	mu        sync.RWMutex
	addrs     map[string]string       // node ID → host:port
	queues    map[lane]*peerQueue     // calls waiting for a batch
	muxPeers  map[muxPeerKey]*muxPeer // the multiplexed connections
	muxClosed bool                    // closeMux ran: connections being opened are closed

	batchOnce sync.Once
	batch     *http.Client // Client without its timeout
	keyOnce   sync.Once
	fixed     *ClusterKeys // Key's
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

// Call sends req to node to and returns the response body: alone when it
// leaves alone, in a batch otherwise. It waits in the node's queue while
// BatchesInFlight batches to it are outstanding;
// a call whose ctx ends there, or before the call's batch is sent, was
// not sent. An error of dialling, or of verifying the peer's
// certificate, wraps [ErrNotDelivered]: the request was not sent. A
// refusal is an error carrying the node's text; it wraps [ErrKeyReused]
// for 422, the node's answer to a write that reused an idempotency key,
// [ErrUnauthenticated] for 401, its answer to a call without the cluster
// key, [ErrTooManySiblings] for 409 and [ErrObjectTooLarge] for 413, its
// answers to a write its key cannot take, and [ErrUnavailable] for 503.
// Any other error (a connection lost, a reply cut short, ctx ending once
// the call was sent) leaves it unknown whether the node applied it.
func (t *HTTPTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	t.mu.RLock()
	addr, ok := t.addrs[to]
	t.mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("kv: no address for node %q", to)
	}
	if t.Mux {
		return t.callMux(ctx, to, addr, req)
	}
	return t.callHTTP(ctx, to, addr, req)
}

// callHTTP sends req to node to at addr over HTTP: alone, or batched.
func (t *HTTPTransport) callHTTP(ctx context.Context, to, addr string, req []byte) ([]byte, error) {
	if t.MaxBatch == 1 {
		return t.callAlone(ctx, to, addr, req, t.client())
	}
	return t.callBatched(ctx, to, addr, req)
}

// callAlone POSTs req by itself to /internal/rpc at addr, the address of
// node to, with c, and returns the response body.
func (t *HTTPTransport) callAlone(ctx context.Context, to, addr string, req []byte, c *http.Client) ([]byte, error) {
	resp, err := t.post(ctx, to, addr, rpcPath, req, c)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(io.LimitReader(resp.Body, MaxRPCLen))
}

// keys is the set calls are authenticated with: Keys, or else Key's.
func (t *HTTPTransport) keys() *ClusterKeys {
	if t.Keys != nil {
		return t.Keys
	}
	t.keyOnce.Do(func() { t.fixed = fixedKeys(t.Key) })
	return t.fixed
}

// client is the client calls are made with.
func (t *HTTPTransport) client() *http.Client {
	return cmp.Or(t.Client, http.DefaultClient)
}

// post POSTs body to path at addr, the address of node to, authenticated
// under the primary key, with c, and returns the response of status 200
// or the error of [HTTPTransport.Call].
func (t *HTTPTransport) post(ctx context.Context, to, addr, path string, body []byte, c *http.Client) (*http.Response, error) {
	scheme := "http://"
	if t.TLS {
		scheme = "https://"
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+addr+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/msgpack")
	if keys := t.keys(); keys != nil {
		hr.Header.Set(HeaderAuth, keys.primary().authenticator(time.Now(), body))
	}
	resp, err := c.Do(hr)
	// No connection, or a peer whose certificate this node refused during
	// the handshake: the request was never sent.
	op, cert := (*net.OpError)(nil), (*tls.CertificateVerificationError)(nil)
	if errors.As(err, &op) && op.Op == "dial" || errors.As(err, &cert) {
		return nil, fmt.Errorf("%w: %w", ErrNotDelivered, err)
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(to, resp.StatusCode, errorText(resp))
	}
	return resp, nil
}

// statusError is the error of node to's refusal with status and its
// reason text.
func statusError(to string, status int, text string) error {
	err := fmt.Errorf("kv: node %s: %d %s: %s", to, status, http.StatusText(status), text)
	switch status {
	case http.StatusUnprocessableEntity:
		err = fmt.Errorf("%w: %w", ErrKeyReused, err)
	case http.StatusUnauthorized:
		err = fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	case http.StatusConflict:
		err = fmt.Errorf("%w: %w", ErrTooManySiblings, err)
	case http.StatusRequestEntityTooLarge:
		err = fmt.Errorf("%w: %w", ErrObjectTooLarge, err)
	case http.StatusServiceUnavailable:
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// errorText returns the reason of an error response: the detail of a
// [Problem] body, or the body's text, at most maxErrorBytes of it.
func errorText(resp *http.Response) string {
	text, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBytes))
	var p Problem
	if resp.Header.Get("Content-Type") == ProblemContentType && json.Unmarshal(text, &p) == nil && p.Detail != "" {
		return p.Detail
	}
	return string(bytes.TrimSpace(text))
}

// APIConfig configures [API]. The zero value has no idempotency keys and
// no metrics.
type APIConfig struct {
	// Guard, when set, makes PUT and DELETE requests that carry an
	// Idempotency-Key apply once per key on this node, replaying the
	// first recorded answer (a 5xx is not recorded: its retry runs again).
	// Give it a durable store, [NewIdempotencyStore], so that records
	// survive a crash. With or without a Guard, the key also travels with
	// the write to its coordinator, which deduplicates retries sent
	// through any node (see [Node.Write]).
	Guard *idempotency.Guard
	// Metrics, when set, counts the requests and their latencies, the
	// values of reads, and serves /metrics with the node's counters.
	Metrics *Metrics
	// Health, when set, is what /healthz checks: nil means healthy, an
	// error is answered 503 with the error as the reason. It must be
	// cheap: clients may call it at any rate (a [Server] reports its last
	// periodic probe of the disk and the liveness of its membership
	// loop). nil: always healthy.
	Health func() error
	// Ready reports readiness for /readyz; nil: always ready.
	Ready func() bool
	// Membership lists the failure detector's members for /cluster; nil:
	// states from the node's Alive alone.
	Membership func() []swim.Member
	// ClusterKey, when set, is the secret shared by the cluster's nodes:
	// a replica RPC is served only with a valid authenticator under it
	// ([HeaderAuth], from an [HTTPTransport] with the same Key), and is
	// otherwise refused with 401. nil: replica RPCs are served to anyone
	// who can reach /internal/rpc and /internal/rpc/batch, so keep them
	// on a private network. The key authenticates requests; it does not
	// encrypt them (serve over TLS with PeerCertificates for that, as
	// [ServerConfig.TLS] does).
	ClusterKey []byte
	// Keys, when set, replaces ClusterKey: a replica RPC is served with
	// a valid authenticator under any of its keys at the time.
	Keys *ClusterKeys
	// PeerCertificates, when set, serves a replica RPC only on a TLS
	// connection whose client presented a certificate verified against
	// the listener's client CAs ([PeerTLS]); any other is refused with
	// 401. It adds to ClusterKey and Keys, which still apply.
	PeerCertificates bool
	// Limits bound what a client or an unauthenticated sender may make
	// the node do; zero fields take the defaults.
	Limits Limits

	conns *muxConns // the multiplexed connections served; nil: the handler's own
}

// Limits are the HTTP API's bounds on its clients, each refused with a
// 4xx status and a body saying what was exceeded. The zero value means
// the defaults. It is a plain value.
type Limits struct {
	// MaxContextLen bounds the X-Context field of a PUT or DELETE, in
	// bytes; a longer one is refused with 431. 0: DefaultMaxContextLen.
	MaxContextLen int
	// MaxContextEntries bounds the writers an X-Context names; more are
	// refused with 400. 0: DefaultMaxContextEntries.
	MaxContextEntries int
	// MaxConcurrent bounds the client requests (/kv/) served at once;
	// one more is answered 503 with Retry-After at once, unread.
	// 0: DefaultMaxConcurrent.
	MaxConcurrent int
	// MaxConcurrentRPC bounds the replica RPCs served at once, apart
	// from clients' so that clients cannot starve replication; one more
	// is answered 503 (its caller counts the replica as failed).
	// 0: DefaultMaxConcurrentRPC.
	MaxConcurrentRPC int
	// BodyTimeout bounds the reading of a request's body, from the end of
	// its header; a body that does not arrive in time is answered 408
	// and its connection closed. 0: DefaultBodyTimeout.
	BodyTimeout time.Duration
}

// withDefaults returns l with its zero fields set to the defaults.
func (l Limits) withDefaults() Limits {
	l.MaxContextLen = cmp.Or(l.MaxContextLen, DefaultMaxContextLen)
	l.MaxContextEntries = cmp.Or(l.MaxContextEntries, DefaultMaxContextEntries)
	l.MaxConcurrent = cmp.Or(l.MaxConcurrent, DefaultMaxConcurrent)
	l.MaxConcurrentRPC = cmp.Or(l.MaxConcurrentRPC, DefaultMaxConcurrentRPC)
	l.BodyTimeout = cmp.Or(l.BodyTimeout, DefaultBodyTimeout)
	return l
}

// limiter bounds the requests served at once: a slot per request.
type limiter chan struct{}

// try takes a slot, or reports false when none is free.
func (l limiter) try() bool {
	select {
	case l <- struct{}{}:
		return true
	default:
		return false
	}
}

// release frees a slot taken by try or admit.
func (l limiter) release() { <-l }

// overloaded is the reason of a request refused for want of a slot.
func (l limiter) overloaded() string {
	return fmt.Sprintf("kv: overloaded: %d requests in progress; retry after a second", cap(l))
}

// admit takes a slot, or answers the request 503 with Retry-After and
// reports false.
func (l limiter) admit(w http.ResponseWriter) bool {
	if l.try() {
		return true
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, l.overloaded(), http.StatusServiceUnavailable)
	return false
}

// setBodyDeadline sets the read deadline of r's body to timeout from now;
// readBody lifts it once the body is in.
func setBodyDeadline(w http.ResponseWriter, r *http.Request, timeout time.Duration) {
	if r.Body != nil && r.Body != http.NoBody {
		// Unsupported by some writers (a recorder in tests): no deadline.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(timeout))
	}
}

// bounded returns h served under a slot of slots each, with its body's
// read deadline set to timeout from now; a request without a free slot is
// answered 503 with Retry-After before anything reads its body.
func bounded(slots limiter, timeout time.Duration, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slots.admit(w) {
			return
		}
		defer slots.release()
		setBodyDeadline(w, r, timeout)
		h.ServeHTTP(w, r)
	})
}

// API returns the HTTP handler of node n: the client API on /kv/{key}
// (PUT, GET, DELETE with X-Context, Idempotency-Key, ?w= and ?r=), the
// replica RPCs on /internal/rpc and, batched, /internal/rpc/batch,
// /cluster, /healthz, /readyz and, with cfg.Metrics, /metrics. Every error response is a [Problem].
func API(n *Node, cfg APIConfig) http.Handler {
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.Keys == nil {
		cfg.Keys = fixedKeys(cfg.ClusterKey)
	}
	a := &api{n: n, cfg: cfg, rpcSlots: make(limiter, cfg.Limits.MaxConcurrentRPC), conns: cfg.conns}
	if a.conns == nil {
		a.conns = &muxConns{}
	}
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
	mux.Handle("/kv/{key}", bounded(make(limiter, cfg.Limits.MaxConcurrent), cfg.Limits.BodyTimeout, kv))
	mux.Handle("POST "+rpcPath, bounded(a.rpcSlots, cfg.Limits.BodyTimeout, http.HandlerFunc(a.serveRPC)))
	mux.HandleFunc("POST "+batchPath, a.serveBatch)
	mux.HandleFunc("GET "+muxPath, a.serveMux)
	mux.HandleFunc("GET /cluster", a.serveCluster)
	mux.HandleFunc("GET /healthz", a.serveHealth)
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if cfg.Ready != nil && !cfg.Ready() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	if cfg.Metrics == nil {
		return problems(mux)
	}
	cfg.Metrics.node.Store(n)
	mux.Handle("GET /metrics", cfg.Metrics.handler())
	return problems(cfg.Metrics.instrument(mux))
}

type api struct {
	n        *Node
	cfg      APIConfig
	rpcSlots limiter // replica RPCs', batched and multiplexed ones each counted
	conns    *muxConns
}

func (a *api) serveRPC(w http.ResponseWriter, r *http.Request) {
	req, ok := a.rpcBody(w, r)
	if !ok {
		return
	}
	resp, err := a.n.Handle(r.Context(), req)
	switch status := rpcStatus(err); {
	case err == nil:
		w.Header().Set("Content-Type", "application/msgpack")
		_, _ = w.Write(resp)
	case status < http.StatusInternalServerError:
		http.Error(w, err.Error(), status)
	default:
		serverError(w, err, "")
	}
}

// rpcBody reads the body of a replica RPC, or a batch of them, from a
// peer, or answers the request and reports false: 401 without a verified
// peer certificate when they are required, or without a current
// authenticator under a cluster key, which is checked before the body is
// read, and then for a body other than the one it vouches for; 413 for a
// body over MaxRPCLen or the length the authenticator declared.
func (a *api) rpcBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if a.unverifiedPeer(w, r) {
		return nil, false
	}
	limit := int64(MaxRPCLen)
	var auth parsedAuth
	keys := a.cfg.Keys.macs()
	if keys != nil {
		// A request without a current authenticator under a key is
		// refused before its body is read; one with it is read up to the
		// length it declared, no further.
		var err error
		if auth, err = parseAuth(keys, r.Header.Get(HeaderAuth), time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return nil, false
		}
		if auth.n > limit {
			http.Error(w, fmt.Sprintf("kv: a replica RPC of %d bytes, want at most %d", auth.n, limit), http.StatusRequestEntityTooLarge)
			return nil, false
		}
		limit = auth.n
	}
	req, ok := readBody(w, r, limit)
	if !ok {
		return nil, false
	}
	if keys != nil {
		if err := auth.check(req); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return nil, false
		}
	}
	return req, true
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
		readError(w, err)
		return
	}
	a.cfg.Metrics.observeRead(len(res.Values))
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
		if cctx, err = a.context(w, h); err != nil {
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
		var ok bool
		if v.Value, ok = readBody(w, r, MaxValueLen); !ok {
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

// context decodes the X-Context field h of a write, or answers the
// request with its refusal and returns the error: 431 for a field longer
// than MaxContextLen, 400 for a malformed one (a counter above
// vclock.MaxCounter included) or one naming more than MaxContextEntries
// writers. Writers the coordinator's copy of the key has not seen, and
// counters above its own, are pruned there ([Store.Update]), not
// refused: a client cannot tell them from a context read from replicas
// ahead of the coordinator.
func (a *api) context(w http.ResponseWriter, h string) (vclock.VClock, error) {
	if len(h) > a.cfg.Limits.MaxContextLen {
		err := fmt.Errorf("kv: X-Context of %d bytes, want at most %d; send the context of a read of this key", len(h), a.cfg.Limits.MaxContextLen)
		http.Error(w, err.Error(), http.StatusRequestHeaderFieldsTooLarge)
		return vclock.VClock{}, err
	}
	c, err := DecodeContext(h)
	if err == nil && c.Len() > a.cfg.Limits.MaxContextEntries {
		err = fmt.Errorf("%w: X-Context names %d writers, want at most %d", ErrMalformed, c.Len(), a.cfg.Limits.MaxContextEntries)
	}
	if err != nil {
		http.Error(w, err.Error()+"\nsend the X-Context of a read of this key, unchanged", http.StatusBadRequest)
	}
	return c, err
}

// readBody reads r's body, of at most limit bytes, and lifts its read
// deadline, or answers the
// request with 413 for a longer body, or 408 for one that did not arrive
// within the read deadline ([Limits.BodyTimeout]), and reports false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err == nil {
		// The body is in: the rest of the request (a quorum, a scan) is
		// bounded by its own timeouts, and the server's check for a
		// closed connection must not see the body's deadline pass.
		_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	}
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		http.Error(w, fmt.Sprintf("kv: a body of more than %d bytes", limit), http.StatusRequestEntityTooLarge)
	case err != nil:
		http.Error(w, "kv: reading the body: "+err.Error(), http.StatusRequestTimeout)
	}
	return b, err == nil
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

// writeError answers the error of a write: 400 for bad input, 409 for a
// write whose dot would pass the counter bound or that would leave too
// many siblings, 413 for one that would make the key too large, 422 for
// an idempotency key reused with another value, and otherwise
// [serverError].
func writeError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrBadKey), errors.Is(err, quorum.ErrInvalid):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, ErrTooManySiblings):
		problem(w, ProblemTooManySiblings, http.StatusConflict, err.Error()+"; read the key and write the value that resolves its siblings")
	case errors.Is(err, ErrObjectTooLarge):
		problem(w, ProblemObjectTooLarge, http.StatusRequestEntityTooLarge, err.Error()+"; read the key and write the value that resolves its siblings")
	case errors.Is(err, vclock.ErrExhausted):
		problem(w, ProblemCounterExhausted, http.StatusConflict, err.Error()+"; the key's history holds a counter at its bound; nothing was written")
	case errors.Is(err, ErrKeyReused):
		problem(w, ProblemKeyReused, http.StatusUnprocessableEntity, err.Error()+"; this Idempotency-Key was used for a different value")
	default:
		serverError(w, err, "; the outcome is indeterminate; a retry with the same Idempotency-Key is safe")
	}
}

// readError answers the error of a read: 400 for bad input, and otherwise
// [serverError].
func readError(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrBadKey) || errors.Is(err, quorum.ErrInvalid) {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	serverError(w, err, "; retry, or read with a smaller ?r=")
}

// serverError answers a failure that is not the client's: 503
// [ProblemNoQuorum] when too few replicas answered (quorum.ErrNoQuorum,
// [ErrUnavailable], [ErrLeaving]), with advice appended to its detail;
// 502 [ProblemCoordinator] when the node a write was forwarded to failed
// it otherwise; 500 [ProblemStorage] when this node's own storage failed;
// 500 [ProblemInternal] for anything else.
func serverError(w http.ResponseWriter, err error, advice string) {
	switch status := serverStatus(err); {
	case status == http.StatusServiceUnavailable:
		problem(w, ProblemNoQuorum, status, "too few replicas answered: "+err.Error()+advice)
	case status == http.StatusBadGateway:
		problem(w, ProblemCoordinator, status, err.Error()+advice)
	case isStorage(err):
		problem(w, ProblemStorage, status, err.Error()+"; this node's disk failed: send the request to another node")
	default:
		problem(w, ProblemInternal, status, err.Error())
	}
}

// serverStatus is the status of a failure that is not the client's, as
// serverError answers it.
func serverStatus(err error) int {
	switch {
	case errors.Is(err, quorum.ErrNoQuorum), errors.Is(err, ErrUnavailable), errors.Is(err, ErrLeaving):
		return http.StatusServiceUnavailable
	case errors.Is(err, errCoordinator):
		return http.StatusBadGateway
	}
	return http.StatusInternalServerError
}

// serveHealth answers /healthz: 200 "ok", or 503 [ProblemUnhealthy] with
// the reason.
func (a *api) serveHealth(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.Health == nil {
		fmt.Fprintln(w, "ok")
		return
	}
	if err := a.cfg.Health(); err != nil {
		problem(w, ProblemUnhealthy, http.StatusServiceUnavailable, err.Error())
		return
	}
	fmt.Fprintln(w, "ok")
}

// clusterView is the JSON of GET /cluster: a summary per member of the
// ring, as nodetool status gives, and with ?ranges=1 the hash ranges this
// node replicates.
type clusterView struct {
	ID      string       `json:"id"`
	N       int          `json:"n"`
	R       int          `json:"r"`
	W       int          `json:"w"`
	Members []memberView `json:"members"`
	Ranges  []ownedRange `json:"ranges,omitempty"`
	Stats   Stats        `json:"stats"`
}

type memberView struct {
	ID          string `json:"id"`
	Zone        string `json:"zone"`
	State       string `json:"state"`            // as the failure detector sees it
	Incarnation uint64 `json:"incarnation"`      // SWIM's; 0 without SWIM
	Gossip      string `json:"gossip,omitempty"` // SWIM address
	// Owns is the member's effective ownership, in percent: the share of
	// the hash space it is one of the N replicas of (the members' shares
	// add up to N × 100).
	Owns float64 `json:"owns_percent"`
	// HintsPending are the hints this node holds for the member.
	HintsPending int `json:"hints_pending"`
	// LastAntiEntropy is when this node's last successful anti-entropy
	// exchange with the member ended (with metrics; absent: none since it
	// joined, or this node itself).
	LastAntiEntropy *time.Time `json:"last_anti_entropy,omitempty"`
}

type ownedRange struct {
	Start    uint64   `json:"start"` // the hash range (start, end]
	End      uint64   `json:"end"`
	Replicas []string `json:"replicas"`
}

// serveCluster answers GET /cluster; ?ranges=1 adds the hash ranges this
// node replicates, which number about the ring's points.
func (a *api) serveCluster(w http.ResponseWriter, r *http.Request) {
	n := a.n
	rg := n.Ring()
	q := n.Quorum()
	v := clusterView{ID: n.ID(), N: q.N, R: q.R, W: q.W, Stats: n.Stats()}
	var swimMembers []swim.Member
	if a.cfg.Membership != nil {
		swimMembers = a.cfg.Membership()
	}
	hints := map[string]int{}
	if pending, err := n.store.Hints().Pending(); err == nil {
		for _, p := range pending {
			hints[p.Target] = p.Count
		}
	}
	owned := map[string]float64{} // replica → width of the hash space it replicates
	for _, m := range ring.ReplicaMoves(nil, rg, q.N) {
		width := float64(m.End - m.Start)
		if m.End == m.Start {
			width = 1 << 64 // one range around the whole ring
		}
		for _, id := range m.To {
			owned[id] += width
			if id == n.ID() && r.URL.Query().Get("ranges") != "" {
				v.Ranges = append(v.Ranges, ownedRange{Start: m.Start, End: m.End, Replicas: m.To})
			}
		}
	}
	lastAE := n.Progress().LastAntiEntropy
	for _, m := range rg.Nodes() {
		mv := memberView{ID: m.ID, Zone: m.Zone, State: "alive", Owns: 100 * owned[m.ID] / (1 << 64), HintsPending: hints[m.ID]}
		if !n.Alive(m.ID) {
			mv.State = "down"
		}
		if i := slices.IndexFunc(swimMembers, func(s swim.Member) bool { return s.ID == m.ID }); i >= 0 {
			sm := swimMembers[i]
			mv.State, mv.Incarnation, mv.Gossip = sm.State.String(), sm.Incarnation, sm.Addr
		}
		if t, ok := lastAE[m.ID]; ok {
			mv.LastAntiEntropy = &t
		}
		v.Members = append(v.Members, mv)
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
