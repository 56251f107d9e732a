package clock_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/clock"
)

// Two processes exchange a message; the receive event is ordered after the
// send.
func ExampleLamport() {
	var a, b clock.Lamport
	a.Tick()         // a: local event at 1
	sent := a.Tick() // a: send at 2
	b.Tick()         // b: local event at 1
	recv := b.Witness(sent)
	fmt.Println(sent, recv, recv > sent)
	// Output: 2 3 true
}

func ExampleFunc() {
	fixed := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var c clock.Clock = clock.Func(func() time.Time { return fixed })
	fmt.Println(c.Now().Format(time.RFC3339))
	// Output: 2026-11-27T12:00:00Z
}

// A time read from the network goes to Receive, which refuses one no honest
// clock sends and leaves the clock as it was.
func ExampleLamport_Receive() {
	var l clock.Lamport
	l.Tick()
	t, err := l.Receive(41)
	fmt.Println(t, err)
	_, err = l.Receive(1 << 63)
	fmt.Println(errors.Is(err, clock.ErrRange), l.Time())
	// Output:
	// 42 <nil>
	// true 42
}
