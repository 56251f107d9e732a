package vclock

import (
	"fmt"
	"testing"
)

// benchClocks returns a clock of n entries and one that descends from it
// by one more event on its last ID and one more ID, so that comparing them
// walks both clocks to the end.
func benchClocks(n int) (a, b VClock) {
	for i := range n {
		id := fmt.Sprintf("id%03d", i)
		a.Add(Dot{ID: id, Counter: uint64(i + 1)})
		b.Add(Dot{ID: id, Counter: uint64(i + 1)})
	}
	b.Tick(fmt.Sprintf("id%03d", n-1))
	b.Tick(fmt.Sprintf("id%03d", n))
	return a, b
}

var benchSizes = []int{3, 16, 128}

// benchPairs runs f as a sub-benchmark per size on benchClocks(size).
func benchPairs(b *testing.B, f func(b *testing.B, x, y VClock)) {
	for _, n := range benchSizes {
		x, y := benchClocks(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			f(b, x, y)
		})
	}
}

func BenchmarkCompare(b *testing.B) {
	benchPairs(b, func(b *testing.B, x, y VClock) {
		for b.Loop() {
			if x.Compare(y) != Before {
				b.Fatal("not Before")
			}
		}
	})
}

func BenchmarkDescends(b *testing.B) {
	benchPairs(b, func(b *testing.B, x, y VClock) {
		for b.Loop() {
			if !y.Descends(x) {
				b.Fatal("does not descend")
			}
		}
	})
}

// BenchmarkMerge merges a clock into one that shares its IDs, the steady
// state of a replica merging its peers' clocks.
func BenchmarkMerge(b *testing.B) {
	benchPairs(b, func(b *testing.B, x, y VClock) {
		x = x.Clone()
		x.Merge(y)
		for b.Loop() {
			x.Merge(y)
		}
	})
}

// BenchmarkMergeGrow merges into a full copy, allocating the result.
func BenchmarkMergeGrow(b *testing.B) {
	benchPairs(b, func(b *testing.B, x, y VClock) {
		n := x.Len()
		for b.Loop() {
			m := VClock{entries: x.entries[:n:n]}
			m.Merge(y)
		}
	})
}

// BenchmarkGet looks up the middle ID.
func BenchmarkGet(b *testing.B) {
	benchPairs(b, func(b *testing.B, x, _ VClock) {
		id := x.entries[x.Len()/2].id
		for b.Loop() {
			if x.Get(id) == 0 {
				b.Fatal("missing")
			}
		}
	})
}

// benchSets returns two replicas' sets of one key that diverged from a
// common history {n1, n2, n3}: writes with the same context went to n1 on
// one and to n2 on the other, k in all, so that syncing them gives k
// siblings.
func benchSets(k int) (a, b DVVSet[[]byte]) {
	var base DVVSet[[]byte]
	for _, id := range []string{"n1", "n2", "n3"} {
		base.Update(base.Context(), id, []byte("base"))
	}
	ctx := base.Context()
	a, b = base.Clone(), base.Clone()
	for i := range k {
		v := fmt.Appendf(nil, "value %d", i)
		if i%2 == 0 {
			a.Update(ctx, "n1", v)
		} else {
			b.Update(ctx, "n2", v)
		}
	}
	return a, b
}

var siblingCounts = []int{2, 10}

// BenchmarkDVVSetUpdate writes to a key holding k siblings with a context
// that covers the oldest one, so the key stays at k siblings: the steady
// state of k clients writing concurrently.
func BenchmarkDVVSetUpdate(b *testing.B) {
	for _, k := range siblingCounts {
		b.Run(fmt.Sprint(k), func(b *testing.B) {
			var s DVVSet[[]byte]
			s.Update(VClock{}, "n2", []byte("x"))
			s.Update(s.Context(), "n3", []byte("x"))
			ctx := s.Context()
			for range k {
				s.Update(ctx, "n1", []byte("x"))
			}
			ctx.Add(Dot{ID: "n1", Counter: 1})
			v := []byte("value")
			b.ReportAllocs()
			for b.Loop() {
				s.Update(ctx, "n1", v)
				ctx.Add(Dot{ID: "n1", Counter: ctx.Get("n1") + 1})
			}
			if s.Len() != k {
				b.Fatalf("%d siblings, want %d", s.Len(), k)
			}
		})
	}
}

// BenchmarkDVVSetSync syncs replicas of a key with k siblings: "equal"
// when the replicas agree (anti-entropy finding nothing new), "diverged"
// when each holds half the siblings (this includes cloning the receiver).
func BenchmarkDVVSetSync(b *testing.B) {
	for _, k := range siblingCounts {
		x, y := benchSets(k)
		merged := x.Clone()
		merged.Sync(y)
		if merged.Len() != k {
			b.Fatalf("%d siblings, want %d", merged.Len(), k)
		}
		other := merged.Clone()
		b.Run(fmt.Sprintf("equal/%d", k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				merged.Sync(other)
			}
		})
		b.Run(fmt.Sprintf("diverged/%d", k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s := x.Clone()
				s.Sync(y)
			}
		})
	}
}
