package idempotency

import "math/bits"

// A shard finds its records by key in an index of its own: an
// open-addressing hash table with linear probing, whose cells hold a
// key's hash and its record's slot. The hash is the one that chose the
// shard (the store's seeded maphash, so that nobody outside the process
// can make keys collide), computed once per call; the table is searched
// from the cell that the hash's top bits name, and compares a key only
// where the whole hash matches. Cells hold no pointer. The table is at
// most three quarters full, doubles when it would be more and, like a Go
// map, never shrinks; a removal shifts the cells after it back, so no
// tombstone is left.

// cell is a place in a shard's index.
type cell struct {
	hash uint64 // the key's hash with its lowest bit set; 0: empty
	slot int32
}

// index is a shard's table of cells.
type index struct {
	cells []cell // empty, or a power of two of them
	shift uint8  // 64 minus the number of bits that name a cell
	n     int    // the cells in use
}

// tag is h as a cell holds it: never 0.
func tag(h uint64) uint64 { return h | 1 }

// home returns the cell where the search for h starts.
func (x *index) home(h uint64) int { return int(h >> x.shift) }

// find returns key's entry, whose hash is h, or nil; slots are the
// shard's.
func (x *index) find(slots []slot, h uint64, key string) *memEntry {
	if x.n == 0 {
		return nil
	}
	mask, t := len(x.cells)-1, tag(h)
	for i := x.home(h); ; i = (i + 1) & mask {
		c := x.cells[i]
		if c.hash == 0 {
			return nil
		}
		if c.hash == t {
			if e := slots[c.slot].e; e.key == key {
				return e
			}
		}
	}
}

// add indexes the record in slot under h, its key's hash; the key is
// not in the index.
func (x *index) add(h uint64, slot int32) {
	if (x.n+1)*4 > len(x.cells)*3 {
		x.grow()
	}
	x.put(cell{tag(h), slot})
	x.n++
}

func (x *index) put(c cell) {
	mask := len(x.cells) - 1
	i := x.home(c.hash)
	for x.cells[i].hash != 0 {
		i = (i + 1) & mask
	}
	x.cells[i] = c
}

// grow doubles the table, from 8 cells, and places every cell again.
func (x *index) grow() {
	old := x.cells
	size := max(2*len(old), 8)
	x.cells = make([]cell, size)
	x.shift = uint8(64 - bits.TrailingZeros(uint(size)))
	for _, c := range old {
		if c.hash != 0 {
			x.put(c)
		}
	}
}

// remove takes the record in slot, indexed under h, out of the index,
// and moves back each cell after it that its search would otherwise no
// longer reach.
func (x *index) remove(h uint64, slot int32) {
	mask, t := len(x.cells)-1, tag(h)
	i := x.home(h)
	for x.cells[i].hash != t || x.cells[i].slot != slot {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; x.cells[j].hash != 0; j = (j + 1) & mask {
		// The cell at j may fill the hole at i if its search starts
		// at or before i, going round from j's home: not strictly
		// between i and j.
		if k := x.home(x.cells[j].hash); (j-k)&mask >= (j-i)&mask {
			x.cells[i] = x.cells[j]
			i = j
		}
	}
	x.cells[i] = cell{}
	x.n--
}
