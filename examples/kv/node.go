package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

// ErrUnavailable is returned by [Node.Put] and [Node.Delete] when no
// replica of the key can coordinate the write.
var ErrUnavailable = errors.New("kv: no replica of the key is reachable")

// ErrBadConfig is returned by [NewNode] for an invalid [NodeConfig].
var ErrBadConfig = errors.New("kv: invalid node config")

// Transport carries replica RPCs between nodes: Call delivers an encoded
// request to the node to, which answers it with [Node.Handle], and returns
// the encoded response or an error. It must honour ctx and be safe for
// concurrent use.
type Transport interface {
	Call(ctx context.Context, to string, req []byte) ([]byte, error)
}

// Default node settings.
const (
	DefaultTimeout   = time.Second
	DefaultFallbacks = 2
)

// NodeConfig configures [NewNode]. Store, Transport, ID and Ring are
// required; zero fields of the rest take defaults. It is a plain value.
type NodeConfig struct {
	ID        string     // this node's ID in Ring; no ',' in it
	Ring      *ring.Ring // placement: a key's first Quorum.N replicas are its home
	Store     *Store     // this node's storage; NewNode regroups its trees by replica set
	Transport Transport  // to the other nodes
	// Quorum is the default N, R and W; zero: {N: 3, R: 2, W: 2}.
	Quorum quorum.Config
	// Alive is the failure detector's view: false for a node believed
	// down, which then gets no calls (its writes go to fallbacks with a
	// hint). nil: every node is presumed alive until a call fails.
	Alive func(id string) bool
	// Fallbacks is how many nodes after a key's home replicas may take
	// its writes with hints (sloppy quorum); 0: DefaultFallbacks.
	Fallbacks int
	// Timeout bounds each replica call; 0: DefaultTimeout.
	Timeout time.Duration
	// HedgeDelay, when positive, makes a read call one more replica each
	// time it elapses without R replies.
	HedgeDelay time.Duration
	// OnReap, if set, is called after this node reaped key's dead object
	// tombstone ([Node.Reap]), for audit logs and checkers; it must not
	// block.
	OnReap func(key []byte, tombstone Object)
	Logger *slog.Logger // nil: discard
}

// Node is one member of the replicated store: it coordinates clients'
// reads and writes of any key over the key's replicas, serves other
// nodes' replica RPCs ([Node.Handle]), hands hints off ([Node.HandOff])
// and runs anti-entropy exchanges ([Node.AntiEntropy]).
//
// A Node is safe for concurrent use. Its zero value is not usable: call
// [NewNode]. Reads and writes start background goroutines (read repair,
// replication to replicas beyond the quorum), each bounded by the
// configured Timeout; [Node.Close] waits for them.
type Node struct {
	id        string
	actor     string // ID.epoch: the ID in the dots of the writes it coordinates
	store     *Store
	transport Transport
	quorum    quorum.Config
	alive     func(string) bool
	fallbacks int
	timeout   time.Duration
	hedge     time.Duration
	onReap    func([]byte, Object)
	log       *slog.Logger

	ring    atomic.Pointer[ring.Ring]
	groups  atomic.Pointer[[]string] // the ring's replica sets, as groupOf names them
	bgMu    sync.Mutex               // guards closing, so no goroutine starts once Close waits
	closing bool                     // Close has begun
	bg      sync.WaitGroup           // background replication and repair

	// leaveMu is held shared by every local write from its check of
	// departing to its commit, and exclusively by Leave to set departing,
	// so that each write is either on disk before Leave scans or refused.
	leaveMu   sync.RWMutex
	departing bool // Leave has begun

	reapMu   sync.Mutex // guards reapFrom
	reapFrom []byte     // the data key the next pass of Reap starts at; nil: the first

	stats nodeStats
}

// nodeStats are a node's counters.
type nodeStats struct {
	hintsStored, hintsDelivered, readRepairs, keysRepaired, tombstonesReaped atomic.Int64
}

// Stats are a node's counters since it started. It is a plain value.
type Stats struct {
	HintsStored    int64 // writes this node took for a down replica
	HintsDelivered int64 // hints handed back to their home
	HintsPending   int   // hints held now
	ReadRepairs    int64 // stale replicas a read sent the merged object to
	KeysRepaired   int64 // keys anti-entropy found different and repaired
	Reaped         int64 // dead keys whose tombstones this replica reaped
}

// NewNode returns a node over cfg. It regroups cfg.Store's trees by the
// replica sets of cfg.Ring. It returns an error wrapping [ErrBadConfig]
// for a missing field or an ID not in the ring, and quorum.ErrInvalid for
// an invalid Quorum.
func NewNode(cfg NodeConfig) (*Node, error) {
	if cfg.Quorum == (quorum.Config{}) {
		cfg.Quorum = quorum.Config{N: 3, R: 2, W: 2}
	}
	if err := cfg.Quorum.Validate(); err != nil {
		return nil, err
	}
	switch {
	case cfg.Store == nil || cfg.Transport == nil || cfg.Ring == nil:
		return nil, fmt.Errorf("%w: Store, Transport and Ring are required", ErrBadConfig)
	case cfg.ID == "" || strings.Contains(cfg.ID, ","):
		return nil, fmt.Errorf("%w: ID %q", ErrBadConfig, cfg.ID)
	case !slices.ContainsFunc(cfg.Ring.Nodes(), func(n ring.Node) bool { return n.ID == cfg.ID }):
		return nil, fmt.Errorf("%w: %q is not in the ring", ErrBadConfig, cfg.ID)
	}
	n := &Node{
		id: cfg.ID, actor: cfg.ID + "." + cfg.Store.Epoch(), store: cfg.Store, transport: cfg.Transport, quorum: cfg.Quorum,
		alive: cfg.Alive, fallbacks: cfg.Fallbacks, timeout: cfg.Timeout, hedge: cfg.HedgeDelay, onReap: cfg.OnReap, log: cfg.Logger,
	}
	if n.alive == nil {
		n.alive = func(string) bool { return true }
	}
	if n.fallbacks <= 0 {
		n.fallbacks = DefaultFallbacks
	}
	if n.timeout <= 0 {
		n.timeout = DefaultTimeout
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if err := n.SetRing(cfg.Ring); err != nil {
		return nil, err
	}
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.id }

// Actor returns the ID in the dots of the writes the node coordinates:
// its ID and its store's epoch, "ID.epoch".
func (n *Node) Actor() string { return n.actor }

// Ring returns the current ring.
func (n *Node) Ring() *ring.Ring { return n.ring.Load() }

// SetRing makes r the placement and regroups the store's anti-entropy
// trees by r's replica sets.
func (n *Node) SetRing(r *ring.Ring) error {
	// The plan from an empty ring lists every range with its replicas.
	var groups []string
	for _, m := range ring.ReplicaMoves(nil, r, n.quorum.N) {
		groups = append(groups, groupOf(m.To))
	}
	slices.Sort(groups)
	groups = slices.Compact(groups)
	n.ring.Store(r)
	n.groups.Store(&groups)
	return n.store.Regroup(func(key []byte) string { return groupOf(r.Replicas(key, n.quorum.N, nil)) })
}

// without returns a copy of ids without the IDs in drop.
func without(ids []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(drop, id) })
}

// groupOf names a replica set: its sorted IDs joined by commas.
func groupOf(replicas []string) string {
	return strings.Join(slices.Sorted(slices.Values(replicas)), ",")
}

// Wait blocks until the node's background replication and read repairs
// have ended. It must not run concurrently with requests that start more;
// tests and checkers call it between rounds of requests.
func (n *Node) Wait() { n.bg.Wait() }

// Close waits for the node's background replication and read repairs to
// end; it does not close the store. Requests still in flight when Close
// begins start no new background work: their replication to other replicas
// fails with ErrUnavailable instead.
func (n *Node) Close() {
	n.bgMu.Lock()
	n.closing = true
	n.bgMu.Unlock()
	n.bg.Wait()
}

// spawn runs f on a background goroutine that Close waits for. Once Close
// has begun it runs nothing and reports false.
func (n *Node) spawn(f func()) bool {
	n.bgMu.Lock()
	defer n.bgMu.Unlock()
	if n.closing {
		return false
	}
	n.bg.Go(f)
	return true
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	return Stats{
		HintsStored:    n.stats.hintsStored.Load(),
		HintsDelivered: n.stats.hintsDelivered.Load(),
		HintsPending:   n.store.Hints().Len(),
		ReadRepairs:    n.stats.readRepairs.Load(),
		KeysRepaired:   n.stats.keysRepaired.Load(),
		Reaped:         n.stats.tombstonesReaped.Load(),
	}
}

// Alive reports whether the node's failure detector believes node id up.
func (n *Node) Alive(id string) bool { return n.alive(id) }

// Local returns this node's own copy of key, and false if it holds none:
// for checkers that compare replicas.
func (n *Node) Local(key []byte) (Object, bool, error) { return n.store.Get(key) }

// Home returns the key's home replicas under the current ring, its first
// N distinct nodes.
func (n *Node) Home(key []byte) []string { return n.Ring().Replicas(key, n.quorum.N, nil) }

// placement returns the key's home replicas and its fallbacks, the nodes
// that follow them on the ring.
func (n *Node) placement(key []byte) (home, fallbacks []string) {
	return n.placementIn(n.Ring(), key)
}

// placementIn is placement under the ring r.
func (n *Node) placementIn(r *ring.Ring, key []byte) (home, fallbacks []string) {
	all := r.Replicas(key, n.quorum.N+n.fallbacks, nil)
	k := min(n.quorum.N, len(all))
	return all[:k], all[k:]
}

// Result is what a read returns: the key's live values (siblings when
// there are several; none when it is absent or deleted) and the context
// to send with the next write of the key. It is a plain value; the zero
// Result is an absent key with no history.
type Result struct {
	Values  [][]byte
	Context vclock.VClock
}

// Written is what an acknowledged write returns: the context to send with
// the next write, and the dot the write got, which identifies it. It is a
// plain value; a zero Dot means the dot is unknown.
type Written struct {
	Context vclock.VClock
	Dot     vclock.Dot
}

// Put writes value under key with the context of the client's last read
// (the zero VClock for a blind write), acknowledged by w replicas (0: the
// configured W). Any node may be asked: one that is not a home replica of
// the key forwards the write to the first live one, which coordinates it.
//
// Put returns an error wrapping [ErrUnavailable] when no home replica is
// reachable, and quorum.ErrNoQuorum when fewer than w replicas
// acknowledged: the outcome is then indeterminate (the write may survive
// on the replicas that took it), and a retry is safe.
func (n *Node) Put(ctx context.Context, key []byte, cctx vclock.VClock, value []byte, w int) (Written, error) {
	return n.Write(ctx, key, cctx, Version{Value: value}, w)
}

// Delete writes a tombstone for key with the context of the client's last
// read, which removes exactly the values that read returned; it is
// acknowledged and fails like [Node.Put].
func (n *Node) Delete(ctx context.Context, key []byte, cctx vclock.VClock, w int) (Written, error) {
	return n.Write(ctx, key, cctx, Version{Deleted: true}, w)
}

// quorumSize returns the per-request quorum k named name, def when k is 0,
// or quorum.ErrInvalid when it is outside [1, N].
func (n *Node) quorumSize(name string, k, def int) (int, error) {
	if k == 0 {
		k = def
	}
	if k < 1 || k > n.quorum.N {
		return 0, fmt.Errorf("%w: %s = %d with N = %d", quorum.ErrInvalid, name, k, n.quorum.N)
	}
	return k, nil
}

// Write writes v, a value or a tombstone, under key with the context of
// the client's last read; [Node.Put] and [Node.Delete] are Writes without
// an idempotency key. It is acknowledged and fails like Put.
//
// A write with an idempotency key (v.IdempotencyKey, the client's
// Idempotency-Key) is coordinated by the first live home replica of the
// key, even when this node is another home replica, so that the retries
// of a write meet the coordinator of its first attempt. A coordinator
// whose copy of the key holds a sibling written with the same idempotency
// key does not write again ([Store.UpdateOnce]): it answers with that
// sibling's dot and the key's current context, and sends its copy to the
// other replicas again, so that a retry of a write that reached fewer
// than w replicas succeeds once w replicas hold it. The same idempotency
// key with another payload is refused with an error wrapping
// [ErrKeyReused].
//
// What is deduplicated, and what is not: a retry applies once when its
// coordinator holds the first attempt's sibling, that is when the first
// attempt was coordinated there (the usual case: the same first live home
// replica), or reached it by replication, read repair, handoff or
// anti-entropy, and the sibling has not been superseded since. A retry is
// applied again, as a new sibling beside the first (no value is lost, but
// a reader sees it twice), when its coordinator never saw the first
// attempt (the first live home replica changed between the attempts, and
// the first attempt had not reached the new one), and when a later write
// whose context covered the first attempt replaced it (the key is gone
// with the sibling). Keys are compared as sent, byte for byte.
func (n *Node) Write(ctx context.Context, key []byte, cctx vclock.VClock, v Version, w int) (Written, error) {
	if err := checkKey(key); err != nil {
		return Written{}, err
	}
	if len(v.IdempotencyKey) > MaxIdempotencyKeyLen {
		return Written{}, fmt.Errorf("%w: idempotency key of %d bytes, want at most %d", ErrBadKey, len(v.IdempotencyKey), MaxIdempotencyKeyLen)
	}
	w, err := n.quorumSize("w", w, n.quorum.W)
	if err != nil {
		return Written{}, err
	}
	home, fallbacks := n.placement(key)
	self, leaving := slices.Contains(home, n.id), n.leaving()
	if !self || leaving || v.IdempotencyKey != "" {
		for _, h := range home {
			if h == n.id && !leaving {
				break // this node is the first live home replica
			}
			if h == n.id || !n.alive(h) {
				continue
			}
			resp, err := n.call(ctx, h, &request{Op: opCoordinate, Key: key, Context: cctx, Value: v, W: w})
			if refusedBy(err, h) {
				continue // it applied nothing: the next home replica coordinates
			}
			if err != nil {
				return Written{}, fmt.Errorf("kv: coordinator %s: %w", h, err)
			}
			return Written{Context: resp.Context, Dot: resp.Dot}, nil
		}
		if !self || leaving {
			return Written{}, fmt.Errorf("%w: home replicas %v", ErrUnavailable, home)
		}
	}
	res, err := n.coordinate(ctx, key, cctx, v, w, home, fallbacks)
	if refusedBy(err, n.id) {
		// Leave began since the check above; the write, which it did not
		// apply, is forwarded as a leaving node's are.
		return n.Write(ctx, key, cctx, v, w)
	}
	return res, err
}

// coordinate applies a client's write on this home replica, unless it is
// a retry of one it holds (see [Node.Write]), and replicates the key's
// object to the other home replicas, with hints on fallbacks for those
// that cannot take it, until w replicas (this one included) hold it.
func (n *Node) coordinate(ctx context.Context, key []byte, cctx vclock.VClock, v Version, w int, home, fallbacks []string) (Written, error) {
	var (
		o   Object
		dot vclock.Dot
	)
	err := n.unlessLeaving(func() (err error) {
		o, dot, _, err = n.store.UpdateOnce(key, cctx, n.actor, v)
		return err
	})
	if err != nil {
		return Written{}, err
	}
	res := Written{Context: o.Context(), Dot: dot}
	others, fallbacks := without(home, n.id), without(fallbacks, n.id)
	if len(others) == 0 {
		return res, nil
	}
	// Every other replica gets the write, on a goroutine of its own that
	// outlives the quorum (bounded by the node's timeout); Gather only
	// counts the acknowledgements.
	rep := &replication{n: n, key: key, o: o, fallbacks: fallbacks}
	acks := make(map[string]chan error, len(others))
	for _, h := range others {
		ack := make(chan error, 1)
		acks[h] = ack
		if !n.spawn(func() { ack <- rep.send(context.WithoutCancel(ctx), h) }) {
			ack <- fmt.Errorf("%w: %s is shutting down", ErrUnavailable, n.id)
		}
	}
	if w == 1 {
		return res, nil
	}
	_, err = quorum.Gather(ctx, others, w-1, func(ctx context.Context, h string) (struct{}, error) {
		select {
		case err := <-acks[h]:
			return struct{}{}, err
		case <-ctx.Done():
			return struct{}{}, ctx.Err()
		}
	})
	if err != nil {
		return res, fmt.Errorf("kv: write of %q: %w", key, err)
	}
	return res, nil
}

// replication is one write's fan-out to the other home replicas, sharing
// the key's fallbacks between the replicas that need one.
type replication struct {
	n   *Node
	key []byte
	o   Object

	mu        sync.Mutex
	fallbacks []string // not yet used
}

// send sends the write to the home replica h or, when h is down or fails,
// to the next unused live fallback with a hint for h, within the node's
// timeout.
func (r *replication) send(ctx context.Context, h string) error {
	n := r.n
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	err := fmt.Errorf("%s believed down", h)
	if n.alive(h) {
		if _, err = n.call(ctx, h, &request{Op: opWrite, Key: r.key, Object: r.o}); err == nil {
			return nil
		}
	}
	for {
		fb, ok := r.nextFallback()
		if !ok {
			return err
		}
		if _, ferr := n.call(ctx, fb, &request{Op: opWrite, Key: r.key, Object: r.o, Hint: h}); ferr != nil {
			err = errors.Join(err, fmt.Errorf("fallback %s: %w", fb, ferr))
			continue
		}
		n.stats.hintsStored.Add(1)
		return nil
	}
}

func (r *replication) nextFallback() (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.fallbacks) > 0 {
		fb := r.fallbacks[0]
		r.fallbacks = r.fallbacks[1:]
		if r.n.alive(fb) {
			return fb, true
		}
	}
	return "", false
}

// Get reads key from r replicas (0: the configured R): its home replicas,
// this node first if it is one, then the live ones, then its fallbacks,
// one more for each failure (and each HedgeDelay). It returns the merge of the replies; replicas whose reply
// was older get the merged object in the background (read repair). It
// returns quorum.ErrNoQuorum when fewer than r replicas answered.
func (n *Node) Get(ctx context.Context, key []byte, r int) (Result, error) {
	if err := checkKey(key); err != nil {
		return Result{}, err
	}
	r, err := n.quorumSize("r", r, n.quorum.R)
	if err != nil {
		return Result{}, err
	}
	home, fallbacks := n.placement(key)
	targets := make([]string, 0, len(home)+len(fallbacks))
	if slices.Contains(home, n.id) {
		targets = append(targets, n.id) // the cheapest read
	}
	for _, up := range []bool{true, false} {
		for _, h := range home {
			if h != n.id && n.alive(h) == up {
				targets = append(targets, h)
			}
		}
	}
	targets = append(targets, fallbacks...)
	opts := []quorum.Option{quorum.Hedge(0)}
	if n.hedge > 0 {
		opts[0] = quorum.Hedge(n.hedge)
	}
	replies, err := quorum.Gather(ctx, targets, r, func(ctx context.Context, to string) (response, error) {
		ctx, cancel := context.WithTimeout(ctx, n.timeout)
		defer cancel()
		return n.call(ctx, to, &request{Op: opRead, Key: key})
	}, opts...)
	if err != nil {
		return Result{}, fmt.Errorf("kv: read of %q: %w", key, err)
	}
	var merged Object
	for _, rep := range replies {
		if rep.Err == nil {
			merged.Sync(rep.Value.Object)
		}
	}
	n.readRepair(ctx, key, merged, home, replies)
	return Result{Values: Live(merged), Context: merged.Context()}, nil
}

// readRepair sends merged to every home replica whose reply differed, in
// the background.
func (n *Node) readRepair(ctx context.Context, key []byte, merged Object, home []string, replies []quorum.Reply[response]) {
	want, err := EncodeObject(merged)
	if err != nil {
		return
	}
	for _, rep := range replies {
		if rep.Err != nil || !slices.Contains(home, rep.Replica) {
			continue
		}
		if got, err := EncodeObject(rep.Value.Object); err == nil && bytes.Equal(got, want) {
			continue
		}
		n.spawn(func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), n.timeout)
			defer cancel()
			if _, err := n.call(ctx, rep.Replica, &request{Op: opWrite, Key: key, Object: merged}); err != nil {
				n.log.Debug("read repair failed", "key", key, "replica", rep.Replica, "err", err)
				return
			}
			n.stats.readRepairs.Add(1)
		})
	}
}

// call sends req to node to, in process when it is this node.
func (n *Node) call(ctx context.Context, to string, req *request) (response, error) {
	if to == n.id {
		return n.handle(ctx, req)
	}
	b, err := req.marshal()
	if err != nil {
		return response{}, err
	}
	out, err := n.transport.Call(ctx, to, b)
	if err != nil {
		return response{}, err
	}
	var resp response
	if err := resp.unmarshal(out); err != nil {
		return response{}, err
	}
	if resp.Leaving {
		return response{}, &refusal{id: to}
	}
	return resp, nil
}

// Handle serves one encoded replica RPC from another node and returns the
// encoded response: the receiving side of a [Transport]. Errors wrap
// [ErrMalformed] for a request that does not decode, and otherwise come
// from the store or the coordination of a forwarded write.
func (n *Node) Handle(ctx context.Context, req []byte) ([]byte, error) {
	var q request
	if err := q.unmarshal(req); err != nil {
		return nil, err
	}
	resp, err := n.handle(ctx, &q)
	if refusedBy(err, n.id) {
		// Not an error of the request: the caller tries another node.
		return (&response{Leaving: true}).marshal()
	}
	if err != nil {
		return nil, err
	}
	return resp.marshal()
}

func (n *Node) handle(ctx context.Context, q *request) (response, error) {
	switch q.Op {
	case opRead:
		o, found, err := n.store.Get(q.Key)
		if err != nil {
			return response{}, err
		}
		h, hinted, err := n.store.Hints().Object(q.Key)
		if err != nil {
			return response{}, err
		}
		o.Sync(h)
		return response{Found: found || hinted, Object: o}, nil
	case opWrite:
		return response{}, n.unlessLeaving(func() error {
			if q.Hint != "" {
				return n.store.Hints().Add(q.Hint, q.Key, q.Object)
			}
			_, err := n.store.Merge(q.Key, q.Object)
			return err
		})
	case opCoordinate:
		home, fallbacks := n.placement(q.Key)
		if !slices.Contains(home, n.id) {
			return response{}, fmt.Errorf("%w: %s is not a home replica of %q", ErrUnavailable, n.id, q.Key)
		}
		w, err := n.coordinate(ctx, q.Key, q.Context, q.Value, q.W, home, fallbacks)
		if err != nil {
			return response{}, err
		}
		return response{Context: w.Context, Dot: w.Dot}, nil
	case opTree:
		t, err := n.store.Trees().Serve(q.Group, q.Tree)
		return response{Tree: t}, err
	case opScan:
		es, err := n.store.Scan(q.Group, q.Segments)
		return response{Entries: es}, err
	case opReapable:
		ok, err := n.store.Reapable(q.Key, q.Object)
		return response{Found: ok}, err
	case opReap:
		ok, err := n.reapLocal(q.Key, q.Object)
		return response{Found: ok}, err
	}
	return response{}, fmt.Errorf("%w: op %v", ErrMalformed, q.Op)
}
