package idempotency

import "math/bits"

// A shard finds its records by key in an index of its own: 32 hash
// tables with open addressing and linear probing, whose cells hold a
// key's hash and its record's slot. The hash is the one that chose the
// shard (the store's seeded maphash, so that nobody outside the process
// can make keys collide), computed once per call, where a Go map would
// hash the key again for every lookup, insert and delete. Bits 5 to 9 of
// the hash choose the table (bits 0 to 4 chose the shard); a table is
// searched from the cell that the hash's top bits name, and compares a
// key only where the whole hash matches. Cells hold no pointer. A table
// is at most three quarters full and doubles when it would be more,
// placing its cells again under the shard's lock: one table of 32 at a
// time, so that a shard of 400,000 records pauses for a thirty-second of
// what one table would take. Like a Go map, a table never shrinks; a
// removal shifts the cells after it back, so no tombstone is left.

// indexTables is the number of tables in a shard's index.
const indexTables = 32

// index is a shard's index by key; its tables are made on first use.
type index struct {
	tables *[indexTables]table
	n      int // the records indexed
}

// table is one of an index's hash tables.
type table struct {
	cells []cell // empty, or a power of two of them
	shift uint8  // 64 minus the number of bits that name a cell
	n     int    // the cells in use
}

// cell is a place in a table.
type cell struct {
	hash uint64 // the key's hash with its lowest bit set; 0: empty
	slot int32
}

// tag is h as a cell holds it: never 0.
func tag(h uint64) uint64 { return h | 1 }

// table returns the table of h, making the tables if need be.
func (x *index) table(h uint64) *table {
	if x.tables == nil {
		x.tables = new([indexTables]table)
	}
	return &x.tables[h>>5%indexTables]
}

// find returns key's entry, whose hash is h, or nil; slots are the
// shard's.
func (x *index) find(slots []slot, h uint64, key string) *memEntry {
	if x.n == 0 {
		return nil
	}
	t := x.table(h)
	if t.n == 0 {
		return nil
	}
	mask, hash := len(t.cells)-1, tag(h)
	for i := t.home(h); ; i = (i + 1) & mask {
		c := t.cells[i]
		if c.hash == 0 {
			return nil
		}
		if c.hash == hash {
			if e := slots[c.slot].e; e.key == key {
				return e
			}
		}
	}
}

// add indexes the record in slot under h, its key's hash; the key is
// not in the index.
func (x *index) add(h uint64, slot int32) {
	t := x.table(h)
	if (t.n+1)*4 > len(t.cells)*3 {
		t.grow()
	}
	t.put(cell{tag(h), slot})
	t.n++
	x.n++
}

// remove takes the record in slot, indexed under h, out of the index.
func (x *index) remove(h uint64, slot int32) {
	x.table(h).remove(h, slot)
	x.n--
}

// home returns the cell where the search for h starts.
func (t *table) home(h uint64) int { return int(h >> t.shift) }

func (t *table) put(c cell) {
	mask := len(t.cells) - 1
	i := t.home(c.hash)
	for t.cells[i].hash != 0 {
		i = (i + 1) & mask
	}
	t.cells[i] = c
}

// grow doubles the table, from 8 cells, and places every cell again.
func (t *table) grow() {
	old := t.cells
	size := max(2*len(old), 8)
	t.cells = make([]cell, size)
	t.shift = uint8(64 - bits.TrailingZeros(uint(size)))
	for _, c := range old {
		if c.hash != 0 {
			t.put(c)
		}
	}
}

// remove takes the cell of slot, under h, out of the table, and moves
// back each cell after it that its search would otherwise no longer
// reach.
func (t *table) remove(h uint64, slot int32) {
	mask, hash := len(t.cells)-1, tag(h)
	i := t.home(h)
	for t.cells[i].hash != hash || t.cells[i].slot != slot {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; t.cells[j].hash != 0; j = (j + 1) & mask {
		// The cell at j may fill the hole at i if its search starts
		// at or before i, going round from j's home: not strictly
		// between i and j.
		if k := t.home(t.cells[j].hash); (j-k)&mask >= (j-i)&mask {
			t.cells[i] = t.cells[j]
			i = j
		}
	}
	t.cells[i] = cell{}
	t.n--
}
