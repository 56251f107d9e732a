package bench

import (
	"maps"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/crdt"
)

// tombstoneSet is neurodrone/crdt's OR-Set design, written plainly: every
// add gives the element a new unique tag; remove copies the tags it has
// seen for the element into a tombstone set that is never emptied; an
// element is present while one of its tags is not a tombstone; merge
// unions both maps. neurodrone/crdt tags with random UUIDs; here a tag is
// the replica's ID and a counter, which is shorter and cheaper.
type tombstoneSet struct {
	replica string
	next    uint64
	adds    map[string]map[string]struct{}
	removes map[string]map[string]struct{}
}

func newTombstoneSet(replica string) *tombstoneSet {
	return &tombstoneSet{replica: replica, adds: map[string]map[string]struct{}{}, removes: map[string]map[string]struct{}{}}
}

func addTag(m map[string]map[string]struct{}, x, tag string) {
	tags := m[x]
	if tags == nil {
		tags = map[string]struct{}{}
		m[x] = tags
	}
	tags[tag] = struct{}{}
}

func (s *tombstoneSet) Add(x string) {
	s.next++
	addTag(s.adds, x, s.replica+":"+strconv.FormatUint(s.next, 10))
}

func (s *tombstoneSet) Remove(x string) {
	for tag := range s.adds[x] {
		addTag(s.removes, x, tag)
	}
}

func (s *tombstoneSet) Contains(x string) bool {
	for tag := range s.adds[x] {
		if _, gone := s.removes[x][tag]; !gone {
			return true
		}
	}
	return false
}

func (s *tombstoneSet) Merge(o *tombstoneSet) {
	for _, m := range []struct {
		dst, src map[string]map[string]struct{}
	}{{s.adds, o.adds}, {s.removes, o.removes}} {
		for x, tags := range m.src {
			for tag := range tags {
				addTag(m.dst, x, tag)
			}
		}
	}
}

func (s *tombstoneSet) Clone() *tombstoneSet {
	c := newTombstoneSet(s.replica)
	c.next = s.next
	c.Merge(s)
	return c
}

// Len is the number of elements present.
func (s *tombstoneSet) Len() int {
	n := 0
	for x := range s.adds {
		if s.Contains(x) {
			n++
		}
	}
	return n
}

// tags is the number of tags the set holds, tombstones included.
func (s *tombstoneSet) tags() int {
	n := 0
	for _, m := range []map[string]map[string]struct{}{s.adds, s.removes} {
		for _, tags := range m {
			n += len(tags)
		}
	}
	return n
}

// encode is the set in msgpack: element to sorted tags, adds then removes.
func (s *tombstoneSet) encode() ([]byte, error) {
	flat := func(m map[string]map[string]struct{}) map[string][]string {
		out := make(map[string][]string, len(m))
		for x, tags := range m {
			out[x] = slices.Sorted(maps.Keys(tags))
		}
		return out
	}
	return msgpack.Marshal([2]map[string][]string{flat(s.adds), flat(s.removes)})
}

const (
	orsetElements = 1000
	orsetCycles   = 100_000
)

func orsetElement(i int) string { return "element-" + strconv.Itoa(i%orsetElements) }

// orsetHistory runs orsetCycles add/remove cycles over orsetElements
// elements on one replica of each design, then adds every element once
// more, leaving all of them present.
func orsetHistory(replica string) (crdt.ORSet[string], *tombstoneSet) {
	var s crdt.ORSet[string]
	t := newTombstoneSet(replica)
	for i := range orsetCycles {
		x := orsetElement(i)
		s.Add(replica, x)
		t.Add(x)
		s.Remove(x)
		t.Remove(x)
	}
	for i := range orsetElements {
		s.Add(replica, orsetElement(i))
		t.Add(orsetElement(i))
	}
	return s, t
}

// orsetReplicas are the histories of replicas "a" and "b".
var orsetReplicas = sync.OnceValue(func() [2]struct {
	s crdt.ORSet[string]
	t *tombstoneSet
} {
	var r [2]struct {
		s crdt.ORSet[string]
		t *tombstoneSet
	}
	r[0].s, r[0].t = orsetHistory("a")
	r[1].s, r[1].t = orsetHistory("b")
	return r
})

// TestORSetQualityTable runs 100,000 add/remove cycles over 1000 elements
// on two replicas, adds every element once more and merges the replicas.
// Both designs must agree on every element; it reports the state each
// keeps, and asserts that distkit's does not grow with history: at most
// twice the size of a set that only ever saw the final adds.
func TestORSetQualityTable(t *testing.T) {
	if raceEnabled {
		t.Skip("400,000 set operations on one goroutine: too slow under the race detector")
	}
	reps := orsetReplicas()
	s, ts := reps[0].s.Clone(), reps[0].t.Clone()
	s.Merge(reps[1].s)
	ts.Merge(reps[1].t)
	for i := range orsetElements + 10 {
		x := "element-" + strconv.Itoa(i)
		if s.Contains(x) != ts.Contains(x) || s.Contains(x) != (i < orsetElements) {
			t.Fatalf("%s: distkit has it %v, tombstone set %v", x, s.Contains(x), ts.Contains(x))
		}
	}
	var fresh crdt.ORSet[string]
	for i := range orsetElements {
		fresh.Add("a", orsetElement(i))
		fresh.Add("b", orsetElement(i))
	}
	size := func(v any) int {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return len(b)
	}
	tsBytes, err := ts.encode()
	if err != nil {
		t.Fatal(err)
	}
	distkit, bound := size(s), 2*size(fresh)
	if distkit > bound {
		t.Errorf("distkit's merged state is %d bytes, above twice a fresh set's (%d)", distkit, bound)
	}
	writeTable(t, "OR-Set state after 100,000 add/remove cycles on each of 2 replicas, 1000 elements present, merged",
		[]string{"impl", "msgpack bytes", "elements present", "tags held"},
		[][]string{
			{"distkit ORSet (no tombstones)", strconv.Itoa(distkit), strconv.Itoa(s.Len()), "–"},
			{"distkit ORSet that only saw the final adds", strconv.Itoa(size(fresh)), strconv.Itoa(fresh.Len()), "–"},
			{"tombstone OR-Set (neurodrone/crdt's design)", strconv.Itoa(len(tsBytes)), strconv.Itoa(ts.Len()), strconv.Itoa(ts.tags())},
		})
}

// BenchmarkORSetAddRemove is one add and one remove of an element, cycling
// over the 1000 elements of replica a after its 100,000 cycles. Every
// remove adds tombstones to the tombstone set, so the state is reset to
// that history every 8192 operations (not timed) to keep the cost per
// operation from growing with b.N.
func BenchmarkORSetAddRemove(b *testing.B) {
	base := orsetReplicas()[0]
	const reset = 8192
	b.Run("impl=distkit", func(b *testing.B) {
		var s crdt.ORSet[string]
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%reset == 0 {
				b.StopTimer()
				s = base.s.Clone()
				b.StartTimer()
			}
			x := orsetElement(i)
			s.Add("a", x)
			s.Remove(x)
			i++
		}
	})
	b.Run("impl=tombstone", func(b *testing.B) {
		var s *tombstoneSet
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if i%reset == 0 {
				b.StopTimer()
				s = base.t.Clone()
				b.StartTimer()
			}
			x := orsetElement(i)
			s.Add(x)
			s.Remove(x)
			i++
		}
	})
}

// BenchmarkORSetMerge merges replica b's full state into a copy of
// replica a's, both after 100,000 add/remove cycles with 1000 elements
// present (the copy is not timed).
func BenchmarkORSetMerge(b *testing.B) {
	reps := orsetReplicas()
	b.Run("impl=distkit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			s := reps[0].s.Clone()
			b.StartTimer()
			s.Merge(reps[1].s)
		}
	})
	b.Run("impl=tombstone", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			s := reps[0].t.Clone()
			b.StartTimer()
			s.Merge(reps[1].t)
		}
	})
}
