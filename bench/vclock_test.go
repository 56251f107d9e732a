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

// benchVClocks runs a sub-benchmark per size and implementation on the
// size's vclockPair: distkit and mapped return the operation to repeat,
// which reports whether its result was right.
func benchVClocks(b *testing.B, distkit func(x, y vclock.VClock, id string) func() bool, mapped func(x, y mapClock, id string) func() bool) {
	for _, n := range vclockSizes {
		x, y, mx, my := vclockPair(n)
		id := fmt.Sprintf("replica-%03d", n/2)
		for _, impl := range []struct {
			name string
			op   func() bool
		}{{"distkit", distkit(x, y, id)}, {"map", mapped(mx, my, id)}} {
			b.Run(fmt.Sprintf("entries=%d/impl=%s", n, impl.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if !impl.op() {
						b.Fatal("wrong result")
					}
				}
			})
		}
	}
}

// BenchmarkVClockCompare compares two concurrent clocks of 3, 16 and 128
// entries.
func BenchmarkVClockCompare(b *testing.B) {
	benchVClocks(b,
		func(x, y vclock.VClock, _ string) func() bool {
			return func() bool { return x.Compare(y) == vclock.Concurrent }
		},
		func(x, y mapClock, _ string) func() bool {
			return func() bool { return x.Compare(y) == vclock.Concurrent }
		})
}

// BenchmarkVClockMerge merges a clock into one with the same IDs, the
// steady state of a replica merging its peers' clocks.
func BenchmarkVClockMerge(b *testing.B) {
	benchVClocks(b,
		func(x, y vclock.VClock, _ string) func() bool { return func() bool { x.Merge(y); return true } },
		func(x, y mapClock, _ string) func() bool { return func() bool { x.Merge(y); return true } })
}

// BenchmarkVClockCopyMerge copies a clock and merges another into the
// copy: receiving a message without disturbing the local clock.
func BenchmarkVClockCopyMerge(b *testing.B) {
	benchVClocks(b,
		func(x, y vclock.VClock, _ string) func() bool {
			return func() bool {
				c := x.Clone()
				c.Merge(y)
				return c.Len() == x.Len()
			}
		},
		func(x, y mapClock, _ string) func() bool {
			return func() bool {
				c := make(mapClock, len(x))
				c.Merge(x)
				c.Merge(y)
				return len(c) == len(x)
			}
		})
}

// BenchmarkVClockTick ticks the middle ID of a clock of 3, 16 and 128
// entries.
func BenchmarkVClockTick(b *testing.B) {
	benchVClocks(b,
		func(x, _ vclock.VClock, id string) func() bool { return func() bool { return x.Tick(id).Counter > 0 } },
		func(x, _ mapClock, id string) func() bool { return func() bool { x.Tick(id); return true } })
}
