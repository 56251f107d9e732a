package simnet

import (
	"fmt"
	"time"
)

// Process is a node driven by a [Sim]: it handles the messages addressed
// to its name and runs its own timers.
type Process[P any] interface {
	// Deliver handles m at Now() == m.At. It may Send.
	Deliver(m Message[P])
	// Deadline returns when Tick must next run; the zero time means no
	// timer. A deadline in the past means now.
	Deadline() time.Time
	// Tick runs the timers due at now. It may Send.
	Tick(now time.Time)
}

// Sim runs processes on a [Network] in virtual time, event by event: the
// next event is the earliest of the next delivery and the processes'
// deadlines, so a run is exact in virtual time and deterministic per seed.
// Ties go to messages, then to processes in the order they were added.
// Messages to a name without a process are dropped. A Sim is not safe for
// concurrent use; create it with [NewSim].
type Sim[P any] struct {
	net      *Network[P]
	procs    []Process[P]
	names    map[string]int
	deadline []time.Time // cached: refreshed after each call on a process and at each Run
}

// NewSim returns a Sim with no processes on net.
func NewSim[P any](net *Network[P]) *Sim[P] {
	return &Sim[P]{net: net, names: make(map[string]int)}
}

// Net returns the network.
func (s *Sim[P]) Net() *Network[P] { return s.net }

// Add registers p under name, replacing any process of that name. It
// panics if name is empty.
func (s *Sim[P]) Add(name string, p Process[P]) {
	if name == "" {
		panic("simnet: Add with an empty name")
	}
	if i, ok := s.names[name]; ok {
		s.procs[i] = p
		return
	}
	s.names[name] = len(s.procs)
	s.procs = append(s.procs, p)
	s.deadline = append(s.deadline, time.Time{})
}

// Run delivers messages and runs timers in time order up to t, then sets
// the clock to t; or stops as soon as done (checked after every event, may
// be nil) returns true. It reports whether done did. Processes may be
// changed between calls to Run (crashed, restarted): Run asks every
// process for its deadline when it starts, and asks a process again only
// after calling it. It panics if t is before Now.
func (s *Sim[P]) Run(t time.Time, done func() bool) bool {
	if t.Before(s.net.Now()) {
		panic(fmt.Sprintf("simnet: Run(%v) before now %v", t, s.net.Now()))
	}
	for i, p := range s.procs {
		s.deadline[i] = p.Deadline()
	}
	unreachable := func(Message[P]) { panic("simnet: message delivered out of order") }
	for {
		next, nextAt := -1, time.Time{}
		for i, d := range s.deadline {
			if d.IsZero() {
				continue
			}
			if d.Before(s.net.Now()) {
				d = s.net.Now()
			}
			if next < 0 || d.Before(nextAt) {
				next, nextAt = i, d
			}
		}
		at, ok := s.net.Next()
		switch {
		case ok && !at.After(t) && (next < 0 || !at.After(nextAt)):
			m, delivered := s.net.pop()
			if i, ok := s.names[m.To]; ok && delivered {
				s.procs[i].Deliver(m)
				s.deadline[i] = s.procs[i].Deadline()
			}
		case next >= 0 && !nextAt.After(t):
			s.net.AdvanceTo(nextAt, unreachable)
			s.procs[next].Tick(s.net.Now())
			s.deadline[next] = s.procs[next].Deadline()
		default:
			s.net.AdvanceTo(t, unreachable)
			return done != nil && done()
		}
		if done != nil && done() {
			return true
		}
	}
}
