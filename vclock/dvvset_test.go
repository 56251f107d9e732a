package vclock

import (
	"cmp"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/internal/wire"
)

// ent is one entry of a DVVSet as dvvset.erl writes it: {id, counter,
// values newest first}.
type ent[V any] struct {
	id   string
	n    uint64
	vals []V
}

// mk builds a set from dvvset.erl's literal notation {entries, anonymous}.
func mk[V any](anon []V, es ...ent[V]) DVVSet[V] {
	var s DVVSet[V]
	for _, e := range es {
		s.clock.entries = append(s.clock.entries, entry{id: e.id, counter: e.n})
		s.vals = append(s.vals, e.vals)
	}
	s.anon = anon
	return s
}

// shape returns s in dvvset.erl's notation, empty lists as nil.
func shape[V any](s DVVSet[V]) ([]ent[V], []V) {
	var es []ent[V]
	for i, e := range s.clock.entries {
		es = append(es, ent[V]{e.id, e.counter, slices.Clip(nilIfEmpty(s.vals[i]))})
	}
	return es, slices.Clip(nilIfEmpty(s.anon))
}

func nilIfEmpty[V any](vs []V) []V {
	if len(vs) == 0 {
		return nil
	}
	return vs
}

func requireSet[V any](t *testing.T, want, got DVVSet[V], msgAndArgs ...any) {
	t.Helper()
	we, wa := shape(want)
	ge, ga := shape(got)
	require.Equal(t, we, ge, msgAndArgs...)
	require.Equal(t, wa, ga, msgAndArgs...)
}

// update is dvvset:update(dvvset:new(ctx, [v]), s, id) without touching s.
func update[V any](s DVVSet[V], ctx VClock, id string, v V) DVVSet[V] {
	s = s.Clone()
	s.Update(ctx, id, v)
	return s
}

// sync is dvvset:sync([a, b]) without touching a or b.
func sync[V any](a, b DVVSet[V]) DVVSet[V] {
	a = a.Clone()
	a.Sync(b)
	return a
}

type strs = []string

// TestDVVSetPublishedJoinUpdate re-expresses dvvset.erl's join_test,
// update_test, syn_update_test and event_test. dvvset:update/2 on a
// client clock new(VV, [v]) is Update(VV, id, v) on the empty set.
func TestDVVSetPublishedJoinUpdate(t *testing.T) {
	var empty DVVSet[string]
	a := NewDVVSet("v1")
	require.Equal(t, 0, a.Context().Len())
	a1 := update(empty, VClock{}, "a", "v1")
	require.Equal(t, `{"a":1}`, a1.Context().String())
	b1 := update(a1, a1.Context(), "b", "v2")
	require.Equal(t, `{"a":1, "b":1}`, b1.Context().String())

	a0 := update(empty, VClock{}, "a", "v1")
	a1 = update(a0, a0.Context(), "a", "v2")
	a2 := update(a1, a1.Context(), "b", "v3")
	a3 := update(a1, a0.Context(), "b", "v4")
	a4 := update(a1, a0.Context(), "a", "v5")
	requireSet(t, mk(nil, ent[string]{"a", 1, strs{"v1"}}), a0)
	requireSet(t, mk(nil, ent[string]{"a", 2, strs{"v2"}}), a1)
	requireSet(t, mk(nil, ent[string]{"a", 2, nil}, ent[string]{"b", 1, strs{"v3"}}), a2)
	requireSet(t, mk(nil, ent[string]{"a", 2, strs{"v2"}}, ent[string]{"b", 1, strs{"v4"}}), a3)
	requireSet(t, mk(nil, ent[string]{"a", 3, strs{"v5", "v2"}}), a4)

	// Mary writes v1 and then v2 without a context; Peter read v1 and
	// writes v3: v1 goes, v2 stays a sibling.
	a0 = update(empty, VClock{}, "a", "v1")
	vv1 := a0.Context()
	a1 = update(a0, VClock{}, "a", "v2")
	a2 = update(a1, vv1, "a", "v3")
	require.Equal(t, `{"a":1}`, vv1.String())
	requireSet(t, mk(nil, ent[string]{"a", 2, strs{"v2", "v1"}}), a1)
	requireSet(t, mk(nil, ent[string]{"a", 3, strs{"v3", "v2"}}), a2)

	// event: a new value of an existing and of a new ID.
	requireSet(t, mk(nil, ent[string]{"a", 2, strs{"v2", "v1"}}), update(a0, VClock{}, "a", "v2"))
	requireSet(t, mk(nil, ent[string]{"a", 1, strs{"v1"}}, ent[string]{"b", 1, strs{"v2"}}), update(a0, VClock{}, "b", "v2"))
}

// TestDVVSetPublishedSync re-expresses dvvset.erl's sync_test.
func TestDVVSetPublishedSync(t *testing.T) {
	var empty DVVSet[string]
	x := mk(nil, ent[string]{"x", 1, nil})
	a := update(empty, VClock{}, "a", "v1")
	y := update(empty, VClock{}, "b", "v2")
	a1 := update(empty, a.Context(), "a", "v2")
	a3 := update(empty, a1.Context(), "b", "v3")
	a4 := update(empty, a1.Context(), "c", "v3")
	w := mk(nil, ent[string]{"a", 1, nil})
	z := mk(nil, ent[string]{"a", 2, strs{"v2", "v1"}})

	requireSet(t, mk(nil, ent[string]{"a", 2, strs{"v2"}}), sync(w, z))
	requireSet(t, sync(w, z), sync(z, w))
	requireSet(t, sync(a, a1), sync(a1, a))
	requireSet(t, sync(a4, a3), sync(a3, a4))
	requireSet(t, mk(nil, ent[string]{"a", 2, nil}, ent[string]{"b", 1, strs{"v3"}}, ent[string]{"c", 1, strs{"v3"}}), sync(a4, a3))
	requireSet(t, mk(nil, ent[string]{"a", 1, strs{"v1"}}, ent[string]{"x", 1, nil}), sync(x, a))
	requireSet(t, sync(x, a), sync(a, x))
	requireSet(t, mk(nil, ent[string]{"a", 1, strs{"v1"}}, ent[string]{"b", 1, strs{"v2"}}), sync(a, y))
	requireSet(t, sync(y, a), sync(a, y))

	greater := func(l, r string) int { // dvvset's F = fun(L, R) -> L > R end
		if l > r {
			return -1
		}
		return 1
	}
	l := a4.Clone()
	l.LWW(greater)
	requireSet(t, l, sync(a4, l))
}

// TestDVVSetPublishedLWWLast re-expresses dvvset.erl's lww_last_test.
func TestDVVSetPublishedLWWLast(t *testing.T) {
	type ints = []int
	x := mk(nil, ent[int]{"a", 4, ints{5, 2}}, ent[int]{"b", 1, nil}, ent[int]{"c", 1, ints{3}})
	y := mk(ints{0, 10}, ent[int]{"a", 4, ints{5, 2}}, ent[int]{"b", 1, nil}, ent[int]{"c", 1, ints{3}})
	z := mk(ints{3}, ent[int]{"a", 4, ints{5, 2}}, ent[int]{"b", 1, ints{1}})

	last := func(s DVVSet[int]) int {
		v, ok := s.Last(cmp.Compare[int])
		require.True(t, ok)
		return v
	}
	lww := func(s DVVSet[int]) DVVSet[int] {
		s = s.Clone()
		s.LWW(cmp.Compare[int])
		return s
	}
	require.Equal(t, 5, last(x))
	require.Equal(t, 10, last(y))
	requireSet(t, mk(nil, ent[int]{"a", 4, ints{5}}, ent[int]{"b", 1, nil}, ent[int]{"c", 1, nil}), lww(x))
	requireSet(t, mk(ints{10}, ent[int]{"a", 4, nil}, ent[int]{"b", 1, nil}, ent[int]{"c", 1, nil}), lww(y))
	requireSet(t, mk(nil, ent[int]{"a", 4, ints{5}}, ent[int]{"b", 1, nil}), lww(z))

	type stamped struct{ V, TS int }
	byTS := func(a, b stamped) int { return cmp.Compare(a.TS, b.TS) }
	s := mk([]stamped{{2, 1001140}},
		ent[stamped]{"a", 4, []stamped{{5, 1002345}, {7, 1002340}}},
		ent[stamped]{"b", 1, []stamped{{4, 1001340}}})
	s.LWW(byTS)
	requireSet(t, mk(nil, ent[stamped]{"a", 4, []stamped{{5, 1002345}}}, ent[stamped]{"b", 1, nil}), s)

	var empty DVVSet[int]
	_, ok := empty.Last(cmp.Compare[int])
	require.False(t, ok)
	empty.LWW(cmp.Compare[int])
	require.Equal(t, 0, empty.Len())
}

// TestDVVSetPublishedReconcile re-expresses dvvset.erl's reconcile_test.
func TestDVVSetPublishedReconcile(t *testing.T) {
	type ints = []int
	x := mk(nil, ent[int]{"a", 4, ints{5, 2}}, ent[int]{"b", 1, nil}, ent[int]{"c", 1, ints{3}})
	y := mk(ints{0, 10}, ent[int]{"a", 4, ints{5, 2}}, ent[int]{"b", 1, nil}, ent[int]{"c", 1, ints{3}})
	sum := func(vs []int) int {
		n := 0
		for _, v := range vs {
			n += v
		}
		return n
	}
	least := func(vs []int) int { return slices.Min(vs) }
	history := []ent[int]{{"a", 4, nil}, {"b", 1, nil}, {"c", 1, nil}}
	for _, c := range []struct {
		in   DVVSet[int]
		f    func([]int) int
		want int
	}{{x, sum, 10}, {y, sum, 20}, {x, least, 2}, {y, least, 0}} {
		s := c.in.Clone()
		s.Reconcile(c.f)
		requireSet(t, mk(ints{c.want}, history...), s)
	}

	var empty DVVSet[int]
	empty.Reconcile(func([]int) int { panic("called on an empty set") })
	require.Equal(t, 0, empty.Len())
}

// TestDVVSetPublishedLess re-expresses dvvset.erl's less_test; less(A, B)
// is A.Compare(B) == Before.
func TestDVVSetPublishedLess(t *testing.T) {
	var empty DVVSet[string]
	a := update(empty, VClock{}, "a", "v1")
	b := update(empty, a.Context(), "a", "v2")
	b2 := update(empty, a.Context(), "b", "v2")
	b3 := update(empty, a.Context(), "z", "v2")
	c := update(a, b.Context(), "c", "v3")
	d := update(b2, c.Context(), "d", "v4")
	for _, c := range []struct {
		name string
		x, y DVVSet[string]
		less bool
	}{
		{"A<B", a, b, true}, {"A<C", a, c, true}, {"B<C", b, c, true}, {"B<D", b, d, true},
		{"B2<D", b2, d, true}, {"A<D", a, d, true}, {"B2<C", b2, c, false}, {"B<B2", b, b2, false},
		{"B2<B", b2, b, false}, {"A<A", a, a, false}, {"C<C", c, c, false}, {"D<B2", d, b2, false},
		{"B3<D", b3, d, false},
	} {
		require.Equal(t, c.less, c.x.Compare(c.y) == Before, c.name)
	}
}

// TestDVVSetPublishedSizeValues re-expresses dvvset.erl's size_test,
// ids_values_test and (for the causal histories) equal_test.
func TestDVVSetPublishedSizeValues(t *testing.T) {
	require.Equal(t, 1, NewDVVSet("v1").Len())
	s := mk(strs{"v1", "v4"}, ent[string]{"a", 4, strs{"v5", "v0"}}, ent[string]{"c", 1, strs{"v3"}})
	require.Equal(t, 5, s.Len())
	require.Equal(t, strs{"v1", "v4", "v5", "v0", "v3"}, s.Values())

	a := mk(strs{"v0"}, ent[string]{"a", 4, strs{"v5", "v0"}}, ent[string]{"c", 1, strs{"v3"}})
	b := mk(nil, ent[string]{"a", 4, strs{"v555", "v0"}}, ent[string]{"c", 1, strs{"v3"}})
	c := mk(strs{"v1", "v6"}, ent[string]{"a", 4, strs{"v5", "v0"}})
	require.Equal(t, Equal, a.Compare(b))
	require.Equal(t, Equal, b.Compare(a))
	require.NotEqual(t, Equal, a.Compare(c))
	require.NotEqual(t, Equal, b.Compare(c))
	require.Equal(t, 0, DVVSet[string]{}.Len())
	require.Empty(t, DVVSet[string]{}.Values())
}

// dmodel is the reference dotted version vector set: the version vector
// and every live value with its dot.
type dmodel struct {
	vec  model
	vals map[Dot]string
}

func (m dmodel) update(ctx model, id, v string) dmodel {
	out := dmodel{vec: m.vec.max(ctx), vals: map[Dot]string{}}
	for d, x := range m.vals {
		if d.Counter > ctx[d.ID] { // not seen by the writer
			out.vals[d] = x
		}
	}
	out.vec[id]++
	out.vals[Dot{ID: id, Counter: out.vec[id]}] = v
	return out
}

func (m dmodel) sync(o dmodel) dmodel {
	out := dmodel{vec: m.vec.max(o.vec), vals: map[Dot]string{}}
	keep := func(x, y dmodel) {
		for d, v := range x.vals {
			if _, both := y.vals[d]; both || d.Counter > y.vec[d.ID] {
				out.vals[d] = v
			}
		}
	}
	keep(m, o)
	keep(o, m)
	return out
}

// dotted returns every value of s with its dot, checking the set's
// invariants on the way.
func dotted(t *testing.T, s DVVSet[string]) map[Dot]string {
	t.Helper()
	checkInvariants(t, s.clock)
	require.Len(t, s.vals, len(s.clock.entries))
	out := map[Dot]string{}
	for i, e := range s.clock.entries {
		require.LessOrEqual(t, uint64(len(s.vals[i])), e.counter)
		for k, v := range s.vals[i] {
			out[Dot{ID: e.id, Counter: e.counter - uint64(k)}] = v
		}
	}
	return out
}

func requireDModel(t *testing.T, seed uint64, s DVVSet[string], m dmodel) {
	t.Helper()
	requireModel(t, seed, s.Context(), m.vec)
	require.Equal(t, m.vals, dotted(t, s), "seed %d", seed)
	require.Empty(t, s.anon, "seed %d", seed)
	require.ElementsMatch(t, slices.Collect(maps.Values(m.vals)), s.Values(), "seed %d", seed)
}

// history runs random reads, writes and replica syncs on three replicas
// and four clients, checking every replica against the model after every
// step if check is set, and returns snapshots of the replicas along the
// way.
func history(t *testing.T, seed uint64, check bool) []DVVSet[string] {
	r := rand.New(rand.NewPCG(seed, 7))
	const replicas, clients = 3, 4
	sets := make([]DVVSet[string], replicas)
	models := make([]dmodel, replicas)
	for i := range models {
		models[i] = dmodel{vec: model{}, vals: map[Dot]string{}}
	}
	ctxs := make([]VClock, clients)
	mctxs := make([]model, clients)
	for i := range mctxs {
		mctxs[i] = model{}
	}
	var snaps []DVVSet[string]
	for step := range 40 {
		i, c := r.IntN(replicas), r.IntN(clients)
		id := fmt.Sprintf("r%d", i)
		switch op := r.IntN(10); {
		case op < 3: // read
			ctxs[c], mctxs[c] = sets[i].Context(), maps.Clone(models[i].vec)
		case op < 8: // write with the client's context, maybe blind
			if op == 7 {
				ctxs[c], mctxs[c] = VClock{}, model{}
			}
			v := fmt.Sprintf("v%d", step)
			sets[i].Update(ctxs[c], id, v)
			models[i] = models[i].update(mctxs[c], id, v)
			if r.IntN(2) == 0 { // the client keeps the reply's context
				ctxs[c], mctxs[c] = sets[i].Context(), maps.Clone(models[i].vec)
			}
		default: // anti-entropy
			j := r.IntN(replicas)
			sets[i].Sync(sets[j])
			models[i] = models[i].sync(models[j])
		}
		for k := range sets {
			if check {
				requireDModel(t, seed, sets[k], models[k])
			}
		}
		if r.IntN(4) == 0 {
			snaps = append(snaps, sets[r.IntN(replicas)].Clone())
		}
	}
	return append(snaps, sets...)
}

// TestDVVSetModel checks Update and Sync against the dotted model: an
// update discards exactly the values its context covers, and a sync keeps
// exactly the values both sides hold or one side has not seen.
func TestDVVSetModel(t *testing.T) {
	for seed := range seeds() {
		history(t, seed, true)
	}
}

// TestDVVSetSyncLaws checks that Sync is commutative, associative and
// idempotent on sets from random histories.
func TestDVVSetSyncLaws(t *testing.T) {
	for seed := range seeds() {
		snaps := history(t, seed, true)
		r := rand.New(rand.NewPCG(seed, 8))
		for range 10 {
			a, b, c := snaps[r.IntN(len(snaps))], snaps[r.IntN(len(snaps))], snaps[r.IntN(len(snaps))]
			requireSet(t, sync(a, b), sync(b, a), "seed %d: commutative", seed)
			requireSet(t, a, sync(a, a), "seed %d: idempotent", seed)
			requireSet(t, sync(sync(a, b), c), sync(a, sync(b, c)), "seed %d: associative", seed)
			requireSet(t, sync(a, b), sync(sync(a, b), b), "seed %d: absorbing", seed)
		}
	}
}

// TestDVVSetSyncAnonymousLaws checks that Sync stays commutative and
// idempotent with anonymous values, and keeps them in canonical order.
func TestDVVSetSyncAnonymousLaws(t *testing.T) {
	for seed := range seeds() {
		snaps := history(t, seed, true)
		r := rand.New(rand.NewPCG(seed, 9))
		for i := range snaps {
			switch r.IntN(4) {
			case 0:
				snaps[i].Reconcile(func(vs []string) string { return fmt.Sprint(len(vs) % 3) })
			case 1:
				snaps[i].LWW(func(a, b string) int { return cmp.Compare(len(a), len(b)) })
			case 2:
				snaps[i].Sync(NewDVVSet(fmt.Sprint(r.IntN(3))))
			}
		}
		for range 10 {
			a, b := snaps[r.IntN(len(snaps))], snaps[r.IntN(len(snaps))]
			ab := sync(a, b)
			requireSet(t, ab, sync(b, a), "seed %d: commutative", seed)
			requireSet(t, a, sync(a, a), "seed %d: idempotent", seed)
			for i := 1; i < len(ab.anon); i++ {
				require.Negative(t, wire.Compare(&ab.anon[i-1], &ab.anon[i]), "seed %d: canonical %q", seed, ab.anon)
			}
		}
	}
}

// TestDVVSetAnonymousNotAssociative documents dvvset's rule for anonymous
// values breaking associativity: x's value survives (x+y)+z but not
// x+(y+z), whose history is strictly newer than x's.
func TestDVVSetAnonymousNotAssociative(t *testing.T) {
	x := mk(strs{"x"}, ent[string]{"a", 1, nil})
	y := mk(strs{"y"}, ent[string]{"b", 1, nil})
	z := mk(strs{"z"}, ent[string]{"a", 2, nil})
	require.Equal(t, strs{"x", "y", "z"}, sync(sync(x, y), z).Values())
	require.Equal(t, strs{"y", "z"}, sync(x, sync(y, z)).Values())
}

// TestDVVSetUpdateAnonymous checks dvvset's rule for the server's
// anonymous values on update: they go only if the context is strictly
// newer than the set.
func TestDVVSetUpdateAnonymous(t *testing.T) {
	s := NewDVVSet("x")
	s.Update(VClock{}, "n", "y") // a blind write keeps x
	require.Equal(t, strs{"x", "y"}, s.Values())
	s.Update(s.Context(), "n", "z") // equal history: x stays
	require.Equal(t, strs{"x", "z"}, s.Values())
	ctx := s.Context()
	ctx.Tick("other")
	s.Update(ctx, "n", "w") // strictly newer: x goes
	require.Equal(t, strs{"w"}, s.Values())
	require.Equal(t, `{"n":3, "other":1}`, s.Context().String())
}

// TestSiblingsBoundedByWriters has k clients write in random order, each
// with the context of its own previous write (the stale-context pattern
// that makes per-server vector clocks grow a sibling per write): the key
// never holds more than k siblings, and always holds the latest write.
func TestSiblingsBoundedByWriters(t *testing.T) {
	// Two clients strictly alternating: exactly their two latest values.
	var s DVVSet[string]
	ctx := [2]VClock{}
	for i := range 100 {
		c := i % 2
		v := fmt.Sprintf("c%d-%d", c, i)
		s.Update(ctx[c], "server", v)
		ctx[c] = s.Context()
		if i > 0 {
			require.ElementsMatch(t, strs{v, fmt.Sprintf("c%d-%d", 1-c, i-1)}, s.Values(), "write %d", i)
		}
	}
	require.Equal(t, uint64(100), s.Context().Get("server"))

	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 10))
		k := 1 + r.IntN(5)
		servers := 1 + r.IntN(2)
		var s DVVSet[string]
		ctxs := make([]VClock, k)
		for i := range 60 {
			c := r.IntN(k)
			v := fmt.Sprintf("c%d-%d", c, i)
			s.Update(ctxs[c], fmt.Sprintf("s%d", r.IntN(servers)), v)
			ctxs[c] = s.Context()
			require.LessOrEqual(t, s.Len(), k, "seed %d: write %d", seed, i)
			require.Contains(t, s.Values(), v, "seed %d", seed)
		}
	}
}

func TestDVVSetCloneIndependent(t *testing.T) {
	var s DVVSet[string]
	s.Update(VClock{}, "a", "v1")
	s.Update(VClock{}, "a", "v2")
	c := s.Clone()
	s.Update(VClock{}, "a", "v3")
	s.Update(s.Context(), "b", "v4")
	require.Equal(t, strs{"v2", "v1"}, c.Values())
	require.Equal(t, `{"a":2}`, c.Context().String())
	ctx := s.Context()
	ctx.Tick("a")
	require.Equal(t, uint64(3), s.Context().Get("a"), "Context is a copy")

	before := s.Clone()
	s.Sync(s) // with itself: shared storage on both sides
	requireSet(t, before, s)
}

func TestDVVSetAllocations(t *testing.T) {
	a, b := benchSets(10)
	require.Zero(t, testing.AllocsPerRun(100, func() { a.Compare(b) }))
}

// Dotted yields every value with the dot its write got, in the order of
// Values, across seeded histories of updates with stale contexts and
// syncs between replicas; an anonymous value is left out.
func TestDVVSetDotted(t *testing.T) {
	for seed := range uint64(50) {
		rng := rand.New(rand.NewPCG(seed, 21))
		replicas := make([]DVVSet[int], 3)
		var seen []VClock     // contexts clients read
		dots := map[int]Dot{} // the dot each value's write got
		for v := range 200 {
			r := rng.IntN(len(replicas))
			switch rng.IntN(3) {
			case 0:
				replicas[r].Sync(replicas[rng.IntN(len(replicas))])
			default:
				var ctx VClock
				if len(seen) > 0 && rng.IntN(4) > 0 {
					ctx = seen[rng.IntN(len(seen))]
				}
				id := fmt.Sprint("r", r)
				replicas[r].Update(ctx, id, v)
				dots[v] = Dot{ID: id, Counter: replicas[r].Context().Get(id)}
				seen = append(seen, replicas[r].Context())
			}
			var got []int
			for d, x := range replicas[r].Dotted() {
				if d != dots[x] {
					t.Fatalf("seed %d: value %d yielded with dot %v, its write got %v", seed, x, d, dots[x])
				}
				got = append(got, x)
			}
			if want := replicas[r].Values(); !slices.Equal(got, want) {
				t.Fatalf("seed %d: Dotted yields %v, Values are %v", seed, got, want)
			}
		}
	}
	s := NewDVVSet("anonymous")
	s.Update(VClock{}, "a", "dotted")
	yielded := 0
	for d, v := range s.Dotted() {
		if yielded++; d != (Dot{ID: "a", Counter: 1}) || v != "dotted" {
			t.Fatalf("Dotted of a set with an anonymous value yields %v, %q", d, v)
		}
	}
	if yielded != 1 {
		t.Fatalf("Dotted yielded %d values, want the 1 with a dot", yielded)
	}
	if n := len(s.Values()); n != 2 {
		t.Fatalf("%d values, want 2", n)
	}
}
