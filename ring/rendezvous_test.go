package ring_test

import (
	"cmp"
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
	for _, ns := range [][]ring.Node{
		{{ID: "a", Weight: 1}, {ID: "b", Weight: 0.5}, {ID: "c", Weight: 2}, {ID: "d"}},
		{{ID: "a", Weight: 3}, {ID: "b", Weight: 3}, {ID: "c", Weight: 3}, {ID: "d", Weight: 3}}, // equal: no logarithm
		{{ID: "a"}, {ID: "b", Weight: 1}, {ID: "c"}},
	} {
		rendezvousModel(t, ns)
	}
}

func rendezvousModel(t *testing.T, ns []ring.Node) {
	mix := func(x uint64) uint64 {
		x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
		x = (x ^ x>>27) * 0x94d049bb133111eb
		return x ^ x>>31
	}
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

// TestRendezvousParity: With and Without reach the set NewRendezvous
// builds, the string and hash lookups agree with the byte lookups, and
// Replicas spreads over zones with the documented order, on random weighted
// zoned node sets.
func TestRendezvousParity(t *testing.T) {
	for seed := uint64(0); seed < 30; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 8))
		ns := randomNodes(rnd, 12)
		h := mustRendezvous(t, ns)
		extra := ring.Node{ID: fmt.Sprint("extra-", seed), Weight: 1 + rnd.Float64(), Zone: "z9"}
		with, err := h.With(extra)
		require.NoError(t, err)
		require.Equal(t, mustRendezvous(t, append(slices.Clone(ns), extra)).Nodes(), with.Nodes())
		reweighted := ns[0]
		reweighted.Weight = 7
		re, err := h.With(reweighted)
		require.NoError(t, err)
		require.Equal(t, 7.0, re.Nodes()[slices.IndexFunc(re.Nodes(), func(n ring.Node) bool { return n.ID == ns[0].ID })].Weight)
		require.Equal(t, len(ns), re.Len())
		back := with.Without(extra.ID, "absent")
		zones := map[string]string{}
		for _, n := range ns {
			zones[n.ID] = n.Zone
		}
		zones[extra.ID] = extra.Zone
		for k := range 200 {
			key := fmt.Sprintf("key-%d", k)
			b := []byte(key)
			require.Equal(t, h.LookupN(b, 5, nil), back.LookupN(b, 5, nil))
			require.Equal(t, h.Lookup(b), h.LookupString(key))
			require.Equal(t, h.Lookup(b), h.LookupHash(ring.KeyHash(b)))
			require.Equal(t, h.LookupN(b, 4, nil), h.LookupNString(key, 4, nil))
			require.Equal(t, h.Replicas(b, 4, nil), h.ReplicasString(key, 4, nil))

			for _, set := range []*ring.Rendezvous{h, with} {
				all := set.LookupN(b, set.Len(), nil)
				reps := set.Replicas(b, set.Len(), nil)
				// The model: the first node of each zone in score order,
				// then the others in score order.
				var lead, rest []string
				seen := map[string]bool{}
				for _, id := range all {
					if !seen[zones[id]] {
						seen[zones[id]] = true
						lead = append(lead, id)
					} else {
						rest = append(rest, id)
					}
				}
				require.Equal(t, append(lead, rest...), reps, "seed %d key %s", seed, key)
				for n := range set.Len() {
					require.Equal(t, reps[:n], set.Replicas(b, n, make([]string, 0, n)))
				}
			}
		}
	}
	var none *ring.Rendezvous
	require.Empty(t, none.Replicas([]byte("k"), 3, nil))
	require.Zero(t, none.Len())
	require.Equal(t, 0, none.Without("a").Len())
	one, err := none.With(ring.Node{ID: "a"})
	require.NoError(t, err)
	require.Equal(t, "a", one.LookupString("k"))
	_, err = one.With(ring.Node{ID: "b", Weight: math.NaN()})
	require.ErrorIs(t, err, ring.ErrWeight)
}

// TestRendezvousReplicasAllocs: zone-aware lists do not allocate within
// their documented limits, and are still right beyond them.
func TestRendezvousReplicasAllocs(t *testing.T) {
	h := mustRendezvous(t, nodes(50, 5))
	dst := make([]string, 0, 8)
	key := []byte("k")
	require.Zero(t, testing.AllocsPerRun(100, func() { dst = h.Replicas(key, 8, dst) }))
	big := mustRendezvous(t, nodes(3000, 40))
	all := big.LookupN(key, 3000, nil)
	reps := big.Replicas(key, 100, nil)
	require.Len(t, reps, 100)
	require.Len(t, slices.Compact(slices.Sorted(slices.Values(reps))), 100)
	require.Equal(t, all[0], reps[0])
}

// TestRendezvousExtremeWeights: the smallest and largest finite weights,
// whose reciprocals overflow or underflow, still give lookups that agree
// with the exact scores of LookupN, and the heaviest node takes nearly
// every key.
func TestRendezvousExtremeWeights(t *testing.T) {
	h := mustRendezvous(t, []ring.Node{
		{ID: "tiny", Weight: 5e-324}, {ID: "tiny2", Weight: 5e-324}, {ID: "huge", Weight: math.MaxFloat64}, {ID: "one", Weight: 1},
	})
	for k := range 2000 {
		key := []byte(strconv.Itoa(k))
		require.Equal(t, h.LookupN(key, 1, nil)[0], h.Lookup(key), "key %s", key)
		require.Equal(t, "huge", h.Lookup(key))
	}
	h = mustRendezvous(t, []ring.Node{{ID: "a", Weight: 5e-324}, {ID: "b", Weight: 5e-324 * 3}, {ID: "c", Weight: 1e-300}})
	for k := range 2000 {
		key := []byte(strconv.Itoa(k))
		require.Equal(t, h.LookupN(key, 1, nil)[0], h.Lookup(key), "key %s", key)
	}
}

// TestRendezvousManyWeighted: on sets of many distinct weights, on both
// sides of 128 nodes, where Lookup goes from bounding every node (few)
// to meeting nodes heaviest first, it still picks the node of highest
// exact score, the first of LookupN, and shares follow the weights.
func TestRendezvousManyWeighted(t *testing.T) {
	for _, n := range []int{31, 32, 33, 128, 129, 200} {
		rnd := rand.New(rand.NewPCG(uint64(n), 10))
		ns := make([]ring.Node, n)
		total := 0.0
		for i := range ns {
			ns[i] = ring.Node{ID: fmt.Sprint("n", i), Weight: 0.1 + 5*rnd.Float64()}
			total += ns[i].Weight
		}
		h := mustRendezvous(t, ns)
		count := map[string]int{}
		const keys = 20_000
		for k := range keys {
			key := []byte(strconv.Itoa(k))
			got := h.Lookup(key)
			require.Equal(t, h.LookupN(key, 1, nil)[0], got, "n=%d key %s", n, key)
			count[got]++
		}
		heaviest := slices.MaxFunc(ns, func(a, b ring.Node) int { return cmp.Compare(a.Weight, b.Weight) })
		require.InDelta(t, heaviest.Weight/total, float64(count[heaviest.ID])/keys, 0.02, "n=%d", n)
	}
}
