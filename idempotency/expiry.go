package idempotency

// A shard orders its records by deadline in a binary min-heap of slots.
// Every record the shard holds has a slot; the heap has one item per
// record, holding the record's due time and slot, and each slot knows
// where its item is. A deadline thus changes in place, and a record
// leaves the heap when it leaves the index, both in O(log n), and the heap
// never holds more items than the shard holds records. Items and
// positions hold no pointer, so moving them costs the garbage collector
// nothing: the slots alone point to entries.

// expiryItem is a record's place in its shard's heap.
type expiryItem struct {
	due  int64 // the record's deadline on the store's timeline: the heap's order
	slot int32
}

// slot holds a shard's entry: a record, or, while the slot is free, an
// entry kept for reuse (see memShard.reuse), or none.
type slot struct {
	e    *memEntry
	at   int32 // while the slot holds a record: its item's index in the heap
	next int32 // while free: the next free slot plus one; 0 ends the list
}

// queue adds e's item to the heap, at e.due; sh.mu is held.
func (sh *memShard) queue(e *memEntry) {
	sh.q = append(sh.q, expiryItem{e.due, e.slot})
	k := len(sh.q) - 1
	sh.slots[e.slot].at = int32(k)
	sh.up(k)
}

// requeue moves e's item to e.due, which changed; sh.mu is held.
func (sh *memShard) requeue(e *memEntry) {
	k := int(sh.slots[e.slot].at)
	sh.q[k].due = e.due
	if !sh.up(k) {
		sh.down(k)
	}
}

// unqueue takes e's item out of the heap; sh.mu is held.
func (sh *memShard) unqueue(e *memEntry) {
	k, last := int(sh.slots[e.slot].at), len(sh.q)-1
	if k != last {
		sh.swap(k, last)
	}
	sh.q = sh.q[:last]
	if k != last && !sh.up(k) {
		sh.down(k)
	}
}

// up moves the item at k towards the root while it is due before its
// parent, and reports whether it moved.
func (sh *memShard) up(k int) bool {
	moved := false
	for k > 0 {
		parent := (k - 1) / 2
		if sh.q[k].due >= sh.q[parent].due {
			break
		}
		sh.swap(k, parent)
		k, moved = parent, true
	}
	return moved
}

// down moves the item at k towards the leaves while a child is due before
// it.
func (sh *memShard) down(k int) {
	for {
		child := 2*k + 1
		if child >= len(sh.q) {
			return
		}
		if r := child + 1; r < len(sh.q) && sh.q[r].due < sh.q[child].due {
			child = r
		}
		if sh.q[child].due >= sh.q[k].due {
			return
		}
		sh.swap(k, child)
		k = child
	}
}

func (sh *memShard) swap(a, b int) {
	q := sh.q
	q[a], q[b] = q[b], q[a]
	sh.slots[q[a].slot].at = int32(a)
	sh.slots[q[b].slot].at = int32(b)
}

// maxFree bounds the entries a shard keeps for reuse.
const maxFree = 64

// reuse returns an entry, in a slot of its own and not yet in the heap,
// for a new claim: in progress, with no bytes and no flag set. It is
// one that release kept if there is one; sh.mu is held.
func (sh *memShard) reuse() *memEntry {
	if sh.free == 0 {
		e := &memEntry{slot: int32(len(sh.slots))}
		sh.slots = append(sh.slots, slot{e: e})
		return e
	}
	i := sh.free - 1
	sl := &sh.slots[i]
	sh.free, sl.next = sl.next, 0
	e := sl.e
	if e == nil {
		e = &memEntry{slot: i}
		sl.e = e
		return e
	}
	sh.nfree--
	e.outAt, e.done, e.gone, e.lent, e.finished = 0, false, false, false, false
	return e
}

// release frees e's slot, e having left the shard's index and heap; sh.mu
// is held. An entry that its claimant finished (completeAt) and whose
// bytes were never lent out is referred to by nothing outside the store:
// up to maxFree of them are kept in their slots for reuse, without what
// they refer to. Every other entry is left to the garbage collector.
func (sh *memShard) release(e *memEntry) {
	sl := &sh.slots[e.slot]
	if e.finished && !e.lent && sh.nfree < maxFree {
		e.key, e.response = "", nil
		if len(e.fingerprint) > len(e.buf) { // not in its own buffer
			e.fingerprint = nil
		}
		sh.nfree++
	} else {
		sl.e = nil
	}
	sl.next, sh.free = sh.free, e.slot+1
}
