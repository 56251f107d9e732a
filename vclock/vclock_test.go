package vclock

import (
	"flag"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

var long = flag.Bool("long", false, "run the property tests on many more seeds")

// seeds returns how many seeds a property test runs.
func seeds() uint64 {
	if *long {
		return 5000
	}
	return 100
}

// model is the reference vector clock: a map with absent IDs at 0.
type model map[string]uint64

func (m model) max(o model) model {
	out := maps.Clone(m)
	for id, n := range o {
		out[id] = max(out[id], n)
	}
	return out
}

// leq reports m <= o entrywise.
func (m model) leq(o model) bool {
	for id, n := range m {
		if n > o[id] {
			return false
		}
	}
	return true
}

func (m model) compare(o model) Ordering {
	switch le, ge := m.leq(o), o.leq(m); {
	case le && ge:
		return Equal
	case le:
		return Before
	case ge:
		return After
	}
	return Concurrent
}

// randomClock builds a clock over a small alphabet, so that random clocks
// are often related, in a random order of Tick and Add calls; it returns
// the clock and its model.
func randomClock(t *testing.T, r *rand.Rand) (VClock, model) {
	ids := []string{"a", "b", "c", "d", "e"}
	var v VClock
	m := model{}
	for range r.IntN(12) {
		id := ids[r.IntN(len(ids))]
		if r.IntN(2) == 0 {
			m[id]++
			require.Equal(t, Dot{ID: id, Counter: m[id]}, v.Tick(id))
		} else {
			d := Dot{ID: id, Counter: r.Uint64N(4)}
			v.Add(d)
			m[id] = max(m[id], d.Counter)
		}
	}
	for id, n := range m {
		if n == 0 {
			delete(m, id)
		}
	}
	return v, m
}

// checkInvariants fails unless v's entries are sorted by unique ID and
// have counters of at least 1.
func checkInvariants(t *testing.T, v VClock) {
	t.Helper()
	for i, e := range v.entries {
		require.NotZero(t, e.counter, "entry %q", e.id)
		if i > 0 {
			require.Less(t, v.entries[i-1].id, e.id)
		}
	}
}

func requireModel(t *testing.T, seed uint64, v VClock, m model) {
	t.Helper()
	checkInvariants(t, v)
	require.Equal(t, len(m), v.Len(), "seed %d: %v vs %v", seed, v, m)
	require.Equal(t, map[string]uint64(m), maps.Collect(v.All()), "seed %d", seed)
	for id, n := range m {
		require.Equal(t, n, v.Get(id), "seed %d", seed)
	}
}

func TestZeroValue(t *testing.T) {
	var v VClock
	require.Equal(t, 0, v.Len())
	require.Equal(t, uint64(0), v.Get("a"))
	require.Equal(t, Equal, v.Compare(VClock{}))
	require.True(t, v.Descends(VClock{}))
	require.True(t, v.Contains(Dot{ID: "a"}))
	require.False(t, v.Contains(Dot{ID: "a", Counter: 1}))
	require.Equal(t, "{}", v.String())
	require.Equal(t, Dot{ID: "a", Counter: 1}, v.Tick("a"))
	require.Equal(t, `{"a":1}`, v.String())
}

// TestRiakExample re-expresses riak_core vclock.erl's example_test and
// equals_or_dominates_test.
func TestRiakExample(t *testing.T) {
	var a, b VClock
	a1 := a.Clone()
	a1.Tick("a")
	b1 := b.Clone()
	b1.Tick("b")
	require.True(t, a1.Descends(a))
	require.True(t, b1.Descends(b))
	require.False(t, a1.Descends(b1))
	a2 := a1.Clone()
	a2.Tick("a")
	c := a2.Clone()
	c.Merge(b1)
	c1 := c.Clone()
	c1.Tick("c")
	require.True(t, c1.Descends(a2))
	require.True(t, c1.Descends(b1))
	require.False(t, b1.Descends(c1))
	require.False(t, b1.Descends(a1))

	var x VClock
	x.Tick("a")
	x.Tick("b")
	x.Tick("a")
	b4, b5 := x.Clone(), x.Clone()
	b4.Tick("b")
	b5.Tick("b")
	require.Equal(t, After, b4.Compare(x))
	require.Equal(t, Before, x.Compare(b4))
	require.Equal(t, Equal, b4.Compare(b5))
}

// TestRiakMerge re-expresses vclock.erl's merge tests, timestamps included:
// the larger counter brings its time, equal counters keep the later time.
func TestRiakMerge(t *testing.T) {
	at := func(es ...entry) VClock { return VClock{entries: es} }
	v1 := at(entry{"1", 1, 1}, entry{"2", 2, 2}, entry{"4", 4, 4})
	v2 := at(entry{"3", 3, 3}, entry{"4", 3, 3})
	v1.Merge(v2)
	require.Equal(t, []entry{{"1", 1, 1}, {"2", 2, 2}, {"3", 3, 3}, {"4", 4, 4}}, v1.entries)

	left := at(entry{"5", 5, 5})
	left.Merge(at(entry{"6", 6, 6}, entry{"7", 7, 7}))
	right := at(entry{"6", 6, 6}, entry{"7", 7, 7})
	right.Merge(at(entry{"5", 5, 5}))
	want := []entry{{"5", 5, 5}, {"6", 6, 6}, {"7", 7, 7}}
	require.Equal(t, want, left.entries)
	require.Equal(t, want, right.entries)

	same := at(entry{"1", 1, 2}, entry{"2", 1, 4})
	same.Merge(at(entry{"1", 1, 3}, entry{"3", 1, 5}))
	require.Equal(t, []entry{{"1", 1, 3}, {"2", 1, 4}, {"3", 1, 5}}, same.entries)

	var empty VClock
	empty.Merge(VClock{})
	require.Equal(t, 0, empty.Len())
}

// TestPartialOrderLaws checks Compare, Descends, Get and Merge against the
// map model on random clocks, with the laws of a partial order and of a
// least upper bound.
func TestPartialOrderLaws(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 4))
		a, ma := randomClock(t, r)
		b, mb := randomClock(t, r)
		c, _ := randomClock(t, r)
		requireModel(t, seed, a, ma)

		require.Equal(t, Equal, a.Compare(a), "seed %d: reflexive", seed)
		require.True(t, a.Descends(a), "seed %d", seed)
		ab, ba := a.Compare(b), b.Compare(a)
		require.Equal(t, ma.compare(mb), ab, "seed %d: %v vs %v", seed, a, b)
		require.Equal(t, mb.leq(ma), a.Descends(b), "seed %d", seed)
		require.Equal(t, reverse(ab), ba, "seed %d: antisymmetric", seed)
		if ab == Equal {
			require.Equal(t, ma, mb, "seed %d: antisymmetric", seed)
		}
		// Compare agrees with Descends both ways.
		require.Equal(t, ab == Equal || ab == After, a.Descends(b), "seed %d", seed)
		require.Equal(t, ab == Equal || ab == Before, b.Descends(a), "seed %d", seed)
		if b.Descends(a) && c.Descends(b) {
			require.True(t, c.Descends(a), "seed %d: transitive", seed)
		}

		for _, id := range []string{"a", "c", "e", "z"} {
			d := Dot{ID: id, Counter: r.Uint64N(5)}
			require.Equal(t, d.Counter <= ma[id], a.Contains(d), "seed %d: %v in %v", seed, d, a)
		}

		m := a.Clone()
		m.Merge(b)
		requireModel(t, seed, m, ma.max(mb))
		require.True(t, m.Descends(a) && m.Descends(b), "seed %d: upper bound", seed)
		if c.Descends(a) && c.Descends(b) {
			require.True(t, c.Descends(m), "seed %d: least upper bound", seed)
		}
		m2 := b.Clone()
		m2.Merge(a)
		require.Equal(t, m.entries, m2.entries, "seed %d: commutative", seed)
		m.Merge(m)
		require.Equal(t, m2.entries, m.entries, "seed %d: idempotent", seed)
		m.Merge(c)
		bc := b.Clone()
		bc.Merge(c)
		a2 := a.Clone()
		a2.Merge(bc)
		require.Equal(t, m.entries, a2.entries, "seed %d: associative", seed)
		// The inputs are untouched by merges into clones.
		requireModel(t, seed, a, ma)
		requireModel(t, seed, b, mb)
	}
}

func reverse(o Ordering) Ordering {
	switch o {
	case Before:
		return After
	case After:
		return Before
	}
	return o
}

// TestMergeTimes checks the time Merge keeps against its rule on random
// clocks with times.
func TestMergeTimes(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 5))
		a, b := randomTimedClock(r), randomTimedClock(r)
		m := a.Clone()
		m.Merge(b)
		for _, e := range m.entries {
			ia, inA := a.search(e.id)
			ib, inB := b.search(e.id)
			var want int64
			switch {
			case !inB:
				want = a.entries[ia].time
			case !inA:
				want = b.entries[ib].time
			default:
				x, y := a.entries[ia], b.entries[ib]
				switch {
				case x.counter > y.counter:
					want = x.time
				case x.counter < y.counter:
					want = y.time
				default:
					want = max(x.time, y.time)
				}
			}
			require.Equal(t, want, e.time, "seed %d: %q", seed, e.id)
		}
	}
}

func randomTimedClock(r *rand.Rand) VClock {
	ids := []string{"a", "b", "c", "d", "e"}
	var v VClock
	for range r.IntN(10) {
		id := ids[r.IntN(len(ids))]
		if r.IntN(4) == 0 {
			v.Tick(id)
		} else {
			v.TickAt(id, time.Unix(0, 1+r.Int64N(5)))
		}
	}
	return v
}

func TestTickAtAndTime(t *testing.T) {
	var v VClock
	_, ok := v.Time("a")
	require.False(t, ok)
	now := time.Date(2026, 11, 27, 12, 0, 0, 5, time.UTC)
	require.Equal(t, Dot{ID: "a", Counter: 1}, v.TickAt("a", now))
	got, ok := v.Time("a")
	require.True(t, ok)
	require.True(t, got.Equal(now))
	v.Tick("a") // a new event without a time
	_, ok = v.Time("a")
	require.False(t, ok)

	v.TickAt("far", time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC))
	v.TickAt("early", time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC))
	far, _ := v.search("far")
	early, _ := v.search("early")
	require.Equal(t, int64(math.MaxInt64), v.entries[far].time)
	require.Equal(t, int64(math.MinInt64), v.entries[early].time)
}

func TestAdd(t *testing.T) {
	var v VClock
	v.Add(Dot{ID: "b", Counter: 0})
	require.Equal(t, 0, v.Len())
	v.Add(Dot{ID: "b", Counter: 3})
	v.Add(Dot{ID: "a", Counter: 1})
	v.Add(Dot{ID: "b", Counter: 2})
	require.Equal(t, `{"a":1, "b":3}`, v.String())
	v.TickAt("a", time.Unix(100, 0))
	v.Add(Dot{ID: "a", Counter: 2}) // already covered: the time stays
	_, ok := v.Time("a")
	require.True(t, ok)
	v.Add(Dot{ID: "a", Counter: 5}) // a newer event of unknown time
	_, ok = v.Time("a")
	require.False(t, ok)
	require.Equal(t, uint64(5), v.Get("a"))
}

func TestDelete(t *testing.T) {
	var v VClock
	require.False(t, v.Delete("a"))
	v.TickAt("b", time.Unix(100, 0))
	v.Tick("a")
	v.Tick("c")
	v.Tick("c")
	require.False(t, v.Delete("bb"))
	require.Equal(t, `{"a":1, "b":1, "c":2}`, v.String())
	require.True(t, v.Delete("b"))
	require.Equal(t, `{"a":1, "c":2}`, v.String())
	require.Equal(t, uint64(0), v.Get("b"))
	_, ok := v.Time("b")
	require.False(t, ok)
	require.False(t, v.Delete("b"))
	require.Equal(t, Dot{ID: "b", Counter: 1}, v.Tick("b")) // counts from scratch, no time
	_, ok = v.Time("b")
	require.False(t, ok)
	for _, id := range []string{"c", "a", "b"} {
		require.True(t, v.Delete(id))
	}
	require.Equal(t, 0, v.Len())
	require.Equal(t, Equal, v.Compare(VClock{}))
	got, err := msgpack.Marshal(v)
	require.NoError(t, err)
	want, err := msgpack.Marshal(VClock{})
	require.NoError(t, err)
	require.Equal(t, want, got)
}

// TestTickAtMaxCounter: a counter stops at MaxCounter. TryTick and
// TryTickAt return ErrExhausted, Tick and TickAt panic, and none of them
// changes the clock; other IDs tick on.
func TestTickAtMaxCounter(t *testing.T) {
	var v VClock
	v.Add(Dot{ID: "a", Counter: MaxCounter - 1})
	require.Equal(t, Dot{ID: "a", Counter: MaxCounter}, v.Tick("a"))
	before := v.Clone()
	_, err := v.TryTick("a")
	require.ErrorIs(t, err, ErrExhausted)
	_, err = v.TryTickAt("a", time.Unix(5, 0))
	require.ErrorIs(t, err, ErrExhausted)
	msg := `vclock: counter of "a": vclock: counter exhausted: 9223372036854775807 + 1 above the maximum 9223372036854775807`
	require.PanicsWithValue(t, msg, func() { v.Tick("a") })
	require.PanicsWithValue(t, msg, func() { v.TickAt("a", time.Unix(5, 0)) })
	require.Equal(t, before, v)
	require.Equal(t, Dot{ID: "b", Counter: 1}, v.Tick("b"))
	require.PanicsWithValue(t, "vclock: Add: counter 18446744073709551615 above the maximum 9223372036854775807",
		func() { v.Add(Dot{ID: "c", Counter: math.MaxUint64}) })
}

func TestStrings(t *testing.T) {
	require.Equal(t, []string{"Equal", "Before", "After", "Concurrent", "Ordering(7)"},
		[]string{Equal.String(), Before.String(), After.String(), Concurrent.String(), Ordering(7).String()})
	require.Equal(t, `"n\"1":7`, Dot{ID: `n"1`, Counter: 7}.String())
}

func TestAllStopsEarly(t *testing.T) {
	var v VClock
	for _, id := range []string{"c", "a", "b"} {
		v.Tick(id)
	}
	var seen []string
	for id := range v.All() {
		seen = append(seen, id)
		if id == "b" {
			break
		}
	}
	require.Equal(t, []string{"a", "b"}, seen)
}

// TestMergeAliasing merges clocks that share storage: with itself, and
// with a copy taken before v grew in place.
func TestMergeAliasing(t *testing.T) {
	v := VClock{entries: make([]entry, 0, 8)}
	v.Tick("a")
	v.Tick("c")
	v.Merge(v)
	require.Equal(t, `{"a":1, "c":1}`, v.String())
	w := v // shares storage
	v.Tick("d")
	v.Merge(w)
	require.Equal(t, `{"a":1, "c":1, "d":1}`, v.String())
}

func TestAllocations(t *testing.T) {
	a, b := benchClocks(16)
	d := Dot{ID: "id07", Counter: 3}
	require.Zero(t, testing.AllocsPerRun(100, func() { a.Compare(b) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { a.Descends(b) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { a.Get("id07") }))
	require.Zero(t, testing.AllocsPerRun(100, func() { a.Contains(d) }))
	m := a.Clone()
	m.Merge(b) // grows once
	require.Zero(t, testing.AllocsPerRun(100, func() { m.Merge(b) }), "merge within capacity")
	require.Zero(t, testing.AllocsPerRun(100, func() { m.Merge(a) }), "merge within capacity")
	require.Equal(t, 1.0, testing.AllocsPerRun(100, func() {
		c := VClock{entries: a.entries[:len(a.entries):len(a.entries)]}
		c.Merge(b)
	}), "a growing merge allocates once")
}

// TestRiakPrune re-expresses riak_core vclock.erl's prune tests, with
// times in seconds as Riak's are.
func TestRiakPrune(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	clock := func(ages ...time.Duration) VClock {
		var v VClock
		for i, age := range ages {
			id := string(rune('1' + i))
			for range i + 1 {
				v.TickAt(id, now.Add(-age))
			}
		}
		return v
	}
	old := 32000000 * time.Second

	small := clock(old, old, old)
	require.Equal(t, 0, small.Prune(now, PrunePolicy{Small: 4}), "small")
	require.Equal(t, 3, small.Len())

	young := clock(time.Second, time.Second, time.Second)
	require.Equal(t, 0, young.Prune(now, PrunePolicy{Small: 1, Young: 1000 * time.Second}), "young")
	require.Equal(t, 3, young.Len())

	p := PrunePolicy{Small: 1, Young: time.Second, Big: 2, Old: 100000 * time.Second}
	big := clock(1000*time.Second, 1000*time.Second, 1000*time.Second)
	require.Equal(t, 1, big.Prune(now, p), "big")
	require.Equal(t, `{"2":2, "3":3}`, big.String(), "the tie on time goes to the smallest ID")

	p.Old = 10000 * time.Second
	oldVC := clock(1000*time.Second, 100000*time.Second, 100000*time.Second)
	require.Equal(t, 2, oldVC.Prune(now, p), "old")
	require.Equal(t, `{"1":1}`, oldVC.String())

	// order: two entries of equal time prune to the same survivor whichever
	// was inserted first.
	var x, y VClock
	x.TickAt("1", now.Add(-100000*time.Second))
	x.TickAt("2", now.Add(-100000*time.Second))
	y.TickAt("2", now.Add(-100000*time.Second))
	y.TickAt("1", now.Add(-100000*time.Second))
	require.Equal(t, 1, x.Prune(now, p))
	require.Equal(t, 1, y.Prune(now, p))
	require.Equal(t, x.entries, y.entries)
	require.Equal(t, `{"2":1}`, x.String())
}

// prunedModel is the reference Prune: Riak's recursion on a list sorted by
// (time, ID), with undated entries first.
func prunedModel(es []entry, now int64, p PrunePolicy) []entry {
	sorted := slices.Clone(es)
	slices.SortFunc(sorted, func(a, b entry) int {
		ka, kb := a.time, b.time
		if ka == 0 {
			ka = math.MinInt64
		}
		if kb == 0 {
			kb = math.MinInt64
		}
		if ka != kb {
			if ka < kb {
				return -1
			}
			return 1
		}
		if a.id < b.id {
			return -1
		}
		return 1
	})
	for len(sorted) > max(p.Small, 0) {
		head := sorted[0]
		age := time.Duration(math.MaxInt64)
		if head.time != 0 {
			age = time.Duration(now - head.time)
		}
		if age < p.Young || !(len(sorted) > p.Big || age > p.Old) {
			break
		}
		sorted = sorted[1:]
	}
	slices.SortFunc(sorted, func(a, b entry) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	return sorted
}

// TestPruneModel checks Prune against the reference on random clocks and
// policies, and that the result does not depend on the insertion order.
func TestPruneModel(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 6))
		now := int64(1_000_000)
		var es []entry
		for i := range r.IntN(12) {
			var tm int64
			if r.IntN(5) > 0 {
				tm = 1 + r.Int64N(now+50) // a few in the future
			}
			es = append(es, entry{id: string(rune('a' + i)), counter: 1 + r.Uint64N(3), time: tm})
		}
		p := PrunePolicy{
			Small: r.IntN(8) - 1, Big: r.IntN(10),
			Young: time.Duration(r.Int64N(now / 2)), Old: time.Duration(r.Int64N(now)),
		}
		want := prunedModel(es, now, p)
		for range 3 {
			var v VClock
			for _, i := range r.Perm(len(es)) {
				e := es[i]
				v.Add(Dot{ID: e.id, Counter: e.counter})
				j, _ := v.search(e.id)
				v.entries[j].time = e.time
			}
			n := v.Prune(time.Unix(0, now), p)
			require.Equal(t, len(es)-len(want), n, "seed %d: %+v", seed, p)
			require.Equal(t, want, v.entries, "seed %d: %+v", seed, p)
		}
	}
}

func TestRiakPrunePolicy(t *testing.T) {
	p := RiakPrunePolicy()
	require.Equal(t, PrunePolicy{Small: 50, Big: 50, Young: 20 * time.Second, Old: 86400 * time.Second}, p)
}

// TestPruneUndatedFirst: an entry without a time counts as older than
// every dated one, also than one dated before 1970 (a negative Unix time).
func TestPruneUndatedFirst(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var v VClock
	v.TickAt("a", time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC))
	v.Tick("b") // no time
	require.Equal(t, 1, v.Prune(now, PrunePolicy{Big: 1, Old: 100 * 365 * 24 * time.Hour}))
	require.Equal(t, `{"a":1}`, v.String(), "the undated entry goes first")
}
