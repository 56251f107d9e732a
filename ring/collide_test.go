package ring

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCollisions feeds assemble points whose hashes collide, between nodes
// and within one node, in every order: the result is the same, and each
// contested hash goes to the smallest node ID.
func TestCollisions(t *testing.T) {
	nodes := []Node{{ID: "a", Weight: 1}, {ID: "b", Weight: 1, Zone: "x"}, {ID: "c", Weight: 1}}
	pts := []point{
		{200, 0},                     // a beats b and c
		{400, 1}, {100, 1}, {200, 1}, // b beats c
		{100, 2}, {300, 2}, {200, 2}, {300, 2}, // c collides with itself
	}
	want := &Ring{nodes: nodes}
	want.assemble(slices.Clone(pts))
	require.Equal(t, []uint64{100, 200, 300, 400}, want.hashes)
	require.Equal(t, []int32{1, 0, 2, 1}, want.owner)
	require.Equal(t, []int32{1, 2, 1}, want.counts)
	require.Equal(t, 2, want.zones)

	for seed := range uint64(50) {
		rnd := rand.New(rand.NewPCG(seed, 3))
		shuffled := slices.Clone(pts)
		rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		// assemble takes points grouped by owner, as build makes them;
		// node order itself is covered by TestOrderIndependence.
		slices.SortStableFunc(shuffled, func(a, b point) int { return cmp.Compare(a.owner, b.owner) })
		r := &Ring{nodes: nodes}
		r.assemble(shuffled)
		require.Equal(t, want.hashes, r.hashes, "seed %d", seed)
		require.Equal(t, want.owner, r.owner, "seed %d", seed)
		for _, h := range []uint64{0, 100, 101, 200, 250, 300, 400, 401} {
			require.Equal(t, want.LookupHash(h), r.LookupHash(h))
			require.Equal(t, want.ReplicasHash(h, 3, nil), r.ReplicasHash(h, 3, nil))
		}
	}
	require.Equal(t, "b", want.LookupHash(50))
	require.Equal(t, "a", want.LookupHash(150))
	require.Equal(t, "b", want.LookupHash(401), "wraps to the first point")
	require.Equal(t, []string{"a", "b", "c"}, want.ReplicasHash(150, 3, nil))
}

// TestPointlessNode: a node whose only point loses a collision owns no keys,
// is not counted as live, and Replicas still terminates with the others.
func TestPointlessNode(t *testing.T) {
	nodes := []Node{{ID: "a", Weight: 1}, {ID: "b", Weight: 1}, {ID: "c", Weight: 1}}
	r := &Ring{nodes: nodes}
	r.assemble([]point{{10, 0}, {20, 1}, {10, 2}})
	require.Equal(t, 2, r.live)
	require.Equal(t, []string{"a", "b"}, r.ReplicasHash(5, 3, nil))
	b, err := NewBounded(r, 1)
	require.NoError(t, err)
	for _, k := range []string{"k1", "k2", "k3", "k4"} {
		id, err := b.Add(k)
		require.NoError(t, err)
		require.NotEqual(t, "c", id)
	}
}
