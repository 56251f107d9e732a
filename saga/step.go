package saga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Step is one local transaction of a saga and its compensation, or a
// group of steps that run concurrently. It is plain data: the zero Step
// is invalid (no Name, no Do), and a Step is safe to share once
// registered.
type Step struct {
	// Name identifies the step within its definition: non-empty, unique
	// among all the steps and groups of the definition, without '/'. It is
	// part of [Exec.IdempotencyKey], so renaming a step changes the keys
	// its calls use.
	Name string
	// Do performs the step. It may run more than once for the same saga
	// (a retry, or a re-run after a crash that happened before its
	// success was logged), so it must be idempotent; calls to other
	// services should carry x.IdempotencyKey(). Wrap an error in
	// [Permanent] to stop retrying. Required, except in a group.
	Do func(ctx context.Context, x *Exec) error
	// Undo compensates Do (nil: nothing to undo). It runs at most once
	// after its success was logged but, like Do, may run again after a
	// crash or a failure, and it may run although Do never took effect
	// (Do timed out, or the process died during it): it must be
	// idempotent and must accept a compensation of nothing. A Permanent
	// error from Undo makes the saga Stuck once the other Undos of its
	// stage ended. A panic in Do or Undo is not recovered: like a crash,
	// it leaves the saga for Recover (its attempt counts).
	Undo func(ctx context.Context, x *Exec) error
	// Retry bounds and paces the attempts of Do.
	Retry RetryPolicy
	// UndoRetry bounds and paces the attempts of Undo: after MaxAttempts
	// failed or interrupted attempts the saga is Stuck. Its zero fields
	// take the value of Config.UndoRetry's, whose zero MaxAttempts is
	// [DefaultCompensationAttempts] and zero Initial and Max are
	// RetryPolicy's defaults.
	UndoRetry RetryPolicy
	// Timeout bounds each attempt of Do and of Undo (0: no bound). An
	// attempt that times out failed, with a retryable error.
	Timeout time.Duration
	// Parallel, if not nil, makes this step a group: its members run
	// concurrently, like AWS Step Functions' Parallel state, and the
	// group succeeds when every member has. When a member fails for good,
	// the members still running are stopped (their contexts end), and
	// the members that may have taken effect are undone, concurrently,
	// before the earlier steps, in reverse order. Each member is a step
	// with its own Do, Undo, Retry, UndoRetry and Timeout; members are
	// not groups, and a member sees the bag as it was when the group
	// began. A group has a Name and no Do, Undo, Retry, UndoRetry or
	// Timeout of its own.
	Parallel []Step
}

// RetryPolicy is exponential backoff with full jitter (as in AWS's
// "Exponential Backoff And Jitter"): after the n-th failed attempt the
// orchestrator waits a uniformly random duration in [0, Ceiling(n)).
// Zero fields mean the defaults given beside them, so the zero
// RetryPolicy is 3 attempts, 100ms doubling to at most 10s.
type RetryPolicy struct {
	MaxAttempts int           // attempts, the first included; 0: 3 for Do (see Step.UndoRetry for Undo); 1: no retry
	Initial     time.Duration // ceiling after the first failure; 0: 100ms; doubles per attempt, with full jitter
	Max         time.Duration // largest ceiling; 0: 10s
}

// Defaults of [RetryPolicy].
const (
	DefaultMaxAttempts = 3
	DefaultInitial     = 100 * time.Millisecond
	DefaultMax         = 10 * time.Second
)

// Attempts returns MaxAttempts, or its default.
func (p RetryPolicy) Attempts() int { return cmp.Or(p.MaxAttempts, DefaultMaxAttempts) }

// Ceiling returns the longest wait after the n-th failed attempt (n >= 1):
// min(Max, Initial * 2^(n-1)), with the defaults for zero fields.
func (p RetryPolicy) Ceiling(n int) time.Duration {
	initial, limit := cmp.Or(p.Initial, DefaultInitial), cmp.Or(p.Max, DefaultMax)
	d := min(initial, limit)
	for i := 1; i < n && d < limit; i++ {
		if d > limit/2 {
			return limit // doubling would pass limit, or overflow
		}
		d *= 2
	}
	return d
}

func (p RetryPolicy) validate() error {
	if p.MaxAttempts < 0 || p.Initial < 0 || p.Max < 0 {
		return errors.New("negative retry policy field")
	}
	return nil
}

// permanentError marks an error that must not be retried.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent wraps err so that the orchestrator does not retry the step
// that returned it: the forward phase gives up at once and compensates.
// A Permanent error from Do also says the attempt had no effect, so the
// failed step itself is not compensated if that was its only attempt
// (after a retryable failure, a timeout or a crash it is, because its
// effect is unknown, also when a later attempt fails Permanently). Permanent(nil) is nil;
// errors.Is and errors.As see through the wrapper.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether err or an error it wraps came from
// [Permanent].
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// Definition is a named saga: steps run in order; when one fails for
// good, the steps that may have taken effect are compensated in reverse
// order. The zero Definition is invalid; Register copies the step list.
type Definition struct {
	Name  string
	Steps []Step
}

// ErrInvalidDefinition is wrapped by the error of [Definition.Validate].
var ErrInvalidDefinition = errors.New("saga: invalid definition")

// Validate checks that d has a non-empty name and at least one step;
// that every step, group and member has a non-empty name without '/' that
// no other has; that every step and member has a Do and no negative
// timeout or retry field; and that every group has at least one member,
// no members that are groups, and no Do, Undo, Retry, UndoRetry or
// Timeout of its own. Its error wraps [ErrInvalidDefinition].
func (d Definition) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s", ErrInvalidDefinition, d.Name, fmt.Sprintf(format, args...))
	}
	if d.Name == "" {
		return bad("empty name")
	}
	if len(d.Steps) == 0 {
		return bad("no steps")
	}
	seen := make(map[string]bool, len(d.Steps))
	name := func(s *Step, what string, i int) error {
		switch {
		case s.Name == "":
			return bad("%s %d has no name", what, i)
		case strings.Contains(s.Name, "/"):
			return bad("step name %q contains '/'", s.Name)
		case seen[s.Name]:
			return bad("step name %q is not unique", s.Name)
		}
		seen[s.Name] = true
		return nil
	}
	leaf := func(s *Step) error {
		switch {
		case s.Do == nil:
			return bad("step %q has no Do", s.Name)
		case s.Timeout < 0:
			return bad("step %q has a negative timeout", s.Name)
		case s.Parallel != nil:
			return bad("group %q is a member of a group", s.Name)
		}
		if err := s.Retry.validate(); err != nil {
			return bad("step %q: %v", s.Name, err)
		}
		if err := s.UndoRetry.validate(); err != nil {
			return bad("step %q: undo: %v", s.Name, err)
		}
		return nil
	}
	for i := range d.Steps {
		s := &d.Steps[i]
		if err := name(s, "step", i); err != nil {
			return err
		}
		if s.Parallel == nil {
			if err := leaf(s); err != nil {
				return err
			}
			continue
		}
		if len(s.Parallel) == 0 || s.Do != nil || s.Undo != nil || s.Retry != (RetryPolicy{}) ||
			s.UndoRetry != (RetryPolicy{}) || s.Timeout != 0 {
			return bad("group %q must have members and no Do, Undo, Retry, UndoRetry or Timeout", s.Name)
		}
		for j := range s.Parallel {
			m := &s.Parallel[j]
			if err := name(m, "member", j); err != nil {
				return err
			}
			if err := leaf(m); err != nil {
				return err
			}
		}
	}
	return nil
}
