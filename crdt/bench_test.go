package crdt

import (
	"fmt"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// elems returns n distinct element names.
func elems(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("element-%06d", i)
	}
	return out
}

// bigSet returns a set of n elements added by three replicas.
func bigSet(n int) ORSet[string] {
	var s ORSet[string]
	for i, x := range elems(n) {
		s.Add(replicaIDs[i%3], x)
	}
	return s
}

// benchElements runs f on a 10k-element set, cycling through its
// elements.
func benchElements(b *testing.B, f func(s *ORSet[string], x string)) {
	s := bigSet(10000)
	xs := elems(10000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f(&s, xs[i%len(xs)])
		i++
	}
}

// BenchmarkORSetAdd re-adds elements of a 10k-element set, the steady
// state of an add-heavy workload.
func BenchmarkORSetAdd(b *testing.B) {
	benchElements(b, func(s *ORSet[string], x string) { s.Add("a", x) })
}

// BenchmarkORSetRemove removes and re-adds an element of a 10k-element
// set; the Add keeps the set's size.
func BenchmarkORSetRemove(b *testing.B) {
	benchElements(b, func(s *ORSet[string], x string) {
		s.Remove(x)
		s.Add("a", x)
	})
}

func BenchmarkORSetContains(b *testing.B) {
	benchElements(b, func(s *ORSet[string], x string) {
		if !s.Contains(x) {
			b.Fatal("missing")
		}
	})
}

// BenchmarkORSetMerge merges two 10k-element replicas that share half
// their elements, each with removals the other has not seen.
func BenchmarkORSetMerge(b *testing.B) {
	xs := elems(15000)
	var x, y ORSet[string]
	for _, e := range xs[:10000] {
		x.Add("a", e)
	}
	for _, e := range xs[5000:] {
		y.Add("b", e)
	}
	for _, e := range xs[:10] {
		x.Remove(e)
	}
	b.ReportAllocs()
	for b.Loop() {
		z := x.Clone()
		z.Merge(y)
		if z.Len() != 14990 {
			b.Fatal(z.Len())
		}
	}
}

// BenchmarkORSetMergeDelta merges the deltas of an Add and a Remove made
// on another replica into a 100k-element set: through the dot index, in
// time independent of the set's size.
func BenchmarkORSetMergeDelta(b *testing.B) {
	s := bigSet(100000)
	o := s.Clone()
	s.Merge(o.Add("b", "warm-up")) // builds the index
	b.ReportAllocs()
	for b.Loop() {
		s.Merge(o.Add("b", "element-000042"))
		s.Merge(o.Remove("element-000043"))
		s.Merge(o.Add("b", "element-000043"))
	}
}

// BenchmarkORSetDeltaSize reports the encoded size of the deltas of one
// Add and one Remove in sets of growing size: it does not depend on the
// size of the set.
func BenchmarkORSetDeltaSize(b *testing.B) {
	for _, n := range []int{100, 100000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s := bigSet(n)
			b.ReportAllocs()
			var add, rm int
			for b.Loop() {
				da := s.Add("b", "element-000042")
				dr := s.Remove("element-000042")
				add, rm = len(mustMarshal(da)), len(mustMarshal(dr))
				s.Add("a", "element-000042")
			}
			b.ReportMetric(float64(add), "add-delta-bytes")
			b.ReportMetric(float64(rm), "remove-delta-bytes")
		})
	}
}

// BenchmarkPNCounter100 works on a counter updated by 100 replicas.
func BenchmarkPNCounter100(b *testing.B) {
	var c PNCounter
	for i := range 100 {
		id := fmt.Sprintf("replica-%03d", i)
		c.Inc(id, uint64(i))
		c.Dec(id, 1)
	}
	o := c.Clone()
	o.Inc("replica-050", 5)
	b.Run("Inc", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Inc("replica-050", 1)
		}
	})
	b.Run("Value", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = c.Value()
		}
	})
	b.Run("Merge", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c.Merge(o)
		}
	})
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			buf, err := msgpack.Marshal(c)
			if err != nil {
				b.Fatal(err)
			}
			n = len(buf)
		}
		b.ReportMetric(float64(n), "bytes")
	})
}
