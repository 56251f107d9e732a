package quorum

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"time"
)

// StaleProbability returns the probability, under Probabilistically Bounded
// Staleness (Bailis et al., VLDB 2012), that a read misses the last k
// committed versions: that its R replicas, chosen uniformly, avoid each of
// the k write quorums of W replicas,
//
//	p_s = (C(N-W, R) / C(N, R))^k.
//
// It is 0 when c is [Config.Overlapping]. It returns NaN for an invalid c or
// k < 1.
func StaleProbability(c Config, k int) float64 {
	if c.Validate() != nil || k < 1 {
		return math.NaN()
	}
	// C(N-W, R) / C(N, R) = prod_{i<R} (N-W-i) / (N-i); a factor is 0 as
	// soon as the read set cannot avoid the write set.
	miss := 1.0
	for i := range c.R {
		miss *= float64(max(c.N-c.W-i, 0)) / float64(c.N-i)
	}
	return math.Pow(miss, float64(k))
}

// Distribution is a latency distribution for the WARS model. Sample must
// draw only from r, so that a seeded simulation replays exactly. If a
// Distribution also has a method Validate() error, [WARS.Simulate] calls it
// and refuses to run when it fails.
type Distribution interface {
	Sample(r *rand.Rand) time.Duration
}

// maxSample bounds every sampled latency, so that the sums the simulation
// forms cannot overflow (about 73 years: no real latency comes close).
const maxSample = time.Duration(math.MaxInt64 / 4)

// Fixed is a constant latency. Its zero value is a latency of 0. Like every
// distribution here it is a plain value, safe for concurrent use (each
// goroutine with its own *rand.Rand).
type Fixed time.Duration

// Sample returns f.
func (f Fixed) Sample(*rand.Rand) time.Duration { return time.Duration(f) }

// Exponential is the exponential distribution with the given mean (the
// PBS paper's rate λ is 1/Mean). The zero value always samples 0. It is
// safe for concurrent use.
type Exponential struct {
	Mean time.Duration
}

// Sample draws an exponentially distributed latency.
func (e Exponential) Sample(r *rand.Rand) time.Duration {
	return clampSample(r.ExpFloat64() * float64(e.Mean))
}

// Validate rejects a negative mean.
func (e Exponential) Validate() error {
	if e.Mean < 0 {
		return fmt.Errorf("%w: exponential mean %v is negative", ErrInvalid, e.Mean)
	}
	return nil
}

// Pareto is the Pareto distribution with minimum Scale (x_m) and tail index
// Shape (α): P(X > x) = (Scale/x)^Shape for x >= Scale. The smaller the
// shape, the heavier the tail; the mean is finite only for Shape > 1. The
// zero value is not valid (Validate fails); it samples 0. It is safe for
// concurrent use.
type Pareto struct {
	Scale time.Duration
	Shape float64
}

// Sample draws a Pareto distributed latency by inversion.
func (p Pareto) Sample(r *rand.Rand) time.Duration {
	u := 1 - r.Float64() // in (0, 1]
	return clampSample(float64(p.Scale) * math.Pow(u, -1/p.Shape))
}

// Validate rejects a negative scale and a shape that is not positive.
func (p Pareto) Validate() error {
	if p.Scale < 0 || !(p.Shape > 0) || math.IsInf(p.Shape, 1) {
		return fmt.Errorf("%w: pareto scale %v, shape %v: want scale >= 0 and a finite shape > 0", ErrInvalid, p.Scale, p.Shape)
	}
	return nil
}

// Empirical resamples measured latencies: each Sample is one of the
// measurements, chosen uniformly (the bootstrap). Build it with
// [NewEmpirical]; the zero value is not valid (Validate fails) and samples
// 0. It is immutable and safe for concurrent use.
type Empirical struct {
	samples []time.Duration
}

// NewEmpirical returns the empirical distribution of samples, which it
// copies. It fails with an error wrapping [ErrInvalid] when samples is
// empty or holds a negative latency.
func NewEmpirical(samples []time.Duration) (Empirical, error) {
	if len(samples) == 0 {
		return Empirical{}, fmt.Errorf("%w: empirical distribution without samples", ErrInvalid)
	}
	if i := slices.IndexFunc(samples, func(d time.Duration) bool { return d < 0 }); i >= 0 {
		return Empirical{}, fmt.Errorf("%w: empirical sample %d is negative (%v)", ErrInvalid, i, samples[i])
	}
	return Empirical{samples: slices.Clone(samples)}, nil
}

// Sample returns one of the measurements, uniformly.
func (e Empirical) Sample(r *rand.Rand) time.Duration {
	if len(e.samples) == 0 {
		return 0
	}
	return e.samples[r.IntN(len(e.samples))]
}

// Validate rejects an Empirical that was not built by NewEmpirical.
func (e Empirical) Validate() error {
	if len(e.samples) == 0 {
		return fmt.Errorf("%w: empirical distribution without samples (use NewEmpirical)", ErrInvalid)
	}
	return nil
}

// Mixture draws each sample from one of its components, chosen with
// probability proportional to its Weight: the shape of the PBS paper's
// production fits (a Pareto body with an exponential tail). A Mixture is
// safe for concurrent use when its components are; the empty Mixture is not
// valid (Validate fails) and samples 0.
type Mixture []Component

// Component is one part of a [Mixture].
type Component struct {
	Weight float64
	Dist   Distribution
}

// Sample picks a component by weight and samples it.
func (m Mixture) Sample(r *rand.Rand) time.Duration {
	total := 0.0
	for _, c := range m {
		total += c.Weight
	}
	u := r.Float64() * total
	for _, c := range m {
		if u < c.Weight {
			return c.Dist.Sample(r)
		}
		u -= c.Weight
	}
	if len(m) == 0 {
		return 0
	}
	return m[len(m)-1].Dist.Sample(r) // u rounded up to total
}

// Validate requires at least one component, finite non-negative weights
// with a positive sum, and valid, non-nil distributions.
func (m Mixture) Validate() error {
	total := 0.0
	for i, c := range m {
		if !(c.Weight >= 0) || math.IsInf(c.Weight, 1) {
			return fmt.Errorf("%w: mixture component %d has weight %v", ErrInvalid, i, c.Weight)
		}
		if err := validate(c.Dist); err != nil {
			return fmt.Errorf("mixture component %d: %w", i, err)
		}
		total += c.Weight
	}
	if !(total > 0) {
		return fmt.Errorf("%w: mixture without positive weight", ErrInvalid)
	}
	return nil
}

// validate rejects a nil distribution and one whose Validate method fails.
func validate(d Distribution) error {
	if d == nil {
		return fmt.Errorf("%w: nil distribution", ErrInvalid)
	}
	if v, ok := d.(interface{ Validate() error }); ok {
		return v.Validate()
	}
	return nil
}

var (
	_ Distribution = Mixture{}
	_ Distribution = Fixed(0)
	_ Distribution = Exponential{}
	_ Distribution = Pareto{}
	_ Distribution = Empirical{}
)

// clampSample converts a sampled latency in nanoseconds to a Duration in
// [0, maxSample]; NaN becomes 0.
func clampSample(x float64) time.Duration {
	if !(x > 0) {
		return 0
	}
	return time.Duration(min(x, float64(maxSample)))
}

// WARS is the PBS latency model of one write and one read, each sent to all
// N replicas of a key (Bailis et al. 2012, section 5):
//
//   - W: the write's trip from the coordinator to a replica;
//   - A: the replica's acknowledgement back to the coordinator;
//   - R: a read request's trip to a replica;
//   - S: the replica's response back.
//
// Every latency is drawn independently for each replica. The write commits
// when its W-th acknowledgement arrives; a read issued t later returns the
// R first responses, and it is consistent when at least one of them comes
// from a replica the write reached before the read request did.
//
// A WARS is a plain value; it is safe for concurrent use when its
// distributions are.
type WARS struct {
	W, A, R, S Distribution
}

// Simulate runs trials independent write-then-read experiments for c under
// m, drawn from a PCG generator seeded with seed, and returns the resulting
// t-visibility curve. The same arguments always give the same curve (when
// the distributions draw only from the generator they are given). Sampled
// latencies are clamped to [0, 73 years].
//
// Each trial costs 4·N samples and two sorts of N values, and keeps one
// Duration (8 bytes) in the result; besides the result Simulate allocates
// only scratch space for one trial. It runs on the calling goroutine.
//
// It fails with an error wrapping [ErrInvalid] for an invalid c, trials < 1,
// a nil distribution, or one whose Validate method fails.
func (m WARS) Simulate(c Config, trials int, seed uint64) (Visibility, error) {
	if err := c.Validate(); err != nil {
		return Visibility{}, err
	}
	if trials < 1 {
		return Visibility{}, fmt.Errorf("%w: %d trials, want at least 1", ErrInvalid, trials)
	}
	for _, d := range [...]struct {
		name string
		d    Distribution
	}{{"W", m.W}, {"A", m.A}, {"R", m.R}, {"S", m.S}} {
		if err := validate(d.d); err != nil {
			return Visibility{}, fmt.Errorf("WARS.%s: %w", d.name, err)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5742_5253)) // "WARS"
	acks := make([]time.Duration, c.N)
	reads := make([]readReply, c.N)
	thresholds := make([]time.Duration, trials)
	for i := range thresholds {
		thresholds[i] = m.trial(c, rng, acks, reads)
	}
	slices.Sort(thresholds)
	return Visibility{thresholds: thresholds}, nil
}

// draw samples d and clamps the latency to [0, maxSample].
func draw(d Distribution, rng *rand.Rand) time.Duration {
	return min(max(d.Sample(rng), 0), maxSample)
}

// readReply is one replica's part in a trial's read.
type readReply struct {
	arrival time.Duration // when its response reaches the coordinator, from the read's start
	fresh   time.Duration // how long after commit the read must start for it to see the write
}

// trial runs one experiment and returns the smallest delay t between the
// write's commit and the read's start at which the read is consistent
// (negative when it would have been consistent even earlier). Consistency
// is monotone in t: a later read finds every replica at least as fresh and
// picks its replies by latencies that do not depend on t.
func (m WARS) trial(c Config, rng *rand.Rand, acks []time.Duration, reads []readReply) time.Duration {
	for i := range c.N {
		w, a, r, s := draw(m.W, rng), draw(m.A, rng), draw(m.R, rng), draw(m.S, rng)
		acks[i] = w + a
		reads[i] = readReply{arrival: r + s, fresh: w - r}
	}
	slices.Sort(acks)
	commit := acks[c.W-1]
	slices.SortFunc(reads, func(a, b readReply) int { return cmp.Compare(a.arrival, b.arrival) })
	// Replica i has the write when the read reaches it at commit+t+R_i >=
	// W_i, that is t >= W_i - R_i - commit; one fresh reply suffices.
	best := reads[0].fresh
	for _, rr := range reads[1:c.R] {
		best = min(best, rr.fresh)
	}
	return best - commit
}

// Visibility is a t-visibility curve estimated by [WARS.Simulate]: for each
// delay t between a write's commit and the start of a read, the probability
// that the read returns the write (or a newer value). It is immutable and
// safe for concurrent use. The zero Visibility has no trials.
type Visibility struct {
	thresholds []time.Duration // per trial, the smallest consistent delay; sorted
}

// Trials returns the number of trials behind the estimate.
func (v Visibility) Trials() int { return len(v.thresholds) }

// Consistent returns the estimated probability that a read starting t
// after the write committed is consistent: the fraction of trials in which
// it was. It never decreases as t grows. With no trials it returns NaN.
func (v Visibility) Consistent(t time.Duration) float64 {
	if len(v.thresholds) == 0 {
		return math.NaN()
	}
	n := sort.Search(len(v.thresholds), func(i int) bool { return v.thresholds[i] > t })
	return float64(n) / float64(len(v.thresholds))
}

// Window returns the smallest delay t >= 0 after commit at which reads are
// consistent with probability at least p, as [Visibility.Consistent]
// estimates it: the staleness window for p (for p = 0.999, "99.9% of reads
// are consistent t after commit"). ok is false when no delay reaches p: for
// p > 1, NaN p, or no trials.
func (v Visibility) Window(p float64) (t time.Duration, ok bool) {
	n := len(v.thresholds)
	if n == 0 || !(p <= 1) {
		return 0, false
	}
	k := sort.Search(n+1, func(k int) bool { return float64(k)/float64(n) >= p })
	if k == 0 {
		return 0, true
	}
	return max(v.thresholds[k-1], 0), true
}
