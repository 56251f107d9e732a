package ring_test

import (
	"cmp"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/ring"
)

var long = flag.Bool("long", false, "run the slow measurements (vnode balance table)")

// nodes returns n equal nodes named node-0..node-(n-1) spread over zones.
func nodes(n, zones int) []ring.Node {
	out := make([]ring.Node, n)
	for i := range out {
		out[i] = ring.Node{ID: "node-" + strconv.Itoa(i), Zone: "z" + strconv.Itoa(i%max(zones, 1))}
	}
	return out
}

// randomNodes returns between 1 and maxN nodes with random weights in
// [0.25, 4] (and some zero weights), spread over up to 4 zones.
func randomNodes(r *rand.Rand, maxN int) []ring.Node {
	n := 1 + r.IntN(maxN)
	zones := 1 + r.IntN(4)
	out := make([]ring.Node, n)
	for i := range out {
		w := 0.25 + r.Float64()*3.75
		if r.IntN(4) == 0 {
			w = 0
		}
		out[i] = ring.Node{ID: fmt.Sprintf("n%d-%d", i, r.IntN(1000)), Weight: w, Zone: "z" + strconv.Itoa(r.IntN(zones))}
	}
	return out
}

func mustNew(t testing.TB, ns []ring.Node, vnodes int) *ring.Ring {
	t.Helper()
	r, err := ring.New(ns, ring.Config{VNodes: vnodes})
	require.NoError(t, err)
	return r
}

// model is the textbook ring, built independently of the package from
// PointHash: every point sorted by (hash, ID), first point at or after the
// key's hash wins.
type model struct {
	hashes []uint64
	ids    []string
	zone   map[string]string
}

type modelPoint struct {
	hash uint64
	id   string
}

func newModel(ns []ring.Node, vnodes int) model {
	var pts []modelPoint
	m := model{zone: map[string]string{}}
	for _, n := range ns {
		w := n.Weight
		if w == 0 {
			w = 1
		}
		count := max(1, int(math.Round(w*float64(vnodes))))
		for i := range count {
			pts = append(pts, modelPoint{ring.PointHash(n.ID, uint32(i)), n.ID})
		}
		m.zone[n.ID] = n.Zone
	}
	slices.SortFunc(pts, func(a, b modelPoint) int { return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.id, b.id)) })
	for _, p := range pts {
		m.hashes = append(m.hashes, p.hash)
		m.ids = append(m.ids, p.id)
	}
	return m
}

// walk returns the distinct nodes met walking clockwise from h.
func (m model) walk(h uint64) []string {
	start, _ := slices.BinarySearch(m.hashes, h)
	var out []string
	seen := map[string]bool{}
	for k := range m.ids {
		id := m.ids[(start+k)%len(m.ids)]
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// replicas is NetworkTopologyStrategy's choice: the first node of each zone
// in walk order, then the skipped nodes in walk order.
func (m model) replicas(h uint64, n int) []string {
	var first, rest []string
	seen := map[string]bool{}
	for _, id := range m.walk(h) {
		if seen[m.zone[id]] {
			rest = append(rest, id)
		} else {
			seen[m.zone[id]] = true
			first = append(first, id)
		}
	}
	all := append(first, rest...)
	return all[:min(n, len(all))]
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		nodes []ring.Node
		cfg   ring.Config
		want  error
	}{
		{"empty ID", []ring.Node{{ID: "a"}, {ID: ""}}, ring.Config{}, ring.ErrEmptyID},
		{"duplicate", []ring.Node{{ID: "a"}, {ID: "b"}, {ID: "a", Zone: "x"}}, ring.Config{}, ring.ErrDuplicateID},
		{"negative weight", []ring.Node{{ID: "a", Weight: -1}}, ring.Config{}, ring.ErrWeight},
		{"NaN weight", []ring.Node{{ID: "a", Weight: math.NaN()}}, ring.Config{}, ring.ErrWeight},
		{"Inf weight", []ring.Node{{ID: "a", Weight: math.Inf(1)}}, ring.Config{}, ring.ErrWeight},
		{"negative vnodes", []ring.Node{{ID: "a"}}, ring.Config{VNodes: -1}, ring.ErrVNodes},
		{"huge weight", []ring.Node{{ID: "a", Weight: 1e300}}, ring.Config{}, ring.ErrTooLarge},
		{"too many points", []ring.Node{{ID: "a", Weight: 10000}, {ID: "b", Weight: 10000}}, ring.Config{VNodes: 1000}, ring.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ring.New(tc.nodes, tc.cfg)
			require.ErrorIs(t, err, tc.want)
			require.Nil(t, r)
			if errors.Is(tc.want, ring.ErrVNodes) || errors.Is(tc.want, ring.ErrTooLarge) {
				require.NoError(t, ring.Validate(tc.nodes), "the nodes themselves are valid")
			} else {
				require.ErrorIs(t, ring.Validate(tc.nodes), tc.want)
			}
		})
	}
	r := mustNew(t, nodes(2, 1), 8)
	_, err := r.With(ring.Node{ID: "x", Weight: -2})
	require.ErrorIs(t, err, ring.ErrWeight)
	_, err = r.With(ring.Node{ID: "x"}, ring.Node{ID: "x"})
	require.ErrorIs(t, err, ring.ErrDuplicateID)
}

func TestEmpty(t *testing.T) {
	for _, r := range []*ring.Ring{nil, {}, mustNew(t, nil, 0), mustNew(t, nodes(3, 1), 4).Without("node-0", "node-1", "node-2")} {
		require.Equal(t, "", r.Lookup([]byte("k")))
		require.Equal(t, "", r.LookupString("k"))
		require.Empty(t, r.Replicas([]byte("k"), 3, nil))
		require.Zero(t, r.Len())
		require.Empty(t, r.Nodes())
		require.Empty(t, ring.Moves(r, r))
	}
	var nilRing *ring.Ring
	r, err := nilRing.With(ring.Node{ID: "a"})
	require.NoError(t, err)
	require.Equal(t, "a", r.LookupString("k"))
}

// TestModel checks Lookup, LookupString, LookupHash and Replicas against the
// textbook model on random weighted, zoned rings.
func TestModel(t *testing.T) {
	for seed := uint64(0); seed < 30; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 1))
		ns := randomNodes(rnd, 12)
		vnodes := 1 + rnd.IntN(40)
		r := mustNew(t, ns, vnodes)
		m := newModel(ns, vnodes)
		var dst []string
		for k := range 300 {
			key := fmt.Sprintf("key-%d-%d", seed, k)
			h := ring.KeyHash([]byte(key))
			want := m.walk(h)[0]
			if got := r.Lookup([]byte(key)); got != want {
				t.Fatalf("seed %d: Lookup(%q) = %q, model %q", seed, key, got, want)
			}
			require.Equal(t, want, r.LookupString(key), "seed %d", seed)
			require.Equal(t, want, r.LookupHash(h), "seed %d", seed)
			n := rnd.IntN(len(ns) + 2)
			dst = r.Replicas([]byte(key), n, dst)
			if want := m.replicas(h, n); !slices.Equal(dst, want) {
				t.Fatalf("seed %d: Replicas(%q, %d) = %v, model %v", seed, key, n, dst, want)
			}
			require.True(t, slices.Equal(dst, r.ReplicasString(key, n, nil)), "seed %d", seed)
		}
		// Point hashes themselves, and their neighbours, are owned correctly.
		for _, h := range m.hashes[:min(len(m.hashes), 50)] {
			for _, x := range []uint64{h - 1, h, h + 1} {
				require.Equal(t, m.walk(x)[0], r.LookupHash(x), "seed %d hash %d", seed, x)
			}
		}
	}
}

// TestReplicasLaws checks the preference-list laws on many keys: distinct
// nodes, min(n, N) of them, [0] == Lookup, prefix-closed, and the first
// min(n, zones) in distinct zones.
func TestReplicasLaws(t *testing.T) {
	for seed := uint64(0); seed < 20; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 2))
		ns := randomNodes(rnd, 20)
		r := mustNew(t, ns, 16)
		zoneOf := map[string]string{}
		for _, n := range ns {
			zoneOf[n.ID] = n.Zone
		}
		zones := len(slices.Compact(slices.Sorted(func(yield func(string) bool) {
			for _, z := range zoneOf {
				if !yield(z) {
					return
				}
			}
		})))
		for k := range 200 {
			key := []byte(fmt.Sprintf("k%d", k))
			all := r.Replicas(key, len(ns)+5, nil)
			require.Len(t, all, len(ns), "seed %d", seed)
			require.Len(t, slices.Compact(slices.Sorted(slices.Values(all))), len(ns), "seed %d: distinct", seed)
			require.Equal(t, r.Lookup(key), all[0], "seed %d", seed)
			for n := range len(ns) + 1 {
				require.True(t, slices.Equal(all[:n], r.Replicas(key, n, nil)), "seed %d: prefix", seed)
			}
			seen := map[string]bool{}
			for _, id := range all[:zones] {
				require.False(t, seen[zoneOf[id]], "seed %d: zone %s repeated in %v", seed, zoneOf[id], all)
				seen[zoneOf[id]] = true
			}
		}
	}
}

// TestOrderIndependence builds the same node set in many orders: every key
// routes identically and Moves between the builds is empty.
func TestOrderIndependence(t *testing.T) {
	rnd := rand.New(rand.NewPCG(7, 7))
	ns := randomNodes(rnd, 30)
	base := mustNew(t, ns, 32)
	for i := range 10 {
		shuffled := slices.Clone(ns)
		rnd.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		r := mustNew(t, shuffled, 32)
		require.Empty(t, ring.Moves(base, r), "shuffle %d", i)
		require.Equal(t, base.Nodes(), r.Nodes())
		for k := range 500 {
			key := []byte(strconv.Itoa(k))
			require.Equal(t, base.Replicas(key, 4, nil), r.Replicas(key, 4, nil))
		}
	}
	// Built incrementally, in any order, the ring is the same too.
	inc := mustNew(t, nil, 32)
	for _, n := range slices.Backward(ns) {
		var err error
		inc, err = inc.With(n)
		require.NoError(t, err)
	}
	require.Empty(t, ring.Moves(base, inc))
}

func TestWithReplacesAndWithout(t *testing.T) {
	r := mustNew(t, nodes(4, 2), 64)
	r2, err := r.With(ring.Node{ID: "node-1", Weight: 3, Zone: "new"})
	require.NoError(t, err)
	require.Equal(t, []ring.Node{
		{ID: "node-0", Weight: 1, Zone: "z0"}, {ID: "node-1", Weight: 3, Zone: "new"},
		{ID: "node-2", Weight: 1, Zone: "z0"}, {ID: "node-3", Weight: 1, Zone: "z1"},
	}, r2.Nodes())
	require.Equal(t, ring.Node{ID: "node-1", Weight: 1, Zone: "z1"}, r.Nodes()[1], "r is unchanged")
	r3 := r2.Without("node-1", "absent")
	require.Len(t, r3.Nodes(), 3)
	require.Equal(t, r.Without("node-1").Nodes(), r3.Nodes())
	require.Empty(t, ring.Moves(r.Without("node-1"), r3))
}

// share counts the fraction of keys each node owns.
func share(r *ring.Ring, keys int) map[string]float64 {
	out := map[string]float64{}
	for k := range keys {
		out[r.LookupString("key-"+strconv.Itoa(k))] += 1 / float64(keys)
	}
	return out
}

// TestDefaultBalance: with the default VNodes, ten equal nodes carry at most
// 1.10 times the mean load on a fixed key set (hashing is fixed, so this is
// exact and deterministic).
func TestDefaultBalance(t *testing.T) {
	r := mustNew(t, nodes(10, 1), 0)
	s := share(r, 200_000)
	require.Len(t, s, 10)
	for id, f := range s {
		require.LessOrEqual(t, f*10, 1.10, "node %s", id)
	}
}

// TestVNodesTable reproduces the table in the package documentation: for
// 1000 rings of ten equal nodes, the exact share of the circle held by the
// most loaded node, over the mean.
func TestVNodesTable(t *testing.T) {
	if !*long {
		t.Skip("measurement; run with -long")
	}
	for _, v := range []int{64, 128, 256, 512, 1024, 2048} {
		var worst []float64
		for c := range 1000 {
			ns := make([]ring.Node, 10)
			for i := range ns {
				ns[i] = ring.Node{ID: fmt.Sprintf("c%d-n%d", c, i)}
			}
			// Moves from the empty ring lists every node's ranges; uint64
			// subtraction measures wrapping ranges correctly too.
			owned := map[string]float64{}
			for _, m := range ring.Moves(nil, mustNew(t, ns, v)) {
				owned[m.To] += float64(m.End - m.Start)
			}
			var most float64
			for _, o := range owned {
				most = max(most, o)
			}
			worst = append(worst, most/(math.Exp2(64)/10))
		}
		slices.Sort(worst)
		t.Logf("VNodes %5d: median %.3f  p90 %.3f  p99 %.3f  max %.3f", v, worst[500], worst[900], worst[990], worst[999])
	}
}

// TestMovement: adding a node moves only keys to it, about 1/(n+1) of them;
// removing one moves only its keys.
func TestMovement(t *testing.T) {
	const keys = 20_000
	for _, n := range []int{1, 5, 10, 30} {
		r := mustNew(t, nodes(n, 3), 0)
		added, err := r.With(ring.Node{ID: "new", Zone: "z0"})
		require.NoError(t, err)
		restored := added.Without("new")
		moved := 0
		for k := range keys {
			key := "key-" + strconv.Itoa(k)
			before, after := r.LookupString(key), added.LookupString(key)
			if before != after {
				require.Equal(t, "new", after, "n=%d: key %s moved between old nodes", n, key)
				moved++
			}
			// Removing the new node again restores every key.
			require.Equal(t, before, restored.LookupString(key))
		}
		frac := float64(moved) / keys
		require.InDelta(t, 1/float64(n+1), frac, 0.2/float64(n+1), "n=%d", n)

		gone := r.Without("node-0")
		for k := range keys {
			key := "key-" + strconv.Itoa(k)
			if before := r.LookupString(key); before != "node-0" {
				require.Equal(t, before, gone.LookupString(key), "n=%d: key %s of a surviving node moved", n, key)
			}
		}
	}
}

// TestWeights: a node's share of keys is proportional to its weight.
func TestWeights(t *testing.T) {
	ns := []ring.Node{{ID: "a", Weight: 1}, {ID: "b", Weight: 2}, {ID: "c", Weight: 3}, {ID: "d", Weight: 4}, {ID: "e", Weight: 0.5}}
	s := share(mustNew(t, ns, 0), 200_000)
	for _, n := range ns {
		require.InEpsilon(t, n.Weight/10.5, s[n.ID], 0.08, "node %s", n.ID)
	}
}

// TestZones: with three zones, three replicas always span all three, even
// when one zone has a single node.
func TestZones(t *testing.T) {
	ns := nodes(12, 2) // z0 and z1
	ns = append(ns, ring.Node{ID: "lonely", Zone: "z2"})
	r := mustNew(t, ns, 64)
	dst := make([]string, 0, 3)
	lonely := 0
	for k := range 5000 {
		dst = r.ReplicasString(strconv.Itoa(k), 3, dst)
		zones := map[string]bool{}
		for _, id := range dst {
			for _, n := range ns {
				if n.ID == id {
					zones[n.Zone] = true
				}
			}
		}
		require.Len(t, zones, 3, "key %d: %v", k, dst)
		if slices.Contains(dst, "lonely") {
			lonely++
		}
	}
	require.Equal(t, 5000, lonely, "the only node of z2 holds a replica of every key")
}

// TestSmallRings checks tiny rings exhaustively: the model agrees at every
// point, just before and just after it, and at both ends of the circle.
func TestSmallRings(t *testing.T) {
	for n := 1; n <= 5; n++ {
		for _, v := range []int{1, 2, 3} {
			ns := nodes(n, 2)
			r := mustNew(t, ns, v)
			m := newModel(ns, v)
			for _, h := range append(slices.Clone(m.hashes), 0, math.MaxUint64) {
				for _, x := range []uint64{h - 1, h, h + 1} {
					require.Equal(t, m.walk(x)[0], r.LookupHash(x))
					require.Equal(t, m.replicas(x, n), r.ReplicasHash(x, n, nil))
				}
			}
		}
	}
}

func TestAllocs(t *testing.T) {
	r := mustNew(t, nodes(1000, 3), 16) // 1000 nodes: the largest benchmarked

	key := []byte("some key")
	dst := make([]string, 0, 5)
	for name, f := range map[string]func(){
		"Lookup":       func() { _ = r.Lookup(key) },
		"LookupString": func() { _ = r.LookupString("some key") },
		"Replicas3":    func() { dst = r.Replicas(key, 3, dst) },
		"Replicas5":    func() { dst = r.ReplicasString("k", 5, dst) },
	} {
		require.Zero(t, testing.AllocsPerRun(100, f), name)
	}
}

// TestConcurrent shares a ring and a rendezvous set between goroutines that
// look up keys while others derive new rings; run with -race.
func TestConcurrent(t *testing.T) {
	r := mustNew(t, nodes(20, 3), 64)
	h := mustRendezvous(t, nodes(20, 3))
	want := make([][]string, 200)
	for k := range want {
		want[k] = r.ReplicasString(strconv.Itoa(k), 3, nil)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			dst := make([]string, 0, 3)
			for k := range want {
				dst = r.ReplicasString(strconv.Itoa(k), 3, dst)
				if !slices.Equal(dst, want[k]) || r.LookupString(strconv.Itoa(k)) != want[k][0] {
					t.Errorf("goroutine %d: key %d: %v, want %v", g, k, dst, want[k])
					return
				}
			}
		})
		wg.Go(func() {
			dst := make([]string, 0, 2)
			for k := range 100 {
				key := []byte(strconv.Itoa(k))
				if dst = h.LookupN(key, 2, dst); dst[0] != h.Lookup(key) {
					t.Errorf("goroutine %d: rendezvous %v, Lookup %s", g, dst, h.Lookup(key))
				}
			}
		})
		wg.Go(func() {
			r2, err := r.With(ring.Node{ID: fmt.Sprintf("extra-%d", g)})
			if err != nil {
				t.Error(err)
				return
			}
			_ = ring.Moves(r, r2.Without("node-1"))
		})
	}
	wg.Wait()
}
