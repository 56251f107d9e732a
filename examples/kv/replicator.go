package kv

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// peers is what the replicator, the maintainer and the leaver need of
// their node: replica RPCs to any node (this one served in process) and
// the failure detector's view.
type peers interface {
	call(ctx context.Context, to string, req *request) (response, error)
	// start is call without a goroutine of the caller's: deliver takes
	// the outcome, once, on some goroutine, and must not block.
	start(ctx context.Context, to string, req *request, deliver func(response, error))
	Alive(id string) bool
}

var _ peers = (*Node)(nil)

// replicator owns the fan-out of objects to replicas: a write's copies
// to the other home replicas (in the background, answering once its
// quorum is decided), the copies a rebalance or a handover places, hints
// on fallbacks for the replicas that cannot take a copy, the hand-on of
// held hints, and read repair. Its decisions are a [writeRound]'s; it
// does the I/O of every round, reads' included, with [replicator.drive]. It is safe for concurrent use.
type replicator struct {
	self    string
	peers   peers
	store   *Store
	timeout time.Duration
	stats   *nodeStats
	spawn   func(func()) bool // a background goroutine the node's Close waits for
	log     *slog.Logger
}

// replicate sends the object o of key to targets in the background,
// each bounded by the node's timeout, with hints on the live ones of
// fallbacks for those down or failing, and returns a channel that
// receives nil once need targets hold it, or the error of a quorum
// missed, as soon as that is known (at once when need is 0). The copies
// go on after the quorum is decided.
func (r *replicator) replicate(ctx context.Context, key []byte, o Object, targets, fallbacks []string, need int) <-chan error {
	decided := make(chan error, 1)
	rd, first := newWriteRound(time.Now(), targets, r.live(fallbacks), r.peers.Alive, need, r.timeout)
	run := func() { r.drive(context.WithoutCancel(ctx), rd, first, r.request(key, o), decided) }
	if !r.spawn(run) {
		rd.Stop(fmt.Errorf("%w: %s is shutting down", ErrUnavailable, r.self))
		decided <- rd.Err()
	}
	return decided
}

// place sends the object o of key to every one of targets, with hints
// on the live ones of fallbacks for those down or failing, within the
// node's timeout, and returns which targets' copies were taken and the
// errors of the others.
func (r *replicator) place(ctx context.Context, key []byte, o Object, targets, fallbacks []string) (taken []string, failed map[string]error) {
	rd, first := newWriteRound(time.Now(), targets, r.live(fallbacks), r.peers.Alive, len(targets), r.timeout)
	r.drive(ctx, rd, first, r.request(key, o), nil)
	return rd.Outcome()
}

// live returns the IDs the failure detector believes up, in order.
func (r *replicator) live(ids []string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return !r.peers.Alive(id) })
}

// request returns the requests of a fan-out of key's object o.
func (r *replicator) request(key []byte, o Object) func(c call) *request {
	return func(c call) *request { return &request{Op: opWrite, Key: key, Object: o, Hint: c.hint} }
}

// repair sends merged, the merge of a read's replies, to the home
// replicas in stale whose reply was older, each on a background
// goroutine bounded by the node's timeout.
func (r *replicator) repair(ctx context.Context, key []byte, merged Object, stale []string) {
	for _, to := range stale {
		r.spawn(func() {
			if err := r.send(context.WithoutCancel(ctx), to, Entry{Key: key, Object: merged}); err != nil {
				r.log.Debug("read repair failed", "key", key, "replica", to, "err", err)
				return
			}
			r.stats.readRepairs.Add(1)
		})
	}
}

// send writes e to node to as a home replica, within the node's timeout.
func (r *replicator) send(ctx context.Context, to string, e Entry) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	_, err := r.peers.call(ctx, to, &request{Op: opWrite, Key: e.Key, Object: e.Object})
	return err
}

// passOn hands the hint e for target t on under the placement p: when t
// is one of the key's home replicas in p, to t, or with a hint for t to
// the first node that takes it among the key's fallbacks in p and then
// its home replicas in p (the nodes a reap asks about hints before it
// reaps the key); otherwise (the ring changed, or t left it), to the
// key's home replicas in p themselves, without fallbacks, so that the
// hint leaves this node only once a current replica stored the write
// durably. Once a node took it, it drops the hint here (unless it grew
// meanwhile) and reports true.
func (r *replicator) passOn(ctx context.Context, p *placement, t string, e Entry) (bool, error) {
	home, fallbacks := p.of(e.Key)
	if slices.Contains(home, t) {
		if taken, _ := r.place(ctx, e.Key, e.Object, []string{t}, without(slices.Concat(fallbacks, home), t, r.self)); len(taken) == 0 {
			r.log.Debug("hint not passed on", "key", e.Key, "target", t)
			return false, nil
		}
	} else if taken, _ := r.place(ctx, e.Key, e.Object, home, nil); len(taken) == 0 {
		return false, nil
	}
	_, err := r.store.Hints().Drop(t, e.Key, e.Object)
	return true, err
}

// drive runs the round rd, whose first calls are first, to its end: it
// starts each call the round asks for (the request req builds), with no
// goroutine of its own over a transport that can start calls, feeds the replies back one at a time in
// the order they arrive, wakes the round at its deadline, cancels the
// calls it gave up on, and stops it when ctx ends. When decided is not
// nil, it receives the round's error once the round is decided (a
// [writeRound]'s Err). Successful hints are counted as stored. Every
// goroutine it started has ended when it returns.
func (r *replicator) drive(ctx context.Context, rd round, first []call, req func(c call) *request, decided chan<- error) {
	type result struct {
		id   int
		resp response
		err  error
	}
	var (
		wg      sync.WaitGroup
		results = make(chan result, 4) // room for a round's usual calls: a delivery seldom waits
		done    = make(chan struct{})
		cancels []context.CancelFunc // by call id (a round numbers its calls 0, 1, ...); nil once cancelled
		calls   []call               // by call id
	)
	defer func() {
		close(done)
		for _, cancel := range cancels {
			if cancel != nil {
				cancel()
			}
		}
		wg.Wait()
	}()
	start := func(cs []call) {
		// Last to first: a read's first target is this node, whose own
		// read runs inline, once the others' calls have left.
		for _, c := range slices.Backward(cs) {
			cctx, cancel := context.WithCancel(ctx)
			for len(calls) <= c.id {
				calls, cancels = append(calls, call{}), append(cancels, nil)
			}
			cancels[c.id], calls[c.id] = cancel, c
			wg.Add(1)
			r.peers.start(cctx, c.to, req(c), func(resp response, err error) {
				defer wg.Done()
				res := result{c.id, resp, err}
				select {
				case results <- res:
				case <-done:
				default: // the loop is busy: hand it over from a goroutine
					wg.Add(1)
					go func() {
						defer wg.Done()
						select {
						case results <- res:
						case <-done:
						}
					}()
				}
			})
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	start(first)
	for {
		if decided != nil && rd.Decided() {
			if w, ok := rd.(*writeRound); ok {
				decided <- w.Err()
			}
			decided = nil
		}
		if rd.Done() {
			return
		}
		var tick <-chan time.Time
		if d := rd.Deadline(); !d.IsZero() {
			timer.Reset(time.Until(d))
			tick = timer.C
		}
		select {
		case res := <-results:
			if res.err == nil && calls[res.id].hint != "" {
				r.stats.hintsStored.Add(1)
			}
			start(rd.Reply(time.Now(), res.id, res.resp, res.err))
		case <-tick:
			start(rd.Tick(time.Now()))
		case <-ctx.Done():
			rd.Stop(context.Cause(ctx))
		}
		timer.Stop()
		open := rd.Open()
		for id, cancel := range cancels {
			if cancel != nil && !slices.Contains(open, id) {
				cancel()
				cancels[id] = nil
			}
		}
	}
}
