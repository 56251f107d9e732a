package crdt

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mapOp is one random operation on a Map, drawn once and applied to the
// replicas of two runs alike.
type mapOp struct {
	kind, amount int
	name, inner  string
}

func randomOp(r *rand.Rand) mapOp {
	return mapOp{kind: r.IntN(12), amount: 1 + r.IntN(3), name: string(rune('p' + r.IntN(3))), inner: string(rune('x' + r.IntN(2)))}
}

// apply applies o on replica id at time ts and returns the delta.
// Register writes take ts, which increases: every write is newer than
// those before it, as an hlc.Clock's are.
func (o mapOp) apply(m *Map, id string, ts int) Map {
	inc := func(c *ResetCounter) { c.Inc(id, uint64(o.amount)) }
	switch o.kind {
	case 0, 1:
		return m.UpdateCounter(o.name, inc)
	case 2:
		return m.UpdateCounter(o.name, func(c *ResetCounter) { c.Dec(id, uint64(o.amount)) })
	case 3:
		return m.UpdateCounter(o.name, func(c *ResetCounter) { c.Reset() })
	case 4:
		return m.Remove(Field{o.name, FieldCounter})
	case 5, 6:
		return assign(m, o.name, id, strconv.Itoa(ts), ts)
	case 7:
		return m.Remove(Field{o.name, FieldRegister})
	case 8:
		return addTo(m, o.name, id, o.inner)
	case 9:
		return m.UpdateMap(o.name, func(n *Map) { n.UpdateCounter(o.inner, inc) })
	case 10:
		return m.UpdateMap(o.name, func(n *Map) { n.Remove(Field{o.inner, FieldCounter}) })
	}
	return m.Remove(Field{o.name, FieldMap})
}

// compactRun is a run of three replicas exchanging deltas through
// per-replica inboxes delivered in random order, some duplicated.
type compactRun struct {
	reps    [3]Map
	inboxes [3][]Map
}

func (c *compactRun) update(o mapOp, i, ts int) {
	d := o.apply(&c.reps[i], replicaIDs[i], ts)
	for j := range c.inboxes {
		if j != i {
			c.inboxes[j] = append(c.inboxes[j], d.Clone())
		}
	}
}

// deliver merges the k-th pending delta of replica i's inbox, or a
// duplicate of it.
func (c *compactRun) deliver(i, k int, dup bool) {
	c.reps[i].Merge(c.inboxes[i][k].Clone())
	if !dup {
		c.inboxes[i] = append(c.inboxes[i][:k], c.inboxes[i][k+1:]...)
	}
}

// quiesce delivers every pending delta and exchanges full states, so
// that all replicas hold the same state, which it returns.
func (c *compactRun) quiesce() Map {
	for i := range c.reps {
		for _, d := range c.inboxes[i] {
			c.reps[i].Merge(d.Clone())
		}
		c.inboxes[i] = nil
	}
	var all Map
	for i := range c.reps {
		all.Merge(c.reps[i].Clone())
	}
	for i := range c.reps {
		c.reps[i].Merge(all.Clone())
	}
	return all
}

// Compacting at causally stable states never changes what replicas
// converge to: two runs of the same random operations and deliveries,
// one compacting at every quiescent point and one never, end with the
// same values, and the compacting one with no more bytes.
func TestCompactAtStableStates(t *testing.T) {
	compacted := 0
	for seed := range seeds() * 2 {
		r := rand.New(rand.NewPCG(seed, 0xc0a7))
		var with, without compactRun
		for step := range 150 + r.IntN(150) {
			switch i := r.IntN(3); {
			case r.IntN(25) == 0:
				stable := with.quiesce()
				without.quiesce()
				for k := range with.reps {
					before := mixView{}.value(with.reps[k])
					compacted += with.reps[k].Compact(stable)
					require.Equal(t, before, mixView{}.value(with.reps[k]), "seed %d step %d: reads changed", seed, step)
					require.Equal(t, mixView{}.value(without.reps[k]), mixView{}.value(with.reps[k]), "seed %d step %d", seed, step)
				}
			case len(with.inboxes[i]) > 0 && r.IntN(2) == 0:
				k, dup := r.IntN(len(with.inboxes[i])), r.IntN(6) == 0
				with.deliver(i, k, dup)
				without.deliver(i, k, dup)
			default:
				o := randomOp(r)
				with.update(o, i, step+1)
				without.update(o, i, step+1)
			}
		}
		with.quiesce()
		without.quiesce()
		for k := range with.reps {
			require.Equal(t, mixView{}.value(without.reps[k]), mixView{}.value(with.reps[k]), "seed %d: replica %d", seed, k)
			require.Equal(t, encode(t, with.reps[0]), encode(t, with.reps[k]), "seed %d: the compacting replicas diverge", seed)
			require.LessOrEqual(t, len(encode(t, with.reps[k])), len(encode(t, without.reps[k])), "seed %d", seed)
		}
	}
	require.Positive(t, compacted, "no history compacted anything")
}

// A removed counter and a removed register leave nothing once compacted;
// reads are unchanged and the state decodes again.
func TestCompactDropsTombstones(t *testing.T) {
	var m Map
	m.UpdateCounter("c", func(c *ResetCounter) { c.Inc("a", 3); c.Dec("b", 1) })
	assign(&m, "r", "a", "v", 5)
	m.UpdateMap("n", func(n *Map) { n.UpdateCounter("c", func(c *ResetCounter) { c.Inc("a", 1) }) })
	addTo(&m, "s", "a", "x")
	m.Remove(Field{"c", FieldCounter})
	m.Remove(Field{"r", FieldRegister})
	m.UpdateMap("n", func(n *Map) { n.Remove(Field{"c", FieldCounter}) })
	m.UpdateMap("n", func(n *Map) { assign(n, "keep", "a", "v", 6) })
	full := len(encode(t, m))
	require.Equal(t, 4, m.Compact(m.Clone()), "two counter entries, a floor, a nested entry")
	assert.Equal(t, []Field{{"n", FieldMap}, {"s", FieldSet}}, m.Fields())
	assert.NotContains(t, m.m.store, "c")
	assert.NotContains(t, m.m.store, "r")
	assert.Less(t, len(encode(t, m)), full)
	assert.Zero(t, m.Compact(m.Clone()), "nothing left to compact")

	var c ResetCounter
	c.Inc("a", 2)
	c.Reset()
	c.Inc("b", 1)
	assert.Equal(t, 1, c.Compact(c.Clone()))
	assert.Equal(t, int64(1), c.Value())
	assert.Equal(t, []string{"b"}, c.ModifiedBy())

	var pn PNCounterMap[string]
	pn.Inc("a", "k", 1)
	pn.Remove("k")
	assert.Equal(t, 1, pn.Compact(pn.Clone()))
	assert.Empty(t, pn.m.store)
	var lw LWWMap[string, int]
	lw.Put("k", 1, 1, "a")
	lw.Remove("k")
	assert.Equal(t, 1, lw.Compact(lw.Clone()))
	assert.Empty(t, lw.m.store)

	// A tombstone stable does not hold, or holds less of, is kept.
	var older, newer PNCounterMap[string]
	older.Inc("a", "k", 1)
	older.Remove("k")
	newer.Merge(older)
	newer.Inc("a", "k", 1)
	newer.Remove("k")
	assert.Zero(t, newer.Compact(older))
	assert.Zero(t, newer.Compact(PNCounterMap[string]{}))
	assert.Equal(t, 1, newer.Compact(newer.Clone()))
}

// Mutators' deltas carry the tombstones they need: a replica that
// compacted a stable state away still counts and hides what its writer
// does. (Without them, the increment below would count all 8 and the
// old write would show.)
func TestCompactedReplicaTakesLaterDeltas(t *testing.T) {
	var a PNCounterMap[string]
	a.Inc("a", "k", 5)
	a.Remove("k")
	stable := a.Clone() // every replica has merged it
	x := stable.Clone()
	a.Inc("a", "k", 2) // before x compacts: x has not seen it
	require.Equal(t, 1, x.Compact(stable))
	x.Merge(a.Inc("a", "k", 1))
	got, _ := x.Get("k")
	want, _ := a.Get("k")
	assert.Equal(t, want, got)
	assert.Equal(t, int64(3), got, "the delta holds a's whole entry, with the 5 the remove took away")

	var r LWWMap[string, string]
	r.Put("k", "old", 5, "a")
	r.Remove("k")
	s := r.Clone()
	y := s.Clone()
	r.Put("k", "newer", 6, "a")
	r.Remove("k")
	require.Equal(t, 1, y.Compact(s))
	d := r.Put("k", "stale", 4, "b") // hidden where it was written
	y.Merge(d)
	assert.Equal(t, r.Keys(), y.Keys())
	assert.Empty(t, y.Keys())
}

// Compacting past stability is unsafe, as documented: a state from
// before the stable one brings back what the remove took away, and a
// replica that compacts late loses increments counted from zero again.
func TestCompactPastStabilityAnomalies(t *testing.T) {
	t.Run("a replica had not merged stable", func(t *testing.T) {
		var a PNCounterMap[string]
		a.Inc("a", "k", 5)
		lagging := a.Clone() // never merges the remove
		a.Remove("k")
		unsafe, safe := a.Clone(), a.Clone()
		unsafe.Compact(a) // not stable: lagging has not merged it
		unsafe.Merge(lagging.Clone())
		safe.Merge(lagging.Clone())
		v, _ := safe.Get("k")
		assert.Equal(t, int64(0), v, "without compaction the remove holds")
		v, _ = unsafe.Get("k")
		assert.Equal(t, int64(5), v, "compacted too early, the removed count comes back")
	})
	t.Run("a replica compacts late", func(t *testing.T) {
		var a PNCounterMap[string]
		a.Inc("a", "k", 5)
		a.Remove("k")
		stable := a.Clone()
		late := a.Clone() // merged stable, but has not compacted yet
		a.Compact(stable)
		late.Merge(a.Inc("a", "k", 1)) // a counts from zero again
		v, _ := a.Get("k")
		assert.Equal(t, int64(1), v)
		v, _ = late.Get("k")
		assert.Equal(t, int64(0), v, "the replica that had not compacted loses the increment")
	})
}
