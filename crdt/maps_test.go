package crdt

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/vclock"
)

// The remaining field cases of riak_dt_map.erl (clock_test, remfield_test
// and present_but_removed_test are in cases_test.go).
func TestORMapRiakCases(t *testing.T) {
	type sets = ORMap[string, ORSet[int]]
	add := func(m *sets, id string, x int) { m.Update("X", func(s *ORSet[int]) { s.Add(id, x) }) }
	t.Run("assoc", func(t *testing.T) {
		var a, b sets
		add(&a, "a", 0)
		add(&b, "b", 0)
		b.Update("X", func(s *ORSet[int]) { s.Remove(0) })
		c := a.Clone()
		c.Remove("X")
		assert.Equal(t, encode(t, merged(a, merged(b, c))), encode(t, merged(merged(a, b), c)))
		assert.Equal(t, encode(t, merged(merged(a, c), b)), encode(t, merged(merged(a, b), c)))
	})
	t.Run("tombstone_remove", func(t *testing.T) {
		var a1 sets
		add(&a1, "a", 0)
		b1 := a1.Clone()
		a2 := a1.Clone()
		a2.Remove("X")
		b2 := b1.Clone()
		add(&b2, "b", 1)
		a3 := merged(a2, b2)
		x, _ := a3.Get("X")
		assert.Equal(t, []int{1}, x.Elements(), "the remove takes the 0 it saw")
		b3 := b2.Clone()
		add(&b3, "b", 2)
		final := merged(merged(a3, b3), b3)
		x, _ = final.Get("X")
		assert.Equal(t, []int{1, 2}, x.Elements(), "the removed 0 does not come back")
	})
	type regs = ORMap[string, LWWRegister[string]]
	set := func(m *regs, id, v string, ts int) {
		m.Update("Z", func(r *LWWRegister[string]) { r.Set(v, hlcAt(ts), id) })
	}
	t.Run("present_but_removed with LWW registers", func(t *testing.T) {
		var a regs
		set(&a, "a", "A", 1)
		c := a.Clone()
		a2 := a.Clone()
		a2.Remove("Z")
		var b regs
		set(&b, "b", "B", 2)
		a3 := merged(b, a2)
		b2 := b.Clone()
		b2.Remove("Z")
		assert.Empty(t, merged(a3, c, b2).Keys())
		assert.Empty(t, merged(b2, c, a3).Keys())
	})
	t.Run("no_dots_left with LWW registers", func(t *testing.T) {
		var a, b regs
		set(&a, "a", "A", 1)
		set(&b, "b", "B", 2)
		assert.Empty(t, noDotsLeft(a, b, func(m *regs) { m.Remove("Z") }).Keys())
	})
	t.Run("dot_key: one update of two inner keys, one removed", func(t *testing.T) {
		var a ORMap[string, ORMap[string, EWFlag]]
		a.Update("X", func(in *ORMap[string, EWFlag]) {
			in.Update("set", func(f *EWFlag) { f.Enable("a") })
			in.Update("flag", func(f *EWFlag) { f.Enable("a") })
		})
		b := a.Clone()
		a.Update("X", func(in *ORMap[string, EWFlag]) { in.Remove("flag") })
		x, _ := merged(b, a).Get("X")
		assert.Equal(t, []string{"set"}, x.Keys())
	})
}

func hlcAt(n int) hlc.Timestamp { return hlc.Timestamp(n) }

// Reset-remove of nested counters: a remove takes away exactly the
// increments the remover saw (riak_dt_emcntr keeps the whole count of a
// concurrent update instead).
func TestResetRemoveCounters(t *testing.T) {
	var a PNCounterMap[string]
	a.Inc("a", "views", 5)
	r := a.Clone() // the remover sees 5
	a.Inc("a", "views", 2)
	a.Dec("a", "views", 1) // concurrently: +2 -1
	rm := r.Remove("views")
	_, ok := r.Get("views")
	require.False(t, ok)

	for _, m := range []PNCounterMap[string]{merged(a, rm), merged(rm, a), merged(r, a)} {
		v, ok := m.Get("views")
		require.True(t, ok)
		assert.Equal(t, int64(1), v, "only the unseen +2 -1 survive")
	}
	// A stale remover takes away only what it saw.
	var s PNCounterMap[string]
	s.Inc("a", "k", 3)
	stale := s.Clone()
	s.Inc("a", "k", 4)
	s.Inc("b", "k", 10)
	stale.Remove("k")
	v, _ := merged(s, stale).Get("k")
	assert.Equal(t, int64(14), v)
	// Re-adding after a remove starts from zero, everywhere.
	again := merged(s, stale)
	again.Remove("k")
	again.Inc("a", "k", 1)
	for _, m := range []PNCounterMap[string]{merged(again, s, stale), merged(stale, again, s)} {
		v, _ := m.Get("k")
		assert.Equal(t, int64(1), v)
	}
	// A counter at zero by increments and decrements is present.
	var z PNCounterMap[string]
	z.Inc("a", "k", 1)
	z.Dec("a", "k", 1)
	v, ok = z.Get("k")
	assert.True(t, ok)
	assert.Zero(t, v)
}

// A nested map's remove resets its content recursively: a concurrent
// update deep inside survives with only its own effects.
func TestResetRemoveNestedMap(t *testing.T) {
	type doc = ORMap[string, ORMap[string, ResetCounter]]
	inc := func(m *doc, id, k, ik string, n uint64) doc {
		return m.Update(k, func(in *ORMap[string, ResetCounter]) {
			in.Update(ik, func(c *ResetCounter) { c.Inc(id, n) })
		})
	}
	var a doc
	inc(&a, "a", "user", "likes", 3)
	inc(&a, "a", "user", "posts", 1)
	b := a.Clone()
	rm := a.Remove("user")
	d := inc(&b, "b", "user", "likes", 4) // concurrently
	a.Merge(d)
	b.Merge(rm)
	require.Equal(t, encode(t, a), encode(t, b))
	user, ok := a.Get("user")
	require.True(t, ok)
	assert.Equal(t, []string{"likes"}, user.Keys())
	likes, _ := user.Get("likes")
	assert.Equal(t, int64(4), likes.Value())
}

// Registers and flags in maps.
func TestResetRemoveRegistersAndFlags(t *testing.T) {
	var a LWWMap[string, string]
	a.Put("color", "red", 10, "a")
	b := a.Clone()
	rm := a.Remove("color")
	newer := b.Put("color", "blue", 11, "b") // concurrent and newer: survives
	older := b.Clone()
	older.Put("color", "green", 9, "b") // loses to red, which the remove saw
	v, ok := merged(a, newer).Get("color")
	assert.True(t, ok)
	assert.Equal(t, "blue", v)
	_, ok = merged(older, rm).Get("color")
	assert.True(t, ok) // older still holds blue
	var c LWWMap[string, string]
	c.Put("color", "red", 10, "a")
	c2 := c.Clone()
	c2.Put("color", "green", 9, "b")
	_, ok = merged(c2, rm).Get("color")
	assert.False(t, ok, "a write older than what the remove saw stays hidden")

	var f ORMap[string, DWFlag]
	f.Update("ro", func(x *DWFlag) { x.Disable("a") })
	g := f.Clone()
	rmf := f.Remove("ro")
	dis := g.Update("ro", func(x *DWFlag) { x.Disable("b") })
	out := merged(f, dis, rmf)
	x, ok := out.Get("ro")
	assert.True(t, ok)
	assert.False(t, x.Value(), "the concurrent disable survives the remove")
}

// ORMap.Get hands out a copy that cannot draw dots the map holds; the
// copy is still a valid state that encodes, decodes and merges.
func TestORMapGetReadOnly(t *testing.T) {
	var m ORMap[string, ORSet[string]]
	m.Update("k", func(s *ORSet[string]) { s.Add("a", "x") })
	m.Update("j", func(s *ORSet[string]) { s.Add("a", "y") })
	v, ok := m.Get("k")
	require.True(t, ok)
	assert.PanicsWithValue(t, "crdt: a value read with ORMap.Get cannot draw dots: change it with ORMap.Update",
		func() { v.Add("a", "z") })
	_, err := func() (s ORSet[string], err error) {
		defer func() { recover() }()
		return v.TryAdd("b", "z")
	}()
	require.NoError(t, err)
	var back ORSet[string]
	require.NoError(t, msgpack.Unmarshal(mustMarshal(v), &back))
	assert.Equal(t, []string{"x"}, back.Elements())

	var nested ORMap[string, ORMap[string, EWFlag]]
	nested.Update("o", func(in *ORMap[string, EWFlag]) { in.Update("i", func(f *EWFlag) { f.Enable("a") }) })
	in, _ := nested.Get("o")
	assert.Panics(t, func() { in.Update("i2", func(f *EWFlag) { f.Enable("a") }) })
	before := encode(t, nested)
	in.Remove("i") // removes in the copy only
	assert.Equal(t, before, encode(t, nested))
}

// The map produces the delta of every nested mutation f makes, whatever f
// returns or ignores.
func TestORMapUpdateCollectsDeltas(t *testing.T) {
	var m ORMap[string, ORSet[string]]
	m.Update("k", func(s *ORSet[string]) { s.Add("a", "old") })
	pre := m.Clone()
	d := m.Update("k", func(s *ORSet[string]) {
		s.Add("a", "x")
		s.Add("a", "y")
		s.Remove("old")
		s.Remove("x")
	})
	pre.Merge(d)
	assert.Equal(t, encode(t, m), encode(t, pre))
	got, _ := pre.Get("k")
	assert.Equal(t, []string{"y"}, got.Elements())
	assert.Equal(t, 1, d.store["k"].Len(), "the delta carries only y")
	// An update that does nothing has the empty delta.
	assert.Equal(t, encode(t, ORMap[string, ORSet[string]]{}), encode(t, m.Update("k", func(*ORSet[string]) {})))
}

// Counts from the wire or a client at the bound: the Try variants refuse,
// changing nothing.
func TestMapsAtMaxCounter(t *testing.T) {
	var c ResetCounter
	c.Merge(ResetCounter{counts: []resetCount{{id: "a", inc: vclock.MaxCounter, dec: vclock.MaxCounter - 1}}})
	before := encode(t, c)
	_, err := c.TryInc("a", 1)
	require.ErrorIs(t, err, vclock.ErrExhausted)
	_, err = c.TryDec("a", 2)
	require.ErrorIs(t, err, vclock.ErrExhausted)
	assert.Panics(t, func() { c.Inc("a", 1) })
	require.Equal(t, before, encode(t, c))
	_, err = c.TryDec("a", 1)
	require.NoError(t, err)
	_, err = c.TryInc("b", math.MaxUint64) // an amount from a client
	require.ErrorIs(t, err, vclock.ErrExhausted)

	var m PNCounterMap[string]
	m.Inc("a", "k", vclock.MaxCounter)
	before = encode(t, m)
	d, err := m.TryInc("a", "k", 1)
	require.ErrorIs(t, err, vclock.ErrExhausted)
	require.Equal(t, before, encode(t, m))
	require.Zero(t, d.Len())
	_, err = m.TryInc("a", "new", vclock.MaxCounter+1)
	require.ErrorIs(t, err, vclock.ErrExhausted)
	require.Equal(t, before, encode(t, m))

	var mm ORMultiMap[string, string]
	mm.AddBinding("a", "k", "x")
	mm.m.ctx.vv.Merge(clockOf("a", vclock.MaxCounter))
	before = encode(t, mm)
	_, err = mm.TryAddBinding("a", "k", "y")
	require.ErrorIs(t, err, vclock.ErrExhausted)
	_, err = mm.TryPut("a", "k", "y", "z")
	require.ErrorIs(t, err, vclock.ErrExhausted)
	require.Equal(t, before, encode(t, mm))
}

// Pruning a PNCounterMap folds the retired replica's counts, reset parts
// included, and keeps every value; it is atomic at the bound.
func TestPNCounterMapPruning(t *testing.T) {
	var m PNCounterMap[string]
	m.Inc("a", "x", 3)
	m.Inc("b", "x", 5)
	m.Inc("b", "y", 2)
	m.Remove("y")
	m.Inc("b", "y", 1)
	assert.Equal(t, []string{"a", "b"}, m.ModifiedBy())
	require.True(t, m.NeedPruningFrom("b"))
	m.Prune("b", "a")
	assert.False(t, m.NeedPruningFrom("b"))
	x, _ := m.Get("x")
	y, _ := m.Get("y")
	assert.Equal(t, [2]int64{8, 1}, [2]int64{x, y})

	var full PNCounterMap[string]
	full.Inc("a", "x", vclock.MaxCounter)
	full.Inc("b", "x", 1)
	full.Inc("b", "y", 1)
	before := encode(t, full)
	require.ErrorIs(t, full.TryPrune("b", "a"), vclock.ErrExhausted)
	require.Equal(t, before, encode(t, full))
	full.PruningCleanup("b")
	assert.False(t, full.NeedPruningFrom("b"))
	_, ok := full.Get("y")
	assert.False(t, ok)
}

// Decoders refuse the states no replica makes.
func TestMapsDecodeRejects(t *testing.T) {
	for name, c := range map[string]struct {
		in   []any
		into any
	}{
		"reset part above the count":    {[]any{[]any{"a", 1, 2, 0, 0}}, new(ResetCounter)},
		"replica with no count":         {[]any{[]any{"a", 0, 0, 0, 0}}, new(ResetCounter)},
		"replicas out of order":         {[]any{[]any{"b", 1, 0, 0, 0}, []any{"a", 1, 0, 0, 0}}, new(ResetCounter)},
		"repeated replica":              {[]any{[]any{"a", 1, 0, 0, 0}, []any{"a", 2, 0, 0, 0}}, new(ResetCounter)},
		"count above the bound":         {[]any{[]any{"a", uint64(1) << 63, 0, 0, 0}}, new(ResetCounter)},
		"count of 2^64-1":               {[]any{[]any{"a", uint64(math.MaxUint64), 0, 0, 0}}, new(ResetCounter)},
		"four numbers":                  {[]any{[]any{"a", 1, 0, 0}}, new(ResetCounter)},
		"hidden write kept":             {[]any{"v", 5, "a", 5, "a"}, new(LWWRegister[string])},
		"older hidden write kept":       {[]any{"v", 4, "z", 5, "a"}, new(LWWRegister[string])},
		"floor hiding nothing":          {[]any{"", 0, "", 0, ""}, new(LWWRegister[string])},
		"four elements":                 {[]any{"v", 5, "a", 5}, new(LWWRegister[string])},
		"tombstone with a zero counter": {[]any{map[string]any{"k": []any{[]any{"a", 0, 0, 0, 0}}}, []any{[]any{}, []any{}}}, new(PNCounterMap[string])},
	} {
		err := msgpack.Unmarshal(mustMarshal(c.in), c.into)
		require.ErrorIs(t, err, ErrMalformed, name)
	}
	// A tombstone, and a register hiding what a remove saw, decode.
	var m PNCounterMap[string]
	m.Inc("a", "k", 2)
	m.Remove("k")
	var back PNCounterMap[string]
	require.NoError(t, msgpack.Unmarshal(mustMarshal(m), &back))
	assert.Equal(t, 0, back.Len())
	assert.Equal(t, encode(t, m), encode(t, back))
	var r LWWRegister[string]
	require.NoError(t, msgpack.Unmarshal(mustMarshal([]any{"", 0, "", 5, "a"}), &r))
	require.NoError(t, msgpack.Unmarshal(mustMarshal([]any{"v", 6, "a", 5, "a"}), &r))
	v, _ := r.Get()
	assert.Equal(t, "v", v)
}

// Allocation counts of the maps' hot paths, pinned.
func TestMapAllocations(t *testing.T) {
	var pn PNCounterMap[string]
	for i := range 100 {
		pn.Inc("a", string(rune('a'+i%26))+"k", 1)
	}
	// The value with its delta log (escaping to the update function), the
	// counter's delta, the log's copy, the delta map, and a new entry of
	// the merged counts.
	assert.Equal(t, 5.0, testing.AllocsPerRun(100, func() { pn.Inc("a", "bk", 1) }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { pn.Get("bk") }))
	var lw LWWMap[string, int]
	lw.Put("k", 1, 1, "a")
	ts := hlcAt(2)
	assert.Equal(t, 5.0, testing.AllocsPerRun(100, func() { ts++; lw.Put("k", 1, ts, "a") }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { lw.Get("k") }))
	// The set's Add (4) and the log's merge of its delta.
	var mm ORMultiMap[string, string]
	mm.AddBinding("a", "k", "x")
	want := 12.0
	if raceEnabled {
		want = 14
	}
	assert.Equal(t, want, testing.AllocsPerRun(100, func() { mm.AddBinding("a", "k", "x") }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { mm.Contains("k", "x") }))
}

// TestORMapDeltaMergeIndexed: merging small deltas into a large map goes
// through the index of live dots; the result is the generic join's, and
// the index stays exact, over random histories with updates, removes,
// local updates between merges, and duplicated and late deltas.
func TestORMapDeltaMergeIndexed(t *testing.T) {
	for seed := range seeds() / 4 {
		r := rand.New(rand.NewPCG(seed, 0xde17a))
		key := func() string { return fmt.Sprintf("k%02d", r.IntN(40)) }
		var big, ref, src ORMap[string, ORSet[int]]
		for range 200 {
			d := src.Update(key(), func(s *ORSet[int]) { s.Add("s", r.IntN(6)) })
			big.Merge(d)
			ref.merge(&d.causal)
		}
		var deltas []ORMap[string, ORSet[int]]
		for step := range 300 {
			var d ORMap[string, ORSet[int]]
			switch r.IntN(5) {
			case 0:
				d = src.Remove(key())
			case 1:
				x := r.IntN(6)
				d = src.Update(key(), func(s *ORSet[int]) { s.Remove(x) })
			case 2: // a local update of the indexed replica
				k, x := key(), r.IntN(6)
				lb := big.Update(k, func(s *ORSet[int]) { s.Add("b", x) })
				ref.merge(&lb.causal)
				continue
			case 3:
				if len(deltas) > 0 { // a duplicated or late delta
					d = deltas[r.IntN(len(deltas))].Clone()
					break
				}
				fallthrough
			default:
				x := r.IntN(6)
				d = src.Update(key(), func(s *ORSet[int]) { s.Add("s", x) })
			}
			deltas = append(deltas, d.Clone())
			big.Merge(d.Clone())
			ref.merge(&d.causal)
			require.Equal(t, encode(t, ref), encode(t, big), "seed %d step %d", seed, step)
		}
		require.NotNil(t, big.byDot, "seed %d: the index was never used", seed)
		want := map[vclock.Dot]string{}
		for k, v := range big.store {
			for d := range v.dots {
				want[d] = k
			}
		}
		require.Equal(t, want, big.byDot, "seed %d", seed)
	}
}

// A counter map that has seen dots (merged from a map of another value
// type's history, or forged) keeps them through its updates: its state
// only grows.
func TestCounterMapKeepsContext(t *testing.T) {
	var m PNCounterMap[string]
	m.m.ctx.vv.Add(vclock.Dot{ID: "x", Counter: 3})
	m.Inc("a", "k", 1)
	assert.Equal(t, uint64(3), m.m.ctx.vv.Get("x"))
	_, err := m.TryInc("a", "k", vclock.MaxCounter)
	require.ErrorIs(t, err, vclock.ErrExhausted)
	assert.Equal(t, uint64(3), m.m.ctx.vv.Get("x"))
}
