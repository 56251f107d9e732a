package crdt

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/vclock"
)

// setX, addTo and friends update the fields of riak_dt_map.erl's tests.
func addTo(m *Map, name, id, x string) Map {
	return m.UpdateSet(name, func(s *ORSet[string]) { s.Add(id, x) })
}

func removeFrom(m *Map, name, x string) Map {
	return m.UpdateSet(name, func(s *ORSet[string]) { s.Remove(x) })
}

func assign(m *Map, name, id, v string, ts int) Map {
	return m.UpdateRegister(name, func(r *LWWRegister[string]) { r.Set(v, hlcAt(ts), id) })
}

// riak_dt_map.erl's own cases, on fields named by name and type.
func TestMapRiakCases(t *testing.T) {
	x := Field{"X", FieldSet}
	t.Run("assoc", func(t *testing.T) {
		var a, b Map
		addTo(&a, "X", "a", "0")
		addTo(&b, "X", "b", "0")
		removeFrom(&b, "X", "0")
		c := a.Clone()
		c.Remove(x)
		assert.Equal(t, encode(t, merged(a, merged(b, c))), encode(t, merged(merged(a, b), c)))
		assert.Equal(t, encode(t, merged(merged(a, c), b)), encode(t, merged(merged(a, b), c)))
	})
	t.Run("clock", func(t *testing.T) {
		var a Map
		addTo(&a, "X", "a", "0")
		b := a.Clone()
		addTo(&b, "X", "b", "1")
		removeFrom(&a, "X", "0")
		a.Remove(x)
		addTo(&a, "X", "a", "2")
		assert.Equal(t, []string{"1", "2"}, merged(a, b).Set("X").Elements())
	})
	t.Run("remfield", func(t *testing.T) {
		var a Map
		addTo(&a, "X", "a", "0")
		b := a.Clone()
		removeFrom(&a, "X", "0")
		a.Remove(x)
		addTo(&a, "X", "a", "2")
		ab := merged(a, b)
		assert.Equal(t, []Field{x}, ab.Fields())
		assert.Equal(t, []string{"2"}, ab.Set("X").Elements())
	})
	z := Field{"Z", FieldRegister}
	t.Run("present_but_removed", func(t *testing.T) {
		var a, b Map
		assign(&a, "Z", "a", "A", 1)
		c := a.Clone()
		a.Remove(z)
		assign(&b, "Z", "b", "B", 2)
		a3 := merged(b, a)
		b.Remove(z)
		assert.Empty(t, merged(a3, c, b).Fields())
		assert.Empty(t, merged(b, c, a3).Fields())
	})
	t.Run("no_dots_left", func(t *testing.T) {
		var a, b Map
		assign(&a, "Z", "a", "A", 1)
		assign(&b, "Z", "b", "B", 2)
		assert.Empty(t, noDotsLeft(a, b, func(m *Map) { m.Remove(z) }).Fields())
	})
	t.Run("tombstone_remove", func(t *testing.T) {
		var a1 Map
		addTo(&a1, "X", "a", "0")
		b1 := a1.Clone()
		a2 := a1.Clone()
		a2.Remove(x)
		addTo(&b1, "X", "b", "1")
		a3 := merged(a2, b1)
		assert.Equal(t, []string{"1"}, a3.Set("X").Elements(), "the remove takes the 0 it saw")
		addTo(&b1, "X", "b", "2")
		final := merged(merged(a3, b1), b1)
		assert.Equal(t, []string{"1", "2"}, final.Set("X").Elements(), "the removed 0 does not come back")
	})
	t.Run("dot_key: a set and a flag of one name, the flag removed", func(t *testing.T) {
		var a Map
		addTo(&a, "X", "a", "a")
		a.UpdateEWFlag("X", func(f *EWFlag) { f.Enable("a") })
		b := a.Clone()
		a.Remove(Field{"X", FieldEWFlag})
		ab := merged(b, a)
		assert.Equal(t, []Field{x}, ab.Fields())
		assert.Equal(t, []string{"a"}, ab.Set("X").Elements())
		assert.False(t, ab.EWFlag("X").Value())
	})
}

// One name, seven fields: each is its own CRDT, and removing one leaves
// the others, also when the remove and updates of the others are
// concurrent.
func TestMapFieldsOfOneName(t *testing.T) {
	var a Map
	a.UpdateCounter("x", func(c *ResetCounter) { c.Inc("a", 5) })
	assign(&a, "x", "a", "v", 1)
	a.UpdateMVRegister("x", func(r *MVRegister[string]) { r.Set("a", "mv") })
	a.UpdateEWFlag("x", func(f *EWFlag) { f.Enable("a") })
	a.UpdateDWFlag("x", func(f *DWFlag) { f.Disable("a") })
	addTo(&a, "x", "a", "e")
	a.UpdateMap("x", func(n *Map) { n.UpdateCounter("y", func(c *ResetCounter) { c.Inc("a", 1) }) })
	want := []Field{{"x", FieldCounter}, {"x", FieldRegister}, {"x", FieldMVRegister}, {"x", FieldEWFlag},
		{"x", FieldDWFlag}, {"x", FieldSet}, {"x", FieldMap}}
	require.Equal(t, want, a.Fields())
	require.Equal(t, 7, a.Len())

	for i, f := range want {
		b := a.Clone()
		c := a.Clone()
		d := b.Remove(f)
		// Concurrently, c updates every field again.
		dc := c.UpdateCounter("x", func(c *ResetCounter) { c.Inc("c", 2) })
		dc.Merge(addTo(&c, "x", "c", "f"))
		dc.Merge(c.UpdateMap("x", func(n *Map) { n.UpdateCounter("y", func(c *ResetCounter) { c.Inc("c", 1) }) }))
		b.Merge(dc)
		c.Merge(d)
		require.Equal(t, encode(t, b), encode(t, c), f)
		got := b.Fields()
		switch f.Type {
		case FieldCounter, FieldSet, FieldMap: // the concurrent update survives, alone
			require.Equal(t, want, got, f)
		default:
			require.Equal(t, append(want[:i:i], want[i+1:]...), got, f)
		}
		assert.Equal(t, map[FieldType]int64{FieldCounter: 2}[f.Type]+map[bool]int64{true: 0, false: 7}[f.Type == FieldCounter], b.Counter("x").Value(), f)
		assert.Equal(t, map[bool][]string{true: {"f"}, false: {"e", "f"}}[f.Type == FieldSet], b.Set("x").Elements(), f)
		assert.Equal(t, map[bool]int64{true: 1, false: 2}[f.Type == FieldMap], b.Map("x").Counter("y").Value(), f)
	}
}

// Removing a nested map resets it field by field, recursively: a nested
// update concurrent with the remove survives with only its own effects.
func TestMapNestedResetRemove(t *testing.T) {
	var a Map
	a.UpdateMap("profile", func(p *Map) {
		assign(p, "name", "a", "Ann", 1)
		addTo(p, "tags", "a", "go")
		p.UpdateMap("stats", func(s *Map) { s.UpdateCounter("visits", func(c *ResetCounter) { c.Inc("a", 3) }) })
	})
	b := a.Clone()
	da := a.Remove(Field{"profile", FieldMap})
	require.Empty(t, a.Fields())
	db := b.UpdateMap("profile", func(p *Map) {
		addTo(p, "tags", "b", "rust")
		p.UpdateMap("stats", func(s *Map) { s.UpdateCounter("visits", func(c *ResetCounter) { c.Inc("b", 1) }) })
	})
	a.Merge(db)
	b.Merge(da)
	require.Equal(t, encode(t, a), encode(t, b))
	p := a.Map("profile")
	assert.Equal(t, []Field{{"stats", FieldMap}, {"tags", FieldSet}}, p.Fields())
	assert.Equal(t, []string{"rust"}, p.Set("tags").Elements())
	assert.Equal(t, int64(1), p.Map("stats").Counter("visits").Value())
	assert.False(t, p.Contains(Field{"name", FieldRegister}))
}

// Reads hand out copies: the nested values' mutators that draw a dot
// panic, and changing a copy changes nothing in the map.
func TestMapReadsAreCopies(t *testing.T) {
	var m Map
	addTo(&m, "s", "a", "x")
	m.UpdateCounter("c", func(c *ResetCounter) { c.Inc("a", 1) })
	m.UpdateMap("m", func(n *Map) { addTo(n, "s", "a", "x") })
	before := encode(t, m)
	s := m.Set("s")
	assert.Panics(t, func() { s.Add("a", "y") })
	c := m.Counter("c")
	c.Inc("a", 5)
	n := m.Map("m")
	assert.Panics(t, func() { addTo(&n, "s", "a", "y") })
	assert.Equal(t, before, encode(t, m))
	assert.True(t, m.DWFlag("absent").Value(), "an absent DWFlag reads as enabled")
	assert.Zero(t, m.Counter("absent").Value())
	assert.False(t, m.Contains(Field{"s", FieldCounter}))
	assert.False(t, m.Contains(Field{"s", 0}))
	assert.Panics(t, func() { m.Remove(Field{"s", 9}) })
}

// The Try updates return vclock.ErrExhausted and change nothing when a
// forged counter has used up a replica's dots or counts.
func TestMapTryAtMaxCounter(t *testing.T) {
	var m Map
	addTo(&m, "s", "a", "x")
	m.UpdateCounter("c", func(c *ResetCounter) { c.Inc("a", vclock.MaxCounter) })
	m.m.ctx.vv.Merge(clockOf("a", vclock.MaxCounter))
	before := encode(t, m)
	for name, try := range map[string]func() (Map, error){
		"counter": func() (Map, error) {
			return m.TryUpdateCounter("c", func(c *ResetCounter) error { _, err := c.TryInc("a", 1); return err })
		},
		"set": func() (Map, error) {
			return m.TryUpdateSet("s", func(s *ORSet[string]) error { _, err := s.TryAdd("a", "y"); return err })
		},
		"mvregister": func() (Map, error) {
			return m.TryUpdateMVRegister("r", func(r *MVRegister[string]) error { _, err := r.TrySet("a", "v"); return err })
		},
		"ewflag": func() (Map, error) {
			return m.TryUpdateEWFlag("f", func(f *EWFlag) error { _, err := f.TryEnable("a"); return err })
		},
		"dwflag": func() (Map, error) {
			return m.TryUpdateDWFlag("f", func(f *DWFlag) error { _, err := f.TryDisable("a"); return err })
		},
		"nested": func() (Map, error) {
			return m.TryUpdateMap("m", func(n *Map) error {
				n.UpdateCounter("c", func(c *ResetCounter) { c.Inc("b", 1) }) // succeeds, then the set fails
				_, err := n.TryUpdateSet("s", func(s *ORSet[string]) error { _, err := s.TryAdd("a", "y"); return err })
				return err
			})
		},
	} {
		d, err := try()
		require.ErrorIs(t, err, vclock.ErrExhausted, name)
		require.Equal(t, before, encode(t, m), name)
		require.Zero(t, d.Len(), name)
	}
	assert.Panics(t, func() { addTo(&m, "s", "a", "y") })
}

// Nesting stops at MaxMapDepth, locally and on the wire.
func TestMapDepth(t *testing.T) {
	var m Map
	var nest func(n *Map, depth int) error
	nest = func(n *Map, depth int) error {
		if depth == 0 {
			n.UpdateCounter("c", func(c *ResetCounter) { c.Inc("a", 1) })
			return nil
		}
		_, err := n.TryUpdateMap("m", func(in *Map) error { return nest(in, depth-1) })
		return err
	}
	require.NoError(t, nest(&m, MaxMapDepth))
	deepest := encode(t, m)
	var back Map
	require.NoError(t, msgpack.Unmarshal([]byte(deepest), &back))
	require.Equal(t, deepest, encode(t, back))
	before := encode(t, m)
	require.ErrorIs(t, nest(&m, MaxMapDepth+1), ErrTooDeep)
	require.Equal(t, before, encode(t, m))

	// One level more on the wire: {m: {7: <the deepest map's store>}}.
	var b bytes.Buffer
	b.WriteString("\x92\x81\xa1m\x81\x07")
	inner := []byte(deepest)[1:]                        // the outer map's [store, context] without its array header
	store := inner[:len(inner)-len(encode(t, m.m.ctx))] // its store
	b.Write(store)
	b.WriteString(encode(t, m.m.ctx))
	require.ErrorIs(t, msgpack.Unmarshal(b.Bytes(), &back), ErrMalformed)
	require.Equal(t, deepest, encode(t, back), "a failed decode leaves the map unchanged")
}

// Decoders refuse what no replica writes, and leave the map unchanged.
func TestMapDecodeRejects(t *testing.T) {
	ctx := []any{[]any{[]any{"a", 1}}, []any{}}
	for name, in := range map[string]any{
		"unknown type tag":       []any{map[string]any{"x": map[int]any{8: []any{}}}, ctx},
		"type tag zero":          []any{map[string]any{"x": map[int]any{0: []any{}}}, ctx},
		"empty field":            []any{map[string]any{"x": map[int]any{1: []any{}}}, ctx},
		"no field":               []any{map[string]any{"x": map[int]any{}}, ctx},
		"counter above bound":    []any{map[string]any{"x": map[int]any{1: []any{[]any{"a", uint64(1) << 63, 0, 0, 0}}}}, ctx},
		"set dot not in ctx":     []any{map[string]any{"x": map[int]any{6: map[string]any{"e": []any{[]any{"a", 2}}}}}, ctx},
		"negative type tag":      []any{map[string]any{"x": map[int]any{-1: []any{}}}, ctx},
		"string type tag":        []any{map[string]any{"x": map[string]any{"1": []any{}}}, ctx},
		"nil fields":             []any{map[string]any{"x": nil}, ctx},
		"eight fields of a name": []any{map[string]any{"x": map[int]any{1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8}}, ctx},
	} {
		var m Map
		addTo(&m, "keep", "a", "x")
		before := encode(t, m)
		require.ErrorIs(t, msgpack.Unmarshal(mustMarshal(in), &m), ErrMalformed, name)
		require.Equal(t, before, encode(t, m), name)
	}
	// Field tags out of order: a counter after a set.
	var set, counter Map
	addTo(&set, "x", "a", "e")
	counter.UpdateCounter("x", func(c *ResetCounter) { c.Inc("a", 1) })
	both := merged(set, counter)
	enc := []byte(encode(t, both))
	i := bytes.Index(enc, []byte{0x82, 0x01})
	require.Positive(t, i)
	cnt := encode(t, counter.m.store["x"].counter) // the counter's store follows its tag
	j := i + 2 + len(cnt)
	swapped := append(append(append([]byte{}, enc[:i+1]...), enc[j:len(enc)-len(encode(t, both.m.ctx))]...), enc[i+1:j]...)
	swapped = append(swapped, encode(t, both.m.ctx)...)
	var back Map
	require.ErrorIs(t, msgpack.Unmarshal(swapped, &back), ErrMalformed)
	require.NoError(t, msgpack.Unmarshal(enc, &back))
	require.Equal(t, string(enc), encode(t, back))
}

// Allocation counts of the mixed map's hot paths, pinned.
func TestMixedMapAllocations(t *testing.T) {
	var m Map
	for _, k := range elems(100) {
		m.UpdateCounter(k, func(c *ResetCounter) { c.Inc("a", 1) })
		addTo(&m, k, "a", "x")
	}
	k := elems(1)[0]
	// As PNCounterMap.Inc (the value with its log, the counter's delta,
	// the log's copy, the delta map, the merged counts), and one more: a
	// Go map holds values as large as a name's fields out of line, so the
	// delta map's entry is an allocation of its own.
	assert.Equal(t, 6.0, testing.AllocsPerRun(100, func() { m.UpdateCounter(k, func(c *ResetCounter) { c.Inc("a", 1) }) }))
	want := 13.0 // ORMultiMap.AddBinding's, and the delta map's entry
	if raceEnabled {
		want = 15
	}
	assert.Equal(t, want, testing.AllocsPerRun(100, func() { addTo(&m, k, "a", "x") }))
	assert.Zero(t, testing.AllocsPerRun(100, func() { m.Contains(Field{k, FieldSet}) }))
}

// Pruning a Map folds a retired replica's counts and dots, in every field
// and nested map, into another's, keeping every value.
func TestMapPruning(t *testing.T) {
	var m Map
	for _, id := range []string{"a", "b"} {
		m.UpdateCounter("x", func(c *ResetCounter) { c.Inc(id, 2) })
		addTo(&m, "x", id, id)
		m.UpdateMVRegister("x", func(r *MVRegister[string]) { r.Set(id, id) })
		m.UpdateMap("n", func(n *Map) {
			n.UpdateCounter("c", func(c *ResetCounter) { c.Inc(id, 1) })
			addTo(n, "s", id, id)
		})
	}
	var fs []string
	viewFields(&fs, "", m)
	require.Equal(t, []string{"a", "b"}, m.ModifiedBy())
	require.True(t, m.NeedPruningFrom("b"))
	m.Prune("b", "a")
	assert.False(t, m.NeedPruningFrom("b"))
	assert.Equal(t, []string{"a"}, m.ModifiedBy())
	var after []string
	viewFields(&after, "", m)
	assert.Equal(t, fs, after)
	var back Map
	require.NoError(t, msgpack.Unmarshal([]byte(encode(t, m)), &back), "the pruned state is canonical")
}
