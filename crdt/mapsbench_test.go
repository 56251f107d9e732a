package crdt

import (
	"testing"

	"github.com/distkit/distkit/hlc"
	"github.com/vmihailenco/msgpack/v5"
)

// The maps' benchmarks: 1000 keys written by three replicas; updates
// cycle through the keys.

const benchKeys = 1000

func setsMap() ORMap[string, ORSet[string]] {
	var m ORMap[string, ORSet[string]]
	for i, k := range elems(benchKeys) {
		for j := range 4 {
			m.Update(k, func(s *ORSet[string]) { s.Add(replicaIDs[(i+j)%3], elems(4)[j]) })
		}
	}
	return m
}

func countersMap() PNCounterMap[string] {
	var m PNCounterMap[string]
	for i, k := range elems(benchKeys) {
		for j := range 3 {
			m.Inc(replicaIDs[j], k, uint64(i+j+1))
		}
	}
	return m
}

func lwwMap() LWWMap[string, string] {
	var m LWWMap[string, string]
	for i, k := range elems(benchKeys) {
		m.Put(k, "value", hlc.Timestamp(i+1), replicaIDs[i%3])
	}
	return m
}

// benchKeysLoop runs f on successive keys of a 1000-key map.
func benchKeysLoop(b *testing.B, f func(i int, k string)) {
	ks := elems(benchKeys)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		f(i, ks[i%len(ks)])
		i++
	}
}

// BenchmarkMapUpdate: one nested mutation through Update, which returns
// the map's delta.
func BenchmarkMapUpdate(b *testing.B) {
	b.Run("ORMap-ORSet", func(b *testing.B) {
		m := setsMap()
		benchKeysLoop(b, func(_ int, k string) { m.Update(k, func(s *ORSet[string]) { s.Add("a", "element-000001") }) })
	})
	b.Run("PNCounterMap", func(b *testing.B) {
		m := countersMap()
		benchKeysLoop(b, func(_ int, k string) { m.Inc("a", k, 1) })
	})
	b.Run("LWWMap", func(b *testing.B) {
		m := lwwMap()
		benchKeysLoop(b, func(i int, k string) { m.Put(k, "v", hlc.Timestamp(benchKeys+i), "a") })
	})
	b.Run("ORMultiMap", func(b *testing.B) {
		m := ORMultiMap[string, string]{setsMap()}
		benchKeysLoop(b, func(_ int, k string) { m.AddBinding("a", k, "element-000001") })
	})
}

// BenchmarkMapMerge: a one-key delta into a 1000-key replica, and a
// full 1000-key state into another where every key differs.
func BenchmarkMapMerge(b *testing.B) {
	b.Run("ORMap-ORSet/delta", func(b *testing.B) {
		m := setsMap()
		o := m.Clone()
		benchKeysLoop(b, func(_ int, k string) {
			m.Merge(o.Update(k, func(s *ORSet[string]) { s.Add("b", "element-000002") }))
		})
	})
	b.Run("PNCounterMap/delta", func(b *testing.B) {
		m := countersMap()
		o := m.Clone()
		benchKeysLoop(b, func(_ int, k string) { m.Merge(o.Inc("b", k, 1)) })
	})
	b.Run("ORMap-ORSet/full", func(b *testing.B) {
		m := setsMap()
		o := m.Clone()
		for _, k := range elems(benchKeys) {
			o.Update(k, func(s *ORSet[string]) { s.Add("c", "element-000003") })
		}
		benchKeysLoop(b, func(int, string) { c := m.Clone(); c.Merge(o) })
	})
	b.Run("PNCounterMap/full", func(b *testing.B) {
		m := countersMap()
		o := m.Clone()
		for _, k := range elems(benchKeys) {
			o.Inc("c", k, 1)
		}
		benchKeysLoop(b, func(int, string) { c := m.Clone(); c.Merge(o) })
	})
}

// setsAndCounters holds setsMap and countersMap: what mixedMap replaces.
type setsAndCounters struct {
	Sets     ORMap[string, ORSet[string]]
	Counters PNCounterMap[string]
}

// BenchmarkMapEncode: a 1000-key state, encoded and decoded; the bytes
// metric is the encoded size. Map/sets holds setsMap's contents, and
// Map/sets+counters mixedMap's, which setsAndCounters holds in two maps.
func BenchmarkMapEncode(b *testing.B) {
	var sets Map
	for i, k := range elems(benchKeys) {
		for j := range 4 {
			sets.UpdateSet(k, func(s *ORSet[string]) { s.Add(replicaIDs[(i+j)%3], elems(4)[j]) })
		}
	}
	for _, c := range []struct {
		name string
		v    any
		into func() any
	}{
		{"ORMap-ORSet", setsMap(), func() any { return new(ORMap[string, ORSet[string]]) }},
		{"PNCounterMap", countersMap(), func() any { return new(PNCounterMap[string]) }},
		{"LWWMap", lwwMap(), func() any { return new(LWWMap[string, string]) }},
		{"Map/sets", sets, func() any { return new(Map) }},
		{"Map/sets+counters", mixedMap(), func() any { return new(Map) }},
		{"ORMap+PNCounterMap", setsAndCounters{setsMap(), countersMap()}, func() any { return new(setsAndCounters) }},
	} {
		buf, err := msgpack.Marshal(c.v)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := msgpack.Marshal(c.v); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "bytes")
		})
		b.Run(c.name+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := msgpack.Unmarshal(buf, c.into()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// mixedMap is setsMap and countersMap in one Map: each of the 1000 names
// has a set field and a counter field with the same contents.
func mixedMap() Map {
	var m Map
	for i, k := range elems(benchKeys) {
		for j := range 4 {
			m.UpdateSet(k, func(s *ORSet[string]) { s.Add(replicaIDs[(i+j)%3], elems(4)[j]) })
		}
		for j := range 3 {
			m.UpdateCounter(k, func(c *ResetCounter) { c.Inc(replicaIDs[j], uint64(i+j+1)) })
		}
	}
	return m
}

// BenchmarkMixedMap: Map's mutators and merges on 1000 names with a set
// and a counter each, as BenchmarkMapUpdate and BenchmarkMapMerge do for
// the single-type maps.
func BenchmarkMixedMap(b *testing.B) {
	b.Run("UpdateSet", func(b *testing.B) {
		m := mixedMap()
		benchKeysLoop(b, func(_ int, k string) { m.UpdateSet(k, func(s *ORSet[string]) { s.Add("a", "element-000001") }) })
	})
	b.Run("UpdateCounter", func(b *testing.B) {
		m := mixedMap()
		benchKeysLoop(b, func(_ int, k string) { m.UpdateCounter(k, func(c *ResetCounter) { c.Inc("a", 1) }) })
	})
	b.Run("UpdateRegister", func(b *testing.B) {
		m := mixedMap()
		benchKeysLoop(b, func(i int, k string) {
			m.UpdateRegister(k, func(r *LWWRegister[string]) { r.Set("v", hlc.Timestamp(i+1), "a") })
		})
	})
	b.Run("UpdateMap", func(b *testing.B) {
		m := mixedMap()
		benchKeysLoop(b, func(_ int, k string) {
			m.UpdateMap(k, func(n *Map) { n.UpdateCounter("c", func(c *ResetCounter) { c.Inc("a", 1) }) })
		})
	})
	b.Run("Remove+UpdateSet", func(b *testing.B) {
		m := mixedMap()
		benchKeysLoop(b, func(_ int, k string) {
			m.Remove(Field{k, FieldSet})
			m.UpdateSet(k, func(s *ORSet[string]) { s.Add("a", "element-000001") })
		})
	})
	b.Run("Merge/delta", func(b *testing.B) {
		m := mixedMap()
		o := m.Clone()
		benchKeysLoop(b, func(_ int, k string) {
			m.Merge(o.UpdateSet(k, func(s *ORSet[string]) { s.Add("b", "element-000002") }))
		})
	})
	b.Run("Merge/full", func(b *testing.B) {
		m := mixedMap()
		o := m.Clone()
		for _, k := range elems(benchKeys) {
			o.UpdateSet(k, func(s *ORSet[string]) { s.Add("c", "element-000003") })
			o.UpdateCounter(k, func(c *ResetCounter) { c.Inc("c", 1) })
		}
		benchKeysLoop(b, func(int, string) { c := m.Clone(); c.Merge(o) })
	})
}

// BenchmarkCompact: Compact of mixedMap with every counter and a register
// of each name removed, at the state itself (stable once every replica
// has merged it); the metrics are the encoded sizes before and after.
func BenchmarkCompact(b *testing.B) {
	m := mixedMap()
	for i, k := range elems(benchKeys) {
		m.UpdateRegister(k, func(r *LWWRegister[string]) { r.Set("v", hlc.Timestamp(i+1), "a") })
		m.Remove(Field{k, FieldCounter})
		m.Remove(Field{k, FieldRegister})
	}
	before, err := msgpack.Marshal(m)
	if err != nil {
		b.Fatal(err)
	}
	c := m.Clone()
	if n := c.Compact(m); n != 4*benchKeys {
		b.Fatalf("compacted %d tombstones, want %d", n, 4*benchKeys)
	}
	after, err := msgpack.Marshal(c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		c := m.Clone()
		c.Compact(m)
	}
	b.ReportMetric(float64(len(before)), "bytes-before")
	b.ReportMetric(float64(len(after)), "bytes-after")
}
