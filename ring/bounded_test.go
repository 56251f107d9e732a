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

func TestNewBoundedErrors(t *testing.T) {
	r := mustNew(t, nodes(3, 1), 8)
	for _, c := range []float64{0.99, 0, -1, math.NaN(), math.Inf(1)} {
		_, err := ring.NewBounded(r, c)
		require.ErrorIs(t, err, ring.ErrLoadFactor, "c=%v", c)
	}
	for _, empty := range []*ring.Ring{nil, {}, r.Without("node-0", "node-1", "node-2")} {
		_, err := ring.NewBounded(empty, 1.25)
		require.ErrorIs(t, err, ring.ErrEmptyRing)
	}
	b, err := ring.NewBounded(r, 1)
	require.NoError(t, err)
	_, err = b.Add("k")
	require.NoError(t, err)
	_, err = b.Add("k")
	require.ErrorIs(t, err, ring.ErrDuplicateKey)
	moved, ok := b.Remove("absent")
	require.False(t, ok)
	require.Empty(t, moved)
	require.Equal(t, 0, b.Load("absent"))
	require.Equal(t, 0, b.Capacity("absent"))
}

// TestBoundedCap runs seeded random arrivals and departures over random
// rings and load factors, against a model of where every key is. After
// every call: no node holds more than ceil(c * m * share) keys (for equal
// weights exactly ceil(c*m/n), computed in integers), an arrival lands on
// the first node of its ring walk that had room, and the reported
// reassignments are exactly the keys that moved.
func TestBoundedCap(t *testing.T) {
	reassigned := 0
	for seed := uint64(0); seed < 24; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 4))
		n := 1 + rnd.IntN(12)
		equal := seed%2 == 0
		ns := nodes(n, 1) // one zone: Replicas is the plain ring walk
		if !equal {
			for i := range ns {
				ns[i].Weight = 0.5 + rnd.Float64()*2
			}
		}
		vnodes := 1 + rnd.IntN(64)
		r := mustNew(t, ns, vnodes)
		mod := newModel(ns, vnodes)
		// c as a quotient of small integers, so the equal-weight cap is exact.
		num, den := 4+rnd.IntN(5), 4 // 1, 1.25, ..., 2
		c := float64(num) / float64(den)
		b, err := ring.NewBounded(r, c)
		require.NoError(t, err)

		where := map[string]string{}
		var live []string
		check := func(op string) {
			t.Helper()
			m := len(where)
			require.Equal(t, m, b.Len())
			loads := map[string]int{}
			for k, id := range where {
				got, ok := b.Locate(k)
				require.True(t, ok)
				require.Equal(t, id, got, "seed %d %s: key %s", seed, op, k)
				loads[id]++
			}
			limits := capacities(mod, c, m)
			for _, node := range ns {
				load, limit := b.Load(node.ID), b.Capacity(node.ID)
				require.Equal(t, loads[node.ID], load)
				require.Equal(t, limits[node.ID], limit)
				if load > limit {
					t.Fatalf("seed %d %s: node %s holds %d > capacity %d (m=%d, c=%v)", seed, op, node.ID, load, limit, m, c)
				}
				if equal {
					require.Equal(t, (num*m+den*n-1)/(den*n), limit, "seed %d: ceil(c*m/n)", seed)
				}
			}
		}
		next := 0
		for step := range 500 {
			if len(live) == 0 || rnd.IntN(100) < 55 {
				key := fmt.Sprintf("k%d", next)
				next++
				// The model: the first node on the walk with room for m+1.
				var want string
				limits := capacities(mod, c, len(where)+1)
				for _, id := range mod.walk(ring.KeyHash([]byte(key))) {
					if b.Load(id) < limits[id] {
						want = id
						break
					}
				}
				got, err := b.Add(key)
				require.NoError(t, err)
				require.Equal(t, want, got, "seed %d step %d", seed, step)
				where[key] = got
				live = append(live, key)
			} else {
				i := rnd.IntN(len(live))
				key := live[i]
				live[i] = live[len(live)-1]
				live = live[:len(live)-1]
				moved, ok := b.Remove(key)
				require.True(t, ok)
				delete(where, key)
				for _, mv := range moved {
					require.Equal(t, where[mv.Key], mv.From, "seed %d step %d", seed, step)
					require.NotEqual(t, mv.From, mv.To)
					where[mv.Key] = mv.To
				}
				reassigned += len(moved)
			}
			check(fmt.Sprintf("step %d", step))
		}
	}
	require.Positive(t, reassigned, "departures exercised the rebalancing")
}

// capacities returns, from the model's points, the documented capacity
// ceil(c * m * p_i / P) of every node.
func capacities(m model, c float64, keys int) map[string]int {
	points := map[string]int{}
	for i, id := range m.ids {
		if i == 0 || m.hashes[i] != m.hashes[i-1] {
			points[id]++
		}
	}
	total := 0
	for _, p := range points {
		total += p
	}
	out := map[string]int{}
	for id, p := range points {
		out[id] = int(math.Ceil(c * float64(keys) * float64(p) / float64(total)))
	}
	return out
}

// TestBoundedAllocs: steady churn (one departure, one arrival) allocates
// nothing once the assignment has held as many keys.
func TestBoundedAllocs(t *testing.T) {
	b, err := ring.NewBounded(mustNew(t, nodes(10, 1), 16), 1.25)
	require.NoError(t, err)
	keys := make([]string, 200)
	for i := range keys {
		keys[i] = fmt.Sprint("k", i)
	}
	for _, k := range keys[:100] {
		_, err := b.Add(k)
		require.NoError(t, err)
	}
	i := 0
	churn := func() {
		b.Remove(keys[i%200])
		if _, err := b.Add(keys[(i+100)%200]); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for range 400 {
		churn()
	}
	require.Zero(t, testing.AllocsPerRun(1000, churn))
}

// TestBoundedHugeLoadFactor: a finite load factor so large that a capacity
// exceeds every int still bounds nothing and places every key on its ring
// owner, as c = +Inf would if it were allowed; converting such a capacity
// to int gave a negative number on amd64, and Add then walked the ring
// forever looking for room.
func TestBoundedHugeLoadFactor(t *testing.T) {
	r := mustNew(t, nodes(3, 1), 8)
	for _, c := range []float64{1e19, 1e300, math.MaxFloat64} {
		b, err := ring.NewBounded(r, c)
		require.NoError(t, err, "c=%v", c)
		for i := range 50 {
			key := fmt.Sprint("k", i)
			got, err := b.Add(key)
			require.NoError(t, err)
			require.Equal(t, r.LookupString(key), got, "c=%v key %q", c, key)
			require.Positive(t, b.Capacity(got), "c=%v", c)
		}
		for i := range 50 {
			moved, ok := b.Remove(fmt.Sprint("k", i))
			require.True(t, ok)
			require.Empty(t, moved)
		}
	}
}

// TestBoundedRebalance follows random membership and weight changes of
// assignments built by random arrivals: after each Rebalance every key is
// placed, no node exceeds its capacity on the new ring, the reported moves
// are exactly the keys whose node changed, and they number exactly the
// keys of departed nodes plus each remaining node's excess, the fewest the
// bound allows.
func TestBoundedRebalance(t *testing.T) {
	moves := 0
	for seed := uint64(0); seed < 20; seed++ {
		rnd := rand.New(rand.NewPCG(seed, 7))
		t.Logf("seed %d", seed)
		ns := nodes(2+rnd.IntN(8), 1)
		r := mustNew(t, ns, 16)
		c := 1 + rnd.Float64()
		b, err := ring.NewBounded(r, c)
		require.NoError(t, err)
		where := map[string]string{}
		for k := range 50 + rnd.IntN(300) {
			key := fmt.Sprint("k", k)
			where[key], err = b.Add(key)
			require.NoError(t, err)
		}
		for step := range 6 {
			var next *ring.Ring
			switch cur := r.Nodes(); {
			case len(cur) > 1 && rnd.IntN(3) == 0:
				next = r.Without(cur[rnd.IntN(len(cur))].ID)
			case rnd.IntN(2) == 0:
				next, err = r.With(ring.Node{ID: fmt.Sprint("new-", seed, "-", step), Weight: 0.5 + rnd.Float64()})
			default:
				n := cur[rnd.IntN(len(cur))]
				n.Weight = 0.25 + 2*rnd.Float64()
				next, err = r.With(n)
			}
			require.NoError(t, err)
			// The fewest moves the bound allows.
			loads := map[string]int{}
			for _, id := range where {
				loads[id]++
			}
			forced := 0
			prev := b
			for id, load := range loads {
				if !slices.ContainsFunc(next.Nodes(), func(n ring.Node) bool { return n.ID == id }) {
					forced += load
				}
			}
			moved, err := b.Rebalance(next)
			require.NoError(t, err)
			require.Same(t, prev, b)
			for id := range loads {
				if cap := b.Capacity(id); cap > 0 {
					forced += max(0, loads[id]-cap)
				}
			}
			require.Len(t, moved, forced, "seed %d step %d: moves", seed, step)
			for _, mv := range moved {
				require.Equal(t, where[mv.Key], mv.From)
				require.NotEqual(t, mv.From, mv.To)
				where[mv.Key] = mv.To
			}
			require.Equal(t, len(where), b.Len())
			for key, id := range where {
				got, ok := b.Locate(key)
				require.True(t, ok)
				require.Equal(t, id, got, "seed %d step %d: key %s", seed, step, key)
			}
			for _, n := range next.Nodes() {
				require.LessOrEqual(t, b.Load(n.ID), b.Capacity(n.ID), "seed %d step %d: %s", seed, step, n.ID)
			}
			moves += len(moved)
			r = next
		}
		// Arrivals and departures go on over the new ring.
		_, err = b.Add("after")
		require.NoError(t, err)
		_, ok := b.Remove("after")
		require.True(t, ok)
	}
	require.Positive(t, moves)

	b, err := ring.NewBounded(mustNew(t, nodes(3, 1), 8), 1.25)
	require.NoError(t, err)
	_, err = b.Add("k")
	require.NoError(t, err)
	_, err = b.Rebalance(nil)
	require.ErrorIs(t, err, ring.ErrEmptyRing)
	got, ok := b.Locate("k")
	require.True(t, ok, "unchanged after the error")
	require.NotEmpty(t, got)
}
