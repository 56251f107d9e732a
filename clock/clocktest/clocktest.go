// Package clocktest provides a manually driven [clock.Clock] for tests of
// code that takes a clock.
//
// Goroutine drivers are better tested inside testing/synctest bubbles,
// where time.Now and timers use virtual time; Manual serves code that only
// reads the time through a [clock.Clock].
package clocktest

import (
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
)

// Manual is a clock that moves only when told to. It is safe for
// concurrent use.
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
