package wire

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

type hidden struct {
	Name string
	n    int
	M    map[string]int
	P    *int
	A    any
}

// TestCompareOrder: on random values, Compare is a total order (reflexive
// at 0, antisymmetric, transitive) that sees unexported fields, map
// contents whatever their insertion order, pointees and dynamic types.
func TestCompareOrder(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	ptr := func(n int) *int { return &n }
	gen := func() hidden {
		h := hidden{Name: string(rune('a' + r.IntN(2))), n: r.IntN(2)}
		if r.IntN(2) == 0 {
			h.M = map[string]int{}
			for range r.IntN(4) {
				h.M[string(rune('k'+r.IntN(4)))] = r.IntN(2)
			}
		}
		if r.IntN(2) == 0 {
			h.P = ptr(r.IntN(2))
		}
		switch r.IntN(3) {
		case 0:
			h.A = r.IntN(2)
		case 1:
			h.A = string(rune('x' + r.IntN(2)))
		}
		return h
	}
	vs := make([]hidden, 30)
	for i := range vs {
		vs[i] = gen()
	}
	for i := range vs {
		require.Zero(t, Compare(&vs[i], &vs[i]))
		for j := range vs {
			c := Compare(&vs[i], &vs[j])
			require.Equal(t, -c, Compare(&vs[j], &vs[i]), "seed %d: %#v %#v", seed, vs[i], vs[j])
			for k := range vs {
				if c <= 0 && Compare(&vs[j], &vs[k]) <= 0 {
					require.LessOrEqual(t, Compare(&vs[i], &vs[k]), 0, "seed %d: not transitive", seed)
				}
			}
		}
	}
	// What msgpack cannot tell apart, Compare can.
	a, b := hidden{Name: "x", n: 1}, hidden{Name: "x", n: 2}
	require.Negative(t, Compare(&a, &b))
	// Maps compare by contents, built in any order.
	m1, m2 := map[string]int{}, map[string]int{}
	for i := range 100 {
		m1[string(rune('a'+i))] = i
		m2[string(rune('a'+99-i))] = 99 - i
	}
	require.Zero(t, Compare(&m1, &m2))
	// Pointers by pointee, interfaces by dynamic type, then value.
	p, q := ptr(3), ptr(3)
	require.Zero(t, Compare(&p, &q))
	var x, y any = int8(1), int16(1)
	require.NotZero(t, Compare(&x, &y))
	// Floats by the IEEE total order: -0 before +0, NaN last.
	fs := []float64{math.Inf(-1), -1, math.Copysign(0, -1), 0, 1, math.Inf(1), math.NaN()}
	for i := 1; i < len(fs); i++ {
		require.Negative(t, Compare(&fs[i-1], &fs[i]), "%v %v", fs[i-1], fs[i])
	}
	// Strings: a prefix first.
	s1, s2, s3 := "ab", "ab\x00", "abc"
	require.Negative(t, Compare(&s1, &s2))
	require.Negative(t, Compare(&s2, &s3))
	// Unencodable values order by identity: two channels differ.
	c1, c2 := make(chan int), make(chan int)
	require.NotZero(t, Compare(&c1, &c2))
	require.Equal(t, -Compare(&c1, &c2), Compare(&c2, &c1))
}

// TestCompareIdenticalAllocs: equal values, the case of every merge of
// replicas that agree, compare without allocating.
func TestCompareIdenticalAllocs(t *testing.T) {
	type version struct {
		Value   []byte
		Deleted bool
		Key     string
	}
	a := []version{{Value: []byte("v"), Key: "k"}}
	b := []version{{Value: []byte("v"), Key: "k"}}
	require.Zero(t, testing.AllocsPerRun(100, func() { Compare(&a[0], &b[0]) }))
	n, m := []int{5}, []int{5}
	require.Zero(t, testing.AllocsPerRun(100, func() { Compare(&n[0], &m[0]) }))
}
