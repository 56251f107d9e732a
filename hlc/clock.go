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

// Config configures a [Clock]. The zero Config is the zero Clock's
// behaviour: the system clock and no offset check.
type Config struct {
	// Source is the physical clock; nil means clock.System.
	Source clock.Clock
	// MaxOffset is how far a remote timestamp may be ahead of Source before
	// Update rejects it. 0 means remote timestamps are never rejected. It
	// must not be negative.
	MaxOffset time.Duration
}

// Clock is a hybrid logical clock (Kulkarni et al. 2014) over a physical
// clock. It is lock-free: its state is one atomic word, updated with a
// compare-and-swap loop, and Now and Update do not allocate.
//
// The zero Clock is ready to use: it reads the system clock and never
// rejects a remote timestamp. A Clock is safe for concurrent use and must
// not be copied after first use.
type Clock struct {
	last atomic.Uint64 // the last Timestamp issued
	// pt is the latest physical reading in microseconds, kept only to
	// detect backward jumps. It shares a cache line with last, which every
	// call writes anyway, so reading it costs next to nothing.
	pt atomic.Uint64

	source    clock.Clock // nil: time.Now, called directly
	maxOffset time.Duration

	backJumps atomic.Uint64
	maxJump   atomic.Uint64 // µs
	maxRemote atomic.Int64  // µs
	rejected  atomic.Uint64
}

// New returns a Clock configured by cfg. It panics if cfg.MaxOffset is
// negative.
func New(cfg Config) *Clock {
	if cfg.MaxOffset < 0 {
		panic("hlc: negative MaxOffset")
	}
	c := &Clock{source: cfg.Source, maxOffset: cfg.MaxOffset}
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
// Now panics only when the clock has exhausted its range, at
// [MaxTimestamp] (see [Clock.Update] on how a clock can get there).
func (c *Clock) Now() Timestamp {
	pt := c.physical()
	for {
		last := c.last.Load()
		next := max(successor(last), pt)
		if c.last.CompareAndSwap(last, next) {
			return Timestamp(next)
		}
	}
}

// Update returns the timestamp of the receive event of a message stamped
// remote: max(Last()+1, remote+1, pt), the paper's receive rule. The result
// is greater than remote and than every timestamp the clock issued before.
//
// Update returns 0 and an [*OffsetError] matching [ErrClockOffset] if the
// clock has a MaxOffset and remote's wall time is more than MaxOffset ahead
// of the physical clock, and 0 and an error wrapping [ErrRange] if remote's
// wall time is the last representable microsecond or later (no clock reads
// such a time before 2112). Either way the clock is left unchanged.
//
// A clock without a MaxOffset trusts its peers: a remote timestamp near
// [MaxTimestamp] moves it there, and Now and Update panic once the range is
// used up. Set MaxOffset wherever peers are not trusted.
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
	for {
		last := c.last.Load()
		next := max(successor(last), uint64(remote)+1, pt)
		if c.last.CompareAndSwap(last, next) {
			return Timestamp(next), nil
		}
	}
}

// Last returns the last timestamp the clock issued (or was restored to),
// without advancing it; zero for a new clock.
func (c *Clock) Last() Timestamp { return Timestamp(c.last.Load()) }

// Restore advances the clock so that every timestamp it issues later is
// greater than floor; a clock already past floor is unchanged. It is how a
// process that restarts keeps its timestamps increasing across the restart:
// see "Restart safety" in the package documentation. Restore does no offset
// check.
func (c *Clock) Restore(floor Timestamp) {
	for {
		last := c.last.Load()
		if last >= uint64(floor) || c.last.CompareAndSwap(last, uint64(floor)) {
			return
		}
	}
}

// Stats counts what a clock has seen of its physical clock and its peers,
// for operators to alert on.
type Stats struct {
	// BackwardJumps counts the times the physical clock was read earlier
	// than the reading before it, by at least a microsecond (an NTP step, a
	// VM migration). Each jump is counted once, however many goroutines
	// observe it. Under contention the recorded previous reading may lag
	// the latest one slightly, so a jump smaller than that lag (a few
	// microseconds) can go uncounted.
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

// physical reads the physical clock and returns it as a timestamp with
// logical counter 0, noting a backward jump. The previous reading is loaded
// before the clock is read, so that a concurrent reading taken earlier can
// never look like a jump.
func (c *Clock) physical() uint64 {
	prev := c.pt.Load()
	var now time.Time
	if c.source == nil {
		now = time.Now()
	} else {
		now = c.source.Now()
	}
	pt, _ := unixMicros(now)
	if pt != prev {
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

// successor returns last+1, panicking rather than wrapping around.
func successor(last uint64) uint64 {
	if last == uint64(MaxTimestamp) {
		panic("hlc: timestamp range exhausted")
	}
	return last + 1
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
