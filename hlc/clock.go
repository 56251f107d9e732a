package hlc

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
)

// ErrClockOffset is returned (wrapped in an [*OffsetError]) by
// [Clock.Update] when the remote timestamp is more than the configured
// MaxOffset ahead of the physical clock. The clock is left unchanged.
var ErrClockOffset = errors.New("hlc: remote timestamp too far ahead of the physical clock")

// OffsetError is the error [Clock.Update] returns for a remote timestamp too
// far ahead of the physical clock. errors.Is(err, ErrClockOffset) holds.
type OffsetError struct {
	Remote    Timestamp     // the rejected timestamp
	Physical  time.Time     // the physical clock when it was received
	Offset    time.Duration // Remote's wall time minus Physical
	MaxOffset time.Duration // the configured limit that Offset exceeds
}

// Error describes the rejection: the remote timestamp, its offset and the limit.
func (e *OffsetError) Error() string {
	return fmt.Sprintf("%v: remote %s is %s ahead, max offset %s",
		ErrClockOffset, e.Remote, e.Offset, e.MaxOffset)
}

// Unwrap returns [ErrClockOffset].
func (e *OffsetError) Unwrap() error { return ErrClockOffset }

// ErrRestoreAhead is returned (wrapped in a [*RestoreError]) by
// [Clock.Restore] for a floor further ahead of the physical clock than the
// configured MaxRestoreAhead. The clock is left unchanged.
var ErrRestoreAhead = errors.New("hlc: restore floor too far ahead of the physical clock")

// RestoreError is the error [Clock.Restore] returns for an implausible
// floor. errors.Is(err, ErrRestoreAhead) holds.
type RestoreError struct {
	Floor    Timestamp     // the rejected floor
	Physical time.Time     // the physical clock when Restore was called
	Ahead    time.Duration // Floor's wall time minus Physical
	MaxAhead time.Duration // the limit that Ahead exceeds
}

// Error describes the rejection: the floor, how far ahead it is and the
// limit.
func (e *RestoreError) Error() string {
	return fmt.Sprintf("%v: floor %s is %s ahead, max %s", ErrRestoreAhead, e.Floor, e.Ahead, e.MaxAhead)
}

// Unwrap returns [ErrRestoreAhead].
func (e *RestoreError) Unwrap() error { return ErrRestoreAhead }

// ErrUpperBound is wrapped by the errors of [Clock.TryNow] and
// [Clock.Update] on a clock with EnforceUpperBound when the timestamp to
// issue would pass the bound given to [Clock.SetUpperBound]. The clock is
// left unchanged.
var ErrUpperBound = errors.New("hlc: timestamp past the persisted upper bound")

// Config configures a [Clock]. The zero Config is the zero Clock's
// behaviour: the system clock, no offset check, restore floors up to a
// minute ahead, no enforced upper bound.
type Config struct {
	// Source is the physical clock; nil means clock.System.
	Source clock.Clock
	// MaxOffset is how far a remote timestamp may be ahead of Source before
	// Update rejects it. 0 means remote timestamps are never rejected. It
	// must not be negative.
	MaxOffset time.Duration
	// MaxRestoreAhead is how far ahead of Source a floor given to
	// Restore may be: the most a persisted upper bound can lead the
	// physical clock at restart, which is 2*interval + 2*MaxOffset for a
	// bound persisted every interval as "Restart safety" in the package
	// documentation shows. 0 means 2*MaxOffset + 1 minute, enough for
	// intervals up to 30 seconds. It must not be negative.
	MaxRestoreAhead time.Duration
	// EnforceUpperBound makes the clock refuse to issue a timestamp past
	// the bound last given to SetUpperBound (while one is set), as
	// CockroachDB does with its persisted wall time upper bound, instead
	// of silently passing it: Update and TryNow return an error wrapping
	// ErrUpperBound and Now panics, each leaving the clock unchanged.
	// Reaching the bound means the loop that persists it has stalled, and
	// timestamps issued past it could repeat after a restart. Now and
	// Update then run a compare-and-swap loop instead of Now's wait-free
	// path.
	EnforceUpperBound bool
}

// Clock is a hybrid logical clock (Kulkarni et al. 2014) over a physical
// clock. It is lock-free: its state is one atomic word. When the physical
// clock has not passed the last timestamp (many calls within one
// microsecond, or a clock ahead of physical time), Now and Update are
// wait-free: one atomic add on the word gives the next timestamp, however
// many goroutines race. Otherwise they set the word with a
// compare-and-swap loop. Now and Update do not allocate.
//
// The zero Clock is ready to use: it reads the system clock and never
// rejects a remote timestamp. A Clock is safe for concurrent use and must
// not be copied after first use.
type Clock struct {
	// Set by New, then only read: on cache lines of their own, so that
	// reading them costs no core a miss when last or pt changes.
	source       clock.Clock // nil: time.Now, called directly
	maxOffset    time.Duration
	restoreAhead time.Duration // 0: 2*maxOffset + time.Minute
	enforce      bool
	_            [64]byte

	last atomic.Uint64 // the last Timestamp issued; every call writes it
	_    [64]byte

	// pt is a recent physical reading in microseconds, kept only to
	// detect backward jumps. It changes at most once a millisecond going
	// forward (see physical), so on its own cache line it is read from
	// every core's cache.
	pt    atomic.Uint64
	bound atomic.Uint64 // the upper bound; 0: none
	_     [64]byte

	backJumps atomic.Uint64
	maxJump   atomic.Uint64 // µs
	maxRemote atomic.Int64  // µs
	rejected  atomic.Uint64
}

// New returns a Clock configured by cfg. It panics if cfg.MaxOffset or
// cfg.MaxRestoreAhead is negative.
func New(cfg Config) *Clock {
	if cfg.MaxOffset < 0 {
		panic("hlc: negative MaxOffset")
	}
	if cfg.MaxRestoreAhead < 0 {
		panic("hlc: negative MaxRestoreAhead")
	}
	c := &Clock{source: cfg.Source, maxOffset: cfg.MaxOffset, restoreAhead: cfg.MaxRestoreAhead, enforce: cfg.EnforceUpperBound}
	if _, ok := c.source.(clock.System); ok {
		c.source = nil
	}
	return c
}

// Now returns the timestamp of a local or send event:
// max(Last()+1, pt), where pt is the physical time with logical counter 0.
// It is the paper's send rule: the wall part follows the physical clock
// when that has moved past the last timestamp, the logical counter counts
// events otherwise. Every call returns a timestamp greater than every
// timestamp the clock issued before, even when the physical clock goes
// backwards.
//
// Now panics, leaving the clock unchanged, where [Clock.TryNow] returns an
// error: when the clock has exhausted its range (the physical clock is
// past 2112), and with EnforceUpperBound when the timestamp would pass
// the upper bound.
func (c *Clock) Now() Timestamp {
	ts, err := c.TryNow()
	if err != nil {
		panic(err.Error())
	}
	return ts
}

// TryNow is [Clock.Now] that returns an error instead of panicking: one
// wrapping [ErrUpperBound] when the clock has EnforceUpperBound and the
// timestamp would pass the bound given to [Clock.SetUpperBound], and one
// wrapping [ErrRange] when the clock's range is exhausted. Either way the
// clock is left unchanged.
func (c *Clock) TryNow() (Timestamp, error) { return c.advance(c.physical()) }

// fastLimit bounds the wait-free path: it is taken only while last is
// below it, two microseconds before the end of the range, so that the
// atomic adds of goroutines racing past the check cannot wrap around
// (that would take 8192 of them between their check and their add).
const fastLimit = (maxMicros - 1) << logicalBits

// advance issues the timestamp max(last+1, floor) and returns it. When
// floor <= last, that is last+1 for whatever last holds at the instant of
// the atomic add, so an add computes it exactly, without retrying. The
// add cannot be taken back, so a clock that enforces an upper bound, or
// is near the end of its range, checks first in a compare-and-swap loop.
func (c *Clock) advance(floor uint64) (Timestamp, error) {
	if !c.enforce {
		if last := c.last.Load(); floor <= last && last < fastLimit {
			return Timestamp(c.last.Add(1)), nil
		}
	}
	for {
		last := c.last.Load()
		next, err := c.next(last, floor)
		if err != nil {
			return 0, err
		}
		if c.last.CompareAndSwap(last, next) {
			return Timestamp(next), nil
		}
	}
}

// next returns max(last+1, floor), the timestamp to issue after last,
// checking the range and the enforced upper bound.
func (c *Clock) next(last, floor uint64) (uint64, error) {
	if last == uint64(MaxTimestamp) {
		return 0, fmt.Errorf("%w: the clock is at %s", ErrRange, MaxTimestamp)
	}
	next := max(last+1, floor)
	if c.enforce {
		if b := c.bound.Load(); b != 0 && next > b {
			return 0, fmt.Errorf("%w: %s after %s, bound %s", ErrUpperBound, Timestamp(next), Timestamp(last), Timestamp(b))
		}
	}
	return next, nil
}

// Update returns the timestamp of the receive event of a message stamped
// remote: max(Last()+1, remote+1, pt), the paper's receive rule. The result
// is greater than remote and than every timestamp the clock issued before.
//
// Update returns 0 and an [*OffsetError] matching [ErrClockOffset] if the
// clock has a MaxOffset and remote's wall time is more than MaxOffset ahead
// of the physical clock; 0 and an error wrapping [ErrRange] if remote's
// wall time is the last representable microsecond (no clock reads such a
// time before 2112, and a clock there could not advance); and, with
// EnforceUpperBound, 0 and an error wrapping [ErrUpperBound] if the result
// would pass the upper bound. Whatever the error, the clock is left
// unchanged.
//
// A clock without a MaxOffset trusts its peers: a remote timestamp far in
// the future moves it there, and its later timestamps stay there. Set
// MaxOffset wherever peers are not trusted.
func (c *Clock) Update(remote Timestamp) (Timestamp, error) {
	pt := c.physical()
	if err := checkWire(remote); err != nil {
		return 0, err
	}
	if ahead := remote.micros() - int64(pt>>logicalBits); ahead > 0 {
		if ahead > c.maxRemote.Load() {
			raiseTo(&c.maxRemote, ahead)
		}
		if c.maxOffset > 0 && time.Duration(ahead)*time.Microsecond > c.maxOffset {
			c.rejected.Add(1)
			return 0, &OffsetError{
				Remote:    remote,
				Physical:  Timestamp(pt).WallTime(),
				Offset:    time.Duration(ahead) * time.Microsecond,
				MaxOffset: c.maxOffset,
			}
		}
	}
	return c.advance(max(uint64(remote)+1, pt)) // remote+1: remote is not in the last microsecond
}

// Last returns the last timestamp the clock issued (or was restored to),
// without advancing it; zero for a new clock.
func (c *Clock) Last() Timestamp { return Timestamp(c.last.Load()) }

// Restore advances the clock so that every timestamp it issues later is
// greater than floor; a clock already past floor is unchanged. It is how a
// process that restarts keeps its timestamps increasing across the restart:
// see "Restart safety" in the package documentation.
//
// Restore refuses a floor that no honest restart produces, leaving the
// clock unchanged: one in the last representable microsecond, with an
// error wrapping [ErrRange], and one further ahead of the physical clock
// than the configured MaxRestoreAhead (by default 2*MaxOffset + 1 minute),
// with a [*RestoreError] matching [ErrRestoreAhead]. A corrupt bound file
// cannot then move the clock decades ahead.
func (c *Clock) Restore(floor Timestamp) error {
	if err := checkWire(floor); err != nil {
		return err
	}
	pt := c.physical()
	limit := c.restoreAhead
	if limit == 0 {
		limit = 2*c.maxOffset + time.Minute
	}
	if ahead := time.Duration(floor.micros()-int64(pt>>logicalBits)) * time.Microsecond; ahead > limit {
		return &RestoreError{Floor: floor, Physical: Timestamp(pt).WallTime(), Ahead: ahead, MaxAhead: limit}
	}
	raiseTo(&c.last, uint64(floor))
	return nil
}

// SetUpperBound records b as the persisted upper bound: the process has
// durably stored b and restores it after a restart (see "Restart safety"
// in the package documentation). On a clock with EnforceUpperBound, no
// timestamp past b is issued until a later bound is set; on other clocks
// the bound is only recorded. 0 removes the bound.
func (c *Clock) SetUpperBound(b Timestamp) { c.bound.Store(uint64(b)) }

// UpperBound returns the bound last given to [Clock.SetUpperBound], 0 if
// none.
func (c *Clock) UpperBound() Timestamp { return Timestamp(c.bound.Load()) }

// Stats counts what a clock has seen of its physical clock and its peers,
// for operators to alert on.
type Stats struct {
	// BackwardJumps counts the times the physical clock was read earlier
	// than a reading before it (an NTP step, a VM migration). Each jump is
	// counted once, however many goroutines observe it. The reading it is
	// compared with is kept fresh to within a millisecond (so that calls
	// do not all write it), hence a jump of less than a millisecond may go
	// uncounted, and the size of one counted may be short by as much.
	BackwardJumps uint64
	// MaxBackwardJump is the largest of those jumps.
	MaxBackwardJump time.Duration
	// MaxRemoteOffset is the furthest any remote timestamp passed to Update
	// was ahead of the physical clock, accepted or rejected.
	MaxRemoteOffset time.Duration
	// Rejected counts the Updates rejected with ErrClockOffset.
	Rejected uint64
}

// Stats returns the clock's counters. Each field is read atomically; the
// fields are not a snapshot taken at one instant.
func (c *Clock) Stats() Stats {
	return Stats{
		BackwardJumps:   c.backJumps.Load(),
		MaxBackwardJump: time.Duration(c.maxJump.Load()) * time.Microsecond,
		MaxRemoteOffset: time.Duration(c.maxRemote.Load()) * time.Microsecond,
		Rejected:        c.rejected.Load(),
	}
}

// ptStep is how far the physical clock must move forward before the
// reading kept for detecting backward jumps is replaced: at most one
// write a millisecond to that shared word, whatever the rate of calls.
const ptStep = 1000 // µs

// physical reads the physical clock and returns it as a timestamp with
// logical counter 0, noting a backward jump: a reading earlier than the
// one kept. The kept reading is replaced on a backward jump and when the
// clock has moved ptStep forward, so it lags the latest reading by less
// than a millisecond. It is loaded before the clock is read, so that a
// concurrent reading taken earlier can never look like a jump.
func (c *Clock) physical() uint64 {
	prev := c.pt.Load()
	var now time.Time
	if c.source == nil {
		now = time.Now()
	} else {
		now = c.source.Now()
	}
	pt, _ := unixMicros(now)
	if pt < prev || pt-prev >= ptStep {
		c.moved(prev, pt)
	}
	return pt << logicalBits
}

// moved records a physical reading pt that differs from prev. Only the
// goroutine whose compare-and-swap replaces prev counts a jump, so one jump
// is counted once however many goroutines observe it.
func (c *Clock) moved(prev, pt uint64) {
	if c.pt.CompareAndSwap(prev, pt) && pt < prev {
		c.backJumps.Add(1)
		raiseTo(&c.maxJump, prev-pt)
	}
}

// raiseTo sets a to max(a, v).
func raiseTo[T int64 | uint64, A interface {
	Load() T
	CompareAndSwap(old, new T) bool
}](a A, v T) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}
