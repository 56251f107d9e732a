package kv

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distkit/distkit/quorum"
)

// The coordinator core: the decisions of one read or one write's fan-out,
// as pure state machines in the style of swim.Core. A round takes the
// time and the replies as arguments and returns the calls to make; it
// takes no lock, does no I/O, starts no goroutine and never reads the
// clock. Its driver ([Node.drive]) makes the calls, feeds their replies
// back in the order it receives them and wakes it at its Deadline. Every
// choice a round makes (which replica next, which fallback for which
// replica, when a call has timed out) follows from its inputs alone, so a
// run that feeds the same replies at the same times makes the same calls.

// call is one replica RPC a round asks its driver to make: to node to, a
// write as a hint for the home replica hint when hint is set.
type call struct {
	id   int // the round's number for the call, to report its reply with
	to   string
	hint string
}

// round is a coordinator core as its driver sees it.
type round interface {
	// Reply reports the outcome of call id at now and returns the calls
	// to make next. A reply to a call the round gave up on is ignored.
	Reply(now time.Time, id int, resp response, err error) []call
	// Tick handles the time now (timeouts, hedging) and returns the calls
	// to make next.
	Tick(now time.Time) []call
	// Stop ends the round at once with err, for a caller that gave up.
	Stop(err error)
	// Deadline is when the round next wants a Tick; zero: never.
	Deadline() time.Time
	// Decided reports whether the round's outcome is known; Done whether
	// it expects no more replies.
	Decided() bool
	Done() bool
	// Open returns the calls still awaited, for the driver to cancel those
	// the round gave up on.
	Open() []int
}

// readRound coordinates one read: it calls targets in order (this node
// first when it is a home replica, then live home replicas, then the
// others, then fallbacks), need at first and one more for each failure
// and, with hedge > 0, for each hedge that elapses undecided, each call
// timing out after timeout; it succeeds with need replies and fails as
// soon as need became impossible.
type readRound struct {
	targets   []string
	need      int
	timeout   time.Duration
	hedge     time.Duration
	nextHedge time.Time // zero: no more hedging

	want, started     int         // calls to start in all; started so far
	until             []time.Time // per started call: its timeout; zero once it returned
	ok                []bool      // per started call: it succeeded
	replies           []response  // per started call
	succeeded, failed int
	errs              []error
	err               error // the outcome, once decided
	done              bool
}

var _ round = (*readRound)(nil)

// readTargets returns the order in which a read of key by node self
// under p calls replicas: self first when it is a home replica (the
// cheapest read), then the home replicas up says are up, then the others,
// then the fallbacks.
func readTargets(p *placement, key []byte, self string, up func(id string) bool) []string {
	home, fallbacks := p.of(key)
	targets := make([]string, 0, len(home)+len(fallbacks))
	if slices.Contains(home, self) {
		targets = append(targets, self)
	}
	for _, live := range []bool{true, false} {
		for _, h := range home {
			if h != self && up(h) == live {
				targets = append(targets, h)
			}
		}
	}
	return append(targets, fallbacks...)
}

// newReadRound starts a read of need replies from targets at now and
// returns it with its first calls.
func newReadRound(now time.Time, targets []string, need int, timeout, hedge time.Duration) (*readRound, []call) {
	r := &readRound{targets: targets, need: need, timeout: timeout, hedge: hedge, want: need}
	if need > len(targets) {
		r.stop(fmt.Errorf("%w: need %d replies from %d replicas", quorum.ErrNoQuorum, need, len(targets)))
		return r, nil
	}
	if hedge > 0 && need < len(targets) {
		r.nextHedge = now.Add(hedge)
	}
	return r, r.start(now)
}

func (r *readRound) start(now time.Time) []call {
	var out []call
	for ; r.started < min(r.want, len(r.targets)); r.started++ {
		out = append(out, call{id: r.started, to: r.targets[r.started]})
		r.until = append(r.until, now.Add(r.timeout))
		r.ok = append(r.ok, false)
		r.replies = append(r.replies, response{})
	}
	return out
}

func (r *readRound) Reply(now time.Time, id int, resp response, err error) []call {
	if r.done || id < 0 || id >= r.started || r.until[id].IsZero() {
		return nil
	}
	r.until[id] = time.Time{}
	if err == nil {
		r.ok[id], r.replies[id] = true, resp
		if r.succeeded++; r.succeeded == r.need {
			r.stop(nil)
		}
		return nil
	}
	return r.fail(now, id, err)
}

// fail counts call id as failed with err and returns the call replacing
// it.
func (r *readRound) fail(now time.Time, id int, err error) []call {
	r.failed++
	r.errs = append(r.errs, fmt.Errorf("replica %q: %w", r.targets[id], err))
	if r.failed > len(r.targets)-r.need {
		r.stop(fmt.Errorf("%w: %d of %d replicas succeeded, need %d", quorum.ErrNoQuorum, r.succeeded, len(r.targets), r.need))
		return nil
	}
	r.want++
	return r.start(now)
}

func (r *readRound) Tick(now time.Time) []call {
	var out []call
	for id, t := range r.until {
		if !r.done && !t.IsZero() && !now.Before(t) {
			r.until[id] = time.Time{}
			out = append(out, r.fail(now, id, errTimeout)...)
		}
	}
	for !r.done && !r.nextHedge.IsZero() && !now.Before(r.nextHedge) {
		r.want++
		r.nextHedge = r.nextHedge.Add(r.hedge)
		if r.want >= len(r.targets) {
			r.nextHedge = time.Time{}
		}
		out = append(out, r.start(now)...)
	}
	return out
}

// errTimeout is the failure of a call its round gave up waiting for.
var errTimeout = errors.New("no reply within the timeout")

func (r *readRound) Stop(err error) {
	if !r.done {
		r.stop(fmt.Errorf("%w after %d of %d needed successes: %w", quorum.ErrNoQuorum, r.succeeded, r.need, err))
	}
}

func (r *readRound) stop(err error) {
	r.done = true
	if err != nil {
		err = errors.Join(append([]error{err}, r.errs...)...)
	}
	r.err = err
}

func (r *readRound) Deadline() time.Time {
	if r.done {
		return time.Time{}
	}
	d := r.nextHedge
	for _, t := range r.until {
		if !t.IsZero() && (d.IsZero() || t.Before(d)) {
			d = t
		}
	}
	return d
}

func (r *readRound) Decided() bool { return r.done }
func (r *readRound) Done() bool    { return r.done }

func (r *readRound) Open() []int {
	var out []int
	for id, t := range r.until {
		if !t.IsZero() {
			out = append(out, id)
		}
	}
	return out
}

// Result returns the merge of the replies and the home replicas among
// home whose reply was not that merge (they get it by read repair), or
// the round's error. It is valid once the round is done.
func (r *readRound) Result(home []string) (merged Object, stale []string, err error) {
	if r.err != nil {
		return Object{}, nil, r.err
	}
	for id, ok := range r.ok {
		if ok {
			merged.Sync(r.replies[id].Object)
		}
	}
	want, err := EncodeObject(merged)
	if err != nil {
		return merged, nil, nil // no repair for what cannot be compared
	}
	for id, ok := range r.ok {
		if !ok || !slices.Contains(home, r.targets[id]) {
			continue
		}
		if got, err := EncodeObject(r.replies[id].Object); err != nil || !bytes.Equal(got, want) {
			stale = append(stale, r.targets[id])
		}
	}
	return merged, stale, nil
}

// writeRound is one write's fan-out: it sends an object to each of its
// targets (the key's other home replicas, or the new replicas of a
// rebalance or a handover) and, for a target that is down or fails, to a
// fallback with a hint for it, until every target is settled or the
// round's deadline passed. Fallbacks are assigned up front: the i-th
// target's first is the i-th live fallback; the fallbacks left over are
// spares, taken in target order by targets whose own fallback failed
// too, and a target that took the write itself gives up its fallback to
// the spares. No fallback takes two targets' copies, so the copies of a
// write that count towards its quorum are on distinct nodes.
//
// The round is decided once need targets took the write (success) or too
// few are left to reach need (failure); it goes on to its end either
// way, so that every target gets its copy.
type writeRound struct {
	need     int
	deadline time.Time
	targets  []writeTarget
	spares   []string
	calls    []call // every call made, by id
	open     []bool // per call: awaited
	acked    int    // targets that took it
	failed   int    // targets settled without a copy
	hints    int    // targets whose copy a fallback took
	stopped  error
}

var _ round = (*writeRound)(nil)

// writeTarget is one target's progress.
type writeTarget struct {
	id       string
	fallback string // its own fallback, "" once used or given up
	settled  bool
	took     bool // its copy was taken, by it or a fallback
	errs     []error
}

// newWriteRound starts the fan-out at now to targets, of which those not
// up are skipped to their fallbacks at once, with the live fallbacks
// fallbacks, wanting need acknowledgements within timeout, and returns
// it with its first calls.
func newWriteRound(now time.Time, targets, fallbacks []string, up func(id string) bool, need int, timeout time.Duration) (*writeRound, []call) {
	w := &writeRound{need: need, deadline: now.Add(timeout)}
	for i, t := range targets {
		wt := writeTarget{id: t}
		if i < len(fallbacks) {
			wt.fallback = fallbacks[i]
		}
		w.targets = append(w.targets, wt)
	}
	if len(fallbacks) > len(targets) {
		w.spares = fallbacks[len(targets):]
	}
	var out []call
	for i, t := range targets {
		if up(t) {
			out = append(out, w.send(i, t, ""))
			continue
		}
		w.targets[i].errs = append(w.targets[i].errs, fmt.Errorf("%s believed down", t))
		out = append(out, w.next(i)...)
	}
	return w, append(out, w.rescue()...)
}

// send records a call of target i's copy to node to.
func (w *writeRound) send(i int, to, hint string) call {
	c := call{id: len(w.calls), to: to, hint: hint}
	w.calls = append(w.calls, c)
	w.open = append(w.open, true)
	return c
}

// target returns the index of the target call c is for.
func (w *writeRound) target(c call) int {
	id := c.to
	if c.hint != "" {
		id = c.hint
	}
	for i, t := range w.targets {
		if t.id == id {
			return i
		}
	}
	return -1
}

// next sends target i's copy to its own fallback or a spare; with
// neither, it waits for a fallback another target gives up, or fails
// when none can come.
func (w *writeRound) next(i int) []call {
	t := &w.targets[i]
	fb := t.fallback
	t.fallback = ""
	if fb == "" && len(w.spares) > 0 {
		fb, w.spares = w.spares[0], w.spares[1:]
	}
	if fb != "" {
		return []call{w.send(i, fb, t.id)}
	}
	return nil // waiting: rescue settles it
}

// rescue hands spares to targets waiting for one, in target order, and
// fails those that wait while no fallback can be given up any more.
func (w *writeRound) rescue() []call {
	var out []call
	for {
		waiting, promised := -1, false
		for i := range w.targets {
			t := &w.targets[i]
			switch {
			case t.settled:
			case w.pending(i):
				promised = promised || t.fallback != ""
			case waiting < 0:
				waiting = i
			}
		}
		switch {
		case waiting < 0:
			return out
		case len(w.spares) > 0:
			out = append(out, w.next(waiting)...)
		case promised:
			return out
		default:
			w.settle(waiting, false)
		}
	}
}

// pending reports whether a call for target i is awaited.
func (w *writeRound) pending(i int) bool {
	for id, c := range w.calls {
		if w.open[id] && w.target(c) == i {
			return true
		}
	}
	return false
}

func (w *writeRound) settle(i int, ok bool) {
	t := &w.targets[i]
	t.settled, t.took = true, ok
	if ok {
		w.acked++
		if t.fallback != "" {
			w.spares = append(w.spares, t.fallback)
			t.fallback = ""
		}
		return
	}
	w.failed++
}

func (w *writeRound) Reply(now time.Time, id int, _ response, err error) []call {
	if w.Done() || id < 0 || id >= len(w.calls) || !w.open[id] {
		return nil
	}
	w.open[id] = false
	c := w.calls[id]
	i := w.target(c)
	if err == nil {
		if c.hint != "" {
			w.hints++
		}
		w.settle(i, true)
		return w.rescue()
	}
	t := &w.targets[i]
	if c.hint != "" {
		t.errs = append(t.errs, fmt.Errorf("fallback %s: %w", c.to, err))
	} else {
		t.errs = append(t.errs, err)
	}
	return append(w.next(i), w.rescue()...)
}

func (w *writeRound) Tick(now time.Time) []call {
	if !w.Done() && !now.Before(w.deadline) {
		w.Stop(errTimeout)
	}
	return nil
}

func (w *writeRound) Stop(err error) {
	for id, open := range w.open {
		if open {
			w.open[id] = false
			i := w.target(w.calls[id])
			w.targets[i].errs = append(w.targets[i].errs, err)
		}
	}
	for i := range w.targets {
		if !w.targets[i].settled {
			w.settle(i, false)
		}
	}
	w.stopped = err
}

func (w *writeRound) Deadline() time.Time {
	if w.Done() {
		return time.Time{}
	}
	return w.deadline
}

func (w *writeRound) Decided() bool {
	return w.acked >= w.need || w.acked+len(w.targets)-w.acked-w.failed < w.need
}

func (w *writeRound) Done() bool { return w.acked+w.failed == len(w.targets) }

func (w *writeRound) Open() []int {
	var out []int
	for id, open := range w.open {
		if open {
			out = append(out, id)
		}
	}
	return out
}

// Err returns nil once need targets took the write, and otherwise an
// error wrapping quorum.ErrNoQuorum with every failed target's errors.
func (w *writeRound) Err() error {
	if w.acked >= w.need {
		return nil
	}
	errs := []error{fmt.Errorf("%w: %d of %d replicas succeeded, need %d", quorum.ErrNoQuorum, w.acked, len(w.targets), w.need)}
	for _, t := range w.targets {
		switch {
		case t.took:
		case len(t.errs) == 0:
			errs = append(errs, fmt.Errorf("replica %q: no answer yet", t.id))
		default:
			errs = append(errs, fmt.Errorf("replica %q: %w", t.id, errors.Join(t.errs...)))
		}
	}
	return errors.Join(errs...)
}

// Outcome returns, per target, whether its copy was taken, and the
// errors of those whose copy no node took. It is valid once the round is
// done.
func (w *writeRound) Outcome() (taken []string, failed map[string]error) {
	for _, t := range w.targets {
		if t.took {
			taken = append(taken, t.id)
			continue
		}
		if failed == nil {
			failed = map[string]error{}
		}
		failed[t.id] = errors.Join(t.errs...)
	}
	return taken, failed
}
