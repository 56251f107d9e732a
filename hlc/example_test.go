package hlc_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/hlc"
)

// fixed returns a physical clock stopped at the given time.
func fixed(s string) clock.Clock {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return clock.Func(func() time.Time { return t })
}

// A message sent by a node whose clock is ahead: the receiver's timestamp
// orders the receive after the send, although its own physical clock is
// behind.
func Example() {
	a := hlc.New(hlc.Config{Source: fixed("2026-11-27T12:00:00.000300Z")})
	b := hlc.New(hlc.Config{Source: fixed("2026-11-27T12:00:00.000100Z"), MaxOffset: time.Millisecond})

	sent := a.Now()
	recv, err := b.Update(sent)
	fmt.Println(sent)
	fmt.Println(recv, err)
	fmt.Println(b.Now())
	// Output:
	// 2026-11-27T12:00:00.000300Z,0
	// 2026-11-27T12:00:00.000300Z,1 <nil>
	// 2026-11-27T12:00:00.000300Z,2
}

// A remote timestamp too far ahead of the physical clock is rejected, and
// the error says by how much.
func ExampleClock_Update() {
	c := hlc.New(hlc.Config{Source: fixed("2026-11-27T12:00:00Z"), MaxOffset: 250 * time.Millisecond})
	remote := hlc.Make(time.Date(2026, 11, 27, 12, 0, 1, 0, time.UTC), 0)

	_, err := c.Update(remote)
	var oe *hlc.OffsetError
	fmt.Println(errors.Is(err, hlc.ErrClockOffset), errors.As(err, &oe), oe.Offset)
	fmt.Println(c.Last().IsZero(), c.Stats().Rejected)
	// Output:
	// true true 1s
	// true 1
}

// After a restart, the clock starts above the upper bound persisted before.
func ExampleClock_Restore() {
	persisted := hlc.Make(time.Date(2026, 11, 27, 12, 0, 5, 0, time.UTC), 0)
	c := hlc.New(hlc.Config{Source: fixed("2026-11-27T12:00:00Z")}) // the clock was stepped back
	if err := c.Restore(persisted); err != nil {                    // a corrupt file or a bound decades ahead
		panic(err)
	}
	fmt.Println(c.Now())
	// Output: 2026-11-27T12:00:05.000000Z,1
}

func ExampleTimestamp() {
	ts := hlc.Make(time.Date(2026, 11, 27, 14, 6, 57, 123456789, time.UTC), 3)
	b, _ := ts.MarshalBinary()
	var back hlc.Timestamp
	err := back.UnmarshalText([]byte(ts.String()))
	fmt.Println(ts, ts.Logical(), back == ts, err)
	fmt.Printf("%#x % x\n", uint64(ts), b)
	fmt.Println(ts+hlc.MaxLogical-2, ts.Compare(ts+1))
	// Output:
	// 2026-11-27T14:06:57.123456Z,3 3 true <nil>
	// 0x6614292b1c480003 66 14 29 2b 1c 48 00 03
	// 2026-11-27T14:06:57.123457Z,0 -1
}

// With EnforceUpperBound the clock issues no timestamp past the bound the
// process persisted last: when the persisting loop stalls, TryNow says so
// instead of handing out timestamps a restart could repeat.
func ExampleClock_SetUpperBound() {
	c := hlc.New(hlc.Config{Source: fixed("2026-11-27T12:00:00Z"), EnforceUpperBound: true})
	first := c.Now()
	c.SetUpperBound(first + 1) // persisted, then set
	fmt.Println(c.Now())
	_, err := c.TryNow()
	fmt.Println(errors.Is(err, hlc.ErrUpperBound), c.Last())
	// Output:
	// 2026-11-27T12:00:00.000000Z,1
	// true 2026-11-27T12:00:00.000000Z,1
}
