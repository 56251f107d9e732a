// Package clocktest provides a manually driven [clock.Clock] for tests of
// code that takes a clock.
//
// Goroutine drivers are better tested inside testing/synctest bubbles,
// where time.Now and timers use virtual time; Manual serves code that only
// reads the time through a [clock.Clock].
//
// # Usage
//
//	c := clocktest.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
//	svc := newService(c)        // any code that takes a clock.Clock
//	c.Advance(time.Second)      // time moves only when the test says so
//	c.Set(earlier)              // also backwards, as an NTP step would
//
// # Guarantees
//
//   - Now returns the time NewManual or the latest Set gave, moved by
//     every Advance since; nothing else moves the clock.
//   - Manual is safe for concurrent use: concurrent Advance calls all take
//     effect, in some order.
package clocktest

import (
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
)

// Manual is a clock that moves only when told to. It is safe for
// concurrent use and must not be copied after first use. The zero Manual
// reads the zero time.Time and is ready to use.
type Manual struct {
	mu  sync.Mutex
	now time.Time
}

var _ clock.Clock = (*Manual)(nil)

// NewManual returns a Manual clock reading t.
func NewManual(t time.Time) *Manual { return &Manual{now: t} }

// Now returns the clock's current reading.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Set moves the clock to t, forwards or backwards.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = t
}

// Advance moves the clock by d; a negative d moves it backwards, as an NTP
// step would.
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(d)
}
