package quorum_test

import (
	"cmp"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/quorum"
)

const ms = time.Millisecond

func TestStaleProbabilityHandComputed(t *testing.T) {
	for _, tc := range []struct {
		c    quorum.Config
		k    int
		want float64
	}{
		{quorum.Config{N: 3, R: 1, W: 1}, 1, 2.0 / 3}, // the read picks one of the 2 replicas without the write
		{quorum.Config{N: 3, R: 1, W: 1}, 2, 4.0 / 9},
		{quorum.Config{N: 5, R: 2, W: 2}, 1, 3.0 / 10}, // C(3,2)/C(5,2)
		{quorum.Config{N: 5, R: 1, W: 2}, 3, 27.0 / 125},
		{quorum.Config{N: 10, R: 3, W: 2}, 1, 56.0 / 120}, // C(8,3)/C(10,3)
		{quorum.Config{N: 3, R: 2, W: 2}, 1, 0},
		{quorum.Config{N: 5, R: 3, W: 3}, 4, 0},
		{quorum.Config{N: 1, R: 1, W: 1}, 1, 0},
	} {
		require.InDelta(t, tc.want, quorum.StaleProbability(tc.c, tc.k), 1e-15, "%+v k=%d", tc.c, tc.k)
	}
	require.True(t, math.IsNaN(quorum.StaleProbability(quorum.Config{N: 3, R: 4, W: 1}, 1)))
	require.True(t, math.IsNaN(quorum.StaleProbability(quorum.Config{N: 3, R: 1, W: 1}, 0)))
}

// TestStaleProbabilityEnumerated compares k = 1 with a count over every
// read set: the fraction of R-subsets of N replicas that miss a fixed
// W-subset; and k > 1 with the k-th power.
func TestStaleProbabilityEnumerated(t *testing.T) {
	for n := 1; n <= 10; n++ {
		for r := 1; r <= n; r++ {
			for w := 1; w <= n; w++ {
				c := quorum.Config{N: n, R: r, W: w}
				writeSet := uint(1)<<w - 1
				miss, all := 0, 0
				for readSet := range uint(1) << n {
					if bits.OnesCount(readSet) == r {
						all++
						if readSet&writeSet == 0 {
							miss++
						}
					}
				}
				p := float64(miss) / float64(all)
				require.InDelta(t, p, quorum.StaleProbability(c, 1), 1e-14, "%+v", c)
				require.InDelta(t, math.Pow(p, 3), quorum.StaleProbability(c, 3), 1e-14, "%+v", c)
				require.Equal(t, c.Overlapping(), quorum.StaleProbability(c, 1) == 0, "%+v", c)
				if r > 1 {
					require.LessOrEqual(t, quorum.StaleProbability(c, 1), quorum.StaleProbability(quorum.Config{N: n, R: r - 1, W: w}, 1), "%+v: never rises with R", c)
				}
				if w > 1 {
					require.LessOrEqual(t, quorum.StaleProbability(c, 1), quorum.StaleProbability(quorum.Config{N: n, R: r, W: w - 1}, 1), "%+v: never rises with W", c)
				}
			}
		}
	}
}

// within fails unless the Monte Carlo estimate got, from trials trials, is
// within 4.5 standard errors of want (a false alarm once in ~150,000 runs
// for a fresh seed; the seeds here are fixed).
func within(t *testing.T, want, got float64, trials int, msgAndArgs ...any) {
	t.Helper()
	se := math.Sqrt(max(want*(1-want), 1e-4) / float64(trials))
	require.InDelta(t, want, got, 4.5*se, msgAndArgs...)
}

func TestDistributions(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 100_000
	sum, tail := 0.0, 0
	for range n {
		sum += float64(quorum.Exponential{Mean: 10 * ms}.Sample(r))
		if (quorum.Pareto{Scale: ms, Shape: 1.5}).Sample(r) > 2*ms {
			tail++
		}
	}
	// The exponential's standard deviation is its mean.
	require.InDelta(t, float64(10*ms), sum/n, 4.5*float64(10*ms)/math.Sqrt(n))
	within(t, math.Pow(2, -1.5), float64(tail)/n, n, "Pareto P(X > 2 x_m) = 2^-α")
	require.Equal(t, 3*ms, quorum.Fixed(3*ms).Sample(r))

	samples := []time.Duration{1 * ms, 2 * ms, 7 * ms}
	e, err := quorum.NewEmpirical(samples)
	require.NoError(t, err)
	samples[0] = time.Hour // NewEmpirical copied
	counts := map[time.Duration]int{}
	for range 30_000 {
		counts[e.Sample(r)]++
	}
	require.Len(t, counts, 3)
	for _, d := range []time.Duration{1 * ms, 2 * ms, 7 * ms} {
		within(t, 1.0/3, float64(counts[d])/30_000, 30_000, "empirical resamples %v uniformly", d)
	}
	require.Zero(t, quorum.Empirical{}.Sample(r))

	mix := quorum.Mixture{{Weight: 1, Dist: quorum.Fixed(ms)}, {Weight: 0, Dist: quorum.Fixed(2 * ms)}, {Weight: 3, Dist: quorum.Fixed(3 * ms)}}
	clear(counts)
	for range 40_000 {
		counts[mix.Sample(r)]++
	}
	require.Zero(t, counts[2*ms], "weight 0 never drawn")
	within(t, 0.75, float64(counts[3*ms])/40_000, 40_000, "mixture by weight")
	require.Zero(t, quorum.Mixture{}.Sample(r))

	_, err = quorum.NewEmpirical(nil)
	require.ErrorIs(t, err, quorum.ErrInvalid)
	_, err = quorum.NewEmpirical([]time.Duration{ms, -ms})
	require.ErrorContains(t, err, "sample 1 is negative")
}

func TestSimulateInvalid(t *testing.T) {
	good := quorum.WARS{W: quorum.Fixed(0), A: quorum.Fixed(0), R: quorum.Fixed(0), S: quorum.Fixed(0)}
	c := quorum.Config{N: 3, R: 1, W: 1}
	for _, tc := range []struct {
		m      quorum.WARS
		c      quorum.Config
		trials int
		msg    string
	}{
		{good, quorum.Config{N: 3, R: 0, W: 1}, 10, "R = 0"},
		{good, c, 0, "0 trials"},
		{quorum.WARS{W: good.W, A: good.A, R: good.R}, c, 10, "WARS.S: quorum: invalid argument: nil distribution"},
		{quorum.WARS{W: quorum.Mixture{}, A: good.A, R: good.R, S: good.S}, c, 10, "mixture without positive weight"},
		{quorum.WARS{W: quorum.Mixture{{Weight: -1, Dist: good.A}}, A: good.A, R: good.R, S: good.S}, c, 10, "component 0 has weight -1"},
		{quorum.WARS{W: quorum.Mixture{{Weight: 1, Dist: good.A}, {Weight: 1, Dist: quorum.Pareto{}}}, A: good.A, R: good.R, S: good.S}, c, 10, "WARS.W: mixture component 1: quorum: invalid argument: pareto"},
		{quorum.WARS{W: quorum.Mixture{{Weight: 1}}, A: good.A, R: good.R, S: good.S}, c, 10, "mixture component 0: quorum: invalid argument: nil distribution"},
		{quorum.WARS{W: quorum.Pareto{}, A: good.A, R: good.R, S: good.S}, c, 10, "WARS.W: quorum: invalid argument: pareto"},
		{quorum.WARS{W: good.W, A: quorum.Exponential{Mean: -1}, R: good.R, S: good.S}, c, 10, "exponential mean -1ns is negative"},
		{quorum.WARS{W: good.W, A: good.A, R: quorum.Empirical{}, S: good.S}, c, 10, "use NewEmpirical"},
	} {
		_, err := tc.m.Simulate(tc.c, tc.trials, 1)
		require.ErrorIs(t, err, quorum.ErrInvalid)
		require.ErrorContains(t, err, tc.msg)
	}
}

// TestSimulateMatchesClosedForm checks the Monte Carlo against the closed
// form where both describe the same experiment. The closed form assumes
// that exactly W replicas hold the write when the read arrives and that the
// read's R replicas are a uniform random subset, independent of which. With
// A = R = 0 the read reaches every replica at the instant of commit, which is
// when the W-th write arrives, so exactly the W fastest writes have landed
// (ties have probability ~1e-7); with S i.i.d. and independent of W, the
// first R responses come from a uniform R-subset. So at t = 0,
// P(consistent) = 1 - StaleProbability(c, 1).
func TestSimulateMatchesClosedForm(t *testing.T) {
	m := quorum.WARS{W: quorum.Exponential{Mean: 10 * ms}, A: quorum.Fixed(0), R: quorum.Fixed(0), S: quorum.Exponential{Mean: 10 * ms}}
	const trials = 50_000
	for i, c := range []quorum.Config{{N: 3, R: 1, W: 1}, {N: 5, R: 2, W: 2}, {N: 5, R: 1, W: 3}, {N: 7, R: 2, W: 3}, {N: 3, R: 2, W: 2}} {
		v, err := m.Simulate(c, trials, uint64(i))
		require.NoError(t, err)
		want := 1 - quorum.StaleProbability(c, 1)
		within(t, want, v.Consistent(0), trials, "%+v", c)
		t.Logf("%+v: P(consistent at t=0) closed form %.4f, Monte Carlo %.4f", c, want, v.Consistent(0))
		// Later reads are more often consistent than the closed form, which
		// ignores propagation after commit.
		if !c.Overlapping() {
			require.Greater(t, v.Consistent(5*ms), v.Consistent(0)+0.05, "%+v", c)
		}
	}
}

// naiveConsistent is the reference model: the WARS experiment run
// literally for one read t after commit.
func naiveConsistent(m quorum.WARS, c quorum.Config, t time.Duration, trials int, seed uint64) float64 {
	r := rand.New(rand.NewPCG(seed, 99))
	ok := 0
	type replica struct{ w, a, r, s time.Duration }
	reps := make([]replica, c.N)
	for range trials {
		acks := make([]time.Duration, c.N)
		for i := range reps {
			reps[i] = replica{m.W.Sample(r), m.A.Sample(r), m.R.Sample(r), m.S.Sample(r)}
			acks[i] = reps[i].w + reps[i].a
		}
		slices.Sort(acks)
		commit := acks[c.W-1]
		readStart := commit + t
		slices.SortFunc(reps, func(x, y replica) int { return cmp.Compare(x.r+x.s, y.r+y.s) })
		for _, rep := range reps[:c.R] {
			if rep.w <= readStart+rep.r { // the write arrived before the read request
				ok++
				break
			}
		}
	}
	return float64(ok) / float64(trials)
}

// TestSimulateReferenceModel compares the whole curve that one Simulate
// produces with the literal experiment at several delays, for random
// configurations and latency mixes.
func TestSimulateReferenceModel(t *testing.T) {
	dists := []quorum.Distribution{
		quorum.Exponential{Mean: 2 * ms},
		quorum.Exponential{Mean: 10 * ms},
		quorum.Pareto{Scale: ms, Shape: 1.5},
		quorum.Fixed(3 * ms),
	}
	const trials = 20_000
	for seed := uint64(0); seed < 8; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		n := 1 + r.IntN(5)
		c := quorum.Config{N: n, R: 1 + r.IntN(n), W: 1 + r.IntN(n)}
		pick := func() quorum.Distribution { return dists[r.IntN(len(dists))] }
		m := quorum.WARS{W: pick(), A: pick(), R: pick(), S: pick()}
		v, err := m.Simulate(c, trials, seed)
		require.NoError(t, err)
		for _, d := range []time.Duration{0, 1 * ms, 4 * ms, 15 * ms} {
			want := naiveConsistent(m, c, d, trials, seed)
			// Two independent estimates: allow for both errors.
			within(t, want, v.Consistent(d), trials/2, "seed %d: %+v %+v at %v", seed, c, m, d)
		}
	}
}

func TestSimulateDeterministic(t *testing.T) {
	m := quorum.WARS{W: quorum.Pareto{Scale: ms, Shape: 2}, A: quorum.Exponential{Mean: ms}, R: quorum.Exponential{Mean: ms}, S: quorum.Exponential{Mean: ms}}
	c := quorum.Config{N: 3, R: 1, W: 1}
	a, err := m.Simulate(c, 5000, 42)
	require.NoError(t, err)
	b, err := m.Simulate(c, 5000, 42)
	require.NoError(t, err)
	d, err := m.Simulate(c, 5000, 43)
	require.NoError(t, err)
	require.Equal(t, a, b)
	require.NotEqual(t, a, d)
	require.Equal(t, 5000, a.Trials())
}

// TestSimulateOverlapping: with R + W > N every read after commit is
// consistent, whatever the latencies.
func TestSimulateOverlapping(t *testing.T) {
	for seed := uint64(0); seed < 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 5))
		n := 1 + r.IntN(7)
		w := 1 + r.IntN(n)
		c := quorum.Config{N: n, R: n - w + 1 + r.IntN(w), W: w}
		require.True(t, c.Overlapping())
		m := quorum.WARS{
			W: quorum.Pareto{Scale: ms, Shape: 0.5 + r.Float64()}, A: quorum.Exponential{Mean: ms},
			R: quorum.Exponential{Mean: 5 * ms}, S: quorum.Pareto{Scale: ms, Shape: 1},
		}
		v, err := m.Simulate(c, 2000, seed)
		require.NoError(t, err)
		require.Equal(t, 1.0, v.Consistent(0), "seed %d: %+v", seed, c)
		window, ok := v.Window(1)
		require.True(t, ok)
		require.Zero(t, window)
	}
}

func TestVisibilityWindow(t *testing.T) {
	var zero quorum.Visibility
	require.True(t, math.IsNaN(zero.Consistent(0)))
	_, ok := zero.Window(0.5)
	require.False(t, ok)

	m := quorum.WARS{W: quorum.Exponential{Mean: 10 * ms}, A: quorum.Fixed(ms), R: quorum.Fixed(ms), S: quorum.Fixed(ms)}
	v, err := m.Simulate(quorum.Config{N: 3, R: 1, W: 1}, 10_000, 9)
	require.NoError(t, err)
	for _, p := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		w, ok := v.Window(p)
		require.True(t, ok)
		require.GreaterOrEqual(t, v.Consistent(w), p, "p=%v", p)
		if w > 0 {
			require.Less(t, v.Consistent(w-1), p, "p=%v: window %v is the smallest", p, w)
		}
	}
	for _, p := range []float64{1.0001, math.NaN()} {
		_, ok := v.Window(p)
		require.False(t, ok)
	}
}

// TestTVisibilityQualitative reproduces the shape of the PBS paper's
// t-visibility results (section 6) and logs the windows to 99.9%
// consistency:
//   - with N=3, R=W=1 the probability of a consistent read rises with t,
//     from 1/3 + (propagation before commit) towards 1;
//   - slower or heavier-tailed write propagation (W) lengthens the window;
//   - a larger R or W shortens it, and R+W > N closes it.
func TestTVisibilityQualitative(t *testing.T) {
	fast := quorum.Exponential{Mean: ms}
	const trials = 50_000
	window := func(m quorum.WARS, c quorum.Config, p float64) (time.Duration, quorum.Visibility) {
		v, err := m.Simulate(c, trials, 2012)
		require.NoError(t, err)
		w, ok := v.Window(p)
		require.True(t, ok)
		return w, v
	}
	one := quorum.Config{N: 3, R: 1, W: 1}
	slow := quorum.WARS{W: quorum.Exponential{Mean: 10 * ms}, A: fast, R: fast, S: fast}
	w999, v := window(slow, one, 0.999)
	prev := -1.0
	for _, d := range []time.Duration{0, 2 * ms, 5 * ms, 10 * ms, 20 * ms, 40 * ms} {
		p := v.Consistent(d)
		require.Greater(t, p, prev+0.005, "rises with t (at %v)", d)
		t.Logf("N=3 R=W=1, W~Exp(10ms), A=R=S~Exp(1ms): P(consistent %v after commit) = %.4f", d, p)
		prev = p
	}
	require.Greater(t, v.Consistent(0), 1.0/3, "the committed replica, and sometimes more")
	require.Less(t, v.Consistent(0), 0.6)

	type row struct {
		name string
		m    quorum.WARS
		c    quorum.Config
	}
	rows := []row{
		{"W~Exp(10ms) R=W=1", slow, one},
		{"W~Exp(2ms) R=W=1", quorum.WARS{W: quorum.Exponential{Mean: 2 * ms}, A: fast, R: fast, S: fast}, one},
		{"W~Pareto(1ms,1.5) R=W=1", quorum.WARS{W: quorum.Pareto{Scale: ms, Shape: 1.5}, A: fast, R: fast, S: fast}, one},
		{"W~Exp(10ms) R=2 W=1", slow, quorum.Config{N: 3, R: 2, W: 1}},
		{"W~Exp(10ms) R=1 W=2", slow, quorum.Config{N: 3, R: 1, W: 2}},
		{"W~Exp(10ms) R=2 W=2", slow, quorum.Config{N: 3, R: 2, W: 2}},
	}
	// Mixtures shaped like the paper's fits of LinkedIn's latencies (a
	// Pareto body and an exponential tail for W; Pareto for A, R and S):
	// flash ("SSD") against spinning disks ("DISK").
	us := time.Microsecond
	ars := quorum.Pareto{Scale: 235 * us, Shape: 10}
	ssd := quorum.Mixture{{Weight: 0.9122, Dist: quorum.Pareto{Scale: 235 * us, Shape: 10}}, {Weight: 0.0878, Dist: quorum.Exponential{Mean: 602 * us}}}
	disk := quorum.Mixture{{Weight: 0.38, Dist: quorum.Pareto{Scale: 1050 * us, Shape: 1.51}}, {Weight: 0.62, Dist: quorum.Exponential{Mean: 5464 * us}}}
	rows = append(rows,
		row{"SSD-like R=W=1", quorum.WARS{W: ssd, A: ars, R: ars, S: ars}, one},
		row{"DISK-like R=W=1", quorum.WARS{W: disk, A: ars, R: ars, S: ars}, one},
	)
	windows := map[string]time.Duration{}
	for _, r := range rows {
		w, _ := window(r.m, r.c, 0.999)
		windows[r.name] = w
		t.Logf("%-26s window to 99.9%% consistency: %v", r.name, w)
	}
	require.Equal(t, w999, windows["W~Exp(10ms) R=W=1"])
	require.Less(t, windows["W~Exp(2ms) R=W=1"], windows["W~Exp(10ms) R=W=1"], "faster writes, shorter window")
	require.Greater(t, windows["W~Pareto(1ms,1.5) R=W=1"], windows["W~Exp(2ms) R=W=1"], "heavier write tail, longer window")
	require.Less(t, windows["W~Exp(10ms) R=2 W=1"], windows["W~Exp(10ms) R=W=1"], "larger R, shorter window")
	require.Less(t, windows["W~Exp(10ms) R=1 W=2"], windows["W~Exp(10ms) R=W=1"], "larger W, shorter window")
	require.Zero(t, windows["W~Exp(10ms) R=2 W=2"], "strict quorum")
	require.Less(t, windows["SSD-like R=W=1"], windows["DISK-like R=W=1"], "faster write tail, shorter window")
}

func BenchmarkSimulate(b *testing.B) {
	for _, c := range []quorum.Config{{N: 3, R: 1, W: 1}, {N: 5, R: 2, W: 2}} {
		b.Run(fmt.Sprintf("N%dR%dW%d", c.N, c.R, c.W), func(b *testing.B) {
			m := quorum.WARS{W: quorum.Exponential{Mean: 10 * ms}, A: quorum.Exponential{Mean: ms}, R: quorum.Exponential{Mean: ms}, S: quorum.Exponential{Mean: ms}}
			const trials = 10_000
			b.ReportAllocs()
			for b.Loop() {
				if _, err := m.Simulate(c, trials, 1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(trials*b.N)/b.Elapsed().Seconds(), "trials/s")
		})
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b9)) }
