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

// TestCostAboveAndHeadCost: for hashes across the range, and near the ends
// of costAbove's branch, costAbove is at least math.Log's -ln(u), up to
// rounding, and within v^3/4 and 2^-53 of it (2^-49 beyond the branch), and
// headCost, packed by key, is below the cost by the stated factor 1 +
// 2^-42 at least (2^-43 here, for the test's own rounding); where its
// bound on 1 - u is tight (x's low 22 bits all ones), it is within v^3/2
// of the cost.
func TestCostAboveAndHeadCost(t *testing.T) {
	r := seeded(t, 2)
	const top = 1<<53 - 1
	for range 200_000 {
		var x uint64
		switch r.IntN(4) {
		case 0:
			x = r.Uint64() >> 11
		case 1: // near u = 1/2
			x = 1<<52 + r.Uint64N(1<<uint(r.IntN(53))) - r.Uint64N(4)
		case 2: // near u = 1
			x = top - r.Uint64N(1<<uint(r.IntN(53)))
		default: // low 22 bits all ones: headCost at its tightest
			x = top - r.Uint64N(1<<uint(r.IntN(32)))<<22
		}
		x &= top
		u := uOf(x)
		want := -math.Log(u)
		v := 1 - u
		if vx := float64(1<<53-x) * 0x1p-53; vx <= 0.5 {
			if got := costAbove(x); !(got >= want*(1-1e-15) && got <= want*(1+v*v*v/4+1e-15)+0x1p-53) {
				t.Fatalf("x=%d: costAbove = %v, -ln(u) = %v", x, got, want)
			}
		} else if got := costAbove(x); !(got > want && got <= want*(1+0x1p-49)) {
			t.Fatalf("x=%d (u < 1/2): costAbove = %v, -ln(u) = %v", x, got, want)
		}
		w := math.Ldexp(1+r.Float64(), r.IntN(60)-30)
		z := mixHead(seedFor(0, x<<11|r.Uint64()&(1<<11-1))) // a head whose top 31 bits are x's
		if z>>33 != x>>22 {
			t.Fatalf("head %#x for x=%#x", z, x)
		}
		c := headCost(^z>>33, linOf(1/w))
		if k := math.Float64frombits(key(c, r.IntN(keyMask+1))); c > 0 && !(k*(1+0x1p-43) < want/w) {
			t.Fatalf("x=%d w=%v: headCost key %v, cost %v", x, w, k, want/w)
		}
		if x&(1<<22-1) == 1<<22-1 && v <= 0.5 && !(c >= want/w*(1-v*v*v/2-0x1p-39)) {
			t.Fatalf("x=%d w=%v: headCost %v, cost %v: looser than stated", x, w, c, want/w)
		}
	}
}
