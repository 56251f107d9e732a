package ring_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/ring"
)

func TestRendezvousEmptyAndMisuse(t *testing.T) {
	var zero ring.Rendezvous
	require.Equal(t, "", zero.Lookup([]byte("k")))
	require.Empty(t, zero.LookupN([]byte("k"), 3, nil))
	var none *ring.Rendezvous
	require.Equal(t, "", none.Lookup([]byte("k")))
	require.Empty(t, none.LookupN([]byte("k"), 3, nil))
	require.Empty(t, none.Nodes())
	require.Equal(t, "", mustRendezvous(t, nil).Lookup([]byte("k")))
	for _, bad := range [][]ring.Node{
		{{ID: ""}},
		{{ID: "a"}, {ID: "a"}},
		{{ID: "a", Weight: math.NaN()}},
		{{ID: "a", Weight: -1}},
		{{ID: "a", Weight: math.Inf(1)}},
		{{ID: "a", Weight: math.Inf(-1)}},
	} {
		h, err := ring.NewRendezvous(bad)
		require.Error(t, err)
		require.Equal(t, ring.Validate(bad), err)
		require.Nil(t, h)
	}
}

func mustRendezvous(t testing.TB, ns []ring.Node) *ring.Rendezvous {
	t.Helper()
	h, err := ring.NewRendezvous(ns)
	require.NoError(t, err)
	return h
}

// TestRendezvousLaws on random weighted node sets: LookupN is distinct,
// prefix-closed, starts with Lookup, ignores node order, and removing a
// node only deletes it from each list.
func TestRendezvousLaws(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 6))
		ns := randomNodes(rnd, 15)
		h := mustRendezvous(t, ns)
		shuffled := slices.Clone(ns)
		rnd.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		h2 := mustRendezvous(t, shuffled)
		gone := ns[rnd.IntN(len(ns))].ID
		h3 := mustRendezvous(t, slices.DeleteFunc(slices.Clone(ns), func(n ring.Node) bool { return n.ID == gone }))
		for k := range 300 {
			key := []byte(fmt.Sprintf("key-%d", k))
			all := h.LookupN(key, len(ns)+3, nil)
			require.Len(t, all, len(ns))
			require.Len(t, slices.Compact(slices.Sorted(slices.Values(all))), len(ns))
			require.Equal(t, h.Lookup(key), all[0])
			require.Equal(t, all, h2.LookupN(key, len(ns), nil), "seed %d: order", seed)
			for n := range len(ns) {
				require.True(t, slices.Equal(all[:n], h.LookupN(key, n, nil)), "seed %d: prefix", seed)
			}
			without := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == gone })
			require.True(t, slices.Equal(without, h3.LookupN(key, len(ns), nil)), "seed %d: removal of %s", seed, gone)
		}
	}
}

// TestRendezvousWeights: shares are proportional to weights.
func TestRendezvousWeights(t *testing.T) {
	ns := []ring.Node{{ID: "a", Weight: 1}, {ID: "b", Weight: 2}, {ID: "c", Weight: 3}, {ID: "d", Weight: 4}}
	h := mustRendezvous(t, ns)
	const keys = 100_000
	count := map[string]int{}
	for k := range keys {
		count[h.Lookup([]byte(strconv.Itoa(k)))]++
	}
	for _, n := range ns {
		require.InEpsilon(t, n.Weight/10, float64(count[n.ID])/keys, 0.03, n.ID)
	}
}

func TestRendezvousAllocs(t *testing.T) {
	h := mustRendezvous(t, nodes(50, 1))
	key := []byte("k")
	dst := make([]string, 0, 4)
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = h.Lookup(key) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { dst = h.LookupN(key, 4, dst) }))
	require.Len(t, h.LookupN(key, 40, nil), 40, "beyond the stack buffer")
	require.Equal(t, h.LookupN(key, 4, nil), h.LookupN(key, 40, nil)[:4])
}

// TestRendezvousModel recomputes the documented score, -w / ln(u) with
// u = (top 53 bits of mix64(xxhash64(key) ^ xxhash64(ID)) + 0.5) / 2^53,
// and checks that Lookup picks its maximum.
func TestRendezvousModel(t *testing.T) {
	mix := func(x uint64) uint64 {
		x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
		x = (x ^ x>>27) * 0x94d049bb133111eb
		return x ^ x>>31
	}
	ns := []ring.Node{{ID: "a", Weight: 1}, {ID: "b", Weight: 0.5}, {ID: "c", Weight: 2}, {ID: "d"}}
	h := mustRendezvous(t, ns)
	for k := range 2000 {
		key := []byte(strconv.Itoa(k))
		best, bestScore := "", math.Inf(-1)
		for _, n := range ns {
			u := (float64(mix(xxhash.Sum64(key)^xxhash.Sum64String(n.ID))>>11) + 0.5) / (1 << 53)
			w := n.Weight
			if w == 0 {
				w = 1
			}
			if s := -w / math.Log(u); s > bestScore {
				best, bestScore = n.ID, s
			}
		}
		require.Equal(t, best, h.Lookup(key), "key %s", key)
	}
}
