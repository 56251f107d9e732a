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

func BenchmarkCompare(b *testing.B) {
	for _, n := range benchSizes {
		x, y := benchClocks(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if x.Compare(y) != Before {
					b.Fatal("not Before")
				}
			}
		})
	}
}

func BenchmarkDescends(b *testing.B) {
	for _, n := range benchSizes {
		x, y := benchClocks(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if !y.Descends(x) {
					b.Fatal("does not descend")
				}
			}
		})
	}
}

// BenchmarkMerge merges a clock into one that shares its IDs, the steady
// state of a replica merging its peers' clocks.
func BenchmarkMerge(b *testing.B) {
	for _, n := range benchSizes {
		x, y := benchClocks(n)
		x.Merge(y)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x.Merge(y)
			}
		})
	}
}

// BenchmarkMergeGrow merges into a fresh copy, allocating the result.
func BenchmarkMergeGrow(b *testing.B) {
	for _, n := range benchSizes {
		x, y := benchClocks(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m := VClock{entries: x.entries[:n:n]}
				m.Merge(y)
			}
		})
	}
}

func BenchmarkGet(b *testing.B) {
	for _, n := range benchSizes {
		x, _ := benchClocks(n)
		id := fmt.Sprintf("id%03d", n/2)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if x.Get(id) == 0 {
					b.Fatal("missing")
				}
			}
		})
	}
}
