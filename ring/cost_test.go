package ring

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestCostBounds: the estimate of -ln(u) is within its stated error of
// math.Log at the ends of each branch and at random points, with the
// error bound with room to spare for rounding.
func TestCostBounds(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rnd := rand.New(rand.NewPCG(seed, 1))
	us := []float64{0.5 / (1 << 53), 0.25, math.Nextafter(0.5, 0), 0.5, 0.5000001, 0.9, 0.999999, math.Nextafter(1, 0)}
	for range 100_000 {
		x := rnd.Uint64() >> 11
		us = append(us, (float64(x)+0.5)/(1<<53), 1-math.Ldexp(rnd.Float64(), -rnd.IntN(50)))
	}
	for _, u := range us {
		if u <= 0 || u >= 1 {
			continue
		}
		c, tol := cost(u)
		want := -math.Log(u)
		if math.Abs(c-want) > 0.9*tol {
			t.Fatalf("u=%v: estimate %v, -ln(u) %v, error %v above 0.9 of the bound %v", u, c, want, c-want, tol)
		}
	}
}
