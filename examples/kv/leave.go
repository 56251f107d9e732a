package kv

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/distkit/distkit/ring"
)

// ErrLeaving is returned, wrapped together with [ErrUnavailable], by a
// node that is leaving the cluster ([Node.Leave]) for a write it is asked
// to coordinate or to store, and by a second Leave.
var ErrLeaving = errors.New("kv: node is leaving")

// ErrNotPlaced is returned, wrapped, by [Node.Leave] when a key or a hint
// this node holds could not be placed on any other node.
var ErrNotPlaced = errors.New("kv: leaving node could not place data on any other node")

// leaveParallel is how many keys Leave hands over at once.
const leaveParallel = 16

// Handover is what [Node.Leave] handed over to the nodes that remain. It
// is a plain value; the zero Handover is a node that held nothing.
type Handover struct {
	// Keys is how many keys this node held and sent to their replicas in
	// the ring without it.
	Keys int
	// Copies is how many copies of them were taken, by a new replica or,
	// for one that was down or failed, by a fallback with a hint for it.
	Copies int
	// Failed is how many copies no node took; the key is still placed
	// when another of its copies was, and anti-entropy between its
	// replicas completes it.
	Failed int
	// Hints is how many hints it handed on: to their target or, when the
	// target was down or failed, to a fallback of the key in the ring
	// without this node, as a hint for the same target.
	Hints int
	// Unplaced is how many keys and hints no node took at all: they are
	// lost if this node's disk is.
	Unplaced int
}

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
// not be placed on any node (the caller decides whether to exit anyway),
// with ctx's error when ctx ends first, and with the store's errors; a
// second Leave fails with [ErrLeaving]. Its goroutines (up to 16 keys at
// once) end before it returns. It keeps its own copies: the store is
// unchanged but for the hints it dropped.
func (n *Node) Leave(ctx context.Context) (Handover, error) {
	n.leaveMu.Lock()
	if n.departing {
		n.leaveMu.Unlock()
		return Handover{}, fmt.Errorf("%w: %s", ErrLeaving, n.id)
	}
	n.departing = true // every write from now on is refused; those before are on disk
	n.leaveMu.Unlock()
	h, err := n.handOver(ctx, n.Ring().Without(n.id))
	if err != nil {
		n.leaveMu.Lock()
		n.departing = false
		n.leaveMu.Unlock()
		return h, fmt.Errorf("kv: %s leaving: %w", n.id, err)
	}
	return h, nil
}

// leaving reports whether Leave has begun.
func (n *Node) leaving() bool {
	n.leaveMu.RLock()
	defer n.leaveMu.RUnlock()
	return n.departing
}

// unlessLeaving runs the local write f, unless the node is leaving.
func (n *Node) unlessLeaving(f func() error) error {
	n.leaveMu.RLock()
	defer n.leaveMu.RUnlock()
	if n.departing {
		return &refusal{id: n.id}
	}
	return f()
}

// refusal is a leaving node's answer to a write it was asked to
// coordinate or store: it applied nothing. It matches [ErrUnavailable]
// and [ErrLeaving].
type refusal struct{ id string }

func (e *refusal) Error() string {
	return fmt.Sprintf("%v: %v: %s", ErrUnavailable, ErrLeaving, e.id)
}

func (e *refusal) Is(target error) bool { return target == ErrUnavailable || target == ErrLeaving }

// refusedBy reports whether err is node id's refusal as a leaving node,
// and not an error of a write it applied that carries another node's
// refusal (a coordinator's quorum failure wraps its replicas' errors).
func refusedBy(err error, id string) bool {
	var r *refusal
	return errors.As(err, &r) && r.id == id
}

// place sends e to each of its key's home replicas in r or, for one that
// is down or fails, to the key's next unused fallback in r with a hint
// for it, and returns how many copies were taken and how many not.
func (n *Node) place(ctx context.Context, r *ring.Ring, e Entry) (copies, failed int) {
	home, fallbacks := n.placementIn(r, e.Key)
	rep := &replication{n: n, key: e.Key, o: e.Object, fallbacks: fallbacks}
	for _, h := range home {
		if err := rep.send(ctx, h); err != nil {
			n.log.Debug("handover copy failed", "key", e.Key, "replica", h, "err", err)
			failed++
			continue
		}
		copies++
	}
	return copies, failed
}

// handOver streams every key and every hint this node holds to the
// nodes of next: the keys of the ranges that move from cur to next, and
// any copy it kept of a key it no longer replicates (one a failed
// rebalance may have left as the only copy).
func (n *Node) handOver(ctx context.Context, next *ring.Ring) (Handover, error) {
	var h Handover
	var keys []Entry
	err := n.store.All(func(key []byte, o Object) error {
		keys = append(keys, Entry{Key: slices.Clone(key), Object: o.Clone()})
		return nil
	})
	if err != nil {
		return h, err
	}
	var (
		mu       sync.Mutex // guards h, unplaced and errs
		unplaced []string
		errs     []error
	)
	h.Keys = len(keys)
	parallel(ctx, len(keys), func(i int) {
		copies, failed := n.place(ctx, next, keys[i])
		mu.Lock()
		defer mu.Unlock()
		h.Copies, h.Failed = h.Copies+copies, h.Failed+failed
		if copies == 0 {
			unplaced = append(unplaced, fmt.Sprintf("key %q", keys[i].Key))
		}
	})
	targets, err := n.store.Hints().Targets()
	if err != nil {
		return h, err
	}
	for _, t := range targets {
		hints, err := n.store.Hints().For(t, math.MaxInt)
		if err != nil {
			return h, err
		}
		stays := inRing(next, t)
		parallel(ctx, len(hints), func(i int) {
			passed, err := n.passOn(ctx, next, t, stays, hints[i])
			mu.Lock()
			defer mu.Unlock()
			if passed {
				h.Hints++
			} else {
				unplaced = append(unplaced, fmt.Sprintf("hint for %s of %q", t, hints[i].Key))
			}
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	h.Unplaced = len(unplaced)
	if err := errors.Join(errs...); err != nil {
		return h, err
	}
	if err := ctx.Err(); err != nil {
		return h, err
	}
	if len(unplaced) > 0 {
		slices.Sort(unplaced)
		return h, fmt.Errorf("%w: %d, first the %s", ErrNotPlaced, len(unplaced), unplaced[0])
	}
	return h, nil
}

// passOn hands the hint e for target t on under the ring r: to t, or
// with a hint for t to the first node that takes it among the key's
// fallbacks in r and then its home replicas in r (the nodes [Node.Reap]
// asks about hints before it reaps the key); or, when t is not in r
// (stays is false), to the key's replicas in r. Once a node took it, it drops the hint here
// (unless it grew meanwhile) and reports true.
func (n *Node) passOn(ctx context.Context, r *ring.Ring, t string, stays bool, e Entry) (bool, error) {
	if stays {
		home, fallbacks := n.placementIn(r, e.Key)
		rep := &replication{n: n, key: e.Key, o: e.Object, fallbacks: without(slices.Concat(fallbacks, home), t, n.id)}
		if err := rep.send(ctx, t); err != nil {
			n.log.Debug("hint not passed on", "key", e.Key, "target", t, "err", err)
			return false, nil
		}
	} else if copies, _ := n.place(ctx, r, e); copies == 0 {
		return false, nil
	}
	_, err := n.store.Hints().Drop(t, e.Key, e.Object)
	return true, err
}

// rehome sends a batch of the hints held for t, a node no longer in the
// ring (it left, and may have refused writes while it left), to their
// keys' replicas, and returns how many a node took. [Node.HandOff] calls
// it.
func (n *Node) rehome(ctx context.Context, t string) (int, error) {
	hints, err := n.store.Hints().For(t, handOffBatch)
	if err != nil {
		return 0, err
	}
	r, passed := n.Ring(), 0
	for _, e := range hints {
		ok, err := n.passOn(ctx, r, t, false, e)
		if err != nil {
			return passed, err
		}
		if ok {
			passed++
			n.stats.hintsDelivered.Add(1)
		}
	}
	if passed < len(hints) {
		return passed, fmt.Errorf("kv: %d hints for %s, which left, found no replica", len(hints)-passed, t)
	}
	return passed, nil
}

// inRing reports whether node id is in r.
func inRing(r *ring.Ring, id string) bool {
	return slices.ContainsFunc(r.Nodes(), func(m ring.Node) bool { return m.ID == id })
}

// parallel calls f(i) for every i in [0, count), on up to leaveParallel
// goroutines at once, and returns once they ended; it starts none once
// ctx is done.
func parallel(ctx context.Context, count int, f func(i int)) {
	sem := make(chan struct{}, leaveParallel)
	var wg sync.WaitGroup
	for i := range count {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
