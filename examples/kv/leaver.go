package kv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
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

// Leave tries to place a key or a hint that no node took up to
// placeAttempts times, waiting placeBackoff, then twice as long, between
// attempts: a copy that timed out on every replica of a loaded cluster is
// not a reason to stay.
const (
	placeAttempts = 3
	placeBackoff  = 250 * time.Millisecond
)

// attempt calls place until it reports success, up to placeAttempts
// times, with backoff between attempts, unless ctx ends.
func attempt(ctx context.Context, place func() bool) {
	wait := placeBackoff
	for i := 1; !place() && i < placeAttempts; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}

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
	self     string
	store    *Store
	rep      *replicator
	mover    *mover
	place    func() *placement
	progress *progress
	log      *slog.Logger

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
// rebalance may have left as the only copy). It reads them a page at a
// time and holds one page in memory, whatever the data.
func (l *leaver) handOver(ctx context.Context, next *placement) (Handover, error) {
	var (
		mu       sync.Mutex // guards h, unplaced, first and failure
		h        Handover
		first    string // the first of the keys and hints not placed, in order
		failure  error  // the first error of a hint's hand-on
		unplaced = func(what string) {
			if h.Unplaced++; first == "" || what < first {
				first = what
			}
		}
	)
	keys, err := l.store.count()
	if err != nil {
		return h, err
	}
	t := &l.progress.handover
	t.begin(int64(keys + l.store.Hints().Len()))
	h.Copies, err = l.mover.pages(ctx, t, func(after []byte) (page, error) {
		return l.store.pageFrom(after, l.mover.pageBytes, nil)
	}, func(it item) int {
		home, fallbacks := next.of(it.Key)
		if l.mover.rate.wait(ctx, it.size()*len(home)) != nil {
			return 0
		}
		var (
			taken  []string
			failed map[string]error
		)
		attempt(ctx, func() bool {
			taken, failed = l.rep.place(ctx, it.Key, it.Object, home, fallbacks)
			return len(taken) > 0
		})
		for id, err := range failed {
			l.log.Debug("handover copy failed", "key", it.Key, "replica", id, "err", err)
		}
		mu.Lock()
		defer mu.Unlock()
		h.Keys, h.Failed = h.Keys+1, h.Failed+len(failed)
		if len(taken) == 0 {
			unplaced(fmt.Sprintf("key %q", it.Key))
		}
		return len(taken)
	})
	if err == nil {
		err = l.handOverHints(ctx, next, t, func(target string, it item, passed bool, err error) {
			mu.Lock()
			defer mu.Unlock()
			if passed {
				h.Hints++
			} else {
				unplaced(fmt.Sprintf("hint for %s of %q", target, it.Key))
			}
			if failure == nil {
				failure = err
			}
		})
	}
	err = cmp.Or(err, failure, ctx.Err())
	if err == nil && h.Unplaced > 0 {
		err = fmt.Errorf("%w: %d, first the %s", ErrNotPlaced, h.Unplaced, first)
	}
	t.end(err)
	return h, err
}

// handOverHints passes every hint held on under the placement next, a
// page at a time, and reports each outcome to done.
func (l *leaver) handOverHints(ctx context.Context, next *placement, t *task, done func(target string, it item, passed bool, err error)) error {
	targets, err := l.store.Hints().Targets()
	if err != nil {
		return err
	}
	for _, target := range targets {
		_, err := l.mover.pages(ctx, t, func(after []byte) (page, error) {
			return l.store.Hints().page(target, after, l.mover.pageBytes)
		}, func(it item) int {
			if l.mover.rate.wait(ctx, it.size()) != nil {
				return 0
			}
			var (
				passed bool
				err    error
			)
			attempt(ctx, func() bool {
				passed, err = l.rep.passOn(ctx, next, target, it.Entry)
				return passed || err != nil
			})
			done(target, it, passed, err)
			if passed {
				return 1
			}
			return 0
		})
		if err != nil {
			return err
		}
	}
	return nil
}
