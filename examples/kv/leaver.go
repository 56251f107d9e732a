package kv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
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

// leaver owns a node's departure ([Node.Leave]): it refuses the node's
// local writes once the departure began, and hands every key and hint
// the node holds over to the nodes that remain, through the replicator.
// It is safe for concurrent use.
type leaver struct {
	self  string
	store *Store
	rep   *replicator
	place func() *placement
	log   *slog.Logger

	// mu is held shared by every local write from its check of departing
	// to its commit, and exclusively by leave to set departing, so that
	// each write is either on disk before leave scans or refused.
	mu        sync.RWMutex
	departing bool // leave has begun
}

// leave is [Node.Leave].
func (l *leaver) leave(ctx context.Context) (Handover, error) {
	l.mu.Lock()
	if l.departing {
		l.mu.Unlock()
		return Handover{}, fmt.Errorf("%w: %s", ErrLeaving, l.self)
	}
	l.departing = true // every write from now on is refused; those before are on disk
	l.mu.Unlock()
	h, err := l.handOver(ctx, l.place().without(l.self))
	if err != nil {
		l.mu.Lock()
		l.departing = false
		l.mu.Unlock()
		return h, fmt.Errorf("kv: %s leaving: %w", l.self, err)
	}
	return h, nil
}

// leaving reports whether leave has begun (and not failed).
func (l *leaver) leaving() bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.departing
}

// unlessLeaving runs the local write f, unless the node is leaving.
func (l *leaver) unlessLeaving(f func() error) error {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.departing {
		return &refusal{id: l.self}
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
	if err == nil {
		return false
	}
	var r *refusal
	return errors.As(err, &r) && r.id == id
}

// handOver streams every key and every hint this node holds to the
// nodes of the placement next: the keys of the ranges it replicates, and
// any copy it kept of a key it no longer replicates (one a failed
// rebalance may have left as the only copy).
func (l *leaver) handOver(ctx context.Context, next *placement) (Handover, error) {
	var h Handover
	var keys []Entry
	err := l.store.All(func(key []byte, o Object) error {
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
		home, fallbacks := next.of(keys[i].Key)
		taken, failed := l.rep.place(ctx, keys[i].Key, keys[i].Object, home, fallbacks)
		for id, err := range failed {
			l.log.Debug("handover copy failed", "key", keys[i].Key, "replica", id, "err", err)
		}
		mu.Lock()
		defer mu.Unlock()
		h.Copies, h.Failed = h.Copies+len(taken), h.Failed+len(failed)
		if len(taken) == 0 {
			unplaced = append(unplaced, fmt.Sprintf("key %q", keys[i].Key))
		}
	})
	targets, err := l.store.Hints().Targets()
	if err != nil {
		return h, err
	}
	for _, t := range targets {
		hints, err := l.store.Hints().For(t, math.MaxInt)
		if err != nil {
			return h, err
		}
		parallel(ctx, len(hints), func(i int) {
			passed, err := l.rep.passOn(ctx, next, t, hints[i])
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
