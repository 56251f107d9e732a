package idempotency

import (
	"sync/atomic"
	"time"
)

// coarsePeriod is how often a MemStore's coarse clock is refreshed while
// it is read.
const coarsePeriod = time.Millisecond

// coarseClock is a reading of a MemStore's system clock that a Guard's
// replays compare deadlines with instead of reading the clock, which
// would cost them as much as the rest of a replay. It is never ahead of
// the clock, and while it is read it is at most coarsePeriod old, plus
// however late the runtime runs a timer: a timer refreshes it every
// period in which it was read, and stops after a period without a read.
// The first read after that reads the clock itself and starts the timer
// again, so an idle store runs no timer and no goroutine.
type coarseClock struct {
	ns    atomic.Int64 // on the store's timeline
	state atomic.Int32 // coarseIdle, coarseArmed or coarseRead
}

const (
	coarseIdle  = iota // no timer: ns may be of any age
	coarseArmed        // the timer is pending; no read since it last ran
	coarseRead         // the timer is pending and ns was read since it last ran
)

// coarseNow returns the coarse clock's reading, on the store's timeline,
// for a replay to compare deadlines with; the store is on the system
// clock and set up.
func (s *MemStore) coarseNow() int64 {
	c := &s.coarse
	switch c.state.Load() {
	case coarseRead:
		return c.ns.Load()
	case coarseArmed:
		c.state.CompareAndSwap(coarseArmed, coarseRead) // else the timer stopped, after it refreshed ns
		return c.ns.Load()
	}
	// Idle: read the clock, and publish the reading before the state that
	// lets others use it.
	now := s.now().ns
	c.ns.Store(now)
	if c.state.CompareAndSwap(coarseIdle, coarseRead) {
		time.AfterFunc(coarsePeriod, s.refreshCoarse)
	}
	return now
}

// refreshCoarse is the coarse clock's timer: it refreshes the reading,
// then runs again in a period if the reading was read since it last ran,
// and otherwise stops. Readers only ever move the state from armed to
// read, so a compare-and-swap decides between the two without a lost
// wake-up: a read that comes after the timer stopped finds it idle.
func (s *MemStore) refreshCoarse() {
	c := &s.coarse
	c.ns.Store(s.now().ns)
	for {
		if c.state.CompareAndSwap(coarseRead, coarseArmed) {
			time.AfterFunc(coarsePeriod, s.refreshCoarse)
			return
		}
		if c.state.CompareAndSwap(coarseArmed, coarseIdle) {
			return
		}
	}
}
