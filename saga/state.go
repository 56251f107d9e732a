package saga

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// ErrHistory is wrapped by the error returned when a saga's records in
// the log are not a history this package writes (out of order, for
// another definition, or after the saga ended), or when the definition
// was changed since the saga started.
var ErrHistory = errors.New("saga: invalid saga history")

// plan is a registered definition compiled for the orchestrator. Its
// steps are flattened into nodes, a top-level step or a member of a
// group, numbered as Record.Step numbers them; consecutive nodes form the
// stages that run one after the other: a top-level step alone, or the
// members of a group together.
type plan struct {
	def    *Definition
	names  []string // the Started record's Steps; shared, never modified
	nodes  []node
	stages []stage
}

type node struct {
	step  *Step
	stage int
	undo  RetryPolicy // Step.UndoRetry with the Config defaults filled in
}

// stage is the nodes [first, end).
type stage struct{ first, end int }

func (st stage) parallel() bool { return st.end-st.first > 1 }

// compile flattens d, which is valid, filling each step's Undo policy's
// zero fields from undo.
func compile(d *Definition, undo RetryPolicy) *plan {
	p := &plan{def: d}
	add := func(st *Step, name string) {
		u := st.UndoRetry
		u.MaxAttempts = cmp.Or(u.MaxAttempts, undo.MaxAttempts, DefaultCompensationAttempts)
		u.Initial = cmp.Or(u.Initial, undo.Initial)
		u.Max = cmp.Or(u.Max, undo.Max)
		p.names = append(p.names, name)
		p.nodes = append(p.nodes, node{step: st, stage: len(p.stages), undo: u})
	}
	for i := range d.Steps {
		st := &d.Steps[i]
		first := len(p.nodes)
		if st.Parallel == nil {
			add(st, st.Name)
		}
		for j := range st.Parallel {
			add(&st.Parallel[j], st.Name+"/"+st.Parallel[j].Name)
		}
		p.stages = append(p.stages, stage{first, len(p.nodes)})
	}
	return p
}

// progress is what the log says about one node.
type progress struct {
	attempts     int  // attempts of Do that started
	inFlight     bool // the last of them has no outcome
	done         bool // Do succeeded
	gaveUp       bool // an attempt failed Permanent: no more attempts
	noEffect     bool // the only attempt failed Permanent: nothing to undo
	undoAttempts int  // attempts of Undo that started
	undoInFlight bool
	undone       bool
	undoPerm     bool // the last attempt of Undo failed Permanent
	lastErr      string
}

// state is a saga's progress, rebuilt from its records: the pure core of
// the orchestrator. It does no I/O and reads no clock; apply checks that
// each record is a legal next step of the history.
type state struct {
	plan  *plan
	id    string
	input []byte
	// bag is the saga's bag. It is never modified in place (merge
	// replaces it), so an Exec may hold it while the steps of a group
	// succeed.
	bag map[string][]byte

	started      bool
	compensating bool
	cancelled    bool // compensating because of Cancel
	final        Kind // 0 while the saga is open
	// stage is, going forward, the stage running (len(stages) once every
	// stage succeeded); compensating, the stage being undone (-1 when
	// none is left). Stages with nothing to undo are skipped.
	stage  int
	nodes  []progress
	small  [4]progress // backs nodes for a saga of up to four steps: a state is not copied
	failed int         // compensating: the node at which the forward phase gave up; -1 after Cancel
	cause  string      // compensating: why
	stuck  int         // Stuck: the node whose Undo failed for good
}

// replay rebuilds the state of a saga of plan p from its records.
func replay(p *plan, recs []Record) (*state, error) {
	s := &state{plan: p}
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

// needsUndo reports whether node n may have taken effect and is not
// undone yet.
func (s *state) needsUndo(n int) bool {
	p := &s.nodes[n]
	return s.plan.nodes[n].step.Undo != nil && !p.undone && (p.done || p.attempts > 0 && !p.noEffect)
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
		if r.Def != s.plan.def.Name || !slices.Equal(r.Steps, s.plan.names) {
			return bad("started by definition %q with steps %q; definition %q now has steps %q",
				r.Def, r.Steps, s.plan.def.Name, s.plan.names)
		}
		s.started, s.id, s.input = true, r.Saga, r.Input
		s.nodes = s.small[:0]
		if len(s.plan.nodes) > len(s.small) {
			s.nodes = make([]progress, 0, len(s.plan.nodes))
		}
		s.nodes = s.nodes[:len(s.plan.nodes)]
		return nil
	}
	switch {
	case !s.started:
		return bad("%s before Started", r.Kind)
	case r.Saga != s.id:
		return bad("record of saga %q", r.Saga)
	case s.final != 0:
		return bad("%s after %s", r.Kind, s.final)
	}
	forward := !s.compensating
	// The node r names, if it belongs to the current stage.
	var p *progress
	if r.Step >= 0 && r.Step < len(s.nodes) && s.stage >= 0 && s.stage < len(s.plan.stages) && s.plan.nodes[r.Step].stage == s.stage {
		p = &s.nodes[r.Step]
	}
	switch r.Kind {
	case KindStepStarted, KindStepDone, KindStepFailed, KindCompensating, KindUndoStarted, KindUndoDone, KindUndoFailed, KindStuck:
		if p == nil {
			return bad("%s for step %d, not in stage %d", r.Kind, r.Step, s.stage)
		}
	}
	switch r.Kind {
	case KindStepStarted:
		// An attempt in flight was interrupted by a crash.
		if !forward || p.done || p.gaveUp || r.Attempt != p.attempts+1 {
			return bad("unexpected attempt %d of step %d", r.Attempt, r.Step)
		}
		p.attempts, p.inFlight = r.Attempt, true
	case KindStepDone, KindStepFailed:
		if !forward || !p.inFlight || r.Attempt != p.attempts {
			return bad("no attempt %d of step %d in flight", r.Attempt, r.Step)
		}
		p.inFlight = false
		if r.Kind == KindStepFailed {
			p.lastErr = r.Err
			if r.Permanent {
				p.gaveUp, p.noEffect = true, p.attempts == 1
			}
			return nil
		}
		p.done = true
		s.merge(r.Bag)
		st := s.plan.stages[s.stage]
		for n := st.first; n < st.end; n++ {
			if !s.nodes[n].done {
				return nil
			}
		}
		s.stage++
	case KindCompensating:
		if !forward {
			return bad("compensating twice")
		}
		// A Permanent failure says its attempt had no effect, but an
		// earlier attempt (failed retryably, or interrupted) may have had
		// one: the step is then undone too.
		if r.Permanent && p.inFlight {
			p.inFlight, p.gaveUp, p.noEffect = false, true, p.attempts == 1
		}
		s.compensate(r.Step, r.Err)
	case KindCancelled:
		want := len(s.nodes)
		if s.stage < len(s.plan.stages) {
			want = s.plan.stages[s.stage].first
		}
		if !forward || r.Step != want {
			return bad("cancelled at step %d, expected step %d going forward", r.Step, want)
		}
		s.cancelled = true
		s.stage = min(s.stage, len(s.plan.stages)-1)
		s.compensate(-1, r.Err)
	case KindUndoStarted:
		// An attempt in flight was interrupted by a crash.
		if forward || !s.needsUndo(r.Step) || p.undoPerm || r.Attempt != p.undoAttempts+1 {
			return bad("unexpected undo attempt %d of step %d", r.Attempt, r.Step)
		}
		p.undoAttempts, p.undoInFlight = r.Attempt, true
	case KindUndoDone, KindUndoFailed:
		// Logs written before attempts of Undo were logged have no
		// UndoStarted: the outcome then starts and ends the attempt.
		inFlight := p.undoInFlight && r.Attempt == p.undoAttempts
		legacy := !p.undoInFlight && r.Attempt == p.undoAttempts+1
		if forward || !s.needsUndo(r.Step) || p.undoPerm || !inFlight && !legacy {
			return bad("unexpected undo attempt %d of step %d", r.Attempt, r.Step)
		}
		p.undoAttempts, p.undoInFlight = r.Attempt, false
		if r.Kind == KindUndoFailed {
			p.lastErr, p.undoPerm = r.Err, r.Permanent
			return nil
		}
		p.undone = true
		s.merge(r.Bag)
		s.settle()
	case KindCommitted:
		if !forward || s.stage != len(s.plan.stages) {
			return bad("committed before the last step succeeded")
		}
		s.final = r.Kind
	case KindCompensated:
		if forward || s.stage >= 0 {
			return bad("compensated with stage %d left to undo", s.stage)
		}
		s.final = r.Kind
	case KindStuck:
		if forward || p.undoAttempts == 0 || !s.needsUndo(r.Step) {
			return bad("stuck before a failed undo")
		}
		s.final, s.stuck = r.Kind, r.Step
	default:
		return bad("unknown kind")
	}
	return nil
}

// compensate turns s backward at its current stage. An attempt of Do in
// flight has no outcome and is undone: its effect is unknown.
func (s *state) compensate(failed int, cause string) {
	for i := range s.nodes {
		s.nodes[i].inFlight = false
	}
	s.compensating, s.failed, s.cause = true, failed, cause
	s.settle()
}

// settle moves a compensating saga past the stages with nothing left to
// undo.
func (s *state) settle() {
	for ; s.stage >= 0; s.stage-- {
		st := s.plan.stages[s.stage]
		for n := st.first; n < st.end; n++ {
			if s.needsUndo(n) {
				return
			}
		}
	}
}

// exec returns the Exec for the next attempt of Do (or of Undo, when
// compensating) of node n.
func (s *state) exec(n int) Exec {
	p := &s.nodes[n]
	attempt := p.attempts + 1
	if s.compensating {
		attempt = p.undoAttempts + 1
	}
	return Exec{SagaID: s.id, Step: s.plan.nodes[n].step.Name, Index: n, Attempt: attempt,
		Compensating: s.compensating, Input: s.input, bag: s.bag}
}

// merge adds bag to a copy of s.bag.
func (s *state) merge(bag []Entry) {
	if len(bag) == 0 {
		return
	}
	m := make(map[string][]byte, len(s.bag)+len(bag))
	maps.Copy(m, s.bag)
	for _, e := range bag {
		m[e.Key] = e.Value
	}
	s.bag = m
}
