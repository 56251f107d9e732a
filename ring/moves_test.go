package ring_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/ring"
)

// checkMoves asserts the law of Moves at hash h: h lies in a move exactly
// when its owner changes, and then in exactly one, with the right owners.
func checkMoves(t *testing.T, from, to *ring.Ring, ms []ring.Move, h uint64, where string) {
	t.Helper()
	var in []ring.Move
	for _, m := range ms {
		if m.Contains(h) {
			in = append(in, m)
		}
	}
	a, b := from.LookupHash(h), to.LookupHash(h)
	if a == b {
		if len(in) != 0 {
			t.Fatalf("%s: hash %d stays on %q but lies in %v", where, h, a, in)
		}
		return
	}
	if len(in) != 1 || in[0].From != a || in[0].To != b {
		t.Fatalf("%s: hash %d moves %q -> %q but lies in %v", where, h, a, b, in)
	}
}

// TestMoves checks Moves against actual key movement between random rings
// related by additions, removals and weight changes: on many keys, and on
// every range boundary and its neighbours, where off-by-one errors live.
func TestMoves(t *testing.T) {
	for seed := uint64(0); seed < 40; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 5))
		ns := randomNodes(rnd, 10)
		from := mustNew(t, ns, 1+rnd.IntN(32))
		to := from
		for range 1 + rnd.IntN(3) {
			var err error
			switch rnd.IntN(3) {
			case 0:
				to, err = to.With(ring.Node{ID: fmt.Sprintf("new-%d", rnd.IntN(100)), Weight: 0.5 + rnd.Float64()})
			case 1:
				to = to.Without(ns[rnd.IntN(len(ns))].ID)
			default:
				n := ns[rnd.IntN(len(ns))]
				n.Weight = 0.5 + 2*rnd.Float64()
				to, err = to.With(n)
			}
			require.NoError(t, err)
		}
		ms := ring.Moves(from, to)
		where := fmt.Sprintf("seed %d", seed)
		for i, m := range ms {
			require.NotEqual(t, m.From, m.To, where)
			next := ms[(i+1)%len(ms)]
			if len(ms) > 1 && m.End == next.Start {
				require.False(t, m.From == next.From && m.To == next.To, "%s: adjacent moves %v and %v not merged", where, m, next)
			}
			for _, h := range []uint64{m.Start - 1, m.Start, m.Start + 1, m.End - 1, m.End, m.End + 1} {
				checkMoves(t, from, to, ms, h, where)
			}
		}
		for k := range 2000 {
			checkMoves(t, from, to, ms, ring.KeyHash(fmt.Appendf(nil, "key-%d", k)), where)
		}
		for _, h := range []uint64{0, 1, math.MaxUint64} {
			checkMoves(t, from, to, ms, h, where)
		}
		require.Empty(t, ring.Moves(from, from), where)
		require.Empty(t, ring.Moves(to, to), where)
	}
}

// TestMovesAddNode: adding a node yields moves only to it, covering about
// 1/(n+1) of the circle.
func TestMovesAddNode(t *testing.T) {
	from := mustNew(t, nodes(9, 1), 0)
	to, err := from.With(ring.Node{ID: "new"})
	require.NoError(t, err)
	var covered float64
	for _, m := range ring.Moves(from, to) {
		require.Equal(t, "new", m.To)
		covered += float64(m.End - m.Start)
	}
	require.InDelta(t, 0.1, covered/math.Exp2(64), 0.01)
}

// TestMovesEdges covers empty rings and whole-circle moves.
func TestMovesEdges(t *testing.T) {
	a := mustNew(t, []ring.Node{{ID: "a"}}, 1)
	b := mustNew(t, []ring.Node{{ID: "b"}}, 1)
	ab := mustNew(t, []ring.Node{{ID: "a"}, {ID: "b"}}, 1)
	require.Empty(t, ring.Moves(nil, nil))

	// From nothing, the whole circle arrives at a: one wrapping range.
	ms := ring.Moves(nil, a)
	require.Len(t, ms, 1)
	require.Equal(t, ring.Move{Start: ms[0].End, End: ms[0].End, From: "", To: "a"}, ms[0])
	require.True(t, ms[0].Contains(0) && ms[0].Contains(math.MaxUint64) && ms[0].Contains(ms[0].End))
	require.Equal(t, []ring.Move{{Start: ms[0].End, End: ms[0].End, From: "a", To: ""}}, ring.Moves(a, nil))

	// a to b: every hash moves.
	ms = ring.Moves(a, b)
	require.Len(t, ms, 1)
	require.Equal(t, ms[0].Start, ms[0].End)
	for _, h := range []uint64{0, 1, ms[0].End, math.MaxUint64} {
		checkMoves(t, a, b, ms, h, "a->b")
	}
	for _, pair := range [][2]*ring.Ring{{a, ab}, {ab, a}, {b, ab}, {ab, b}} {
		ms := ring.Moves(pair[0], pair[1])
		require.Len(t, ms, 1)
		for _, h := range []uint64{0, 1, ms[0].Start, ms[0].End, ms[0].Start + 1, ms[0].End + 1, math.MaxUint64} {
			checkMoves(t, pair[0], pair[1], ms, h, "pair")
		}
	}
}

// TestReplicaMoves checks the replica-set plan against actual preference
// lists between random related rings, on keys and on range boundaries.
func TestReplicaMoves(t *testing.T) {
	sameSet := func(a, b []string) bool {
		return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
	}
	for seed := uint64(0); seed < 30; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 8))
		ns := randomNodes(rnd, 8)
		from := mustNew(t, ns, 1+rnd.IntN(16))
		to, err := from.With(ring.Node{ID: "joiner", Zone: ns[0].Zone})
		require.NoError(t, err)
		if rnd.IntN(2) == 0 {
			to = to.Without(ns[rnd.IntN(len(ns))].ID)
		}
		n := 1 + rnd.IntN(3)
		ms := ring.ReplicaMoves(from, to, n)
		check := func(h uint64) {
			a, b := from.ReplicasHash(h, n, nil), to.ReplicasHash(h, n, nil)
			var in []ring.ReplicaMove
			for _, m := range ms {
				if m.Contains(h) {
					in = append(in, m)
				}
			}
			if sameSet(a, b) {
				require.Empty(t, in, "seed %d hash %d", seed, h)
				return
			}
			require.Len(t, in, 1, "seed %d hash %d: %v -> %v", seed, h, a, b)
			require.Equal(t, a, in[0].From, "seed %d", seed)
			require.Equal(t, b, in[0].To, "seed %d", seed)
		}
		for _, m := range ms {
			for _, h := range []uint64{m.Start, m.Start + 1, m.End, m.End + 1} {
				check(h)
			}
		}
		for k := range 1000 {
			check(ring.KeyHash(fmt.Appendf(nil, "key-%d", k)))
		}
		if n == 1 {
			require.Len(t, ms, len(ring.Moves(from, to)), "seed %d: n=1 is Moves", seed)
		}
	}
}

// TestWeightChangeMoves: raising a node's weight moves keys only to it,
// lowering it only from it.
func TestWeightChangeMoves(t *testing.T) {
	r := mustNew(t, nodes(6, 1), 64)
	heavier, err := r.With(ring.Node{ID: "node-2", Weight: 2, Zone: "z0"})
	require.NoError(t, err)
	ms := ring.Moves(r, heavier)
	require.NotEmpty(t, ms)
	for _, m := range ms {
		require.Equal(t, "node-2", m.To)
	}
	for _, m := range ring.Moves(heavier, r) {
		require.Equal(t, "node-2", m.From)
	}
}
