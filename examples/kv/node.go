package kv

import (
	"cmp"
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

// ErrNotDelivered is wrapped by the errors of a [Transport] call whose
// request certainly never reached its node: nothing was applied there.
var ErrNotDelivered = errors.New("kv: request not delivered")

// ErrBadConfig is returned by [NewNode] for an invalid [NodeConfig].
var ErrBadConfig = errors.New("kv: invalid node config")

// Transport carries replica RPCs between nodes: Call delivers an encoded
// request to the node to, which answers it with [Node.Handle], and returns
// the encoded response or an error. An error wrapping [ErrNotDelivered]
// says that the request never reached the node (a refused connection, no
// route), so that a forwarded write goes to the next home replica at
// once. It must honour ctx and be safe for concurrent use.
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
	// Repair sets the pages, timeouts and bandwidth of anti-entropy,
	// rebalances and handovers.
	Repair RepairConfig
	Logger *slog.Logger // nil: discard
	// Metrics, if set, records the node's anti-entropy exchanges per
	// peer. (Replica RPCs are counted by wrapping the Transport with
	// [Metrics.Transport].)
	Metrics *Metrics
}

// Node is one member of the replicated store, and a facade over the
// owners of its concerns (see the package documentation for the map):
// placement, an immutable [placement] behind one atomic pointer; the
// coordinator of clients' reads and writes, whose decisions are the
// coordinator core's ([readRound], [writeRound]); the replicator
// (fan-out, hints, and the rounds' I/O); the maintainer (handoff,
// anti-entropy, reaping, rebalancing); and the leaver. It coordinates
// clients' reads and writes of any key over the key's replicas and
// serves other nodes' replica RPCs ([Node.Handle]).
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
	timeout   time.Duration
	hedge     time.Duration

	place  atomic.Pointer[placement]
	ringMu sync.Mutex // serialises ring changes

	bgMu    sync.Mutex     // guards closing, so no goroutine starts once Close waits
	closing bool           // Close has begun
	bg      sync.WaitGroup // background replication and repair
	workers workers        // the goroutines of bg and of calls to itself

	coord    *coordinator
	rep      *replicator
	maint    *maintainer
	leaver   *leaver
	stats    nodeStats
	progress *progress
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
	case !inRing(cfg.Ring, cfg.ID):
		return nil, fmt.Errorf("%w: %q is not in the ring", ErrBadConfig, cfg.ID)
	}
	n := &Node{
		id: cfg.ID, actor: cfg.ID + "." + cfg.Store.Epoch(), store: cfg.Store, transport: cfg.Transport, quorum: cfg.Quorum,
		alive: cfg.Alive, timeout: cmp.Or(max(cfg.Timeout, 0), DefaultTimeout), hedge: cfg.HedgeDelay,
	}
	if n.alive == nil {
		n.alive = func(string) bool { return true }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	repair := cfg.Repair.withDefaults()
	n.progress = newProgress(log, repair.ProgressEvery)
	mv := &mover{store: n.store, pageBytes: repair.PageBytes, rate: newThrottle(repair.HandoverRate, repair.PageBytes)}
	n.rep = &replicator{self: n.id, peers: n, store: n.store, timeout: n.timeout, stats: &n.stats, bg: n, log: log}
	n.leaver = &leaver{self: n.id, store: n.store, rep: n.rep, mover: mv, place: n.place.Load, progress: n.progress, log: log}
	n.coord = &coordinator{self: n.id, actor: n.actor, store: n.store, peers: n, place: n.place.Load, rep: n.rep,
		leaver: n.leaver, timeout: n.timeout, hedge: n.hedge}
	n.maint = &maintainer{self: n.id, peers: n, store: n.store, rep: n.rep, mover: mv, place: n.place.Load, timeout: n.timeout,
		cfg: repair, aeRate: newThrottle(repair.AntiEntropyRate, repair.PageBytes), stats: &n.stats, progress: n.progress,
		onReap: cfg.OnReap, log: log, metrics: cfg.Metrics}
	p := newPlacement(cfg.Ring, n.quorum.N, cmp.Or(max(cfg.Fallbacks, 0), DefaultFallbacks))
	if err := n.store.regroup(p.group, func() { n.place.Store(p) }); err != nil {
		return nil, err
	}
	return n, nil
}

// ID returns the node's ID.
func (n *Node) ID() string { return n.id }

// Actor returns the ID in the dots of the writes the node coordinates:
// its ID and its store's epoch, "ID.epoch".
func (n *Node) Actor() string { return n.actor }

// Quorum returns the node's default N, R and W.
func (n *Node) Quorum() quorum.Config { return n.quorum }

// Ring returns the current ring.
func (n *Node) Ring() *ring.Ring { return n.place.Load().ring }

// ApplyRing makes next the ring, in one call that does in order what a
// ring change needs: it builds the anti-entropy trees of next's replica
// groups, publishes the new placement and the new trees together (no
// write commits in between, and no request sees one without the other),
// and then streams the keys this node holds whose replica set changed to
// the nodes that became their replicas (see [Node.Rebalance] for how and
// what it returns). Ring changes are serialised: a second ApplyRing
// waits for the first.
func (n *Node) ApplyRing(ctx context.Context, next *ring.Ring) (int, error) {
	n.ringMu.Lock()
	defer n.ringMu.Unlock()
	from := n.place.Load()
	p := newPlacement(next, from.n, from.fallbacks)
	if err := n.store.regroup(p.group, func() { n.place.Store(p) }); err != nil {
		return 0, err
	}
	return n.maint.rebalance(ctx, from, p)
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
	n.workers.close()
}

// spawn runs f on a background goroutine that Close waits for. Once Close
// has begun it runs nothing and reports false.
func (n *Node) spawn(f func()) bool {
	if !n.hold() {
		return false
	}
	n.workers.Go(func() {
		defer n.release()
		f()
	})
	return true
}

// hold counts one piece of background work that Close waits for, until
// release ends it; once Close has begun it counts none and reports
// false.
func (n *Node) hold() bool {
	n.bgMu.Lock()
	defer n.bgMu.Unlock()
	if n.closing {
		return false
	}
	n.bg.Add(1)
	return true
}

// release ends a piece of background work hold counted.
func (n *Node) release() { n.bg.Done() }

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
func (n *Node) Home(key []byte) []string { return n.place.Load().home(key) }

// HandOff makes one pass of hinted handoff ([maintainer.handOff]): it
// sends the hints held for every live target back to it, and drops each
// hint the target took (and that did not grow meanwhile). A hint whose
// target is no longer a home replica of its key under the current ring
// (a node joined or left since, or the target left) goes to the key's
// current home replicas instead, and is dropped only once one of them
// stored it. It returns how many hints it delivered, and the errors of the
// targets that failed, joined; a failed hint stays for the next pass.
// Call it periodically.
func (n *Node) HandOff(ctx context.Context) (int, error) { return n.maint.handOff(ctx) }

// AntiEntropy runs one exchange with peer over every replica set of the
// ring that holds both. For each, in rounds, [merkle.DiffPage] finds the
// next dirty segments of their trees (at most [RepairConfig.PageSegments]),
// both sides' keys in those segments are walked side by side a page at a
// time ([RepairConfig.PageBytes]; the peer's pages are checked to hold
// only keys of the group and segments asked for, each after the one
// before), and each key whose objects differ is merged both ways, in
// batches of a page. Its memory is a copy of one tree and four pages,
// whatever the data; each call is bounded by [RepairConfig.PageTimeout]
// and its bytes by [RepairConfig.AntiEntropyRate]. A group that fails
// does not stop the others: it returns the number of keys repaired and
// the bytes moved over every group, and the failed groups' errors,
// joined.
func (n *Node) AntiEntropy(ctx context.Context, peer string) (repaired, moved int, err error) {
	return n.maint.antiEntropy(ctx, peer)
}

// Rebalance streams the keys this node holds whose replica set differs
// between the ring from and the node's current ring ([ring.ReplicaMoves])
// to the nodes that became their replicas, and returns how many copies it
// sent. [Node.ApplyRing] calls it after a ring change; call it directly
// only to repeat a rebalance. It keeps its own copies: a node never drops
// a key it held, so the dots it coordinates stay unique should it own the
// key again. It reads the store a page at a time, holding one page in
// memory, and sends up to 16 keys at once, within
// [RepairConfig.HandoverRate]; a new replica that is down or fails
// gets its copy through a fallback with a hint, as a write would. It
// returns how many copies no node took, with the first failure, as an
// error; those keys still have their other replicas, and anti-entropy
// completes them.
func (n *Node) Rebalance(ctx context.Context, from *ring.Ring) (int, error) {
	p := n.place.Load()
	return n.maint.rebalance(ctx, newPlacement(from, p.n, p.fallbacks), p)
}

// Reap makes one pass of tombstone reaping, as Riak does after a delete:
// for each of up to 1024 keys whose object has been dead ([Dead]) and
// unchanged on this node since before the time before and whose first
// home replica this node is, going on from where the last pass stopped
// (a key that cannot be reaped does not hold back those after it), it
// asks every home replica and every fallback of the key whether it may
// reap (its object equals this node's, or it has none, and it holds no
// hint for the key), and if all agree it reaps the key on the other home
// replicas and then on itself. A key is skipped when a replica or
// fallback is believed down or disagrees; a partial reap is harmless: the
// replicas that still hold the tombstone send it back through
// anti-entropy and the next pass reaps it again. It returns how many keys
// it reaped and stops at the first failed call.
//
// before must leave time for every message about the key still in
// flight when its dead object last changed to land (replication and read
// repair end within the node's Timeout, an anti-entropy exchange within
// its own duration): a stale copy of a reaped value that arrives after the reap, or a replica
// outside the key's current home and fallbacks (after a ring change) that
// still holds one, brings it back, as Cassandra's gc_grace_seconds warns.
func (n *Node) Reap(ctx context.Context, before time.Time) (int, error) {
	return n.maint.reap(ctx, before)
}

// Maintain runs the node's periodic repair until ctx is done: a pass of
// hinted handoff every HandOffEvery, every AntiEntropyEvery an
// anti-entropy exchange with the next live node of the ring (round
// robin), and every ReapEvery a pass of [Node.Reap] over the keys dead
// and unchanged for longer than ReapAfter. Errors are logged and retried
// at the next period. Exchanges run on a goroutine of their own, so that
// a long one holds back neither handoff nor reaping. It returns when ctx
// is done, once the rounds in progress ended.
func (n *Node) Maintain(ctx context.Context, cfg MaintainConfig) { n.maint.run(ctx, cfg) }

// Leave hands this node's data over to the others before it leaves the
// cluster, as Riak's cluster leave and Cassandra's nodetool decommission
// do, so that its disk may then be discarded:
//
//   - every key it holds (those of the ranges it replicates, and any copy
//     kept from an earlier ring) is sent to each of its replicas in the
//     new ring, ring.Without(this node), or, for one that is down or
//     fails, to the key's next fallback in the new ring with a hint for
//     it;
//   - every hint it holds is delivered to its target or, when the target
//     is down or fails, passed as a hint for the same target to the key's
//     next fallback in the new ring (or, when none takes it, to one of the
//     key's home replicas there); a hint for a
//     node no longer in the ring goes to the key's replicas instead. It
//     is dropped here once taken.
//
// From the moment Leave begins, the node takes no more writes: client
// writes it receives are forwarded to another home replica, and the
// writes it is asked to coordinate or to store (replication, read repair,
// hints) fail with [ErrUnavailable] and [ErrLeaving], so that their
// coordinators place them elsewhere, with hints for this node that
// [Node.HandOff] sends to the key's replicas once this node left the
// ring. Every write it took before is in Leave's scan. Once Leave
// succeeded the node stays so; the caller then leaves the membership
// ([Server.Shutdown] leaves SWIM) and exits.
//
// Leave returns what it handed over. It fails, and the node takes writes
// again, with an error wrapping [ErrNotPlaced] when a key or a hint could
// not be placed on any node, in three attempts 250 and 500 ms apart (the
// caller decides whether to exit anyway),
// with ctx's error when ctx ends first, and with the store's errors; a
// second Leave fails with [ErrLeaving]. It reads the keys and hints a page
// at a time ([RepairConfig.PageBytes]) and holds one page in memory,
// whatever the data, and moves at most [RepairConfig.HandoverRate] bytes
// per second. Its goroutines (up to 16 keys at once) end before it
// returns. It keeps its own copies: the store is
// unchanged but for the hints it dropped.
func (n *Node) Leave(ctx context.Context) (Handover, error) { return n.leaver.leave(ctx) }

// Leaving reports whether [Node.Leave] has begun (and not failed).
func (n *Node) Leaving() bool { return n.leaver.leaving() }

// Result is what a read returns: the key's live values (siblings when
// there are several; none when it is absent or deleted) and the context
// to send with the next write of the key. It is a plain value; the zero
// Result is an absent key with no history.
type Result struct {
	Values  [][]byte
	Context vclock.VClock
}

// Written is what an acknowledged write returns: the context to send with
// the next write, and the dot the write got, which identifies it. The
// context covers what the write's own context covered and the write
// itself, never a sibling its client did not read (see [writeContext]).
// It is a plain value; a zero Dot means the dot is unknown.
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
	return n.coord.write(ctx, key, cctx, v, w)
}

// Get reads key from r replicas (0: the configured R): its home replicas,
// this node first if it is one, then the live ones, then its fallbacks,
// one more for each failure (and each HedgeDelay), each call bounded by
// the node's Timeout ([readRound] decides which and when). It returns the
// merge of the replies; replicas whose reply was older get the merged
// object in the background (read repair). It returns quorum.ErrNoQuorum
// when fewer than r replicas answered.
func (n *Node) Get(ctx context.Context, key []byte, r int) (Result, error) {
	if err := checkKey(key); err != nil {
		return Result{}, err
	}
	r, err := n.quorumSize("r", r, n.quorum.R)
	if err != nil {
		return Result{}, err
	}
	return n.coord.read(ctx, key, r)
}

// call sends req to node to, in process when it is this node.
func (n *Node) call(ctx context.Context, to string, req *request) (response, error) {
	if to == n.id {
		return n.handle(ctx, req, false)
	}
	b, err := req.marshal()
	if err != nil {
		return response{}, err
	}
	out, err := n.transport.Call(ctx, to, b)
	return n.response(to, out, err)
}

// start is call for a caller that waits on no goroutine of its own:
// deliver takes the outcome, once, on some goroutine, and must not block.
// A read of this node's own copy runs at once, on the caller's goroutine
// (it waits on no disk sync, nor on another node); any other call to this
// node runs on a worker, and so does one over a transport that cannot
// start calls.
func (n *Node) start(ctx context.Context, to string, req *request, deliver func(response, error)) {
	if to == n.id && req.Op == opRead {
		deliver(n.handle(ctx, req, false))
		return
	}
	at, ok := n.transport.(asyncTransport)
	if to == n.id || !ok {
		n.workers.Go(func() { deliver(n.call(ctx, to, req)) })
		return
	}
	b, err := req.marshal()
	if err != nil {
		deliver(response{}, err)
		return
	}
	at.startCall(ctx, to, b, func(out []byte, err error) { deliver(n.response(to, out, err)) })
}

// response decodes node to's answer out to a call that returned err.
func (n *Node) response(to string, out []byte, err error) (response, error) {
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
	resp, err := n.handle(ctx, &q, true)
	if refusedBy(err, n.id) {
		// Not an error of the request: the caller tries another node.
		return (&response{Leaving: true}).marshal()
	}
	if err != nil {
		return nil, err
	}
	return resp.marshal()
}

// handle serves q. decoded says q was decoded for this call alone, so
// that the store may keep its objects rather than copy them; a request
// this node sends itself shares them with its sender.
func (n *Node) handle(ctx context.Context, q *request, decoded bool) (response, error) {
	switch q.Op {
	case opRead:
		o, found, err := n.store.get(q.Key) // read-only
		if err != nil {
			return response{}, err
		}
		h, hinted, err := n.store.Hints().Object(q.Key)
		if err != nil {
			return response{}, err
		}
		if hinted {
			o = o.Clone()
			o.Sync(h)
		}
		return response{Found: found || hinted, Object: o}, nil
	case opWrite:
		return response{}, n.leaver.unlessLeaving(func() error {
			if q.Hint != "" {
				return n.store.Hints().Add(q.Hint, q.Key, q.Object)
			}
			o := q.Object
			if !decoded {
				o = o.Clone()
			}
			_, err := n.store.mergeOwned(q.Key, o)
			return err
		})
	case opCoordinate:
		if q.W < 1 || q.W > n.quorum.N {
			return response{}, fmt.Errorf("%w: coordinate with w = %d, N = %d", ErrMalformed, q.W, n.quorum.N)
		}
		home, fallbacks := n.place.Load().of(q.Key)
		if !slices.Contains(home, n.id) {
			return response{}, fmt.Errorf("%w: %s is not a home replica of %q", ErrUnavailable, n.id, q.Key)
		}
		w, err := n.coord.coordinate(ctx, q.Key, q.Context, q.Value, q.W, home, fallbacks)
		if err != nil {
			return response{}, err
		}
		return response{Context: w.Context, Dot: w.Dot}, nil
	case opTree:
		t, err := n.store.Trees().Serve(q.Group, q.Tree)
		return response{Tree: t}, err
	case opScan:
		return n.maint.serveScan(q)
	case opMerge:
		return response{}, n.leaver.unlessLeaving(func() error { return n.maint.serveMerge(q) })
	case opReapable:
		ok, err := n.store.Reapable(q.Key, q.Object)
		return response{Found: ok}, err
	case opReap:
		ok, err := n.maint.reapLocal(q.Key, q.Object)
		return response{Found: ok}, err
	}
	return response{}, fmt.Errorf("%w: op %v", ErrMalformed, q.Op)
}
