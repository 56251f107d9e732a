package crdt

import (
	"math/rand/v2"
	"testing"
)

// listOf returns a List[int] of n elements inserted at random positions,
// one at a time, by one replica: a fragmented list of n runs.
func listOf(n int, r *rand.Rand) List[int] {
	var l List[int]
	for i := range n {
		l.Insert("a", r.IntN(l.Len()+1), i)
	}
	return l
}

// BenchmarkListRandom measures inserts and deletes of one element at
// random positions of a 100,000-element list, the delta included.
func BenchmarkListRandom(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	base := listOf(100_000, r)
	b.Run("op=insert", func(b *testing.B) {
		l := base.Clone()
		b.ReportAllocs()
		for b.Loop() {
			l.Insert("b", r.IntN(l.Len()+1), 7)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
	b.Run("op=delete", func(b *testing.B) {
		l := base.Clone()
		b.ReportAllocs()
		for b.Loop() {
			if l.Len() == 0 {
				l = base.Clone()
			}
			l.Delete(r.IntN(l.Len()), 1)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	})
}

// TestListAllocations pins the allocations of a local Insert and Delete of
// one element in a large list (averaged, so that the occasional split of a
// tree node or index block does not count). An Insert that continues the
// run before it makes two: the copy of the values and the delta's run
// with the slice that holds it; elsewhere it adds the run split off and
// the new run, less the run the values join. A Delete makes the delta's
// map and range slice, and splits a run.
func TestListAllocations(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	l := listOf(20_000, r)
	pos := l.Len() / 2
	l.Insert("b", pos, 0)
	typing := testing.AllocsPerRun(200, func() {
		pos++
		l.Insert("b", pos, 1)
	})
	random := testing.AllocsPerRun(200, func() { l.Insert("c", r.IntN(l.Len()+1), 1) })
	del := testing.AllocsPerRun(200, func() { l.Delete(r.IntN(l.Len()), 1) })
	if typing != 2 || random > 4 || del > 3 {
		t.Errorf("allocations: typing insert %.0f (want 2), random insert %.0f (want at most 4), random delete %.0f (want at most 3)", typing, random, del)
	}
}
