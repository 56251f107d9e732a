package detector

import (
	"cmp"
	"math"
	"sync"
	"time"
)

// ExponentialConfig configures an [Exponential] detector. Its zero fields
// mean Cassandra's defaults; negative fields (or a NaN or infinite
// Threshold) make [NewExponential] panic.
type ExponentialConfig struct {
	// Threshold is the φ above which the node is suspected (Cassandra's
	// phi_convict_threshold). 0: 8.
	Threshold float64
	// MaxSamples is how many of the latest intervals the mean is estimated
	// from. 0: 1000.
	MaxSamples int
	// FirstHeartbeat is the interval recorded with the first heartbeat,
	// before any has been measured. Cassandra deliberately errs high, so
	// that a new node is suspected late rather than flapping. 0: 2s (twice
	// Cassandra's one-second gossip interval).
	FirstHeartbeat time.Duration
	// MaxInterval is the longest interval recorded: longer ones (a
	// partition, a restart) are left out of the mean, so that a node with
	// repeated long outages keeps being detected quickly rather than
	// the detector adapting to them. 0: FirstHeartbeat, as in Cassandra.
	MaxInterval time.Duration
}

// withDefaults validates c and fills its zero fields.
func (c ExponentialConfig) withDefaults() ExponentialConfig {
	checkThreshold("ExponentialConfig.Threshold", c.Threshold)
	checkNonNegative("ExponentialConfig.MaxSamples", c.MaxSamples)
	checkNonNegative("ExponentialConfig.FirstHeartbeat", c.FirstHeartbeat)
	checkNonNegative("ExponentialConfig.MaxInterval", c.MaxInterval)
	c.Threshold = cmp.Or(c.Threshold, defaultThreshold)
	c.MaxSamples = cmp.Or(c.MaxSamples, defaultMaxSamples)
	c.FirstHeartbeat = cmp.Or(c.FirstHeartbeat, 2*time.Second)
	c.MaxInterval = cmp.Or(c.MaxInterval, c.FirstHeartbeat)
	return c
}

// Exponential is Cassandra's failure detector: φ accrual under the model
// that heartbeats arrive as a Poisson process, so that the probability of
// no heartbeat for t is e^(−t/mean) and
//
//	φ = −log10(e^(−t/mean)) = t / (mean · ln 10)
//
// with the mean over the last MaxSamples intervals. φ grows linearly in the
// silence rather than explosively as in [Phi], and it ignores the variance:
// it is the more forgiving of the two on a jittery network, and the slower
// to detect a crash with the same threshold.
//
// Each heartbeat costs O(1) and allocates nothing.
//
// The zero Exponential is a detector with the default
// [ExponentialConfig], ready to use. An Exponential is safe for concurrent
// use and must not be copied after first use.
type Exponential struct {
	mu  sync.Mutex
	cfg ExponentialConfig // with defaults, once h.w is allocated
	h   history
}

// NewExponential returns a detector with configuration cfg, whose zero
// fields mean the defaults. It panics if a field is negative or Threshold
// is NaN or infinite.
func NewExponential(cfg ExponentialConfig) *Exponential {
	e := new(Exponential)
	e.configure(cfg)
	return e
}

func (e *Exponential) configure(cfg ExponentialConfig) {
	e.cfg = cfg.withDefaults()
	e.h.w = newWindow(e.cfg.MaxSamples)
}

// Heartbeat records a heartbeat that arrived at now. The first records
// FirstHeartbeat as an interval; each later one records the interval since
// the previous heartbeat if it is at most MaxInterval. A heartbeat before
// the latest one is ignored.
func (e *Exponential) Heartbeat(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.h.w.ring == nil {
		e.configure(ExponentialConfig{})
	}
	e.h.record(now, now.Sub(e.h.last) <= e.cfg.MaxInterval, e.cfg.FirstHeartbeat)
}

// Phi returns the suspicion level φ = t / (mean · ln 10) at now, where t is
// the time since the last heartbeat. It is 0 before the first heartbeat,
// never NaN or negative, and +Inf only if every recorded interval is 0 and
// t is not.
func (e *Exponential) Phi(now time.Time) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.phi(now)
}

// Available reports whether φ at now is at most the threshold (Cassandra
// convicts a node when φ exceeds it).
func (e *Exponential) Available(now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	_, monitored := e.h.since(now)
	return !monitored || e.phi(now) <= e.cfg.Threshold
}

// phi is [Exponential.Phi] with e.mu held.
func (e *Exponential) phi(now time.Time) float64 {
	t, monitored := e.h.since(now)
	if !monitored || t == 0 {
		return 0
	}
	mean := e.h.w.mean()
	if mean == 0 {
		return math.Inf(1)
	}
	return float64(t) / mean / math.Ln10
}
