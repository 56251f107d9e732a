package quorum_test

import (
	"errors"
	"math"
	"math/big"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/quorum"
)

func TestConfigValidate(t *testing.T) {
	for _, c := range []quorum.Config{{1, 1, 1}, {3, 2, 2}, {3, 1, 3}, {5, 5, 1}} {
		require.NoError(t, c.Validate(), "%+v", c)
	}
	for _, tc := range []struct {
		c    quorum.Config
		want []string // every fragment must appear in the message
	}{
		{quorum.Config{}, []string{"N = 0", "R = 0", "W = 0"}},
		{quorum.Config{N: -1, R: 1, W: 1}, []string{"N = -1: a key needs at least one replica"}},
		{quorum.Config{N: 3, R: 4, W: 2}, []string{"R = 4: a read cannot wait for more than N = 3 replicas"}},
		{quorum.Config{N: 3, R: 2, W: 0}, []string{"W = 0: a write needs at least one replica"}},
		{quorum.Config{N: 3, R: -2, W: 7}, []string{"R = -2", "W = 7"}},
	} {
		err := tc.c.Validate()
		require.ErrorIs(t, err, quorum.ErrInvalid, "%+v", tc.c)
		for _, w := range tc.want {
			require.Contains(t, err.Error(), w)
		}
	}
}

func TestConfigFaults(t *testing.T) {
	for _, tc := range []struct {
		c                   quorum.Config
		overlap             bool
		writeFaults, rfault int
	}{
		{quorum.Config{N: 3, R: 2, W: 2}, true, 1, 1},
		{quorum.Config{N: 3, R: 1, W: 1}, false, 2, 2},
		{quorum.Config{N: 3, R: 1, W: 3}, true, 0, 2},
		{quorum.Config{N: 5, R: 2, W: 3}, false, 2, 3},
		{quorum.Config{N: 5, R: 3, W: 3}, true, 2, 2},
	} {
		require.Equal(t, tc.overlap, tc.c.Overlapping(), "%+v", tc.c)
		require.Equal(t, tc.writeFaults, tc.c.WriteFaults(), "%+v", tc.c)
		require.Equal(t, tc.rfault, tc.c.ReadFaults(), "%+v", tc.c)
	}
}

func TestMajority(t *testing.T) {
	want := map[int]int{-3: 0, 0: 0, 1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 6: 4, 7: 4}
	for n, m := range want {
		require.Equal(t, m, quorum.Majority(n), "Majority(%d)", n)
	}
	for n := 1; n < 100; n++ {
		m := quorum.Majority(n)
		require.Greater(t, 2*m, n, "two majorities of %d intersect", n)
		require.LessOrEqual(t, 2*(m-1), n, "majority of %d is minimal", n)
	}
}

func TestAvailabilityHandComputed(t *testing.T) {
	for _, tc := range []struct {
		n, k      int
		p, avail  float64
		unavail   float64
		tolerance float64
	}{
		// 3 p^2 q + p^3 with p = 0.9: 0.243 + 0.729.
		{3, 2, 0.9, 0.972, 0.028, 1e-15},
		{3, 1, 0.5, 0.875, 0.125, 1e-15},
		{3, 3, 0.5, 0.125, 0.875, 1e-15},
		{5, 3, 0.5, 0.5, 0.5, 1e-15},
		{4, 0, 0.3, 1, 0, 0},
		{4, -1, 0.3, 1, 0, 0},
		{4, 5, 0.3, 0, 1, 0},
		{4, 4, 1, 1, 0, 0},
		{4, 1, 0, 0, 1, 0},
		{0, 0, 0.5, 1, 0, 0},
		// Fewer than 2 of 3 up: 3 p q^2 + q^3 = 3q^2 - 2q^3, with q = 1e-6
		// 2.999998e-12, which 1 - Availability would round to 3.0001e-12.
		{3, 2, 1 - 1e-6, 1, 2.999998e-12, 1e-9}, // 1 - 1e-6 is not exact in binary
	} {
		a, u := quorum.Availability(tc.n, tc.k, tc.p), quorum.Unavailability(tc.n, tc.k, tc.p)
		require.InDelta(t, tc.avail, a, tc.tolerance, "Availability(%d, %d, %v)", tc.n, tc.k, tc.p)
		require.InEpsilon(t, tc.unavail+1e-300, u+1e-300, max(tc.tolerance, 1e-14), "Unavailability(%d, %d, %v)", tc.n, tc.k, tc.p)
	}
	for _, bad := range []struct {
		n int
		p float64
	}{{-1, 0.5}, {3, -0.1}, {3, 1.1}, {3, math.NaN()}} {
		require.True(t, math.IsNaN(quorum.Availability(bad.n, 1, bad.p)))
		require.True(t, math.IsNaN(quorum.Unavailability(bad.n, 1, bad.p)))
	}
}

// binomialTail is the reference model: the exact sum of C(n,i) p^i q^(n-i)
// over lo <= i <= hi in rational arithmetic. With p = a/b every term is
// C(n,i) a^i (b-a)^(n-i) / b^n, so the numerators add up as integers.
func binomialTail(n, lo, hi int, p *big.Rat) *big.Rat {
	a, b := p.Num(), p.Denom()
	c := new(big.Int).Sub(b, a)
	sum := new(big.Int)
	for i := max(lo, 0); i <= min(hi, n); i++ {
		term := new(big.Int).Binomial(int64(n), int64(i))
		term.Mul(term, new(big.Int).Exp(a, big.NewInt(int64(i)), nil))
		term.Mul(term, new(big.Int).Exp(c, big.NewInt(int64(n-i)), nil))
		sum.Add(sum, term)
	}
	return new(big.Rat).SetFrac(sum, new(big.Int).Exp(b, big.NewInt(int64(n)), nil))
}

// TestAvailabilityExact compares both tails with exact rational arithmetic
// on random n, k and p, including p within 1e-9 of 0 and 1, where a naive
// 1 - Availability would keep no correct digit. Each tail must be correct
// to a relative 1e-11.
func TestAvailabilityExact(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		r := rand.New(rand.NewPCG(seed, 7))
		n := r.IntN(40)
		k := r.IntN(n+3) - 1
		var p *big.Rat
		switch r.IntN(3) {
		case 0:
			p = big.NewRat(r.Int64N(1000)+1, 1001)
		case 1:
			p = big.NewRat(1e9-r.Int64N(10)-1, 1e9)
		default:
			p = big.NewRat(r.Int64N(10)+1, 1e9)
		}
		pf, _ := p.Float64()
		p.SetFloat64(pf) // the reference sees exactly the float64 Availability sees
		for _, tc := range []struct {
			name   string
			got    float64
			lo, hi int
		}{
			{"Availability", quorum.Availability(n, k, pf), k, n},
			{"Unavailability", quorum.Unavailability(n, k, pf), 0, k - 1},
		} {
			want, _ := binomialTail(n, tc.lo, tc.hi, p).Float64()
			if want == 0 {
				require.Zero(t, tc.got, "seed %d: %s(%d, %d, %v)", seed, tc.name, n, k, pf)
				continue
			}
			if rel := math.Abs(tc.got-want) / want; rel > 1e-11 {
				t.Fatalf("seed %d: %s(%d, %d, %v) = %v, want %v (relative error %v)", seed, tc.name, n, k, pf, tc.got, want, rel)
			}
		}
	}
}

func TestAvailabilityMonotone(t *testing.T) {
	for n := range 12 {
		for k := range n + 1 {
			for _, p := range []float64{0.1, 0.5, 0.9, 0.999} {
				a := quorum.Availability(n, k, p)
				require.GreaterOrEqual(t, a+1e-15, quorum.Availability(n, k+1, p), "falls with k")
				require.LessOrEqual(t, a, quorum.Availability(n, k, p+0.0005)+1e-15, "rises with p")
				require.InDelta(t, 1, a+quorum.Unavailability(n, k, p), 1e-14)
			}
		}
	}
}

func TestErrInvalidIsDistinct(t *testing.T) {
	require.False(t, errors.Is(quorum.ErrInvalid, quorum.ErrNoQuorum))
}

func BenchmarkAvailability(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		quorum.Availability(5, 3, 0.999)
	}
}

// TestAvailabilityCertainEdges: the documented exact values at the edges,
// where summing every term of the distribution would round to just below 1.
func TestAvailabilityCertainEdges(t *testing.T) {
	for n := range 61 {
		for _, p := range []float64{0.1, 0.123, 0.3, 0.5, 0.7, 0.9, 0.99} {
			require.Equal(t, 1.0, quorum.Availability(n, 0, p), "Availability(%d, 0, %v)", n, p)
			require.Equal(t, 1.0, quorum.Unavailability(n, n+1, p), "Unavailability(%d, %d, %v)", n, n+1, p)
		}
	}
}
