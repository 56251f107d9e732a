package bench

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/distkit/distkit/vclock"
)

// mapClock is GoVector's vector clock design, written plainly: a map from
// actor ID to counter, merged by taking the larger counter of every ID and
// compared by looking up every ID of each clock in the other.
type mapClock map[string]uint64

func (c mapClock) Tick(id string) { c[id]++ }

func (c mapClock) Merge(o mapClock) {
	for id, n := range o {
		if c[id] < n {
			c[id] = n
		}
	}
}

func (c mapClock) Compare(o mapClock) vclock.Ordering {
	less, greater := false, false
	for id, n := range c {
		if m := o[id]; n > m {
			greater = true
		} else if n < m {
			less = true
		}
	}
	for id, m := range o {
		if _, ok := c[id]; !ok && m > 0 {
			less = true
		}
	}
	switch {
	case less && greater:
		return vclock.Concurrent
	case less:
		return vclock.Before
	case greater:
		return vclock.After
	}
	return vclock.Equal
}

// vclockPair returns two clocks of n entries, as distkit and map clocks,
// that are concurrent: equal but for the first ID, ahead in a, and the
// last, ahead in b; comparing them reads every entry.
func vclockPair(n int) (a, b vclock.VClock, ma, mb mapClock) {
	ma, mb = mapClock{}, mapClock{}
	for i := range n {
		id := fmt.Sprintf("replica-%03d", i)
		d := vclock.Dot{ID: id, Counter: uint64(100 + i)}
		a.Add(d)
		b.Add(d)
		ma[id], mb[id] = d.Counter, d.Counter
	}
	first, last := "replica-000", fmt.Sprintf("replica-%03d", n-1)
	a.Tick(first)
	ma.Tick(first)
	b.Tick(last)
	mb.Tick(last)
	return a, b, ma, mb
}

// TestMapClockAgrees checks the baseline against distkit on random clocks:
// the same ordering for every pair, the same counters after a merge.
func TestMapClockAgrees(t *testing.T) {
	const seed = 14
	rng := rand.New(rand.NewPCG(seed, 4))
	for i := range 2000 {
		var a, b vclock.VClock
		ma, mb := mapClock{}, mapClock{}
		for range rng.IntN(12) {
			id := fmt.Sprint(rng.IntN(6))
			if rng.IntN(2) == 0 {
				a.Tick(id)
				ma.Tick(id)
			} else {
				b.Tick(id)
				mb.Tick(id)
			}
		}
		if got, want := ma.Compare(mb), a.Compare(b); got != want {
			t.Fatalf("seed %d, case %d: map clock says %v, distkit %v (%v vs %v)", seed, i, got, want, ma, mb)
		}
		a.Merge(b)
		ma.Merge(mb)
		for id, n := range ma {
			if a.Get(id) != n || a.Len() != len(ma) {
				t.Fatalf("seed %d, case %d: merged map clock %v, distkit %v", seed, i, ma, a)
			}
		}
	}
}

var vclockSizes = []int{3, 16, 128}

// BenchmarkVClockCompare compares two concurrent clocks of 3, 16 and 128
// entries.
func BenchmarkVClockCompare(b *testing.B) {
	for _, n := range vclockSizes {
		x, y, mx, my := vclockPair(n)
		b.Run(fmt.Sprintf("entries=%d/impl=distkit", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if x.Compare(y) != vclock.Concurrent {
					b.Fatal("not concurrent")
				}
			}
		})
		b.Run(fmt.Sprintf("entries=%d/impl=map", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if mx.Compare(my) != vclock.Concurrent {
					b.Fatal("not concurrent")
				}
			}
		})
	}
}

// BenchmarkVClockMerge merges a clock into one with the same IDs, the
// steady state of a replica merging its peers' clocks.
func BenchmarkVClockMerge(b *testing.B) {
	for _, n := range vclockSizes {
		x, y, mx, my := vclockPair(n)
		b.Run(fmt.Sprintf("entries=%d/impl=distkit", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x.Merge(y)
			}
		})
		b.Run(fmt.Sprintf("entries=%d/impl=map", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mx.Merge(my)
			}
		})
	}
}

// BenchmarkVClockCopyMerge copies a clock and merges another into the
// copy: receiving a message without disturbing the local clock.
func BenchmarkVClockCopyMerge(b *testing.B) {
	for _, n := range vclockSizes {
		x, y, mx, my := vclockPair(n)
		b.Run(fmt.Sprintf("entries=%d/impl=distkit", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := x.Clone()
				c.Merge(y)
			}
		})
		b.Run(fmt.Sprintf("entries=%d/impl=map", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				c := make(mapClock, len(mx))
				c.Merge(mx)
				c.Merge(my)
			}
		})
	}
}

// BenchmarkVClockTick ticks the middle ID of a clock of 3, 16 and 128
// entries.
func BenchmarkVClockTick(b *testing.B) {
	for _, n := range vclockSizes {
		x, _, mx, _ := vclockPair(n)
		id := fmt.Sprintf("replica-%03d", n/2)
		b.Run(fmt.Sprintf("entries=%d/impl=distkit", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				x.Tick(id)
			}
		})
		b.Run(fmt.Sprintf("entries=%d/impl=map", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mx.Tick(id)
			}
		})
	}
}
