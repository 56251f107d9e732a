package saga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
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
	// ErrAbandoned is wrapped by the error of Run and Recover when ctx
	// ended, or Close gave up waiting, before the saga did: the saga is
	// left open in the log, as a crash would leave it, for Recover.
	ErrAbandoned = errors.New("saga: abandoned before it ended")
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
	// MaxConcurrent bounds the sagas that Run and Recover drive at once;
	// the others wait for a slot. 0: no bound.
	MaxConcurrent int
	// CompensationAttempts bounds the attempts of each Undo before the
	// saga is Stuck. 0: 10; negative: retry until Undo succeeds or ctx
	// ends.
	CompensationAttempts int
	// Jitter picks the wait before a retry given its ceiling (see
	// [RetryPolicy]). nil: uniformly random in [0, ceiling), which is
	// full jitter. It must be safe for concurrent use.
	Jitter func(ceiling time.Duration) time.Duration
}

// DefaultCompensationAttempts is the attempts of each Undo when
// Config.CompensationAttempts is 0.
const DefaultCompensationAttempts = 10

// Orchestrator runs sagas, writing their progress to a [Log] before
// acting on it, and recovers the sagas a crash left open.
//
// Only one Orchestrator may write to a Log at a time. An Orchestrator is
// safe for concurrent use; it must be created with [New].
type Orchestrator struct {
	log       Log
	logger    *slog.Logger
	jitter    func(time.Duration) time.Duration
	undoLimit int           // <= 0: none
	slots     chan struct{} // nil: no concurrency bound

	mu      sync.Mutex
	defs    map[string]*Definition
	running map[string]context.CancelCauseFunc
	closed  bool
	wg      sync.WaitGroup // running sagas
}

// New returns an orchestrator writing to log. It panics if log is nil or
// cfg.MaxConcurrent is negative.
func New(log Log, cfg Config) *Orchestrator {
	if log == nil {
		panic("saga: New with a nil Log")
	}
	if cfg.MaxConcurrent < 0 {
		panic("saga: negative Config.MaxConcurrent")
	}
	o := &Orchestrator{
		log:       log,
		logger:    cmp.Or(cfg.Logger, slog.New(slog.DiscardHandler)),
		jitter:    cfg.Jitter,
		undoLimit: cmp.Or(cfg.CompensationAttempts, DefaultCompensationAttempts),
		defs:      make(map[string]*Definition),
		running:   make(map[string]context.CancelCauseFunc),
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
	d.Steps = append([]Step(nil), d.Steps...)
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.defs[d.Name]; ok {
		return fmt.Errorf("%w: %q is already registered", ErrInvalidDefinition, d.Name)
	}
	o.defs[d.Name] = &d
	return nil
}

func (o *Orchestrator) definition(name string) (*Definition, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	d, ok := o.defs[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownDefinition, name)
	}
	return d, nil
}

// Run starts saga id of the registered definition def with input, and
// drives it to its end: the steps in order, each attempt of Do logged
// before it starts and its outcome logged before the next move, retries
// after a backoff, and, when a step fails for good, the compensations in
// reverse order.
//
// It returns (Committed, nil); (Compensated, a *[StepError]); or (Stuck,
// a *[StuckError]), after logging the stuck saga at Error level. A saga
// ID is used once: if id is in the log already, Run returns the outcome
// recorded for it (0 while it is open) and an error wrapping
// [ErrDuplicate], and runs nothing. (The log remembers finished sagas
// until it is compacted.)
//
// If ctx ends, or Close stops waiting, before the saga ends, or the log
// fails, Run returns (0, an error wrapping [ErrAbandoned] or the log's
// error) and the saga stays open in the log exactly as if the process had
// crashed there: Recover, here or after a restart, finishes it. Cancel a
// saga by making a step fail, not by cancelling ctx. Run also returns
// [ErrEmptyID], [ErrUnknownDefinition] and [ErrClosed].
func (o *Orchestrator) Run(ctx context.Context, def, id string, input []byte) (Outcome, error) {
	if id == "" {
		return 0, ErrEmptyID
	}
	d, err := o.definition(def)
	if err != nil {
		return 0, err
	}
	return o.with(ctx, id, func(ctx context.Context, recs []Record) (Outcome, error) {
		if len(recs) > 0 {
			return outcomeOf(recs), fmt.Errorf("%w: %q is in the log", ErrDuplicate, id)
		}
		s := &state{def: d}
		names := make([]string, len(d.Steps))
		for i, st := range d.Steps {
			names[i] = st.Name
		}
		start := Record{Kind: KindStarted, Saga: id, Def: d.Name, Input: append([]byte(nil), input...), Steps: names}
		if err := o.append(ctx, s, start); err != nil {
			return 0, err
		}
		return o.drive(ctx, s)
	})
}

// Recover drives every saga the log lists as unfinished, except those
// this orchestrator is running, to its end, like Run, at most
// Config.MaxConcurrent at a time, and returns when all have ended. A saga
// interrupted during an attempt of Do whose step has attempts left runs
// Do again (a new attempt: this is why Do must be idempotent); one whose
// step has none left, or that was compensating, is compensated.
//
// It returns nil if every saga ended Committed or Compensated, and
// otherwise the errors of the others joined: *[StuckError],
// [ErrUnknownDefinition] (register every definition first), [ErrHistory]
// (records no orchestrator writes, or a changed definition), [ErrAbandoned]
// and log errors.
func (o *Orchestrator) Recover(ctx context.Context) error {
	ids, err := o.log.Unfinished(ctx)
	if err != nil {
		return fmt.Errorf("saga: list unfinished sagas: %w", err)
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
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
			out, err := o.resume(ctx, id)
			if err != nil && out != Compensated && !errors.Is(err, ErrDuplicate) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (o *Orchestrator) resume(ctx context.Context, id string) (Outcome, error) {
	return o.with(ctx, id, func(ctx context.Context, recs []Record) (Outcome, error) {
		if len(recs) == 0 || recs[len(recs)-1].Kind.Terminal() {
			return outcomeOf(recs), nil // it ended since Unfinished
		}
		d, err := o.definition(recs[0].Def)
		if err != nil {
			return 0, fmt.Errorf("saga %q: %w", id, err)
		}
		s, err := replay(d, recs)
		if err != nil {
			return 0, err
		}
		o.logger.Info("saga: recovering", "saga", id, "definition", d.Name,
			"step", s.step, "attempts", s.attempts, "compensating", s.compensating)
		return o.drive(ctx, s)
	})
}

// with registers saga id as running (failing with ErrDuplicate if it is
// already), waits for a slot, reads the saga's records and calls fn.
func (o *Orchestrator) with(ctx context.Context, id string, fn func(context.Context, []Record) (Outcome, error)) (Outcome, error) {
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return 0, ErrClosed
	}
	if _, ok := o.running[id]; ok {
		o.mu.Unlock()
		return 0, fmt.Errorf("%w: %q is running", ErrDuplicate, id)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	o.running[id] = cancel
	o.wg.Add(1)
	o.mu.Unlock()
	defer func() {
		cancel(nil)
		o.mu.Lock()
		delete(o.running, id)
		o.mu.Unlock()
		o.wg.Done()
	}()
	if o.slots != nil {
		select {
		case o.slots <- struct{}{}:
			defer func() { <-o.slots }()
		case <-ctx.Done():
			return 0, o.abandoned(ctx, id)
		}
	}
	recs, err := o.log.Records(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("saga %q: read log: %w", id, err)
	}
	return fn(ctx, recs)
}

func (o *Orchestrator) abandoned(ctx context.Context, id string) error {
	return fmt.Errorf("%w: saga %q left open for Recover: %w", ErrAbandoned, id, context.Cause(ctx))
}

// append checks that r may follow s, writes it to the log and applies it.
func (o *Orchestrator) append(ctx context.Context, s *state, r Record) error {
	next := *s
	if err := next.apply(r); err != nil {
		return err // a bug: the driver never makes an illegal move
	}
	if err := o.log.Append(context.WithoutCancel(ctx), r); err != nil {
		return fmt.Errorf("saga %q: append %s: %w", r.Saga, r.Kind, err)
	}
	*s = next
	return nil
}

// drive moves s to its end, one logged record at a time.
func (o *Orchestrator) drive(ctx context.Context, s *state) (Outcome, error) {
	var cause, last error // the in-process errors behind s.cause and s.lastErr
	for s.final == 0 {
		if ctx.Err() != nil {
			return 0, o.abandoned(ctx, s.id)
		}
		var r Record
		var err error
		if !s.compensating {
			r, err = o.forward(ctx, s, &cause)
		} else {
			r, err = o.backward(ctx, s, &last)
		}
		if err != nil {
			return 0, err
		}
		if err := o.append(ctx, s, r); err != nil {
			return 0, err
		}
	}
	switch s.final {
	case KindCommitted:
		return Committed, nil
	case KindCompensated:
		return Compensated, &StepError{s.id, s.def.Steps[s.failed].Name, cmp.Or(cause, errors.New(s.cause))}
	}
	e := &StuckError{s.id, s.def.Steps[s.step].Name, s.attempts, cmp.Or(last, errors.New(s.lastErr)), s.cause}
	o.logger.Error("saga: stuck, compensation needs an operator", "saga", s.id, "definition", s.def.Name,
		"step", e.Step, "attempts", e.Attempts, "err", e.Err, "cause", s.cause)
	return Stuck, e
}

// forward makes the next move of a saga in its forward phase and returns
// the record of its outcome.
func (o *Orchestrator) forward(ctx context.Context, s *state, cause *error) (Record, error) {
	if s.step == len(s.def.Steps) {
		return Record{Kind: KindCommitted, Saga: s.id}, nil
	}
	st := &s.def.Steps[s.step]
	if s.attempts >= st.Retry.Attempts() {
		msg := s.lastErr
		if s.inFlight {
			msg = fmt.Sprintf("attempt %d interrupted", s.attempts)
		}
		o.logger.Info("saga: compensating", "saga", s.id, "step", st.Name, "attempts", s.attempts, "err", msg)
		return Record{Kind: KindCompensating, Saga: s.id, Step: s.step, Err: msg}, nil
	}
	if s.attempts > 0 && !s.inFlight {
		if err := o.backoff(ctx, s, st); err != nil {
			return Record{}, err
		}
	}
	x := s.exec()
	if err := o.append(ctx, s, Record{Kind: KindStepStarted, Saga: s.id, Step: x.Index, Attempt: x.Attempt}); err != nil {
		return Record{}, err
	}
	err := call(ctx, st.Do, st.Timeout, x)
	switch {
	case err == nil:
		return Record{Kind: KindStepDone, Saga: s.id, Step: x.Index, Attempt: x.Attempt, Bag: x.entries()}, nil
	case ctx.Err() != nil:
		return Record{}, o.abandoned(ctx, s.id)
	case IsPermanent(err):
		*cause = err
		o.logger.Info("saga: compensating", "saga", s.id, "step", st.Name, "attempt", x.Attempt, "err", err)
		return Record{Kind: KindCompensating, Saga: s.id, Step: x.Index, Err: err.Error(), Permanent: true}, nil
	}
	*cause = err
	o.logger.Warn("saga: step failed", "saga", s.id, "step", st.Name, "attempt", x.Attempt, "err", err)
	return Record{Kind: KindStepFailed, Saga: s.id, Step: x.Index, Attempt: x.Attempt, Err: err.Error()}, nil
}

// backward makes the next move of a compensating saga and returns the
// record of its outcome.
func (o *Orchestrator) backward(ctx context.Context, s *state, last *error) (Record, error) {
	if s.step < 0 {
		return Record{Kind: KindCompensated, Saga: s.id}, nil
	}
	st := &s.def.Steps[s.step]
	if s.permanent || o.undoLimit > 0 && s.attempts >= o.undoLimit {
		return Record{Kind: KindStuck, Saga: s.id, Step: s.step}, nil
	}
	if s.attempts > 0 {
		if err := o.backoff(ctx, s, st); err != nil {
			return Record{}, err
		}
	}
	x := s.exec()
	err := call(ctx, st.Undo, st.Timeout, x)
	switch {
	case err == nil:
		return Record{Kind: KindUndoDone, Saga: s.id, Step: x.Index, Attempt: x.Attempt, Bag: x.entries()}, nil
	case ctx.Err() != nil:
		return Record{}, o.abandoned(ctx, s.id)
	}
	*last = err
	o.logger.Warn("saga: undo failed", "saga", s.id, "step", st.Name, "attempt", x.Attempt, "err", err)
	return Record{Kind: KindUndoFailed, Saga: s.id, Step: x.Index, Attempt: x.Attempt, Err: err.Error(), Permanent: IsPermanent(err)}, nil
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

// backoff waits a jittered time of at most the step's backoff ceiling
// after s.attempts failures, or returns an ErrAbandoned error when ctx
// ends first. It uses a timer, so it runs in virtual time under
// testing/synctest.
func (o *Orchestrator) backoff(ctx context.Context, s *state, st *Step) error {
	if d := o.jitter(st.Retry.Ceiling(s.attempts)); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return o.abandoned(ctx, s.id)
	}
	return nil
}

// Close stops Run and Recover from starting sagas (they return
// [ErrClosed]) and waits for the running sagas to end. If ctx ends first,
// Close cancels them: each stops at its next move, before it logs
// anything more (a Do or Undo in progress sees its context cancelled), and
// stays open in the log for Recover. Close returns once every saga
// returned, with ctx's error if it cancelled them. It does not close the
// Log. Later calls return [ErrClosed] at once.
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
	for _, cancel := range o.running {
		cancel(ErrClosed)
	}
	o.mu.Unlock()
	<-done
	return ctx.Err()
}
