package crdt

import (
	"slices"
	"sort"

	"github.com/distkit/distkit/vclock"
)

// maxCounter is the largest element counter a decoder accepts, the bound
// shared by every counter from the wire: they stay below 2^63, so that no
// remote input can make a local insert, whose counters may go on to
// 2^64-1, overflow.
const maxCounter = vclock.MaxCounter

// spanIndex holds the spans of one replica in the tree, by counter, in
// blocks of at most indexBlock spans: a two-level sorted array, so that
// finding a counter is two binary searches and adding a span moves at most
// a block.
type spanIndex[T any] struct {
	blocks [][]*span[T]
}

const indexBlock = 128

// block returns the block that holds or would hold counter c.
func (x *spanIndex[T]) block(c uint64) int {
	i := sort.Search(len(x.blocks), func(i int) bool { return x.blocks[i][0].id.seq > c })
	return max(i-1, 0)
}

// upTo returns the number of spans in blk that start at or before c.
func upTo[T any](blk []*span[T], c uint64) int {
	return sort.Search(len(blk), func(i int) bool { return blk[i].id.seq > c })
}

// find returns the span holding counter c, or nil.
func (x *spanIndex[T]) find(c uint64) *span[T] {
	if len(x.blocks) == 0 {
		return nil
	}
	blk := x.blocks[x.block(c)]
	k := upTo(blk, c)
	if k == 0 || blk[k-1].end() <= c {
		return nil
	}
	return blk[k-1]
}

func (x *spanIndex[T]) insert(sp *span[T]) {
	if len(x.blocks) == 0 {
		x.blocks = [][]*span[T]{{sp}}
		return
	}
	b := x.block(sp.id.seq)
	blk := x.blocks[b]
	blk = slices.Insert(blk, upTo(blk, sp.id.seq), sp)
	if len(blk) > indexBlock {
		x.blocks = slices.Insert(x.blocks, b+1, upperHalf(&blk))
	}
	x.blocks[b] = blk
}

func (x *spanIndex[T]) remove(sp *span[T]) {
	b := x.block(sp.id.seq)
	blk := x.blocks[b]
	k := upTo(blk, sp.id.seq) - 1
	if k < 0 || blk[k] != sp {
		panic("crdt: span missing from the index")
	}
	blk = slices.Delete(blk, k, k+1)
	if len(blk) == 0 {
		x.blocks = slices.Delete(x.blocks, b, b+1)
		return
	}
	x.blocks[b] = blk
}

// overlapping returns the spans holding counters in [lo, hi), in order.
func (x *spanIndex[T]) overlapping(lo, hi uint64) []*span[T] {
	var out []*span[T]
	if x == nil || len(x.blocks) == 0 {
		return nil
	}
	b := x.block(lo)
	k := max(upTo(x.blocks[b], lo)-1, 0)
	for ; b < len(x.blocks); b, k = b+1, 0 {
		for _, sp := range x.blocks[b][k:] {
			if sp.id.seq >= hi {
				return out
			}
			if sp.end() > lo {
				out = append(out, sp)
			}
		}
	}
	return out
}

// idRange is the counters [lo, hi) of one replica.
type idRange struct{ lo, hi uint64 }

// idRanges is a set of element IDs: by replica, sorted ranges that neither
// overlap nor touch. The zero value is empty.
type idRanges map[string][]idRange

func (d *idRanges) add(replica string, lo, hi uint64) {
	if lo >= hi {
		return
	}
	if *d == nil {
		*d = make(idRanges)
	}
	rs := (*d)[replica]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].hi >= lo })
	j := sort.Search(len(rs), func(i int) bool { return rs[i].lo > hi })
	if i < j {
		lo, hi = min(lo, rs[i].lo), max(hi, rs[j-1].hi)
	}
	(*d)[replica] = slices.Replace(rs, i, j, idRange{lo, hi})
}

// overlap returns the IDs of replica in [lo, hi) that d holds, and the
// bounds of the ranges of d that hold them.
func (d idRanges) overlap(replica string, lo, hi uint64) (held []idRange, i, j int) {
	rs := d[replica]
	i = sort.Search(len(rs), func(i int) bool { return rs[i].hi > lo })
	j = sort.Search(len(rs), func(i int) bool { return rs[i].lo >= hi })
	for _, r := range rs[i:max(i, j)] {
		held = append(held, idRange{max(r.lo, lo), min(r.hi, hi)})
	}
	return held, i, j
}

// take removes the IDs in [lo, hi) of replica and returns those it held.
func (d idRanges) take(replica string, lo, hi uint64) []idRange {
	held, i, j := d.overlap(replica, lo, hi)
	if len(held) == 0 {
		return nil
	}
	rs := d[replica]
	var keep []idRange
	if rs[i].lo < lo {
		keep = append(keep, idRange{rs[i].lo, lo})
	}
	if rs[j-1].hi > hi {
		keep = append(keep, idRange{hi, rs[j-1].hi})
	}
	rs = slices.Replace(rs, i, j, keep...)
	if len(rs) == 0 {
		delete(d, replica)
	} else {
		d[replica] = rs
	}
	return held
}

func (d idRanges) clone() idRanges {
	if len(d) == 0 {
		return nil
	}
	c := make(idRanges, len(d))
	for r, rs := range d {
		c[r] = slices.Clone(rs)
	}
	return c
}
