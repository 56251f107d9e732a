package idempotency

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestIndexModel runs random seeded sequences of adds and removes on a
// shard's index against a Go map, with hashes crafted to collide: keys
// share few home cells, some at the table's end so that searches wrap
// round, and some share whole hashes, so that keys are compared. After
// every step every key is found where the model has it and nowhere
// else, and every cell is reachable from its home without an empty cell
// on the way.
func TestIndexModel(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		homes := []uint64{0, 1 << 63, ^uint64(0), r.Uint64(), r.Uint64()}
		hashOf := map[string]uint64{}
		hash := func(key string) uint64 {
			h, ok := hashOf[key]
			if !ok {
				// The top bits choose the home, and bits 5 to 9 the
				// table, here mostly one; bits 1 to 4 tell keys apart,
				// except when they are left equal.
				h = homes[r.IntN(len(homes))]&^0x3ff | uint64(r.IntN(4))<<1
				if r.IntN(8) == 0 {
					h |= uint64(1+r.IntN(31)) << 5
				}
				hashOf[key] = h
			}
			return h
		}
		var x index
		var slots []slot
		model := map[string]int32{}
		var keys []string
		for step := range 300 {
			where := fmt.Sprintf("seed %d step %d", seed, step)
			if len(model) == 0 || r.IntN(3) > 0 {
				key := fmt.Sprint("k", r.IntN(200))
				if _, ok := model[key]; ok {
					continue
				}
				i := int32(len(slots))
				slots = append(slots, slot{e: &memEntry{key: key, slot: i}})
				x.add(hash(key), i)
				model[key] = i
				keys = append(keys, key)
			} else {
				j := r.IntN(len(keys))
				key := keys[j]
				keys[j] = keys[len(keys)-1]
				keys = keys[:len(keys)-1]
				x.remove(hash(key), model[key])
				slots[model[key]].e = nil
				delete(model, key)
			}
			for k := range hashOf {
				e := x.find(slots, hash(k), k)
				i, ok := model[k]
				if ok != (e != nil) || ok && e != slots[i].e {
					t.Fatalf("%s: find(%q) = %v, want slot %d (%t)", where, k, e, i, ok)
				}
			}
			if err := x.check(slots); err != nil || x.n != len(model) {
				t.Fatalf("%s: %d keys, %d counted: %v", where, len(model), x.n, err)
			}
		}
	}
}
