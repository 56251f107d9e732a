package ring

import (
	"math"
	"math/rand/v2"
	"testing"
)

// TestCostBounds: the bounds of -ln(u) hold math.Log's value at the ends
// of each branch and at random points, and are as tight as stated.
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
		lo, hi := cost(u)
		want := -math.Log(u)
		if !(lo <= want && want <= hi) {
			t.Fatalf("u=%v: -ln(u) = %v outside [%v, %v]", u, want, lo, hi)
		}
		if v := 1 - u; v <= 0.5 && (hi-lo) > want*(0.4*v*v*v*v+1e-11) {
			t.Fatalf("u=%v: bounds [%v, %v] wider than stated", u, lo, hi)
		}
	}
}
