package detector_test

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/detector"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// at returns t0 plus ms milliseconds.
func at(ms int64) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func msd(x float64) time.Duration { return time.Duration(x * float64(time.Millisecond)) }

// cdf inverts φ = −log10(1 − F) back to F, as Akka's spec does.
func cdf(phi float64) float64 { return 1 - math.Pow(10, -phi) }

// Akka's AccrualFailureDetectorSpec, "use good enough cumulative
// distribution function".
func TestPhiOfAkkaCDF(t *testing.T) {
	for _, c := range []struct {
		elapsed, mean, sd float64 // ms
		want, tol         float64
	}{
		{0, 0, 10, 0.5, 0.001},
		{6, 0, 10, 0.7257, 0.001},
		{15, 0, 10, 0.9332, 0.001},
		{20, 0, 10, 0.97725, 0.001},
		{25, 0, 10, 0.99379, 0.001},
		{35, 0, 10, 0.99977, 0.001},
		{40, 0, 10, 0.99997, 0.0001},
		{22, 20, 3, 0.7475, 0.001},
	} {
		got := cdf(detector.PhiOf(msd(c.elapsed), msd(c.mean), msd(c.sd)))
		require.InDelta(t, c.want, got, c.tol, "PhiOf(%v, %v, %v)", c.elapsed, c.mean, c.sd)
	}
	for x := range int64(40) {
		require.Less(t, detector.PhiOf(msd(float64(x)), 0, msd(10)), detector.PhiOf(msd(float64(x+1)), 0, msd(10)))
	}
}

// Akka's spec: "handle outliers without losing precision or hitting
// exceptions" and "return realistic phi values".
func TestPhiOfAkkaValues(t *testing.T) {
	require.InDelta(t, 38.0, detector.PhiOf(10*time.Millisecond, 0, time.Millisecond), 1.0)
	require.Equal(t, 0.0, detector.PhiOf(-25*time.Millisecond, 0, time.Millisecond))

	for elapsed, want := range map[int64]float64{0: 0.0, 500: 0.1, 1000: 0.3, 1200: 1.6, 1400: 4.7, 1600: 10.8, 1700: 15.3} {
		got := detector.PhiOf(time.Duration(elapsed)*time.Millisecond, time.Second, 100*time.Millisecond)
		require.InDelta(t, want, got, 0.1, "elapsed %dms", elapsed)
	}
	require.Less(t,
		detector.PhiOf(1100*time.Millisecond, time.Second, 500*time.Millisecond),
		detector.PhiOf(1100*time.Millisecond, time.Second, 100*time.Millisecond),
		"a larger standard deviation gives a lower phi")
}

// The logistic approximation stays within Akka's stated error of the
// normal distribution over the range where it matters.
func TestPhiOfApproximatesNormal(t *testing.T) {
	worst := 0.0
	for i := -600; i <= 600; i++ {
		y := float64(i) / 100
		normal := 0.5 * math.Erfc(-y/math.Sqrt2)
		got := cdf(detector.PhiOf(msd(y*1000), 0, time.Second))
		worst = max(worst, math.Abs(got-normal))
	}
	require.Less(t, worst, 0.00015)
}

func TestPhiOfTails(t *testing.T) {
	const big, small = time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
	for _, c := range []struct {
		elapsed, mean, sd time.Duration
		want              float64
	}{
		{small, big, 1, 0},
		{0, 0, 0, math.Log1p(1) / math.Ln10},
		{-1, 0, 0, 0},
		{1, 0, 0, math.Inf(1)},
		{1, 0, -time.Second, math.Inf(1)},
		{time.Second, time.Second, time.Nanosecond, math.Log1p(1) / math.Ln10},
	} {
		require.Equal(t, c.want, detector.PhiOf(c.elapsed, c.mean, c.sd), "%+v", c)
	}
	far := detector.PhiOf(big, small, 1)
	require.False(t, math.IsNaN(far) || math.IsInf(far, 0) || far < 1e50, "far upper tail: %v", far)
	// Far in the upper tail φ is the exponent itself: y·(1.5976+0.070566·y²)/ln 10.
	y := 1000.0
	require.InEpsilon(t, y*(1.5976+0.070566*y*y)/math.Ln10, detector.PhiOf(time.Duration(y)*time.Second, 0, time.Second), 1e-15)
}

// TestPhiOfMonotone: over seeded random arguments, φ is non-decreasing in
// elapsed and, above the mean, non-increasing in the standard deviation.
func TestPhiOfMonotone(t *testing.T) {
	const seed = 20041
	r := rand.New(rand.NewPCG(seed, 1))
	dur := func() time.Duration {
		switch r.IntN(3) {
		case 0:
			return time.Duration(r.Int64() - math.MaxInt64/2)
		case 1:
			return time.Duration(r.Int64N(int64(10 * time.Second)))
		default:
			return time.Duration(r.Int64N(1000))
		}
	}
	for i := range 200000 {
		e1, e2, mean, sd := dur(), dur(), dur(), max(dur(), 1)
		if e1 > e2 {
			e1, e2 = e2, e1
		}
		p1, p2 := detector.PhiOf(e1, mean, sd), detector.PhiOf(e2, mean, sd)
		if p1 > p2 {
			t.Fatalf("seed %d case %d: PhiOf(%d, %d, %d) = %v > PhiOf(%d, ...) = %v", seed, i, e1, mean, sd, p1, e2, p2)
		}
		if sd2 := sd + max(dur(), 0); e1 > mean && detector.PhiOf(e1, mean, sd2) > p1 {
			t.Fatalf("seed %d case %d: PhiOf(%d, %d, sd) rises from sd %d to %d", seed, i, e1, mean, sd, sd2)
		}
	}
}

// TestPhiOfMonotoneDense walks elapsed one nanosecond at a time across the
// mean with standard deviations so large that consecutive values of y are
// a few ulps apart, where rounding would show any non-monotone step.
func TestPhiOfMonotoneDense(t *testing.T) {
	for _, sd := range []time.Duration{1 << 62, 1 << 55, 1 << 50, 1 << 40, 1 << 30} {
		for _, start := range []time.Duration{-20000, 0, 2 * sd / 10, sd, 3 * sd} {
			prev := detector.PhiOf(start, 0, sd)
			for e := start + 1; e < start+20000; e++ {
				p := detector.PhiOf(e, 0, sd)
				if p < prev {
					t.Fatalf("sd %d: PhiOf(%d) = %v < PhiOf(%d) = %v", sd, e, p, e-1, prev)
				}
				prev = p
			}
		}
	}
}

// FuzzPhiOf: φ is never NaN or negative, and non-decreasing in elapsed.
func FuzzPhiOf(f *testing.F) {
	f.Add(int64(0), int64(1), int64(0), int64(10))
	f.Add(int64(-25), int64(10), int64(0), int64(1))
	f.Add(int64(math.MaxInt64), int64(math.MaxInt64), int64(math.MinInt64), int64(1))
	f.Add(int64(math.MinInt64), int64(0), int64(math.MaxInt64), int64(0))
	f.Add(int64(1e9), int64(1e9+1), int64(1e9), int64(-5))
	f.Fuzz(func(t *testing.T, e1, e2, mean, sd int64) {
		p1 := detector.PhiOf(time.Duration(e1), time.Duration(mean), time.Duration(sd))
		if math.IsNaN(p1) || p1 < 0 {
			t.Fatalf("PhiOf(%d, %d, %d) = %v", e1, mean, sd, p1)
		}
		p2 := detector.PhiOf(time.Duration(e2), time.Duration(mean), time.Duration(sd))
		if (e1 <= e2 && p1 > p2) || (e2 <= e1 && p2 > p1) {
			t.Fatalf("not monotone: PhiOf(%d) = %v, PhiOf(%d) = %v (mean %d sd %d)", e1, p1, e2, p2, mean, sd)
		}
	})
}

// Akka's spec: "return phi value of 0.0 on startup for each address, when
// no heartbeats", and the zero Phi is the default detector.
func TestPhiStartup(t *testing.T) {
	var zero detector.Phi
	fd := detector.NewPhi(detector.PhiConfig{})
	for _, d := range []*detector.Phi{&zero, fd} {
		require.Equal(t, 0.0, d.Phi(at(0)))
		require.Equal(t, 0.0, d.Phi(at(100000)))
		require.True(t, d.Available(at(100000)))
	}
	zero.Heartbeat(at(0))
	fd.Heartbeat(at(0))
	for _, ms := range []int64{0, 500, 1000, 1300, 1500, 2000} {
		require.Equal(t, fd.Phi(at(ms)), zero.Phi(at(ms)))
	}
}

// Akka's spec: "return phi based on guess when only one heartbeat".
func TestPhiFirstHeartbeatGuess(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{FirstHeartbeat: time.Second})
	fd.Heartbeat(at(0))
	require.InDelta(t, 0.3, fd.Phi(at(1000)), 0.2)
	require.InDelta(t, 4.5, fd.Phi(at(2000)), 0.3)
	require.Greater(t, fd.Phi(at(3000)), 15.0)
}

// Akka's spec: "return phi value using first interval after second
// heartbeat" and "mark node as monitored after a series of successful
// heartbeats".
func TestPhiSecondHeartbeat(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{})
	fd.Heartbeat(at(0))
	require.Greater(t, fd.Phi(at(100)), 0.0)
	fd.Heartbeat(at(200))
	require.Greater(t, fd.Phi(at(300)), 0.0)

	fd = detector.NewPhi(detector.PhiConfig{})
	fd.Heartbeat(at(0))
	fd.Heartbeat(at(1000))
	fd.Heartbeat(at(1100))
	require.True(t, fd.Available(at(1200)))
}

// Akka's spec: "mark node as dead if heartbeat are missed".
func TestPhiMissedHeartbeats(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{Threshold: 3})
	fd.Heartbeat(at(0))
	fd.Heartbeat(at(1000))
	fd.Heartbeat(at(1100))
	require.True(t, fd.Available(at(1200)))
	require.False(t, fd.Available(at(8200)))
}

// Akka's spec: "mark node as available if it starts heartbeat again after
// being marked dead due to detection of failure".
func TestPhiRecovers(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{Threshold: 8, AcceptablePause: 3 * time.Second})
	now := int64(0)
	fd.Heartbeat(at(now))
	for range 999 {
		now += 1000
		fd.Heartbeat(at(now))
	}
	steps := []struct {
		gap       int64
		heartbeat bool // else: check Available
		available bool
	}{
		{5 * 60 * 1000, false, false}, // after the long pause
		{100, true, false},
		{900, false, true},
		{100, true, false},
		{7000, false, false}, // after the 7 seconds pause
		{100, true, false},
		{900, false, true},
		{100, true, false},
		{900, false, true},
	}
	for i, s := range steps {
		now += s.gap
		if s.heartbeat {
			fd.Heartbeat(at(now))
		} else {
			require.Equal(t, s.available, fd.Available(at(now)), "step %d", i)
		}
	}
}

// Akka's spec: "accept some configured missing heartbeats" and "fail after
// configured acceptable missing heartbeats".
func TestPhiAcceptablePause(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{AcceptablePause: 3 * time.Second})
	for _, ms := range []int64{0, 1000, 2000, 3000} {
		fd.Heartbeat(at(ms))
	}
	require.True(t, fd.Available(at(7000)))
	fd.Heartbeat(at(8000))
	require.True(t, fd.Available(at(9000)))

	fd = detector.NewPhi(detector.PhiConfig{AcceptablePause: 3 * time.Second})
	for _, ms := range []int64{0, 1000, 2000, 3000, 4000, 5000} {
		fd.Heartbeat(at(ms))
	}
	require.True(t, fd.Available(at(5500)))
	fd.Heartbeat(at(6000))
	require.False(t, fd.Available(at(11000)))
}

// Akka's spec: "use maxSampleSize heartbeats": once the 100ms intervals
// have left a 3-sample window, 500ms intervals give the same φ at the same
// relative lateness.
func TestPhiMaxSamples(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{MaxSamples: 3})
	for _, ms := range []int64{0, 100, 200, 300} {
		fd.Heartbeat(at(ms))
	}
	phi1 := fd.Phi(at(400))
	for _, ms := range []int64{1000, 1500, 2000, 2500} {
		fd.Heartbeat(at(ms))
	}
	phi2 := fd.Phi(at(3000))
	require.InDelta(t, phi1, phi2, 0.001)
	require.InDelta(t, math.Log10(2), phi2, 1e-12, "at the mean exactly")
}

// crossing returns the elapsed time at which φ reaches threshold for a
// normal(mean, sd) in Akka's approximation, by solving
// log10(1 + e^z) = threshold for z and then the depressed cubic
// 0.070566·y³ + 1.5976·y = z with Cardano's formula.
func crossing(threshold, mean, sd float64) float64 {
	z := math.Log(math.Pow(10, threshold) - 1)
	p, q := 1.5976/0.070566, -z/0.070566
	d := math.Sqrt(q*q/4 + p*p*p/27)
	y := math.Cbrt(-q/2+d) + math.Cbrt(-q/2-d)
	return mean + y*sd
}

// firstSuspected returns the first nanosecond after last at which fd is
// not available, by bisection.
func firstSuspected(fd detector.Detector, last time.Time) time.Duration {
	lo, hi := time.Duration(0), time.Hour // available at lo, suspected at hi
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fd.Available(last.Add(mid)) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// TestPhiThresholdCrossing: after a steady stream of heartbeats, the
// moment φ reaches the threshold is the root of Akka's formula for the
// window's statistics, to the nanosecond.
func TestPhiThresholdCrossing(t *testing.T) {
	t.Run("steady 1s, default config", func(t *testing.T) {
		fd := detector.NewPhi(detector.PhiConfig{})
		last := at(0)
		for range 20 {
			fd.Heartbeat(last)
			last = last.Add(time.Second)
		}
		last = last.Add(-time.Second)
		// Window: 750ms, 1250ms and 19×1s: mean exactly 1s, standard
		// deviation 250ms·√(2/21) = 77ms, raised to MinStdDev = 100ms.
		want := crossing(8, float64(time.Second), float64(100*time.Millisecond))
		require.InDelta(t, 1522.6, want/float64(time.Millisecond), 0.1)
		require.InDelta(t, want, float64(firstSuspected(fd, last)), 1)
	})
	t.Run("alternating 0.9s and 1.1s, acceptable pause 3s", func(t *testing.T) {
		fd := detector.NewPhi(detector.PhiConfig{Threshold: 5, AcceptablePause: 3 * time.Second})
		last := at(0)
		fd.Heartbeat(last)
		for i := range 20 {
			last = last.Add(time.Duration(900+200*(i%2)) * time.Millisecond)
			fd.Heartbeat(last)
		}
		// Window: 750ms, 1250ms, 10×900ms, 10×1100ms: mean 1s, variance
		// (2·250² + 20·100²)/22 ms².
		sd := math.Sqrt((2*250*250+20*100*100)/22.0) * float64(time.Millisecond)
		want := crossing(5, float64(4*time.Second), sd)
		require.InDelta(t, 4500.7, want/float64(time.Millisecond), 0.1)
		require.InDelta(t, want, float64(firstSuspected(fd, last)), 1)
	})
}

// TestPhiMonotoneInTime: between heartbeats, φ never decreases as now
// advances, and Available is exactly φ < Threshold, over seeded random
// heartbeat histories and thresholds on both sides of φ at the mean.
func TestPhiMonotoneInTime(t *testing.T) {
	thresholds := []float64{0.05, 0.3, 0.30103, 0.31, 1, 3, 8}
	for seed := uint64(0); seed < 20; seed++ {
		r := rand.New(rand.NewPCG(seed, 2))
		threshold := thresholds[r.IntN(len(thresholds))]
		fd := detector.NewPhi(detector.PhiConfig{
			Threshold:       threshold,
			MaxSamples:      1 + r.IntN(30),
			MinStdDev:       time.Duration(1 + r.IntN(int(200*time.Millisecond))),
			AcceptablePause: time.Duration(r.IntN(2)) * time.Second,
		})
		now := t0
		for range 200 {
			fd.Heartbeat(now)
			prev := fd.Phi(now)
			probe := now
			for range 20 {
				probe = probe.Add(time.Duration(r.Int64N(int64(300 * time.Millisecond))))
				p := fd.Phi(probe)
				if p < prev || math.IsNaN(p) {
					t.Fatalf("seed %d: phi fell from %v to %v", seed, prev, p)
				}
				if fd.Available(probe) != (p < threshold) {
					t.Fatalf("seed %d: Available %v with phi %v, threshold %v", seed, fd.Available(probe), p, threshold)
				}
				prev = p
			}
			now = now.Add(time.Duration(r.Int64N(int64(2 * time.Second))))
		}
	}
}

// A heartbeat dated before the latest one changes nothing.
func TestPhiStaleHeartbeat(t *testing.T) {
	fd := detector.NewPhi(detector.PhiConfig{})
	ref := detector.NewPhi(detector.PhiConfig{})
	for _, ms := range []int64{0, 1000, 2000} {
		fd.Heartbeat(at(ms))
		ref.Heartbeat(at(ms))
	}
	fd.Heartbeat(at(1500))
	for _, ms := range []int64{1500, 2500, 3000, 3500} {
		require.Equal(t, ref.Phi(at(ms)), fd.Phi(at(ms)))
	}
}

func TestPhiConfigPanics(t *testing.T) {
	for _, cfg := range []detector.PhiConfig{
		{Threshold: -1},
		{Threshold: math.NaN()},
		{Threshold: math.Inf(1)},
		{MaxSamples: -1},
		{MinStdDev: -1},
		{AcceptablePause: -1},
		{FirstHeartbeat: -1},
	} {
		msg := panicMessage(func() { detector.NewPhi(cfg) })
		require.True(t, strings.HasPrefix(msg, "detector: PhiConfig."), "%+v: %q", cfg, msg)
	}
}

// panicMessage returns the string f panics with, or "".
func panicMessage(f func()) (msg string) {
	defer func() { msg, _ = recover().(string) }()
	f()
	return ""
}

// TestDetectorAllocs: heartbeats and queries allocate nothing, for every
// detector with its window full.
func TestDetectorAllocs(t *testing.T) {
	for _, d := range []detector.Detector{
		detector.NewPhi(detector.PhiConfig{MaxSamples: 100}),
		detector.NewExponential(detector.ExponentialConfig{MaxSamples: 100}),
		detector.NewTimeout(0),
	} {
		now := t0
		allocs := testing.AllocsPerRun(1000, func() {
			now = now.Add(time.Second)
			d.Heartbeat(now)
			d.Phi(now.Add(time.Second))
			d.Available(now.Add(time.Second))
		})
		require.Zero(t, allocs, "%T", d)
	}
}
