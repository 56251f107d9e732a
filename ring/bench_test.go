package ring_test

import (
	"strconv"
	"testing"

	"github.com/distkit/distkit/ring"
)

var sizes = []int{10, 100, 1000}

// benchKeys are 1024 distinct keys, cycled through so that lookups touch
// the whole ring rather than one cached point.
func benchKeys() [][]byte {
	keys := make([][]byte, 1024)
	for i := range keys {
		keys[i] = []byte("user:" + strconv.Itoa(i*7919))
	}
	return keys
}

// benchRings runs op on rings of each size, cycling through the keys.
func benchRings(b *testing.B, op func(r *ring.Ring, key []byte)) {
	keys := benchKeys()
	for _, n := range sizes {
		r := mustNew(b, nodes(n, 3), 0)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				op(r, keys[i&1023])
				i++
			}
		})
	}
}

func BenchmarkLookup(b *testing.B) {
	benchRings(b, func(r *ring.Ring, key []byte) { _ = r.Lookup(key) })
}

func BenchmarkReplicas3(b *testing.B) {
	dst := make([]string, 0, 3)
	benchRings(b, func(r *ring.Ring, key []byte) { dst = r.Replicas(key, 3, dst) })
}

func BenchmarkNew(b *testing.B) {
	for _, n := range sizes {
		ns := nodes(n, 3)
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				mustNew(b, ns, 0)
			}
		})
	}
}

// BenchmarkBounded is steady churn: one departure and one arrival per
// iteration, with 10 keys per node assigned.
func BenchmarkBounded(b *testing.B) {
	for _, n := range sizes {
		r := mustNew(b, nodes(n, 3), 0)
		keys := make([]string, 20*n)
		for i := range keys {
			keys[i] = "conn-" + strconv.Itoa(i)
		}
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			bl, err := ring.NewBounded(r, 1.25)
			if err != nil {
				b.Fatal(err)
			}
			live := 10 * n
			for _, k := range keys[:live] {
				if _, err := bl.Add(k); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				bl.Remove(keys[i%len(keys)])
				if _, err := bl.Add(keys[(i+live)%len(keys)]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

func BenchmarkJump(b *testing.B) {
	b.ReportAllocs()
	var k uint64
	for b.Loop() {
		_ = ring.Jump(k, 1000)
		k += 0x9e3779b97f4a7c15
	}
}

func BenchmarkRendezvous(b *testing.B) {
	keys := benchKeys()
	for _, n := range []int{10, 100, 1000} {
		h, err := ring.NewRendezvous(nodes(n, 1))
		if err != nil {
			b.Fatal(err)
		}
		weighted := nodes(n, 1)
		for i := range weighted {
			weighted[i].Weight = float64(1 + i%3)
		}
		hw, err := ring.NewRendezvous(weighted)
		if err != nil {
			b.Fatal(err)
		}
		for name, set := range map[string]*ring.Rendezvous{"Lookup": h, "LookupWeighted": hw} {
			b.Run(name+"/"+strconv.Itoa(n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = set.Lookup(keys[i&1023])
					i++
				}
			})
		}
		b.Run("LookupN3/"+strconv.Itoa(n), func(b *testing.B) {
			b.ReportAllocs()
			dst := make([]string, 0, 3)
			i := 0
			for b.Loop() {
				dst = h.LookupN(keys[i&1023], 3, dst)
				i++
			}
		})
	}
}
