// Package clock abstracts the physical clock and provides Lamport's logical
// clock.
//
// Every pure core in distkit takes the current time as an argument; the
// drivers and constructors that need a time source take a [Clock], so that
// tests can substitute a manual clock (see package clocktest) and
// production code uses [System].
//
// # Usage
//
//	var l clock.Lamport
//	t := l.Tick()            // local or send event
//	t = l.Witness(remote)    // receive event
//
// # Guarantees
//
//   - [Lamport] is lock-free and safe for concurrent use. Every call to
//     Tick or Witness returns a value no other call on the same clock
//     returns, and values returned by one goroutine strictly increase.
//   - Witness(r) returns a value greater than both r and every value the
//     clock returned before it: max(local, r) + 1.
//   - The clock never wraps around: at math.MaxUint64, which only a
//     corrupt or hostile remote timestamp can bring near, Tick and Witness
//     panic instead.
//   - [System] and [Func] are safe for concurrent use whenever the wrapped
//     function is.
package clock

import (
	"math"
	"sync/atomic"
	"time"
)

// Clock is a source of physical time.
type Clock interface {
	Now() time.Time
}

// System is the operating system's clock: Now returns time.Now(). The zero
// value is ready to use and safe for concurrent use.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// Func adapts an ordinary function to the [Clock] interface.
type Func func() time.Time

// Now returns f().
func (f Func) Now() time.Time { return f() }

var (
	_ Clock = System{}
	_ Clock = Func(nil)
)

// Lamport is a Lamport logical clock (Lamport 1978). The zero value is a
// clock at time 0, ready to use. It is lock-free and safe for concurrent
// use; it must not be copied after first use.
type Lamport struct {
	t atomic.Uint64
}

// Tick records a local or send event and returns its timestamp: the
// previous time plus one.
//
// Tick panics, leaving the clock unchanged, if the time is already
// math.MaxUint64 (see [Lamport.Witness]).
func (l *Lamport) Tick() uint64 { return l.advance(0) }

// Witness records the receipt of a message stamped remote and returns the
// receive event's timestamp, max(local, remote) + 1. The returned value is
// greater than remote and than every timestamp the clock returned before.
//
// Witness panics, leaving the clock unchanged, when max(local, remote) is
// math.MaxUint64: no greater timestamp exists, and wrapping around to 0
// would silently order later events before earlier ones. Honest clocks
// never get near that value, so a process that receives timestamps from
// untrusted peers should reject implausibly large ones before calling
// Witness.
func (l *Lamport) Witness(remote uint64) uint64 { return l.advance(remote) }

// advance sets the time to max(time, floor) + 1 and returns it.
func (l *Lamport) advance(floor uint64) uint64 {
	for {
		cur := l.t.Load()
		next := max(cur, floor)
		if next == math.MaxUint64 {
			panic("clock: Lamport time exhausted")
		}
		next++
		if l.t.CompareAndSwap(cur, next) {
			return next
		}
	}
}

// Time returns the clock's current value without advancing it.
func (l *Lamport) Time() uint64 { return l.t.Load() }
