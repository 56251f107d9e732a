package detector

import (
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const ms = float64(time.Millisecond)

func windowOf(capacity int, intervalsMs ...int64) window {
	w := newWindow(capacity)
	for _, x := range intervalsMs {
		w.add(time.Duration(x) * time.Millisecond)
	}
	return w
}

// Akka's AccrualFailureDetectorSpec, "Statistics for heartbeats".
func TestWindowAkkaSpec(t *testing.T) {
	w := windowOf(20, 100, 200, 125, 340, 130)
	require.InDelta(t, 179.0, w.mean()/ms, 1e-5)
	require.InDelta(t, 7584.0, w.variance()/(ms*ms), 1e-5)
	require.InDelta(t, math.Sqrt(7584), w.stdDev()/ms, 1e-5)

	w = windowOf(600, 1000)
	require.InDelta(t, 0.0, w.variance(), 1e-5, "one sample")

	w = windowOf(3, 100, 110, 90)
	require.InDelta(t, 100.0, w.mean()/ms, 1e-5)
	require.InDelta(t, 66.6666667, w.variance()/(ms*ms), 1e-5)
	w.add(140 * time.Millisecond) // evicts 100
	require.InDelta(t, 113.333333, w.mean()/ms, 1e-5)
	require.InDelta(t, 422.222222, w.variance()/(ms*ms), 1e-5)
	w.add(80 * time.Millisecond) // evicts 110
	require.InDelta(t, 103.333333, w.mean()/ms, 1e-5)
	require.InDelta(t, 688.88888889, w.variance()/(ms*ms), 1e-5)
	require.Equal(t, 3, w.n)
}

// Cassandra's ArrayBackedBoundedStatsTest.
func TestWindowCassandraSpec(t *testing.T) {
	w := newWindow(4)
	require.Zero(t, w.mean())
	for x := range 5 {
		w.add(time.Duration(x + 1))
	}
	require.ElementsMatch(t, []int64{2, 3, 4, 5}, w.ring)
	require.InDelta(t, 3.5, w.mean(), 0.001)

	w = newWindow(5)
	for x := range 1001 {
		w.add(time.Duration(x))
	}
	require.ElementsMatch(t, []int64{1000, 999, 998, 997, 996}, w.ring)
}

func TestWindowEmptyAndClamp(t *testing.T) {
	w := newWindow(4)
	require.Zero(t, w.mean())
	require.Zero(t, w.variance())
	w.add(-time.Second)
	require.Zero(t, w.mean(), "a negative interval counts as 0")
	w.add(math.MaxInt64)
	require.Equal(t, float64(math.MaxInt64/4)/2, w.mean(), "clamped to MaxInt64/capacity")
}

// TestWindowModel checks the running sums against a recomputation over a
// plain slice of the last capacity samples, over seeded random histories
// that include extreme intervals: the sums stay exact, so mean and variance
// agree with a two-pass computation in big-enough floats.
func TestWindowModel(t *testing.T) {
	for seed := uint64(0); seed < 40; seed++ {
		r := rand.New(rand.NewPCG(seed, 8))
		capacity := 1 + r.IntN(50)
		w := newWindow(capacity)
		var model []int64
		for step := range 2000 {
			var d time.Duration
			switch r.IntN(4) {
			case 0:
				d = time.Duration(r.Int64()) // huge: clamped
			case 1:
				d = time.Duration(r.Int64N(int64(time.Hour)))
			default:
				d = time.Second + time.Duration(r.NormFloat64()*float64(50*time.Millisecond))
			}
			w.add(d)
			model = append(model, min(max(int64(d), 0), math.MaxInt64/int64(capacity)))
			if len(model) > capacity {
				model = model[1:]
			}
			var sum float64
			for _, x := range model {
				sum += float64(x)
			}
			mean := sum / float64(len(model))
			var m2 float64
			for _, x := range model {
				m2 += (float64(x) - mean) * (float64(x) - mean)
			}
			variance := m2 / float64(len(model))
			// The two-pass variance carries rounding of order eps·mean².
			if !near(w.mean(), mean, 1e-12, 0) || !near(w.variance(), variance, 1e-9, 1e-12*mean*mean) {
				t.Fatalf("seed %d step %d: mean %g variance %g, model %g %g", seed, step, w.mean(), w.variance(), mean, variance)
			}
		}
	}
}

// near reports whether a and b agree to within rel times the larger of
// them, plus abs.
func near(a, b, rel, abs float64) bool {
	return math.Abs(a-b) <= rel*max(math.Abs(a), math.Abs(b))+abs
}
