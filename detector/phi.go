package detector

import (
	"cmp"
	"fmt"
	"math"
	"sync"
	"time"
)

// Akka's defaults, shared by the configurations of this package.
const (
	defaultThreshold      = 8.0
	defaultMaxSamples     = 1000
	defaultMinStdDev      = 100 * time.Millisecond
	defaultFirstHeartbeat = time.Second
)

// PhiOf returns the suspicion level φ = −log10(1 − F(elapsed)), where F is
// the normal distribution N(mean, stdDev²) in Akka's logistic
// approximation:
//
//	y = (elapsed − mean) / stdDev
//	F ≈ 1 / (1 + e^(−y·(1.5976 + 0.070566·y²)))
//
// (error below 0.00014 in F). The result equals log10(1 + e^(y·(1.5976 +
// 0.070566·y²))), which PhiOf evaluates without cancellation or overflow:
// it is never NaN, never negative, about 0 far below the mean, log10(2) at
// the mean, and grows like the cube of y above it. It is non-decreasing in
// elapsed and non-increasing in stdDev beyond the mean.
//
// A stdDev ≤ 0 is taken as the limit stdDev → 0: φ is 0 below the mean,
// log10(2) at it and +Inf above it.
func PhiOf(elapsed, mean, stdDev time.Duration) float64 {
	return phiOf(float64(elapsed), float64(mean), float64(stdDev))
}

// phiOf is [PhiOf] on float64 nanoseconds.
func phiOf(elapsed, mean, stdDev float64) float64 {
	var z float64
	if stdDev > 0 {
		y := (elapsed - mean) / stdDev
		z = y * (1.5976 + 0.070566*y*y)
	} else if elapsed != mean {
		z = math.Copysign(math.Inf(1), elapsed-mean)
	}
	// φ = log10(1 + e^z). Each step is monotone in z; beyond z = 36, e^−z is
	// below half an ulp of z, so log(1 + e^z) rounds to z itself, and z
	// avoids the overflow of e^z.
	if z > 36 {
		return z / math.Ln10
	}
	return math.Log1p(math.Exp(z)) / math.Ln10
}

// PhiConfig configures a [Phi] detector. Its zero fields mean Akka's
// defaults; negative fields (or a NaN or infinite Threshold) make [NewPhi]
// panic.
type PhiConfig struct {
	// Threshold is the φ at and above which the node is suspected. A low
	// threshold detects crashes sooner and suspects live nodes more often.
	// 0: 8.
	Threshold float64
	// MaxSamples is how many of the latest heartbeat intervals the mean and
	// standard deviation are estimated from. 0: 1000.
	MaxSamples int
	// MinStdDev is a floor on the estimated standard deviation, so that a
	// very regular heartbeat does not make φ jump at the first small
	// delay. 0: 100ms.
	MinStdDev time.Duration
	// AcceptablePause is added to the mean interval: the lost or late
	// heartbeats (a GC pause, a network hiccup) tolerated before φ starts
	// to rise. 0: none.
	AcceptablePause time.Duration
	// FirstHeartbeat is the interval assumed before any has been measured:
	// the first heartbeat seeds the window with two intervals,
	// FirstHeartbeat ± FirstHeartbeat/4, as Akka does, so that a node that
	// sends a single heartbeat is still suspected when it goes silent.
	// 0: 1s.
	FirstHeartbeat time.Duration
}

// withDefaults validates c and fills its zero fields.
func (c PhiConfig) withDefaults() PhiConfig {
	checkThreshold("PhiConfig.Threshold", c.Threshold)
	checkNonNegative("PhiConfig.MaxSamples", c.MaxSamples)
	checkNonNegative("PhiConfig.MinStdDev", c.MinStdDev)
	checkNonNegative("PhiConfig.AcceptablePause", c.AcceptablePause)
	checkNonNegative("PhiConfig.FirstHeartbeat", c.FirstHeartbeat)
	c.Threshold = cmp.Or(c.Threshold, defaultThreshold)
	c.MaxSamples = cmp.Or(c.MaxSamples, defaultMaxSamples)
	c.MinStdDev = cmp.Or(c.MinStdDev, defaultMinStdDev)
	c.FirstHeartbeat = cmp.Or(c.FirstHeartbeat, defaultFirstHeartbeat)
	return c
}

// Phi is the φ accrual failure detector of Hayashibara et al. (2004) as
// Akka implements it, for one monitored node: it estimates the
// distribution of heartbeat intervals from the last MaxSamples of them and
// reports, as φ, how unlikely it is that the next heartbeat is merely late.
//
// Each heartbeat costs O(1) and allocates nothing: the intervals sit in a
// ring buffer allocated once, with exact running sums.
//
// The zero Phi is a detector with the default [PhiConfig], ready to use;
// [NewPhi] makes one with another configuration. A Phi is safe for
// concurrent use and must not be copied after first use.
type Phi struct {
	mu  sync.Mutex
	cfg PhiConfig // with defaults, once h.w is allocated
	h   history
}

// NewPhi returns a detector with configuration cfg, whose zero fields mean
// the defaults. It panics if a field is negative or Threshold is NaN or
// infinite.
func NewPhi(cfg PhiConfig) *Phi {
	p := new(Phi)
	p.configure(cfg)
	return p
}

func (p *Phi) configure(cfg PhiConfig) {
	p.cfg = cfg.withDefaults()
	p.h.w = newWindow(p.cfg.MaxSamples)
}

// Heartbeat records a heartbeat that arrived at now.
//
// The first heartbeat seeds the interval window from FirstHeartbeat. Each
// later one adds the interval since the previous heartbeat, unless the node
// was already suspected at now: as in Akka, the first heartbeat after a
// failure is not taken into the statistics, since the long silence before
// it would skew them. A heartbeat before the latest one is ignored.
func (p *Phi) Heartbeat(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.h.w.ring == nil {
		p.configure(PhiConfig{})
	}
	first, sd := p.cfg.FirstHeartbeat, p.cfg.FirstHeartbeat/4
	p.h.record(now, p.available(now), first-sd, first+sd)
}

// Phi returns the suspicion level φ at now: [PhiOf] of the time since the
// last heartbeat, the window's mean plus AcceptablePause, and the window's
// standard deviation raised to at least MinStdDev. It is 0 before the first
// heartbeat (a node not yet monitored is not suspected) and never NaN or
// negative.
func (p *Phi) Phi(now time.Time) float64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.phi(now)
}

// Available reports whether φ at now is below the threshold.
func (p *Phi) Available(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.available(now)
}

// phiAtMean bounds φ up to the mean: φ there is at most log10(2) ≈ 0.30103,
// its value at the mean, since φ is non-decreasing in elapsed.
const phiAtMean = 0.302

// phi is [Phi.Phi] with p.mu held.
func (p *Phi) phi(now time.Time) float64 {
	t, monitored := p.h.since(now)
	if !monitored {
		return 0
	}
	return phiOf(float64(t), p.mean(), p.stdDev())
}

// available is [Phi.Available] with p.mu held. Up to the mean it needs no
// logarithm unless the threshold is below phiAtMean.
func (p *Phi) available(now time.Time) bool {
	t, monitored := p.h.since(now)
	if !monitored {
		return true
	}
	mean := p.mean()
	if float64(t) <= mean && p.cfg.Threshold > phiAtMean {
		return true
	}
	return phiOf(float64(t), mean, p.stdDev()) < p.cfg.Threshold
}

// mean is the window's mean plus the acceptable pause.
func (p *Phi) mean() float64 { return p.h.w.mean() + float64(p.cfg.AcceptablePause) }

// stdDev is the window's standard deviation, at least MinStdDev.
func (p *Phi) stdDev() float64 { return max(p.h.w.stdDev(), float64(p.cfg.MinStdDev)) }

// checkThreshold panics unless t is a finite number ≥ 0.
func checkThreshold(field string, t float64) {
	if t < 0 || math.IsNaN(t) || math.IsInf(t, 0) {
		panic(fmt.Sprintf("detector: %s %v is not a finite number ≥ 0", field, t))
	}
}

// checkNonNegative panics if v is negative.
func checkNonNegative[T int | time.Duration](field string, v T) {
	if v < 0 {
		panic(fmt.Sprintf("detector: %s is negative (%v)", field, v))
	}
}
