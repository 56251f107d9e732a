package idempotency

// A shard finds its records by key in an index of its own: a Go map from
// a key's hash to its record's slot. The hash is the one that chose the
// shard (the store's seeded maphash, so that nobody outside the process
// can make keys collide), computed once per call, where a map with string
// keys would hash the key again for every lookup, insert and delete. The
// map holds no pointer, so the garbage collector neither scans it nor
// sees its writes, and it grows a small table at a time, as Go maps do.
// Keys whose whole hashes are equal, which the seed makes as rare as
// chance allows, share a chain through their entries' sameHash.

// index is a shard's map from key hashes to slots.
type index struct {
	heads map[uint64]int32 // the slot of the last record indexed under each hash
	n     int              // the records indexed
}

// find returns key's entry, whose hash is h, or nil; slots are the
// shard's.
func (x *index) find(slots []slot, h uint64, key string) *memEntry {
	i, ok := x.heads[h]
	for ok {
		e := slots[i].e
		if e.key == key {
			return e
		}
		i, ok = e.sameHash-1, e.sameHash != 0
	}
	return nil
}

// add indexes e, in its slot, under h, its key's hash; the key is not in
// the index. slots are the shard's.
func (x *index) add(h uint64, e *memEntry) {
	if x.heads == nil {
		x.heads = make(map[uint64]int32)
	}
	e.sameHash = 0
	if i, ok := x.heads[h]; ok {
		e.sameHash = i + 1
	}
	x.heads[h] = e.slot
	x.n++
}

// remove takes e, indexed under h, out of the index; slots are the
// shard's.
func (x *index) remove(slots []slot, h uint64, e *memEntry) {
	x.n--
	i := x.heads[h]
	if i == e.slot {
		if e.sameHash == 0 {
			delete(x.heads, h)
		} else {
			x.heads[h] = e.sameHash - 1
		}
		return
	}
	prev := slots[i].e
	for prev.sameHash-1 != e.slot {
		prev = slots[prev.sameHash-1].e
	}
	prev.sameHash = e.sameHash
}
