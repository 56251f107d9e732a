package quorum

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalid is returned, wrapped with the details, for arguments that can
// never work: an impossible [Config], an unknown [Level], a malformed
// [Placement], a bad [Gather] argument or option, or a bad simulation
// setting.
var ErrInvalid = errors.New("quorum: invalid argument")

// Config is a Dynamo-style replication setting: every key has N replicas, a
// write succeeds once W of them acknowledge it and a read returns once R of
// them answer.
//
// The zero Config is not valid (there are no replicas); [Config.Validate]
// reports why. The methods other than Validate assume a valid Config. A
// Config is a plain value, safe for concurrent use.
type Config struct {
	N, R, W int
}

// Validate reports whether c is a possible setting: N >= 1 and
// 1 <= R, W <= N. The error wraps [ErrInvalid] and names every field that is
// out of range.
func (c Config) Validate() error {
	var errs []error
	if c.N < 1 {
		errs = append(errs, fmt.Errorf("replication factor N = %d: a key needs at least one replica", c.N))
	}
	for _, f := range [...]struct {
		name, op string
		v        int
	}{{"R", "read", c.R}, {"W", "write", c.W}} {
		switch {
		case f.v < 1:
			errs = append(errs, fmt.Errorf("%s quorum %s = %d: a %s needs at least one replica", f.op, f.name, f.v, f.op))
		case c.N >= 1 && f.v > c.N:
			errs = append(errs, fmt.Errorf("%s quorum %s = %d: a %s cannot wait for more than N = %d replicas", f.op, f.name, f.v, f.op, c.N))
		}
	}
	if errs == nil {
		return nil
	}
	return fmt.Errorf("%w: config {N:%d R:%d W:%d}: %w", ErrInvalid, c.N, c.R, c.W, errors.Join(errs...))
}

// Overlapping reports whether every read quorum intersects every write
// quorum, R + W > N: then a read that starts after a write committed sees it
// (strict quorums).
func (c Config) Overlapping() bool { return c.R+c.W > c.N }

// WriteFaults is the number of replicas that may be down while writes still
// succeed: N - W.
func (c Config) WriteFaults() int { return c.N - c.W }

// ReadFaults is the number of replicas that may be down while reads still
// succeed: N - R.
func (c Config) ReadFaults() int { return c.N - c.R }

// Majority returns the smallest number of n replicas that forms a majority,
// n/2 + 1. Any two majorities of the same n replicas intersect. Majority
// returns 0 for n < 1.
func Majority(n int) int {
	if n < 1 {
		return 0
	}
	return n/2 + 1
}

// Availability returns the probability that at least k of n replicas are up
// when each is up independently with probability p: the upper tail of the
// binomial distribution, P(X >= k) for X ~ Binomial(n, p).
//
// It sums the tail's own terms, each computed in log space, so the result
// keeps its relative precision even when it is tiny; when it is close to 1,
// use [Unavailability], which keeps the precision of 1 - Availability
// ("the nines"). Availability returns 1 for k <= 0, 0 for k > n, and NaN for
// n < 0 or p outside [0, 1].
func Availability(n, k int, p float64) float64 {
	if n < 0 || !(p >= 0 && p <= 1) {
		return math.NaN()
	}
	return binomialSum(n, max(k, 0), n, p)
}

// Unavailability returns the probability that fewer than k of n replicas
// are up, 1 - [Availability](n, k, p), computed directly so that values
// like 1e-12 keep their relative precision instead of being lost to
// rounding. It
// returns 0 for k <= 0, 1 for k > n, and NaN for n < 0 or p outside [0, 1].
func Unavailability(n, k int, p float64) float64 {
	if n < 0 || !(p >= 0 && p <= 1) {
		return math.NaN()
	}
	return binomialSum(n, 0, min(k, n+1)-1, p)
}

// binomialSum returns sum_{i=lo}^{hi} C(n,i) p^i (1-p)^(n-i) for a
// probability p; an empty range sums to 0 and the full range to exactly 1.
func binomialSum(n, lo, hi int, p float64) float64 {
	switch {
	case lo > hi:
		return 0
	case lo == 0 && hi == n: // the whole distribution: its terms would round below 1
		return 1
	case p == 0: // only the i = 0 term is non-zero, and it is 1
		return boolFloat(lo == 0)
	case p == 1: // only the i = n term
		return boolFloat(hi == n)
	}
	logP, logQ := math.Log(p), math.Log1p(-p)
	lgN := lgamma(n + 1)
	var sum float64
	for i := lo; i <= hi; i++ {
		sum += math.Exp(lgN - lgamma(i+1) - lgamma(n-i+1) + float64(i)*logP + float64(n-i)*logQ)
	}
	return min(sum, 1)
}

func lgamma(x int) float64 {
	v, _ := math.Lgamma(float64(x))
	return v
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
