package saga

import (
	"errors"
	"fmt"
	"slices"
)

// ErrHistory is wrapped by the error returned when a saga's records in
// the log are not a history this package writes (out of order, for
// another definition, or after the saga ended), or when the definition
// was changed since the saga started.
var ErrHistory = errors.New("saga: invalid saga history")

// state is a saga's progress, rebuilt from its records: the pure core of
// the orchestrator. It does no I/O and reads no clock; apply checks that
// each record is a legal next step of the history.
type state struct {
	def   *Definition
	id    string
	input []byte
	bag   map[string][]byte

	started      bool
	compensating bool
	final        Kind // 0 while the saga is open
	// step is, going forward, the next step to run; compensating, the
	// next step to undo (-1 when none is left). Steps without Undo are
	// skipped.
	step int
	// attempts counts, going forward, the attempts of Do at step that
	// started; compensating, the failed attempts of Undo at step.
	attempts  int
	inFlight  bool   // going forward: attempt number attempts has no outcome yet
	lastErr   string // the last failure: the Compensating record's Err, or the StuckError's
	permanent bool   // compensating: the last failure of Undo was Permanent
	failed    int    // compensating: the step at which the forward phase gave up
	cause     string // compensating: why it gave up
}

// replay rebuilds the state of a saga of definition def from its records.
func replay(def *Definition, recs []Record) (*state, error) {
	s := &state{def: def}
	for i, r := range recs {
		if err := s.apply(r); err != nil {
			return nil, fmt.Errorf("record %d (%s): %w", i, r.Kind, err)
		}
	}
	if !s.started {
		return nil, fmt.Errorf("%w: no Started record", ErrHistory)
	}
	return s, nil
}

// apply advances s by one record, or returns an error wrapping
// ErrHistory and leaves s unchanged if r cannot follow the records
// applied so far.
func (s *state) apply(r Record) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: saga %q: %s", ErrHistory, s.id, fmt.Sprintf(format, args...))
	}
	if r.Kind == KindStarted {
		if s.started {
			return bad("second Started record")
		}
		names := make([]string, len(s.def.Steps))
		for i, st := range s.def.Steps {
			names[i] = st.Name
		}
		if r.Def != s.def.Name || !slices.Equal(r.Steps, names) {
			return bad("started by definition %q with steps %q; definition %q now has steps %q",
				r.Def, r.Steps, s.def.Name, names)
		}
		s.started, s.id, s.input = true, r.Saga, r.Input
		return nil
	}
	switch {
	case !s.started:
		return bad("%s before Started", r.Kind)
	case r.Saga != s.id:
		return bad("record of saga %q", r.Saga)
	case s.final != 0:
		return bad("%s after %s", r.Kind, s.final)
	case r.Kind.Terminal() && r.Kind != KindStuck:
	case r.Step != s.step:
		return bad("%s for step %d, expected step %d", r.Kind, r.Step, s.step)
	}
	forward := !s.compensating
	switch r.Kind {
	case KindStepStarted:
		// An attempt in flight was interrupted by a crash.
		if !forward || r.Attempt != s.attempts+1 {
			return bad("unexpected attempt %d", r.Attempt)
		}
		s.attempts, s.inFlight = r.Attempt, true
	case KindStepDone, KindStepFailed:
		if !forward || !s.inFlight || r.Attempt != s.attempts {
			return bad("no attempt %d in flight", r.Attempt)
		}
		s.inFlight = false
		if r.Kind == KindStepFailed {
			s.lastErr = r.Err
			return nil
		}
		s.merge(r.Bag)
		s.step, s.attempts = s.step+1, 0
	case KindCompensating:
		if !forward || s.step == len(s.def.Steps) {
			return bad("compensating after the last step")
		}
		// A Permanent failure says its attempt had no effect, but an
		// earlier attempt (failed retryably, or interrupted) may have had
		// one: the step is then undone too.
		if r.Permanent && s.attempts <= 1 {
			s.step--
		}
		s.compensating, s.inFlight, s.attempts, s.failed, s.cause = true, false, 0, r.Step, r.Err
		s.skipNoUndo()
	case KindUndoDone, KindUndoFailed:
		if forward || s.step < 0 || s.permanent || r.Attempt != s.attempts+1 {
			return bad("unexpected undo attempt %d", r.Attempt)
		}
		if r.Kind == KindUndoFailed {
			s.attempts, s.lastErr, s.permanent = r.Attempt, r.Err, r.Permanent
			return nil
		}
		s.merge(r.Bag)
		s.step, s.attempts = s.step-1, 0
		s.skipNoUndo()
	case KindCommitted:
		if !forward || s.inFlight || s.step != len(s.def.Steps) {
			return bad("committed before the last step succeeded")
		}
		s.final = r.Kind
	case KindCompensated:
		if forward || s.step >= 0 {
			return bad("compensated with step %d left to undo", s.step)
		}
		s.final = r.Kind
	case KindStuck:
		if forward || s.step < 0 || s.attempts == 0 {
			return bad("stuck before a failed undo")
		}
		s.final = r.Kind
	default:
		return bad("unknown kind")
	}
	return nil
}

// exec returns the Exec for the next attempt of Do (or of Undo, when
// compensating) at the current step.
func (s *state) exec() *Exec {
	return &Exec{SagaID: s.id, Step: s.def.Steps[s.step].Name, Index: s.step, Attempt: s.attempts + 1,
		Compensating: s.compensating, Input: s.input, bag: s.bag}
}

// skipNoUndo moves a compensating saga past the steps that have no Undo.
func (s *state) skipNoUndo() {
	for s.step >= 0 && s.def.Steps[s.step].Undo == nil {
		s.step--
	}
}

func (s *state) merge(bag []Entry) {
	if len(bag) > 0 && s.bag == nil {
		s.bag = make(map[string][]byte, len(bag))
	}
	for _, e := range bag {
		s.bag[e.Key] = e.Value
	}
}
