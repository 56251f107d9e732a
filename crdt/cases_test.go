package crdt

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/vclock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// merged returns the join of the states, left to right, without changing
// them.
func merged[S any, P lattice[S]](ss ...S) S {
	var acc S
	for _, s := range ss {
		P(&acc).Merge(P(&s).Clone())
	}
	return acc
}

// The regression cases of riak_dt_orswot.erl.

func TestORSetDisjointMerge(t *testing.T) {
	var a1, b1 ORSet[string]
	a1.Add("1", "bar")
	b1.Add("2", "baz")
	c := merged(a1, b1)
	a2 := a1.Clone()
	a2.Remove("bar")
	d := merged(a2, c)
	assert.Equal(t, []string{"baz"}, d.Elements())
}

func TestORSetPresentButRemoved(t *testing.T) {
	var a ORSet[string]
	a.Add("a", "Z")
	c := a.Clone() // replicate to C
	a2 := a.Clone()
	a2.Remove("Z")
	var b ORSet[string]
	b.Add("b", "Z")
	a3 := merged(b, a2) // A has B's Z
	b2 := b.Clone()
	b2.Remove("Z")
	// Both C and A have a Z, each removed by the other side: the two
	// holders merge first, then the remover.
	m := merged(a3, c, b2)
	assert.Empty(t, m.Elements())
	assert.Equal(t, 0, m.Len())
}

// noDotsLeft runs riak_dt's no_dots_left case: a and b each wrote Z; a
// removes its Z after c copied it, and b its own after a merged it. The
// join of a, b and c returned holds no Z.
func noDotsLeft[S any, P lattice[S]](a, b S, remove func(s *S)) S {
	c := P(&a).Clone()
	a2 := P(&a).Clone()
	remove(&a2)
	a3 := merged[S, P](a2, b)
	b2 := P(&b).Clone()
	remove(&b2)
	b3 := merged[S, P](b2, c)
	return merged[S, P](a3, b3, c)
}

func TestORSetNoDotsLeft(t *testing.T) {
	var a, b ORSet[string]
	a.Add("a", "Z")
	b.Add("b", "Z")
	m := noDotsLeft(a, b, func(s *ORSet[string]) { s.Remove("Z") })
	assert.Empty(t, m.Elements())
	assert.Equal(t, []string{"a", "b"}, m.ModifiedBy())
}

func TestORSetConcurrentAddRemoveAddWins(t *testing.T) {
	var a ORSet[string]
	a.Add("a", "x")
	b := a.Clone()
	rm := b.Remove("x")    // B removes the x it saw
	add := a.Add("a", "x") // A adds x again, concurrently
	for _, m := range []ORSet[string]{merged(a, b), merged(b, a), merged(a, rm), merged(b, add)} {
		assert.Equal(t, []string{"x"}, m.Elements())
	}
	// A remove that saw both adds removes x everywhere.
	both := merged(a, b)
	rm2 := both.Remove("x")
	assert.False(t, merged(a, rm2).Contains("x"))
	assert.False(t, merged(b, add, rm2).Contains("x"))
}

// The anomaly the package documentation describes for deltas delivered out
// of causal order: C gets B's Remove of x before A's re-add that the
// Remove superseded, and shows x, from A's first add, until the re-add
// arrives. A replica that gets the Remove alone holds a dot beyond a gap
// in its context's cloud until the first add arrives. Then all agree.
func TestORSetNonCausalDelivery(t *testing.T) {
	var a, b, c ORSet[string]
	d1 := a.Add("a", "x")
	d2 := a.Add("a", "x") // supersedes d1's dot
	b.Merge(d2)
	d3 := b.Remove("x") // carries only the dot of d2
	c.Merge(d1)
	c.Merge(d3)
	assert.True(t, c.Contains("x"))
	c.Merge(d2)
	assert.False(t, c.Contains("x"))
	assert.Equal(t, encode(t, b), encode(t, c))

	var e ORSet[string]
	e.Merge(d3)
	assert.Equal(t, []vclock.Dot{{ID: "a", Counter: 2}}, e.ctx.cloud)
	assert.Equal(t, uint64(0), e.ctx.vv.Get("a"))
	e.Merge(d1)
	assert.Empty(t, e.ctx.cloud)
	assert.True(t, e.Contains("x"))
	e.Merge(d2)
	assert.Equal(t, encode(t, b), encode(t, e))
}

// Small deltas merge into large sets through the dot index: the result is
// the generic join's, and the index stays exact, whatever the order of
// delivery and with local Adds and Removes in between.
func TestORSetDeltaMerge(t *testing.T) {
	for seed := range seeds() / 4 {
		r := rand.New(rand.NewPCG(seed, 77))
		var reps [3]ORSet[int]
		for i := range 300 {
			reps[i%3].Add(replicaIDs[i%3], i)
		}
		var deltas []ORSet[int]
		for range 200 {
			i := r.IntN(3)
			if r.IntN(10) == 0 {
				reps[i].Merge(reps[r.IntN(3)].Clone())
			}
			x := r.IntN(350)
			if r.IntN(2) == 0 {
				deltas = append(deltas, reps[i].Add(replicaIDs[i], x))
			} else {
				deltas = append(deltas, reps[i].Remove(x))
			}
		}
		var fast, slow ORSet[int]
		fast.Merge(reps[0].Clone())
		slow.Merge(reps[0].Clone())
		if r.IntN(2) == 0 {
			r.Shuffle(len(deltas), func(i, j int) { deltas[i], deltas[j] = deltas[j], deltas[i] })
		}
		var local []ORSet[int] // of replica "d", which only fast and slow are
		for k, d := range deltas {
			if x := r.IntN(350); r.IntN(4) == 0 {
				local = append(local, fast.Add("d", x))
				slow.Add("d", x)
			} else if r.IntN(4) == 0 {
				local = append(local, fast.Remove(x))
				slow.Remove(x)
			}
			fast.Merge(d)
			slow.merge(&d.causal) // the generic join
			require.Equal(t, encode(t, slow), encode(t, fast), "seed %d delta %d", seed, k)
			if k%50 == 0 {
				require.NotNil(t, fast.byDot)
				index := map[vclock.Dot]int{}
				for x, ds := range fast.store {
					for _, e := range ds {
						index[e.dot] = x
					}
				}
				require.Equal(t, index, fast.byDot, "seed %d delta %d", seed, k)
			}
		}
		all := merged(append(reps[:], local...)...)
		fast.Merge(all)
		assert.Nil(t, fast.byDot) // a full state goes the generic way
		assert.Equal(t, encode(t, all), encode(t, fast))
	}
}

// The concurrent writes of an MVRegister are all kept until a write that
// saw them replaces them.
func TestMVRegisterConcurrentWrites(t *testing.T) {
	var a, b MVRegister[string]
	da := a.Set("a", "v1")
	db := b.Set("b", "v2")
	ab := merged(a, b)
	assert.Equal(t, []string{"v1", "v2"}, ab.Values())
	assert.Equal(t, ab.Values(), merged(b, a).Values())
	assert.Equal(t, ab.Values(), merged(da, db).Values())
	// A write on A that has not seen v2 replaces only v1.
	a3 := a.Clone()
	a3.Set("a", "v3")
	assert.Equal(t, []string{"v3", "v2"}, merged(a3, b).Values())
	// A write that saw both resolves the conflict.
	d := ab.Set("c", "v4")
	assert.Equal(t, []string{"v4"}, merged(a, b, d).Values())
	assert.Equal(t, []string{"v4"}, merged(d, a, b).Values())
}

func TestEWFlagEnableWins(t *testing.T) {
	var a EWFlag
	a.Enable("a")
	b := a.Clone()
	b.Disable()
	assert.False(t, b.Value())
	assert.False(t, merged(a, b).Value()) // the disable saw A's enable
	a.Enable("a")                         // concurrent with B's disable
	assert.True(t, merged(a, b).Value())
	assert.True(t, merged(b, a).Value())
}

// The field cases of riak_dt_map.erl with a nested ORSet: removing a field
// resets it for what the remover saw; what it did not see survives.
func TestORMapRemoveResets(t *testing.T) {
	type m = ORMap[string, ORSet[int]]
	add := func(m *m, id string, x int) {
		m.Update("X", func(s *ORSet[int]) { s.Add(id, x) })
	}
	rem := func(m *m, x int) {
		m.Update("X", func(s *ORSet[int]) { s.Remove(x) })
	}
	// clock_test
	var a m
	add(&a, "a", 0)
	b := a.Clone()
	add(&b, "b", 1)
	a2 := a.Clone()
	rem(&a2, 0)
	a2.Remove("X")
	add(&a2, "a", 2)
	ab := merged(a2, b)
	x, ok := ab.Get("X")
	require.True(t, ok)
	assert.Equal(t, []int{1, 2}, x.Elements())
	// remfield_test
	a3 := a.Clone()
	rem(&a3, 0)
	a3.Remove("X")
	add(&a3, "a", 2)
	x, _ = merged(a3, a).Get("X")
	assert.Equal(t, []int{2}, x.Elements())
	// A concurrent update survives a remove, with only what it added.
	c := a.Clone()
	c.Remove("X")
	d := a.Clone()
	add(&d, "d", 7)
	x, _ = merged(c, d).Get("X")
	assert.Equal(t, []int{7}, x.Elements())
	// An update that empties the value removes the key.
	e := a.Clone()
	rem(&e, 0)
	assert.False(t, e.Contains("X"))
	assert.Equal(t, 0, e.Len())
}

// riak_dt_map's present_but_removed_test with a nested MVRegister.
func TestORMapPresentButRemoved(t *testing.T) {
	type m = ORMap[string, MVRegister[string]]
	set := func(m *m, id, v string) {
		m.Update("Z", func(r *MVRegister[string]) { r.Set(id, v) })
	}
	var a m
	set(&a, "a", "A")
	c := a.Clone()
	a2 := a.Clone()
	a2.Remove("Z")
	var b m
	set(&b, "b", "B")
	a3 := merged(b, a2)
	b2 := b.Clone()
	b2.Remove("Z")
	assert.Empty(t, merged(a3, c, b2).Keys())
}

func TestLWWRegister(t *testing.T) {
	var a, b LWWRegister[string]
	a.Set("old", 5, "z")
	b.Set("new", 6, "a")
	v, ts := merged(a, b).Get()
	assert.Equal(t, "new", v)
	assert.Equal(t, hlc.Timestamp(6), ts)
	// A tie on the timestamp goes to the larger replica ID, either way.
	var c LWWRegister[string]
	c.Set("from b", 6, "b")
	for _, r := range []LWWRegister[string]{merged(b, c), merged(c, b)} {
		v, _ := r.Get()
		assert.Equal(t, "from b", v)
		assert.Equal(t, "b", r.Writer())
	}
	// An older write loses, and its delta changes nothing.
	d := c.Set("stale", 1, "z")
	v, _ = c.Get()
	assert.Equal(t, "from b", v)
	v, _ = merged(b, c, d).Get()
	assert.Equal(t, "from b", v)
	var zero LWWRegister[string]
	v, ts = zero.Get()
	assert.Equal(t, "", v)
	assert.True(t, ts.IsZero())
}

func TestCounters(t *testing.T) {
	var a, b GCounter
	a.Inc("a", 3)
	d := a.Inc("a", 2)
	b.Inc("b", 4)
	assert.Equal(t, uint64(5), d.Count("a"))
	assert.Equal(t, uint64(9), merged(a, b).Value())
	assert.Equal(t, uint64(9), merged(d, b).Value()) // the delta carries A's count
	assert.Equal(t, GCounter{}, a.Inc("a", 0))
	assert.PanicsWithValue(t, `crdt: count of "a": vclock: counter exhausted: 5 + 18446744073709551615 above the maximum 9223372036854775807`,
		func() { a.Inc("a", math.MaxUint64) })
	assert.Equal(t, uint64(5), a.Count("a"))

	var p, q PNCounter
	p.Inc("a", 10)
	p.Dec("a", 3)
	q.Dec("b", 20)
	assert.Equal(t, int64(7), p.Value())
	assert.Equal(t, int64(-13), merged(p, q).Value())
	assert.Equal(t, []string{"a", "b"}, merged(p, q).ModifiedBy())
}

func TestGSet(t *testing.T) {
	var a, b GSet[string]
	a.Add("x")
	b.Add("y")
	d := b.Add("x")
	m := merged(a, b)
	assert.Equal(t, []string{"x", "y"}, m.Elements())
	assert.Equal(t, 2, m.Len())
	assert.True(t, m.Contains("y"))
	assert.Equal(t, []string{"x"}, d.Elements())
}

// A NaN is not equal to itself, so no set or map can hold it.
func TestNaNPanics(t *testing.T) {
	nan := math.NaN()
	var g GSet[float64]
	var s ORSet[float64]
	var m ORMap[float64, EWFlag]
	const msg = "crdt: NaN cannot be an element or key"
	assert.PanicsWithValue(t, msg, func() { g.Add(nan) })
	assert.PanicsWithValue(t, msg, func() { s.Add("a", nan) })
	assert.PanicsWithValue(t, msg, func() { m.Update(nan, func(f *EWFlag) { f.Enable("a") }) })
	b, _ := msgpack.Marshal([]float64{nan})
	assert.ErrorIs(t, msgpack.Unmarshal(b, &g), ErrMalformed)
}

// -0.0 and +0.0 are the same element, kept as +0.0, so replicas that added
// either encode alike.
func TestNegativeZero(t *testing.T) {
	var a, b ORSet[float64]
	a.Add("a", math.Copysign(0, -1))
	b.Add("b", 0)
	assert.Equal(t, encode(t, merged(a, b)), encode(t, merged(b, a)))
	assert.False(t, math.Signbit(a.Elements()[0]))
	var g GSet[float64]
	g.Add(math.Copysign(0, -1))
	assert.False(t, math.Signbit(g.Elements()[0]))
}

// From a stream, whose size the decoder cannot know, preallocation is
// capped but every element is read.
func TestDecodeStream(t *testing.T) {
	s := bigSet(3000)
	var g GSet[int]
	for i := range 3000 {
		g.Add(i)
	}
	for _, v := range []struct{ in, out any }{{s, new(ORSet[string])}, {g, new(GSet[int])}} {
		b := encode(t, v.in)
		dec := msgpack.NewDecoder(struct{ io.Reader }{strings.NewReader(b)})
		require.NoError(t, dec.Decode(v.out))
		assert.Equal(t, b, encode(t, v.out))
	}
}

// The state of an ORSet whose few elements are added and removed over
// and over, on three replicas that sync now and then, stays bounded by the
// live elements and the replicas: nothing is kept for removed elements.
func TestORSetSizeBound(t *testing.T) {
	var reps [3]ORSet[int]
	ids := []string{"a", "b", "c"}
	maxSize := 0
	for i := range 20000 {
		r := i % 3
		x := (i / 3) % 4
		if i%2 == 0 {
			reps[r].Add(ids[r], x)
		} else {
			reps[r].Remove(x)
		}
		if i%7 == 0 {
			reps[(r+1)%3].Merge(reps[r])
		}
		maxSize = max(maxSize, len(encode(t, reps[r])))
	}
	all := merged(reps[:]...)
	// At most 4 elements, each with at most one dot per replica, and a
	// context of three entries: the same bound after 20 or 20,000 cycles.
	assert.LessOrEqual(t, maxSize, 4*(3+3*5)+3*8+8)
	for _, s := range append(reps[:], all) {
		assert.Empty(t, s.ctx.cloud)
		assert.Equal(t, 3, s.ctx.vv.Len())
		assert.LessOrEqual(t, s.Len(), 4)
		for _, ds := range s.store {
			assert.LessOrEqual(t, len(ds), 3)
		}
	}
}

// A retired replica's counts fold into another's, and after every replica
// cleans up, all converge to the same value without the retired ID.
func TestCounterPruning(t *testing.T) {
	var a, b, c PNCounter
	a.Inc("a", 5)
	b.Inc("b", 7)
	b.Dec("b", 2)
	c.Inc("c", 1)
	all := merged(a, b, c)
	a, c = all.Clone(), all.Clone()
	require.True(t, a.NeedPruningFrom("b"))
	a.Prune("b", "a") // B retired; A has seen all of B's updates
	assert.False(t, a.NeedPruningFrom("b"))
	assert.Equal(t, all.Value(), a.Value())
	assert.Equal(t, []string{"a", "c"}, a.ModifiedBy())

	// Without cleanup, merging a state that still has B counts B twice.
	assert.Equal(t, all.Value()+5, merged(a, c).Value())
	// With it, every order converges.
	c.PruningCleanup("b")
	stale := all.Clone()
	stale.PruningCleanup("b")
	assert.Equal(t, all.Value(), merged(a, c, stale).Value())
	assert.Equal(t, all.Value(), merged(stale, c, a).Value())
	assert.PanicsWithValue(t, `crdt: Prune into the removed replica "a"`, func() { a.Prune("a", "a") })
}

// A retired replica's dots in an ORSet are replaced by new dots of the
// replica pruning, so its elements stay, and its ID leaves the state.
func TestORSetPruning(t *testing.T) {
	var a, b ORSet[string]
	a.Add("a", "x")
	b.Add("b", "y")
	b.Add("b", "x")
	b.Add("b", "z")
	b.Remove("z")
	all := merged(a, b)
	p, other := all.Clone(), all.Clone()
	p.Prune("b", "a")
	assert.Equal(t, []string{"x", "y"}, p.Elements())
	assert.Equal(t, []string{"a"}, p.ModifiedBy())
	assert.False(t, p.NeedPruningFrom("b"))
	other.PruningCleanup("b")
	assert.Equal(t, []string{"x"}, other.Elements()) // y was b's alone: back when p's state arrives
	for _, m := range []ORSet[string]{merged(p, other), merged(other, p)} {
		assert.Equal(t, []string{"x", "y"}, m.Elements())
		assert.Equal(t, []string{"a"}, m.ModifiedBy())
	}
	// The elements stay removable everywhere.
	q := merged(p, other)
	d := q.Remove("y")
	assert.Equal(t, []string{"x"}, merged(p, d).Elements())

	// Nested states prune through the map.
	var m ORMap[string, MVRegister[int]]
	m.Update("k", func(r *MVRegister[int]) { r.Set("b", 1) })
	m.Prune("b", "a")
	v, _ := m.Get("k")
	assert.Equal(t, []int{1}, v.Values())
	assert.Equal(t, []string{"a"}, m.ModifiedBy())
}

// Clone deep-copies: changing the clone leaves the original as it was.
func TestCloneIsDeep(t *testing.T) {
	var m ORMap[string, ORSet[int]]
	m.Update("k", func(s *ORSet[int]) { s.Add("a", 1) })
	before := encode(t, m)
	c := m.Clone()
	c.Update("k", func(s *ORSet[int]) { s.Add("a", 2) })
	c.Update("j", func(s *ORSet[int]) { s.Add("b", 2) })
	c.Merge(c.Clone())
	v, _ := m.Get("k")
	v.Remove(1) // a copy too
	assert.Equal(t, before, encode(t, m))

	var g GCounter
	g.Inc("a", 1)
	gc := g.Clone()
	gc.Inc("a", 1)
	gc.Merge(GCounter{})
	assert.Equal(t, uint64(1), g.Value())

	var s GSet[int]
	s.Add(1)
	sc := s.Clone()
	sc.Add(2)
	assert.Equal(t, 1, s.Len())

	// Merge does not let the merged state share storage either.
	var x, y ORMap[string, ORSet[int]]
	y.Update("k", func(s *ORSet[int]) { s.Add("b", 1) })
	yBefore := encode(t, y)
	x.Merge(y)
	x.Update("k", func(s *ORSet[int]) { s.Add("a", 2) })
	assert.Equal(t, yBefore, encode(t, y))
}

// The zero value of every type is empty, encodes, decodes and merges.
func TestZeroValues(t *testing.T) {
	check := func(zero, decoded any, empty bool) {
		t.Helper()
		b := encode(t, zero)
		require.NoError(t, msgpack.Unmarshal([]byte(b), decoded))
		assert.Equal(t, b, encode(t, decoded))
		assert.True(t, empty)
	}
	var g GCounter
	check(g, new(GCounter), g.Value() == 0 && g.Clone().Value() == 0)
	var p PNCounter
	check(p, new(PNCounter), p.Value() == 0)
	var gs GSet[string]
	check(gs, new(GSet[string]), gs.Len() == 0 && len(gs.Elements()) == 0)
	var s ORSet[string]
	check(s, new(ORSet[string]), s.Len() == 0 && !s.Contains("") && len(s.Elements()) == 0)
	var l LWWRegister[string]
	check(l, new(LWWRegister[string]), l.Writer() == "")
	var r MVRegister[string]
	check(r, new(MVRegister[string]), len(r.Values()) == 0)
	var f EWFlag
	check(f, new(EWFlag), !f.Value())
	var m ORMap[string, EWFlag]
	check(m, new(ORMap[string, EWFlag]), m.Len() == 0 && len(m.Keys()) == 0)
	_, ok := m.Get("x")
	assert.False(t, ok)
	assert.Equal(t, ORSet[string]{}, s.Remove("x"))
	assert.Equal(t, ORMap[string, EWFlag]{}, m.Remove("x"))
}

// Decoding rejects every non-canonical or hostile input with ErrMalformed.
func TestDecodeRejects(t *testing.T) {
	raw := func(vs ...any) []byte {
		b, err := msgpack.Marshal(vs)
		require.NoError(t, err)
		return b
	}
	dot := func(id string, n int) []any { return []any{id, n} }
	ctx := func(vv []any, cloud ...any) []any { return []any{vv, cloud} }
	cases := []struct {
		name string
		into any
		in   []byte
	}{
		{"GCounter unsorted", new(GCounter), raw(dot("b", 1), dot("a", 1))},
		{"GCounter zero count", new(GCounter), raw(dot("a", 0))},
		{"GCounter negative", new(GCounter), raw(dot("a", -1))},
		{"GCounter huge length", new(GCounter), []byte{0xdd, 0xff, 0xff, 0xff, 0xff}},
		{"GCounter entry with a time", new(GCounter), raw([]any{"a", 1, 5})},
		{"PNCounter entry with a time", new(PNCounter), raw([]any{}, []any{[]any{"a", 1, 5}})},
		{"PNCounter one half", new(PNCounter), raw([]any{})},
		{"GSet repeated", new(GSet[int]), raw(1, 1)},
		{"GSet unsorted", new(GSet[string]), raw("b", "a")},
		{"GSet huge length", new(GSet[int]), []byte{0xdd, 0x7f, 0xff, 0xff, 0xff, 1}},
		{"LWW short", new(LWWRegister[int]), raw(1, 2)},
		{"ORSet dot outside context", new(ORSet[string]), raw(map[string]any{"x": []any{dot("a", 2)}}, ctx([]any{dot("a", 1)}))},
		{"ORSet empty element", new(ORSet[string]), raw(map[string]any{"x": []any{}}, ctx([]any{dot("a", 1)}))},
		{"ORSet dot twice", new(ORSet[string]), raw(map[string]any{"x": []any{dot("a", 1)}, "y": []any{dot("a", 1)}}, ctx([]any{dot("a", 1)}))},
		{"ORSet unsorted dots", new(ORSet[string]), raw(map[string]any{"x": []any{dot("b", 1), dot("a", 1)}}, ctx([]any{dot("a", 1), dot("b", 1)}))},
		{"ORSet cloud not compact", new(ORSet[string]), raw(map[string]any{}, ctx([]any{dot("a", 1)}, dot("a", 2)))},
		{"ORSet cloud covered", new(ORSet[string]), raw(map[string]any{}, ctx([]any{dot("a", 3)}, dot("a", 2)))},
		{"ORSet cloud unsorted", new(ORSet[string]), raw(map[string]any{}, ctx(nil, dot("b", 3), dot("a", 3)))},
		{"ORSet cloud zero", new(ORSet[string]), raw(map[string]any{}, ctx(nil, dot("a", 0)))},
		{"ORSet version vector with a time", new(ORSet[string]), raw(map[string]any{}, ctx([]any{[]any{"a", 1, 5}}))},
		{"ORSet huge map", new(ORSet[string]), []byte{0x92, 0xdf, 0x7f, 0xff, 0xff, 0xff}},
		{"ORSet trailing context missing", new(ORSet[string]), raw(map[string]any{})},
		{"MVRegister dot set without values", new(MVRegister[int]), raw([]any{dot("a", 1)}, ctx([]any{dot("a", 1)}))},
		{"EWFlag dots with values", new(EWFlag), raw([]any{[]any{"a", 1, 5}}, ctx([]any{dot("a", 1)}))},
		{"ORMap empty nested", new(ORMap[string, EWFlag]), raw(map[string]any{"k": []any{}}, ctx(nil))},
		{"ORMap nested dot outside", new(ORMap[string, EWFlag]), raw(map[string]any{"k": []any{dot("a", 1)}}, ctx(nil))},
		{"not an array", new(EWFlag), []byte{0xc3}},
		{"empty input", new(ORSet[int]), nil},
	}
	var outside []byte
	for _, c := range cases {
		err := msgpack.Unmarshal(c.in, c.into)
		assert.ErrorIs(t, err, ErrMalformed, c.name)
		if c.name == "ORSet dot outside context" {
			outside = c.in
		}
	}
	// On error the target keeps its state.
	var s ORSet[string]
	s.Add("a", "x")
	before := encode(t, s)
	require.Error(t, msgpack.Unmarshal(outside, &s))
	assert.Equal(t, before, encode(t, s))
}

// Dot counters stop at vclock.MaxCounter, whether the largest dot is in
// the version vector or in the dot cloud: TryEnable returns ErrExhausted
// and Enable panics, both leaving the flag unchanged.
func TestDotExhausted(t *testing.T) {
	const msg = `crdt: dot of "a": vclock: counter exhausted: 9223372036854775807 + 1 above the maximum 9223372036854775807`
	var f EWFlag
	f.ctx.vv.Add(vclock.Dot{ID: "a", Counter: vclock.MaxCounter})
	assert.PanicsWithValue(t, msg, func() { f.Enable("a") })
	for _, cloud := range [][]vclock.Dot{{{ID: "a", Counter: vclock.MaxCounter}}, {{ID: "a", Counter: 5}, {ID: "a", Counter: vclock.MaxCounter}}} {
		var g EWFlag
		g.ctx.cloud = cloud
		before := encode(t, g)
		_, err := g.TryEnable("a")
		assert.ErrorIs(t, err, vclock.ErrExhausted, "cloud %v", cloud)
		assert.PanicsWithValue(t, msg, func() { g.Enable("a") }, "cloud %v", cloud)
		assert.Equal(t, before, encode(t, g))
		g.Enable("b")
		assert.True(t, g.Value())
	}
}

func TestAllocations(t *testing.T) {
	var s ORSet[string]
	for i := range 100 {
		s.Add("a", fmt.Sprint(i))
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() { s.Contains("50") }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = s.Len() }))
	var c PNCounter
	for i := range 100 {
		c.Inc(fmt.Sprint(i), 1)
	}
	assert.Zero(t, testing.AllocsPerRun(100, func() { _ = c.Value() }))
	// Incrementing an existing replica's count allocates only the delta.
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { c.Inc("50", 1) }))
	// Adding an element again: the list of the dots it supersedes (the
	// delta's context), the new dot list, and the delta's map.
	assert.Equal(t, 4.0, testing.AllocsPerRun(100, func() { s.Add("a", "50") }))
	var f EWFlag
	f.Enable("a")
	assert.Equal(t, 2.0, testing.AllocsPerRun(100, func() { f.Enable("a") }))
	// Merging a state into an equal one allocates nothing per element.
	o := s.Clone()
	assert.Equal(t, 1.0, testing.AllocsPerRun(10, func() { s.Merge(o) }))
	// Equal values under the same dot, or in a full LWW tie, are told
	// equal without encoding them.
	var r MVRegister[[]byte]
	r.Set("a", []byte("v"))
	ro := r.Clone()
	ro.store = dotFun[[]byte]{{dot: ro.store[0].dot, v: []byte("v")}}
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { r.Merge(ro) }))
	var l LWWRegister[[]byte]
	l.Set([]byte("v"), 5, "a")
	lo := LWWRegister[[]byte]{v: []byte("v"), ts: 5, id: "a"}
	assert.Equal(t, 1.0, testing.AllocsPerRun(100, func() { l.Merge(lo) }))
}

func TestErrorsWrap(t *testing.T) {
	var g GCounter
	err := msgpack.Unmarshal([]byte{0x91, 0x92, 0xa1, 'a', 0x00}, &g)
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrMalformed))
	assert.Contains(t, err.Error(), "crdt: malformed encoding: GCounter")
}
