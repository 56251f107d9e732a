package ring_test

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"testing"

	"github.com/distkit/distkit/ring"
)

// FuzzRing builds rings from arbitrary node lists (any IDs, weights
// including NaN and infinities, zones) and keys: New either returns an
// error or a ring whose lookups, preference lists and plans obey their
// laws; nothing panics.
func FuzzRing(f *testing.F) {
	f.Add([]byte("a\x00b\x01c"), []byte("key"), uint8(3), uint8(4))
	f.Add([]byte("a\x00a"), []byte(""), uint8(1), uint8(1))
	f.Add([]byte("\x00\x00x"), []byte("k"), uint8(0), uint8(200))
	f.Fuzz(func(t *testing.T, spec, key []byte, n, vnodes uint8) {
		var ns []ring.Node
		for i, part := range splitBytes(spec, 0) {
			w := 1.0
			if len(part) >= 9 {
				w = math.Float64frombits(binary.LittleEndian.Uint64(part[len(part)-8:]))
				part = part[:len(part)-8]
			}
			ns = append(ns, ring.Node{ID: string(part), Weight: w, Zone: string(rune('a' + i%3))})
		}
		checkRendezvous(t, ns, key, int(n))
		points := 0.0
		for _, n := range ns {
			points += n.Weight * float64(cmp.Or(int(vnodes), ring.DefaultVNodes))
		}
		if points > 1<<16 {
			return // too large to check quickly
		}
		r, err := ring.New(ns, ring.Config{VNodes: int(vnodes)})
		if err != nil {
			if ring.Validate(ns) == nil {
				t.Fatalf("New(%v): %v", ns, err)
			}
			return
		}
		reps := r.Replicas(key, int(n), nil)
		if len(reps) != min(int(n), len(ns)) {
			t.Fatalf("Replicas(%q, %d) = %v for %d nodes", key, n, reps, len(ns))
		}
		if len(reps) > 0 && reps[0] != r.Lookup(key) {
			t.Fatalf("Replicas[0] = %s, Lookup = %s", reps[0], r.Lookup(key))
		}
		if len(slices.Compact(slices.Sorted(slices.Values(reps)))) != len(reps) {
			t.Fatalf("Replicas not distinct: %v", reps)
		}
		if len(ns) > 0 {
			smaller := r.Without(ns[0].ID)
			h := ring.KeyHash(key)
			var in int
			for _, m := range ring.Moves(r, smaller) {
				if m.Contains(h) {
					in++
				}
			}
			if moved := r.LookupHash(h) != smaller.LookupHash(h); moved != (in == 1) || in > 1 {
				t.Fatalf("Moves disagrees at %d: moved %v, in %d ranges", h, moved, in)
			}
		}
	})
}

// checkRendezvous: NewRendezvous errors exactly on invalid nodes and never
// panics; otherwise Lookup, LookupN and Replicas agree and Replicas is
// distinct.
func checkRendezvous(t *testing.T, ns []ring.Node, key []byte, n int) {
	h, err := ring.NewRendezvous(ns)
	if (err != nil) != (ring.Validate(ns) != nil) {
		t.Fatalf("NewRendezvous(%v): %v, Validate: %v", ns, err, ring.Validate(ns))
	}
	if err != nil {
		return
	}
	top, reps := h.LookupN(key, n, nil), h.Replicas(key, n, nil)
	if len(top) != min(n, len(ns)) || len(reps) != len(top) {
		t.Fatalf("LookupN %v, Replicas %v for %d nodes", top, reps, len(ns))
	}
	if len(top) > 0 && (top[0] != h.Lookup(key) || reps[0] != top[0]) {
		t.Fatalf("Lookup %s, LookupN %v, Replicas %v", h.Lookup(key), top, reps)
	}
	if len(slices.Compact(slices.Sorted(slices.Values(reps)))) != len(reps) {
		t.Fatalf("Replicas not distinct: %v", reps)
	}
}

// splitBytes splits b at every sep byte.
func splitBytes(b []byte, sep byte) [][]byte {
	var out [][]byte
	for {
		i := slices.Index(b, sep)
		if i < 0 {
			return append(out, b)
		}
		out = append(out, b[:i])
		b = b[i+1:]
	}
}
