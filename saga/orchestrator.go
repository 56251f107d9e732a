package saga

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Outcome is how a saga ended. The zero Outcome means none: the saga has
// not ended.
type Outcome int

// The outcomes of a saga.
const (
	Committed   Outcome = iota + 1 // every step succeeded
	Compensated                    // a step failed for good; every step that may have taken effect was undone
	Stuck                          // a compensation failed for good; an operator must intervene
)

// String returns "Committed", "Compensated", "Stuck", or "Outcome(n)".
func (o Outcome) String() string {
	switch o {
	case Committed:
		return "Committed"
	case Compensated:
		return "Compensated"
	case Stuck:
		return "Stuck"
	}
	return "Outcome(" + strconv.Itoa(int(o)) + ")"
}

// outcomeOf returns the outcome recorded by a saga's last record.
func outcomeOf(recs []Record) Outcome {
	if len(recs) == 0 {
		return 0
	}
	switch recs[len(recs)-1].Kind {
	case KindCommitted:
		return Committed
	case KindCompensated:
		return Compensated
	case KindStuck:
		return Stuck
	}
	return 0
}

var (
	// ErrDuplicate is returned by Run for a saga ID that is already in
	// the log or running.
	ErrDuplicate = errors.New("saga: duplicate saga ID")
	// ErrUnknownDefinition is returned by Run and Recover for a
	// definition name that was not registered.
	ErrUnknownDefinition = errors.New("saga: unknown definition")
	// ErrEmptyID is returned by Run for an empty saga ID.
	ErrEmptyID = errors.New("saga: empty saga ID")
	// ErrStuck is wrapped by every *StuckError.
	ErrStuck = errors.New("saga: stuck")
	// ErrAbandoned is wrapped by the error of Run, Recover and Cancel
	// when ctx ended, or Close gave up waiting, after the saga was in the
	// log and before it ended: the saga is left open in the log, as a
	// crash would leave it, for Recover.
	ErrAbandoned = errors.New("saga: abandoned before it ended")
	// ErrCancelled is wrapped by the error of a saga that [Orchestrator.Cancel]
	// stopped and that was then Compensated.
	ErrCancelled = errors.New("saga: cancelled")
	// ErrUnknownSaga is returned by Cancel for a saga ID the log does not
	// hold.
	ErrUnknownSaga = errors.New("saga: no such saga in the log")
	// ErrEnded is returned by Cancel for a saga that already ended.
	ErrEnded = errors.New("saga: saga already ended")
)

// StepError is the error of a saga that was Compensated: the step whose
// failure started the compensation, and its last error. After a Recover,
// Err only carries the text the log kept.
type StepError struct {
	Saga string
	Step string
	Err  error
}

func (e *StepError) Error() string {
	return fmt.Sprintf("saga %q compensated: step %q failed: %v", e.Saga, e.Step, e.Err)
}

// Unwrap returns Err.
func (e *StepError) Unwrap() error { return e.Err }

// StuckError is the error of a saga that is Stuck: the step whose Undo
// failed, how many times, its last error, and why the saga was
// compensating. It wraps [ErrStuck] and Err. Like StepError and
// CorruptError it is a plain value, returned for reading.
type StuckError struct {
	Saga     string
	Step     string
	Attempts int
	Err      error
	Cause    string
}

func (e *StuckError) Error() string {
	return fmt.Sprintf("saga %q stuck: undo of step %q gave up after attempt %d: %v (compensating because: %s)",
		e.Saga, e.Step, e.Attempts, e.Err, e.Cause)
}

// Unwrap returns [ErrStuck] and Err.
func (e *StuckError) Unwrap() []error { return []error{ErrStuck, e.Err} }

// Config configures an [Orchestrator]. The zero Config is ready to use.
type Config struct {
	// Logger receives step failures and retries (Warn), compensations
	// and recoveries (Info), and stuck sagas (Error). nil: discard.
	Logger *slog.Logger
	// MaxConcurrent bounds the sagas that Run, Recover and Cancel drive
	// at once; the others wait for a slot. 0: no bound.
	MaxConcurrent int
	// UndoRetry fills the zero fields of every Step.UndoRetry: its
	// MaxAttempts bounds the attempts of each Undo before the saga is
	// Stuck (0: [DefaultCompensationAttempts]), its Initial and Max pace
	// them (0: the defaults of [RetryPolicy]).
	UndoRetry RetryPolicy
	// Jitter picks the wait before a retry given its ceiling (see
	// [RetryPolicy]). nil: uniformly random in [0, ceiling), which is
	// full jitter. It must be safe for concurrent use.
	Jitter func(ceiling time.Duration) time.Duration
}

// DefaultCompensationAttempts is the attempts of each Undo when neither
// Step.UndoRetry nor Config.UndoRetry sets MaxAttempts.
const DefaultCompensationAttempts = 10

// Orchestrator runs sagas, writing their progress to a [Log] before
// acting on it, and recovers the sagas a crash left open.
//
// Only one Orchestrator may write to a Log at a time. An Orchestrator is
// safe for concurrent use; it must be created with [New].
type Orchestrator struct {
	log    Log
	logger *slog.Logger
	jitter func(time.Duration) time.Duration
	undo   RetryPolicy
	slots  chan struct{} // nil: no concurrency bound

	mu      sync.Mutex
	plans   map[string]*plan
	running map[string]*run
	closed  bool
	wg      sync.WaitGroup // running sagas
}

// New returns an orchestrator writing to log. It panics if log is nil,
// cfg.MaxConcurrent is negative or cfg.UndoRetry has a negative field.
func New(log Log, cfg Config) *Orchestrator {
	if log == nil {
		panic("saga: New with a nil Log")
	}
	if cfg.MaxConcurrent < 0 {
		panic("saga: negative Config.MaxConcurrent")
	}
	if err := cfg.UndoRetry.validate(); err != nil {
		panic("saga: Config.UndoRetry: " + err.Error())
	}
	o := &Orchestrator{
		log:     log,
		logger:  cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		jitter:  cfg.Jitter,
		undo:    cfg.UndoRetry,
		plans:   make(map[string]*plan),
		running: make(map[string]*run),
	}
	if o.jitter == nil {
		o.jitter = func(c time.Duration) time.Duration {
			if c <= 0 {
				return 0
			}
			return rand.N(c)
		}
	}
	if cfg.MaxConcurrent > 0 {
		o.slots = make(chan struct{}, cfg.MaxConcurrent)
	}
	return o
}

// Register adds a definition, which Run and Recover then find by name. It
// returns an error wrapping [ErrInvalidDefinition] if d is not valid (see
// [Definition.Validate]) or a definition of that name is registered.
// Register a definition before calling Recover, and never change the
// steps of a definition with sagas still open in the log.
func (o *Orchestrator) Register(d Definition) error {
	if err := d.Validate(); err != nil {
		return err
	}
	d.Steps = slices.Clone(d.Steps)
	for i := range d.Steps {
		d.Steps[i].Parallel = slices.Clone(d.Steps[i].Parallel)
	}
	p := compile(&d, o.undo)
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.plans[d.Name]; ok {
		return fmt.Errorf("%w: %q is already registered", ErrInvalidDefinition, d.Name)
	}
	o.plans[d.Name] = p
	return nil
}

func (o *Orchestrator) plan(name string) (*plan, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p, ok := o.plans[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDefinition, name)
	}
	return p, nil
}

// Run starts saga id of the registered definition def with input, and
// drives it to its end: the steps in order (the members of a group
// concurrently), each attempt of Do logged before it starts and its
// outcome logged before the next move, retries after a backoff, and,
// when a step fails for good, the compensations in reverse order, each
// attempt of Undo logged before it starts too.
//
// It returns (Committed, nil); (Compensated, a *[StepError]), or an
// error wrapping [ErrCancelled] if [Orchestrator.Cancel] stopped it;
// or (Stuck, a *[StuckError]), after logging the stuck saga at Error
// level. A saga ID is used once: if id is in the log already, Run
// returns the outcome recorded for it (0 while it is open) and an error
// wrapping [ErrDuplicate], and runs nothing. (The log remembers finished
// sagas until it is compacted.)
//
// If ctx ends before the saga is in the log (while Run waits for a
// MaxConcurrent slot, say), Run returns (0, ctx's error) and nothing is
// logged. If ctx ends, or Close stops waiting, after that and before the
// saga ends, or the log fails, Run returns (0, an error wrapping
// [ErrAbandoned] or the log's error) and the saga stays open in the log
// exactly as if the process had crashed there: Recover, here or after a
// restart, finishes it. To stop a saga and compensate it, call Cancel; if
// Cancel comes before the saga is logged, Run logs nothing and returns
// (0, an error wrapping [ErrCancelled]).
// Run also returns [ErrEmptyID], [ErrUnknownDefinition] and [ErrClosed].
func (o *Orchestrator) Run(ctx context.Context, def, id string, input []byte) (Outcome, error) {
	if id == "" {
		return 0, ErrEmptyID
	}
	p, err := o.plan(def)
	if err != nil {
		return 0, err
	}
	return o.with(ctx, id, func(r *run, recs []Record) (Outcome, error) {
		if len(recs) > 0 {
			return outcomeOf(recs), fmt.Errorf("%w: %q is in the log", ErrDuplicate, id)
		}
		r.mu.Lock()
		if err := context.Cause(r.ctx); err != nil {
			r.mu.Unlock()
			return 0, err // nothing was written
		}
		r.st.plan = p
		r.s = &r.st
		r.mu.Unlock()
		start := Record{Kind: KindStarted, Saga: id, Def: p.def.Name, Input: bytes.Clone(input), Steps: p.names}
		if err := r.append(start); err != nil {
			return 0, err
		}
		return r.drive()
	})
}

// Recover drives every saga the log lists as unfinished, except those
// this orchestrator is running, to its end, like Run, at most
// Config.MaxConcurrent at a time, and returns when all have ended. A saga
// interrupted during an attempt of Do whose step has attempts left runs
// Do again (a new attempt: this is why Do must be idempotent); one whose
// step has none left, or that was compensating or cancelled, is
// compensated. An attempt of Undo interrupted by a crash counts as a
// failed one, so an Undo that kills the process every time makes the
// saga Stuck after its attempts.
//
// It returns nil if every saga ended Committed or Compensated, and
// otherwise the errors of the others joined: *[StuckError],
// [ErrUnknownDefinition] (register every definition first), [ErrHistory]
// (records no orchestrator writes, or a changed definition), [ErrAbandoned]
// or ctx's error, and log errors. If a Do or Undo panics, Recover lets
// the other sagas end and then panics with the same value in its
// caller's goroutine.
func (o *Orchestrator) Recover(ctx context.Context) error {
	ids, err := o.log.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("saga: list unfinished sagas: %w", err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		errs  []error
		crash panics
		// With a concurrency bound, start no more goroutines than may run:
		// a log with many open sagas must not cost a goroutine each.
		started chan struct{}
	)
	if o.slots != nil {
		started = make(chan struct{}, cap(o.slots))
	}
	for _, id := range ids {
		if started != nil {
			started <- struct{}{} // freed as each goroutine returns, also when ctx ends
		}
		wg.Go(func() {
			if started != nil {
				defer func() { <-started }()
			}
			defer crash.capture(nil)
			out, err := o.resume(ctx, id)
			if err != nil && out != Compensated && !errors.Is(err, ErrDuplicate) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	crash.reraise()
	return errors.Join(errs...)
}

func (o *Orchestrator) resume(ctx context.Context, id string) (Outcome, error) {
	return o.with(ctx, id, func(r *run, recs []Record) (Outcome, error) {
		if len(recs) == 0 || recs[len(recs)-1].Kind.Terminal() {
			return outcomeOf(recs), nil // it ended since Unfinished
		}
		if err := r.load(recs); err != nil {
			return 0, err
		}
		o.logger.Info("saga: recovering", "saga", id, "definition", r.s.plan.def.Name,
			"stage", r.s.stage, "compensating", r.s.compensating)
		return r.drive()
	})
}

// Cancel stops saga id and compensates it, like Temporal's workflow
// cancellation and AWS Step Functions' StopExecution: the saga takes no
// new step, an attempt of Do in progress sees its context end with cause
// [ErrCancelled], and every step that may have taken effect is undone in
// reverse order. The cancellation is logged (a Cancelled record) before
// the saga acts on it, so after a crash Recover compensates it.
//
// If this orchestrator is running the saga (in Run or Recover), Cancel
// returns nil once the cancellation is logged (or once Run stopped before
// it logged the saga at all), and the running call
// compensates the saga and returns Compensated with an error wrapping
// ErrCancelled. If the saga is open in the log and nobody runs it (a
// crash left it), Cancel logs the cancellation and compensates it
// itself, like Recover, and returns nil once it is Compensated, or the
// error Recover would. Cancelling a saga that is compensating already
// changes nothing and returns nil.
//
// It returns an error wrapping [ErrUnknownSaga] for an ID the log does
// not hold, [ErrEnded] for a saga that ended (before the cancellation
// was logged), ctx's error if ctx ends first (the cancellation may still
// be logged then), [ErrClosed], and log errors.
func (o *Orchestrator) Cancel(ctx context.Context, id string) error {
	for {
		o.mu.Lock()
		r, ok := o.running[id]
		o.mu.Unlock()
		if !ok {
			// Look before taking the ID, so that a Run of a saga that is
			// not in the log yet never finds it taken.
			if err := cancellable(id)(o.log.Records(ctx, id)); err != nil {
				return err
			}
			_, err := o.with(ctx, id, func(r *run, recs []Record) (Outcome, error) {
				if err := cancellable(id)(recs, nil); err != nil {
					return 0, err
				}
				if err := r.load(recs); err != nil {
					return 0, err
				}
				if !r.s.compensating {
					if err := r.append(r.s.cancelRecord()); err != nil {
						return 0, err
					}
				}
				return r.drive()
			})
			var stepErr *StepError
			switch {
			case errors.Is(err, ErrDuplicate):
				continue // it started running since: cancel that run
			case errors.Is(err, ErrCancelled), errors.As(err, &stepErr):
				return nil // Compensated
			}
			return err
		}
		for {
			settled, err := r.requestCancel()
			if settled == nil {
				return err
			}
			if settled == errRunExited {
				break // the run ended without the cancellation: look again
			}
			select {
			case <-settled:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

// cancellable returns a function that returns the error of Cancel for
// saga id with records recs (read with error err), if it cannot be
// cancelled.
func cancellable(id string) func(recs []Record, err error) error {
	return func(recs []Record, err error) error {
		switch {
		case err != nil:
			return err
		case len(recs) == 0:
			return fmt.Errorf("%w: %q", ErrUnknownSaga, id)
		case outcomeOf(recs) != 0:
			return fmt.Errorf("%w: %q ended %s", ErrEnded, id, outcomeOf(recs))
		}
		return nil
	}
}

// with registers saga id as running (failing with ErrDuplicate if it is
// already), waits for a slot, reads the saga's records and calls fn.
func (o *Orchestrator) with(ctx context.Context, id string, fn func(*run, []Record) (Outcome, error)) (Outcome, error) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return 0, ErrClosed
	}
	if _, ok := o.running[id]; ok {
		o.mu.Unlock()
		return 0, fmt.Errorf("%w: %q is running", ErrDuplicate, id)
	}
	r := newRun(o, ctx, id)
	o.running[id] = r
	o.wg.Add(1)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		delete(o.running, id)
		o.mu.Unlock()
		r.exit()
		o.wg.Done()
	}()
	if o.slots != nil {
		select {
		case o.slots <- struct{}{}:
			defer func() { <-o.slots }()
		case <-r.ctx.Done():
			return 0, context.Cause(r.ctx) // nothing was read or written
		}
	}
	recs, err := o.log.Records(r.ctx, id)
	switch {
	case err != nil && r.ctx.Err() != nil:
		return 0, context.Cause(r.ctx) // nothing was written
	case err != nil:
		return 0, fmt.Errorf("saga %q: read log: %w", id, err)
	}
	return fn(r, recs)
}

// Close stops Run, Recover and Cancel from starting sagas (they return
// [ErrClosed]) and waits for the running sagas to end. If ctx ends first,
// Close cancels their contexts: each stops at its next move, before it
// logs anything more (a Do or Undo in progress sees its context
// cancelled), and stays open in the log for Recover. Close returns once
// every saga returned, with ctx's error if it cancelled them. It does
// not close the Log. Later calls return [ErrClosed] at once.
func (o *Orchestrator) Close(ctx context.Context) error {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return ErrClosed
	}
	o.closed = true
	o.mu.Unlock()
	done := make(chan struct{})
	go func() { // ends when the last running saga returns
		o.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	o.mu.Lock()
	for _, r := range o.running {
		r.close()
	}
	o.mu.Unlock()
	<-done
	return ctx.Err()
}

// panics keeps the first panic of a set of goroutines, to raise it again
// in the goroutine that waits for them.
type panics struct {
	mu  sync.Mutex
	val any
	hit bool
}

// capture, deferred, recovers a panic, keeps it if it is the first and
// calls stop (if not nil) so that the other goroutines end soon.
func (p *panics) capture(stop context.CancelCauseFunc) {
	v := recover()
	if v == nil {
		return
	}
	p.mu.Lock()
	if !p.hit {
		p.val, p.hit = v, true
	}
	p.mu.Unlock()
	if stop != nil {
		stop(errCrashed)
	}
}

// reraise panics with the kept value, if any.
func (p *panics) reraise() {
	if p.hit {
		panic(p.val)
	}
}

// errCrashed stops the other steps of a group when one panics.
var errCrashed = errors.New("saga: a step of the group panicked")
