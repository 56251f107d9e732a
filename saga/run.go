package saga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// run is one saga driven by an Orchestrator: by Run, Recover or Cancel.
// Its driver goroutine, and the goroutines of a group's members, make
// every move through append, under mu, so the log holds the records of
// the saga in the order the state applied them.
type run struct {
	o      *Orchestrator
	id     string
	parent context.Context // the caller's: when it ends, the saga is abandoned
	logCtx context.Context // parent without its cancellation, for appends

	mu sync.Mutex
	// ctx is the context of the calls of Do and Undo: parent's, ended
	// also by Close (closing) and by Cancel (cancelled; the backward
	// phase then gets a new one).
	ctx     context.Context
	cancel  context.CancelCauseFunc
	closing bool
	s       *state
	st      state // s, without an allocation of its own
	x       Exec  // the Exec of the attempts of a stage of one step
	// dead is the error of a failed append (or of a record the state
	// refused): the run is over and appends nothing more, so the log
	// holds a prefix of the history, as after a crash.
	dead error
	// cancelled is set by Cancel; settled, made by the first Cancel,
	// is closed once the cancellation is logged or the run ends.
	cancelled    bool
	cancelLogged bool
	settled      chan struct{}
	exited       bool
}

func newRun(o *Orchestrator, ctx context.Context, id string) *run {
	r := &run{o: o, id: id, parent: ctx, logCtx: ctx}
	if ctx.Done() != nil {
		r.logCtx = context.WithoutCancel(ctx)
	}
	r.ctx, r.cancel = context.WithCancelCause(ctx)
	return r
}

// abandonedLocked reports whether the caller's ctx ended or Close gave
// up: the saga must stop where it stands. r.mu is held.
func (r *run) abandonedLocked() bool { return r.closing || r.parent.Err() != nil }

// close ends the run's context for Close.
func (r *run) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closing = true
	r.cancel(ErrClosed)
}

// renewLocked gives the backward phase a live context after Cancel ended
// the forward phase's. r.mu is held.
func (r *run) renewLocked() {
	if r.ctx.Err() != nil && !r.abandonedLocked() {
		r.ctx, r.cancel = context.WithCancelCause(r.parent)
	}
}

// load replays the saga's records.
func (r *run) load(recs []Record) error {
	p, err := r.o.plan(recs[0].Def)
	if err != nil {
		return fmt.Errorf("saga %q: %w", r.id, err)
	}
	s, err := replay(p, recs)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.s = s
	r.mu.Unlock()
	return nil
}

func (r *run) append(rec Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.appendLocked(rec)
}

// appendLocked applies rec to the state and writes it to the log. r.mu
// is held.
func (r *run) appendLocked(rec Record) error {
	if r.dead != nil {
		return r.dead
	}
	if err := r.s.apply(rec); err != nil {
		r.dead = err // a bug: the driver never makes an illegal move
		return err
	}
	if err := r.o.log.Append(r.logCtx, rec); err != nil {
		r.dead = fmt.Errorf("saga %q: append %s: %w", r.id, rec.Kind, err)
		return r.dead
	}
	if rec.Kind == KindCancelled {
		r.cancelLogged = true
		r.closeSettled()
	}
	return nil
}

// requestCancel asks the driver to cancel the saga. It returns a channel
// closed once that is logged or the run ends, errRunExited if the run
// ended before it was asked, or nil and the answer when there is nothing
// to wait for.
func (r *run) requestCancel() (<-chan struct{}, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.cancelLogged:
		return nil, nil
	case r.s != nil && r.s.final != 0 && r.dead == nil:
		return nil, fmt.Errorf("%w: %q ended %s", ErrEnded, r.id, r.s.final)
	case r.s != nil && r.s.compensating && r.dead == nil:
		return nil, nil
	case r.exited && r.cancelled && r.s == nil: // stopped before its saga was logged
		return nil, nil
	case r.exited:
		return errRunExited, nil
	}
	r.cancelled = true
	if r.settled == nil {
		r.settled = make(chan struct{})
	}
	r.cancel(ErrCancelled)
	return r.settled, nil
}

// errRunExited is what requestCancel returns for a run that ended.
var errRunExited = make(chan struct{})

func (r *run) closeSettled() {
	if r.settled != nil {
		select {
		case <-r.settled:
		default:
			close(r.settled)
		}
	}
}

// exit ends the run, and tells a Cancel that waits for it.
func (r *run) exit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cancel(nil)
	r.exited = true
	r.closeSettled()
}

// abandoned is the error of a run that stopped where it stood. r.mu is
// held.
func (r *run) abandoned() error {
	cause := context.Cause(r.parent)
	if r.closing {
		cause = ErrClosed
	}
	return fmt.Errorf("%w: saga %q left open for Recover: %w", ErrAbandoned, r.id, cause)
}

// cancelRecord is the record that cancels s, going forward.
func (s *state) cancelRecord() Record {
	step := len(s.nodes)
	if s.stage < len(s.plan.stages) {
		step = s.plan.stages[s.stage].first
	}
	return Record{Kind: KindCancelled, Saga: s.id, Step: step, Err: "cancelled"}
}

// drive moves the saga to its end, one logged record at a time.
func (r *run) drive() (Outcome, error) {
	var cause, last error // the in-process errors behind s.cause and the stuck step's last error
	for {
		r.mu.Lock()
		s := r.s
		var rec Record
		switch {
		case s.final != 0:
		case r.dead != nil:
			err := r.dead
			r.mu.Unlock()
			return 0, err
		case r.abandonedLocked():
			err := r.abandoned()
			r.mu.Unlock()
			return 0, err
		case !s.compensating && r.cancelled:
			rec = s.cancelRecord()
			r.o.logger.Info("saga: cancelled, compensating", "saga", s.id, "stage", s.stage)
		case !s.compensating && s.stage == len(s.plan.stages):
			rec = Record{Kind: KindCommitted, Saga: s.id}
		case s.compensating && s.stage < 0:
			rec = Record{Kind: KindCompensated, Saga: s.id}
		case s.compensating:
			r.renewLocked()
		}
		r.mu.Unlock()
		if s.final != 0 {
			break
		}
		if rec.Kind == 0 {
			if s.compensating {
				rec = r.backward(&last)
			} else {
				rec = r.forward(&cause)
			}
			if rec.Kind == 0 {
				continue // the stage moved on, or stopped: look again
			}
		}
		if err := r.append(rec); err != nil {
			return 0, err
		}
	}
	s := r.s
	switch s.final {
	case KindCommitted:
		return Committed, nil
	case KindCompensated:
		if s.cancelled {
			return Compensated, fmt.Errorf("saga %q compensated: %w", s.id, ErrCancelled)
		}
		return Compensated, &StepError{s.id, s.plan.nodes[s.failed].step.Name, cmp.Or(cause, errors.New(s.cause))}
	}
	p := &s.nodes[s.stuck]
	e := &StuckError{s.id, s.plan.nodes[s.stuck].step.Name, p.undoAttempts,
		cmp.Or(last, lastError(p.lastErr, p.undoAttempts, p.undoInFlight)), s.cause}
	r.o.logger.Error("saga: stuck, compensation needs an operator", "saga", s.id, "definition", s.plan.def.Name,
		"step", e.Step, "attempts", e.Attempts, "err", e.Err, "cause", s.cause)
	return Stuck, e
}

// nodeEnd is how a node's loop ended.
type nodeEnd int

const (
	finished nodeEnd = iota // Do, or Undo, succeeded
	gaveUp                  // no attempt left: the forward phase compensates, or the saga is Stuck
	stopped                 // the saga was abandoned, cancelled, a sibling gave up, or the log failed
	attempt                 // not an end: nextAttempt's answer when the loop goes on
)

type nodeResult struct {
	end nodeEnd
	err error // gaveUp: the last error
	// permanent: the attempt that gave up failed Permanent and is still
	// in flight in the log; the Compensating record says so.
	permanent bool
}

// forward runs the steps of the current stage that have not succeeded,
// and returns the record that ends the forward phase if one of them gave
// up, or no record.
func (r *run) forward(cause *error) Record {
	r.mu.Lock()
	if r.cancelled || r.dead != nil {
		r.mu.Unlock()
		return Record{}
	}
	rctx := r.ctx
	st := r.s.plan.stages[r.s.stage]
	r.mu.Unlock()
	n, res := r.runStage(rctx, st, func(n int) bool { return !r.s.nodes[n].done })
	r.mu.Lock()
	defer r.mu.Unlock()
	if res.end != gaveUp || rctx.Err() != nil || r.dead != nil {
		return Record{}
	}
	*cause = res.err
	if r.o.logger.Enabled(r.logCtx, slog.LevelInfo) { // spare the arguments' allocations
		r.o.logger.Info("saga: compensating", "saga", r.id, "step", r.s.plan.nodes[n].step.Name,
			"attempts", r.s.nodes[n].attempts, "err", res.err)
	}
	return Record{Kind: KindCompensating, Saga: r.id, Step: n, Err: res.err.Error(), Permanent: res.permanent}
}

// runStage makes the attempts of the nodes of stage st that want them
// (asked with r.mu held): of a stage of one step in this goroutine, of a
// group's members concurrently, stopping the others once one gives up.
// It returns the first node that gave up, by position, and its result,
// or a result that is not gaveUp. If a member panics, runStage stops
// the others, waits for them and panics with the same value.
func (r *run) runStage(ctx context.Context, st stage, want func(n int) bool) (int, nodeResult) {
	if !st.parallel() {
		return st.first, r.attempts(ctx, st.first, &r.x)
	}
	return r.runGroup(ctx, st, want)
}

// runGroup is runStage for a group.
func (r *run) runGroup(ctx context.Context, st stage, want func(n int) bool) (int, nodeResult) {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	results := make([]nodeResult, st.end-st.first)
	var wg sync.WaitGroup
	var crash panics
	for n := st.first; n < st.end; n++ {
		r.mu.Lock()
		ok := want(n)
		r.mu.Unlock()
		if !ok {
			continue
		}
		wg.Go(func() {
			defer crash.capture(stop)
			res := r.attempts(ctx, n, new(Exec))
			if res.end == gaveUp {
				stop(errSiblingFailed)
			}
			results[n-st.first] = res
		})
	}
	wg.Wait()
	crash.reraise()
	for i, res := range results {
		if res.end == gaveUp {
			return st.first + i, res
		}
	}
	return st.first, nodeResult{end: finished}
}

// errSiblingFailed stops the other steps of a group when one gives up.
var errSiblingFailed = errors.New("saga: another step of the group failed")

// attempts makes attempts of node n's Do (going forward) or Undo
// (compensating) until one succeeds, the node gives up, or ctx ends. Going
// forward, a Permanent failure of a step alone is logged by the
// Compensating record that follows it; a group's member logs it as a
// StepFailed record.
func (r *run) attempts(ctx context.Context, n int, x *Exec) nodeResult {
	nd := &r.s.plan.nodes[n]
	fn, policy, done, failed, what := nd.step.Do, nd.step.Retry, KindStepDone, KindStepFailed, "saga: step failed"
	backward := r.s.compensating // fixed while a stage runs
	if backward {
		fn, policy, done, failed, what = nd.step.Undo, nd.undo, KindUndoDone, KindUndoFailed, "saga: undo failed"
	}
	alone := !r.s.plan.stages[nd.stage].parallel()
	waited := false
	var last error
	for {
		res, wait := r.nextAttempt(ctx, n, x, &waited, last)
		switch {
		case wait > 0:
			if !r.sleep(ctx, policy, wait) {
				return nodeResult{end: stopped}
			}
			continue
		case res.end != attempt:
			return res
		}
		err := call(ctx, fn, nd.step.Timeout, x)
		if err != nil && ctx.Err() != nil {
			return nodeResult{end: stopped} // the attempt stays in flight: its effect is unknown
		}
		rec := Record{Kind: done, Saga: r.id, Step: n, Attempt: x.Attempt}
		switch {
		case err == nil:
			rec.Bag = x.entries()
		case IsPermanent(err) && alone && !backward:
			return nodeResult{end: gaveUp, err: err, permanent: true}
		default:
			rec.Kind, rec.Err, rec.Permanent = failed, err.Error(), IsPermanent(err)
			if r.o.logger.Enabled(r.logCtx, slog.LevelWarn) {
				r.o.logger.Warn(what, "saga", r.id, "step", nd.step.Name, "attempt", x.Attempt, "err", err)
			}
		}
		if r.append(rec) != nil {
			return nodeResult{end: stopped}
		}
		if err == nil {
			return nodeResult{end: finished}
		}
		last, waited = err, false
	}
}

// nextAttempt decides node n's next move, of Do going forward and of
// Undo compensating: an attempt, which it logs and fills x for (res.end
// is attempt); a wait after wait failed attempts (once per failure:
// *waited); or the end of the node's loop, res. last is the in-process
// error of the last failed attempt, if any.
func (r *run) nextAttempt(ctx context.Context, n int, x *Exec, waited *bool, last error) (res nodeResult, wait int) {
	r.mu.Lock()
	defer r.mu.Unlock() // also if the log panics
	p, nd := &r.s.nodes[n], &r.s.plan.nodes[n]
	kind, attempts, inFlight, limit, over := KindStepStarted, p.attempts, p.inFlight, nd.step.Retry.Attempts(), p.gaveUp
	if r.s.compensating {
		kind, attempts, inFlight, limit, over = KindUndoStarted, p.undoAttempts, p.undoInFlight, nd.undo.Attempts(), p.undoPerm
	}
	switch {
	case ctx.Err() != nil:
		return nodeResult{end: stopped}, 0
	case p.undone:
		return nodeResult{end: finished}, 0
	case over || attempts >= limit:
		return nodeResult{end: gaveUp, err: cmp.Or(last, lastError(p.lastErr, attempts, inFlight))}, 0
	case attempts > 0 && !inFlight && !*waited:
		*waited = true
		return nodeResult{end: attempt}, attempts
	}
	*x = r.s.exec(n)
	if r.appendLocked(Record{Kind: kind, Saga: r.id, Step: n, Attempt: x.Attempt}) != nil {
		return nodeResult{end: stopped}, 0
	}
	return nodeResult{end: attempt}, 0
}

// lastError is the error a step gave up with, from the log.
func lastError(msg string, attempts int, inFlight bool) error {
	if inFlight || msg == "" {
		return fmt.Errorf("attempt %d interrupted", attempts)
	}
	return errors.New(msg)
}

// backward runs the Undos of the current stage's steps that may have
// taken effect, and returns a Stuck record if one of them gave up, or no
// record.
func (r *run) backward(last *error) Record {
	r.mu.Lock()
	rctx := r.ctx
	st := r.s.plan.stages[r.s.stage]
	r.mu.Unlock()
	n, res := r.runStage(rctx, st, r.s.needsUndo)
	r.mu.Lock()
	defer r.mu.Unlock()
	if res.end != gaveUp || rctx.Err() != nil || r.dead != nil {
		return Record{}
	}
	*last = res.err
	return Record{Kind: KindStuck, Saga: r.id, Step: n}
}

// call runs fn with the step's timeout.
func call(ctx context.Context, fn func(context.Context, *Exec) error, timeout time.Duration, x *Exec) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return fn(ctx, x)
}

// sleep waits a jittered time of at most p's ceiling after n failed
// attempts, and reports whether ctx is still live. It uses a timer, so
// it runs in virtual time under testing/synctest.
func (r *run) sleep(ctx context.Context, p RetryPolicy, n int) bool {
	if d := r.o.jitter(p.Ceiling(n)); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	return ctx.Err() == nil
}
