package kv

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/distkit/distkit/quorum"
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
// to the other home replicas (driven by the write's coordinator until
// its quorum is decided, then in the background), the copies a
// rebalance or a handover places, hints on fallbacks for the replicas
// that cannot take a copy, the hand-on of held hints, and read repair.
// Its decisions are a [writeRound]'s; it does the I/O of every round,
// reads' included, with a [fanOut]. It is safe for concurrent use.
type replicator struct {
	self    string
	peers   peers
	bg      background
	store   *Store
	timeout time.Duration
	stats   *nodeStats
	log     *slog.Logger
}

// background is the node's background work, which its Close waits for.
type background interface {
	// spawn runs f on a background goroutine, unless Close has begun:
	// then it reports false.
	spawn(f func()) bool
	// hold counts a piece of background work until release, unless
	// Close has begun: then it reports false.
	hold() bool
	release()
}

var _ background = (*Node)(nil)

// replicate starts sending the object o of key to targets, each call
// bounded by the node's timeout, with hints on the live ones of
// fallbacks for those down or failing, until need of them hold it, and
// returns the fan-out, whose [fanOut.wait] or [fanOut.detach] drives it
// on. It starts the calls on the caller's goroutine without waiting for
// any, so that the copies leave at once (a write's group commit calls it
// before its sync). Once the node's Close began it starts none: the
// fan-out has failed with ErrUnavailable.
func (r *replicator) replicate(ctx context.Context, key []byte, o Object, targets, fallbacks []string, need int) *fanOut {
	rd, first := newWriteRound(time.Now(), targets, r.live(fallbacks), r.peers.Alive, need, r.timeout)
	f := r.begin(context.WithoutCancel(ctx), rd, r.request(key, o))
	if !r.bg.hold() {
		rd.Stop(fmt.Errorf("%w: %s is shutting down", ErrUnavailable, r.self))
		return f // done: its wait or detach ends it at once
	}
	f.held = true
	f.start(first)
	return f
}

// place sends the object o of key to every one of targets, with hints
// on the live ones of fallbacks for those down or failing, within the
// node's timeout, and returns which targets' copies were taken and the
// errors of the others.
func (r *replicator) place(ctx context.Context, key []byte, o Object, targets, fallbacks []string) (taken []string, failed map[string]error) {
	rd, first := newWriteRound(time.Now(), targets, r.live(fallbacks), r.peers.Alive, len(targets), r.timeout)
	r.drive(ctx, rd, first, r.request(key, o))
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
		r.bg.spawn(func() {
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

// drive runs the round rd, whose first calls are first, to its end on
// the caller's goroutine (see [fanOut]). Every goroutine it started has
// ended when it returns.
func (r *replicator) drive(ctx context.Context, rd round, first []call, req func(c call) *request) {
	f := r.begin(ctx, rd, req)
	f.start(first)
	f.run(false, nil)
	f.end()
}

// fanOut does the I/O of a round: it starts each call the round asks
// for (the request req builds), with no goroutine of its own over a
// transport that can start calls, feeds the replies back one at a time
// in the order they arrive, wakes the round at its deadline, cancels the
// calls it gave up on, and stops it when ctx ends. Successful hints are
// counted as stored. One goroutine at a time runs it, and hands it to
// the next with a happens-before edge: a write's is started by the
// goroutine committing the write, driven by its coordinator until
// decided ([fanOut.wait]), then by a background goroutine to its end.
type fanOut struct {
	r    *replicator
	ctx  context.Context
	rd   round
	req  func(c call) *request
	held bool // the node's Close waits for its end

	wg      sync.WaitGroup // the calls' deliveries
	results chan fanOutResult
	done    chan struct{}        // closed at its end: late deliveries are dropped
	cancels []context.CancelFunc // by call id (a round numbers its calls 0, 1, ...); nil once cancelled
	calls   []call               // by call id
	timer   *time.Timer
	// The first calls' entries, so that a round of the usual few calls
	// allocates no slices.
	cancelsBuf [4]context.CancelFunc
	callsBuf   [4]call
}

type fanOutResult struct {
	id   int
	resp response
	err  error
}

func (r *replicator) begin(ctx context.Context, rd round, req func(c call) *request) *fanOut {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	f := &fanOut{r: r, ctx: ctx, rd: rd, req: req, timer: timer,
		results: make(chan fanOutResult, 4), // room for a round's usual calls: a delivery seldom waits
		done:    make(chan struct{})}
	f.cancels, f.calls = f.cancelsBuf[:0], f.callsBuf[:0]
	return f
}

// start starts the calls cs.
func (f *fanOut) start(cs []call) {
	// Last to first: a read's first target is this node, whose own read
	// runs inline, once the others' calls have left.
	for _, c := range slices.Backward(cs) {
		cctx, cancel := context.WithCancel(f.ctx)
		for len(f.calls) <= c.id {
			f.calls, f.cancels = append(f.calls, call{}), append(f.cancels, nil)
		}
		f.cancels[c.id], f.calls[c.id] = cancel, c
		f.wg.Add(1)
		f.r.peers.start(cctx, c.to, f.req(c), func(resp response, err error) {
			defer f.wg.Done()
			res := fanOutResult{c.id, resp, err}
			select {
			case f.results <- res:
			case <-f.done:
			default: // the loop is busy: hand it over from a goroutine
				f.wg.Add(1)
				go func() {
					defer f.wg.Done()
					select {
					case f.results <- res:
					case <-f.done:
					}
				}()
			}
		})
	}
}

// run feeds the round its replies and deadlines until it is done, or,
// with untilDecided, until it is decided; it returns early, reporting
// false, when stop closes first, and otherwise reports whether the round
// is done.
func (f *fanOut) run(untilDecided bool, stop <-chan struct{}) bool {
	for {
		if f.rd.Done() || untilDecided && f.rd.Decided() {
			return f.rd.Done()
		}
		var tick <-chan time.Time
		if d := f.rd.Deadline(); !d.IsZero() {
			f.timer.Reset(time.Until(d))
			tick = f.timer.C
		}
		select {
		case res := <-f.results:
			if res.err == nil && f.calls[res.id].hint != "" {
				f.r.stats.hintsStored.Add(1)
			}
			f.start(f.rd.Reply(time.Now(), res.id, res.resp, res.err))
		case <-tick:
			f.start(f.rd.Tick(time.Now()))
		case <-f.ctx.Done():
			f.rd.Stop(context.Cause(f.ctx))
		case <-stop:
			f.timer.Stop()
			return false
		}
		f.timer.Stop()
		open := f.rd.Open()
		for id, cancel := range f.cancels {
			if cancel != nil && !slices.Contains(open, id) {
				cancel()
				f.cancels[id] = nil
			}
		}
	}
}

// end cancels the calls still open and waits for their deliveries.
func (f *fanOut) end() {
	close(f.done)
	for _, cancel := range f.cancels {
		if cancel != nil {
			cancel()
		}
	}
	f.wg.Wait()
	f.timer.Stop()
	if f.held {
		f.r.bg.release()
	}
}

// wait drives the fan-out of a write ([replicator.replicate]) on the
// caller's goroutine until its quorum is decided, and returns the
// round's error (nil: need targets hold the copy); or until ctx ends
// first, and returns an error of ErrNoQuorum. The copies go on after it
// returns, on a background goroutine.
func (f *fanOut) wait(ctx context.Context) error {
	done := f.run(true, ctx.Done())
	var err error
	if f.rd.Decided() { // read before another goroutine drives the round
		err = f.rd.(*writeRound).Err()
	} else {
		err = fmt.Errorf("%w: %w", quorum.ErrNoQuorum, context.Cause(ctx))
	}
	if done {
		f.end()
	} else {
		f.detach()
	}
	return err
}

// detach drives the fan-out to its end on a background goroutine.
func (f *fanOut) detach() {
	go func() {
		f.run(false, nil)
		f.end()
	}()
}
