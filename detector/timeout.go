package detector

import (
	"cmp"
	"sync"
	"time"
)

// defaultTimeout is the deadline of the zero [Timeout]: Akka Cluster's
// heartbeat interval (1s) plus its acceptable heartbeat pause (3s).
const defaultTimeout = 4 * time.Second

// Timeout is a fixed-timeout heartbeat detector, Akka's deadline failure
// detector: the node is suspected once more than the timeout has passed
// since its last heartbeat. It has the methods of [Phi], so that a
// [Registry] can hold either, and serves as the baseline the accrual
// detectors are measured against.
//
// The zero Timeout has a timeout of 4s (Akka Cluster's heartbeat interval
// plus its acceptable pause) and is ready to use; [NewTimeout] sets
// another. A Timeout is safe for concurrent use and must not be copied
// after first use.
type Timeout struct {
	mu    sync.Mutex
	after time.Duration // 0: defaultTimeout
	h     history       // its window stays empty
}

// NewTimeout returns a detector that suspects a node once more than after
// has passed since its last heartbeat; 0 means 4s. It panics if after is
// negative.
func NewTimeout(after time.Duration) *Timeout {
	checkNonNegative("NewTimeout: after", after)
	return &Timeout{after: after}
}

// Heartbeat records a heartbeat that arrived at now. A heartbeat before the
// latest one is ignored.
func (t *Timeout) Heartbeat(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.h.record(now, false)
}

// Phi returns the fraction of the timeout that has passed since the last
// heartbeat: 0 before the first heartbeat and at a heartbeat, 1 at the
// deadline. It is a suspicion level that grows linearly with the silence,
// not a probability.
func (t *Timeout) Phi(now time.Time) float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	since, monitored := t.h.since(now)
	if !monitored {
		return 0
	}
	return float64(since) / float64(t.timeout())
}

// Available reports whether at most the timeout has passed since the last
// heartbeat, or no heartbeat has arrived yet.
func (t *Timeout) Available(now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	since, monitored := t.h.since(now)
	return !monitored || since <= t.timeout()
}

func (t *Timeout) timeout() time.Duration { return cmp.Or(t.after, defaultTimeout) }
