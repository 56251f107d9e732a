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
//	t, err := l.Receive(remote) // receive event; err for a remote time above MaxCounter
//
// # Guarantees
//
//   - [Lamport] is lock-free and safe for concurrent use. Every call to
//     Tick or Witness returns a value no other call on the same clock
//     returns, and values returned by one goroutine strictly increase.
//   - Witness(r) returns a value greater than both r and every value the
//     clock returned before it: max(local, r) + 1.
//   - Remote input cannot exhaust the clock: Receive refuses remote times
//     above [MaxCounter] (2^63-1) with an error and leaves the clock
//     unchanged, so at least 2^63 events remain after any accepted time.
//     The clock never wraps around: at math.MaxUint64 Receive returns an
//     error and Tick panics. Witness, for trusted times, panics where
//     Receive returns an error.
//   - [System] and [Func] are safe for concurrent use whenever the wrapped
//     function is.
package clock

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"
)

// MaxCounter is the largest logical counter distkit accepts from another
// process: 2^63-1. It bounds Lamport times given to [Lamport.Receive],
// and, through vclock.MaxCounter, the counters of dots, vector clocks,
// DVVSets and CRDT states that decoders accept, so that no local tick,
// merge or write can overflow because of remote input: from any accepted
// value, 2^63 local events remain before the uint64 range ends.
const MaxCounter = 1<<63 - 1

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

// ErrRange is returned (wrapped) by [Lamport.Receive] for a remote time
// above [MaxCounter]: no honest clock gets there, and accepting it would
// bring the clock within reach of the end of its range.
var ErrRange = errors.New("clock: Lamport time out of range")

// ErrExhausted is returned (wrapped) by [Lamport.Receive] when the clock
// is at math.MaxUint64 and has no greater time to give. Only a clock that
// ticked 2^63 times past [MaxCounter] gets there.
var ErrExhausted = errors.New("clock: Lamport time exhausted")

// Tick records a local or send event and returns its timestamp: the
// previous time plus one.
//
// Tick panics, leaving the clock unchanged, if the time is already
// math.MaxUint64: at least 2^63 local events after the largest remote
// time [Lamport.Receive] accepts, which no process lives to see.
func (l *Lamport) Tick() uint64 {
	t, err := l.advance(0)
	if err != nil {
		panic(err.Error())
	}
	return t
}

// Receive records the receipt of a message stamped remote and returns the
// receive event's timestamp, max(local, remote) + 1: greater than remote
// and than every timestamp the clock returned before. It is the receive
// rule for times that come from other processes.
//
// Receive returns 0 and an error wrapping [ErrRange], leaving the clock
// unchanged, if remote is above [MaxCounter], and 0 and an error wrapping
// [ErrExhausted] if the clock is at math.MaxUint64.
func (l *Lamport) Receive(remote uint64) (uint64, error) {
	if remote > MaxCounter {
		return 0, fmt.Errorf("%w: remote time %d above %d", ErrRange, remote, uint64(MaxCounter))
	}
	return l.advance(remote)
}

// Witness is [Lamport.Receive] for a remote time the caller trusts: it
// returns max(local, remote) + 1, greater than remote and than every
// timestamp the clock returned before.
//
// Witness panics, leaving the clock unchanged, where Receive returns an
// error: for a remote time above [MaxCounter], which only a corrupt or
// hostile peer sends. Passing such a time is misuse; give times read from
// the network to Receive.
func (l *Lamport) Witness(remote uint64) uint64 {
	t, err := l.Receive(remote)
	if err != nil {
		panic(err.Error())
	}
	return t
}

// advance sets the time to max(time, floor) + 1 and returns it, or
// returns an error wrapping ErrExhausted, changing nothing, at
// math.MaxUint64.
func (l *Lamport) advance(floor uint64) (uint64, error) {
	for {
		cur := l.t.Load()
		next := max(cur, floor)
		if next == math.MaxUint64 {
			return 0, ErrExhausted
		}
		next++
		if l.t.CompareAndSwap(cur, next) {
			return next, nil
		}
	}
}

// Time returns the clock's current value without advancing it.
func (l *Lamport) Time() uint64 { return l.t.Load() }
