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
	mu        sync.Mutex
	cfg       ExponentialConfig // with defaults, once w is allocated
	w         window
	last      time.Time
	monitored bool
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
	e.w = newWindow(e.cfg.MaxSamples)
}

// Heartbeat records a heartbeat that arrived at now. The first records
// FirstHeartbeat as an interval; each later one records the interval since
// the previous heartbeat if it is at most MaxInterval. A heartbeat before
// the latest one is ignored.
func (e *Exponential) Heartbeat(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.w.ring == nil {
		e.configure(ExponentialConfig{})
	}
	switch {
	case !e.monitored:
		e.monitored = true
		e.w.add(e.cfg.FirstHeartbeat)
	case now.Before(e.last):
		return
	default:
		if d := now.Sub(e.last); d <= e.cfg.MaxInterval {
			e.w.add(d)
		}
	}
	e.last = now
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
	return !e.monitored || e.phi(now) <= e.cfg.Threshold
}

// phi is [Exponential.Phi] with e.mu held.
func (e *Exponential) phi(now time.Time) float64 {
	if !e.monitored {
		return 0
	}
	t := float64(elapsed(e.last, now))
	if t == 0 {
		return 0
	}
	mean := e.w.mean()
	if mean == 0 {
		return math.Inf(1)
	}
	return t / mean / math.Ln10
}
