package crdt

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// ResetCounter is a counter that goes up and down and can be reset with
// observed-remove semantics: Reset takes away exactly the increments and
// decrements the resetting replica has seen, and those it has not seen
// (concurrent ones) survive. It is the counter an [ORMap] holds (riak_dt's
// embedded counter, riak_dt_emcntr), where removing a key resets its
// counter; riak_dt_emcntr keeps a concurrent update's whole count after a
// remove, this counter only the concurrent update.
//
// Each replica's increments (and decrements) are a sequence, and any
// replica has seen a prefix of it, so a reset is described by how much of
// each replica's count it saw. The state keeps, per replica, its count
// and the part of it resets have seen; both only grow, and Merge takes
// the larger of each, so deltas need nothing from delivery. The value is
// the sum of the counts minus the reset parts. The state grows with the
// replicas that ever updated the counter, never with updates; a counter
// reset to zero keeps these numbers (a tombstone), so that a concurrent
// update that arrives later still counts only what the reset did not see,
// until [ResetCounter.Compact] at a causally stable state discards it.
//
// The zero ResetCounter is 0 and ready to use. A ResetCounter is not safe
// for concurrent use.
type ResetCounter struct {
	counts []resetCount  // by increasing id; never all zero
	log    *ResetCounter // nil, or where mutators merge their deltas
}

// resetCount is one replica's entry: all its increments and decrements,
// and how much of each resets have seen (at most the count).
type resetCount struct {
	id                         string
	inc, incSeen, dec, decSeen uint64
}

// live reports whether the entry holds a count no reset has seen.
func (e resetCount) live() bool { return e.inc > e.incSeen || e.dec > e.decSeen }

// max returns the larger of each number of e and o.
func (e resetCount) max(o resetCount) resetCount {
	return resetCount{e.id, max(e.inc, o.inc), max(e.incSeen, o.incSeen), max(e.dec, o.dec), max(e.decSeen, o.decSeen)}
}

// Inc adds n on replica id and returns the delta: id's new counts.
// Inc(id, 0) changes nothing and returns the empty counter. Inc panics,
// changing nothing, where [ResetCounter.TryInc] returns an error.
func (c *ResetCounter) Inc(id string, n uint64) ResetCounter { return must(c.TryInc(id, n)) }

// TryInc is [ResetCounter.Inc] that returns an error wrapping
// [vclock.ErrExhausted], leaving c unchanged, when id's increments would
// exceed [vclock.MaxCounter]: an n from a client, or a count a peer forged.
func (c *ResetCounter) TryInc(id string, n uint64) (ResetCounter, error) { return c.add(id, n, false) }

// Dec subtracts n on replica id and returns the delta; see
// [ResetCounter.Inc].
func (c *ResetCounter) Dec(id string, n uint64) ResetCounter { return must(c.TryDec(id, n)) }

// TryDec is [ResetCounter.Dec] that returns an error; see
// [ResetCounter.TryInc].
func (c *ResetCounter) TryDec(id string, n uint64) (ResetCounter, error) { return c.add(id, n, true) }

// add adds n to id's increments, or decrements if dec.
func (c *ResetCounter) add(id string, n uint64, dec bool) (ResetCounter, error) {
	if n == 0 {
		return ResetCounter{}, nil
	}
	i, found := c.find(id)
	e := resetCount{id: id}
	if found {
		e = c.counts[i]
	}
	count := &e.inc
	if dec {
		count = &e.dec
	}
	next, err := vclock.AddCounter(*count, n)
	if err != nil {
		return ResetCounter{}, fmt.Errorf("crdt: count of %s: %w", strconv.Quote(id), err)
	}
	*count = next
	if found {
		c.counts[i] = e
	} else {
		c.counts = slices.Insert(c.counts, i, e)
	}
	// The delta is id's whole entry, reset parts included, so that it
	// counts the same on a replica that compacted the entry away.
	return c.record(ResetCounter{counts: []resetCount{e}}), nil
}

// find returns the index of id's entry, or where it belongs.
func (c *ResetCounter) find(id string) (int, bool) {
	return slices.BinarySearchFunc(c.counts, id, func(e resetCount, id string) int { return strings.Compare(e.id, id) })
}

// Reset resets c to zero for every increment and decrement it has seen
// and returns the delta: those counts, all seen. Merging it anywhere
// takes away exactly these; updates it does not cover remain. Reset
// needs no replica ID.
func (c *ResetCounter) Reset() ResetCounter {
	d, _ := c.reset()
	c.Merge(d)
	return c.record(d)
}

// record merges the delta d into c's log, if it has one, and returns d.
func (c *ResetCounter) record(d ResetCounter) ResetCounter {
	if c.log != nil {
		c.log.Merge(d)
	}
	return d
}

// Value returns the increments minus the decrements that no reset has
// seen, modulo 2^64 as an int64: exact while the true value fits in an
// int64.
func (c ResetCounter) Value() int64 {
	var v uint64
	for _, e := range c.counts {
		v += e.inc - e.incSeen - (e.dec - e.decSeen)
	}
	return int64(v)
}

// Merge sets c to the join of c and o: for each replica, the larger of
// each of its numbers.
func (c *ResetCounter) Merge(o ResetCounter) {
	if len(o.counts) == 0 {
		return
	}
	out := make([]resetCount, 0, len(c.counts)+len(o.counts))
	i, j := 0, 0
	for i < len(c.counts) && j < len(o.counts) {
		switch k := strings.Compare(c.counts[i].id, o.counts[j].id); {
		case k < 0:
			out = append(out, c.counts[i])
			i++
		case k > 0:
			out = append(out, o.counts[j])
			j++
		default:
			out = append(out, c.counts[i].max(o.counts[j]))
			i++
			j++
		}
	}
	out = append(out, c.counts[i:]...)
	c.counts = append(out, o.counts[j:]...)
}

// Clone returns an independent copy of c.
func (c ResetCounter) Clone() ResetCounter { return ResetCounter{counts: slices.Clone(c.counts)} }

// Compact discards the entries of replicas whose every increment and
// decrement a reset has taken away (tombstones), where stable holds them
// as they are (or more), and returns how many. The value is unchanged.
// A counter reset to zero and compacted holds nothing.
//
// Compact is safe, that is, replicas still converge to the same values,
// when stable is causally stable and replicas compact in step:
//  1. every replica has merged stable;
//  2. every state or delta this replica merges from now on was made after
//     its sender had merged stable;
//  3. every replica compacts with stable before it merges a state or
//     delta from a replica that has compacted with stable (a replica whose
//     entry was discarded counts from zero again, which a replica still
//     holding the entry would not see).
//
// All hold when replicas compact at a quiescent point: every delta sent
// has arrived, all have exchanged their states, stable is their common
// state, and each compacts before it updates or merges again. Compacting
// otherwise can bring back increments a reset took away, or lose new
// ones.
func (c *ResetCounter) Compact(stable ResetCounter) int {
	var n int
	*c, n = c.compact(stable)
	return n
}

// compact returns c without the dead entries stable covers, in new
// storage when any is dropped, and how many were dropped.
func (c ResetCounter) compact(stable ResetCounter) (ResetCounter, int) {
	covered := func(e resetCount) bool {
		if e.live() {
			return false
		}
		i, ok := stable.find(e.id)
		return ok && e.max(stable.counts[i]) == stable.counts[i]
	}
	n := 0
	for _, e := range c.counts {
		if covered(e) {
			n++
		}
	}
	if n == 0 {
		return c, 0
	}
	c.counts = slices.DeleteFunc(slices.Clone(c.counts), covered)
	if len(c.counts) == 0 {
		c.counts = nil
	}
	return c, n
}

// ModifiedBy returns the IDs of the replicas that changed c, sorted.
func (c *ResetCounter) ModifiedBy() []string {
	var ids []string
	c.countIDs(func(id string) bool { ids = append(ids, id); return true })
	return ids
}

// NeedPruningFrom reports whether c has counts of removed.
func (c *ResetCounter) NeedPruningFrom(removed string) bool {
	_, ok := c.find(removed)
	return ok
}

// Prune folds the counts of removed into into's, keeping the value; see
// [RemovedNodePruning] for when this is safe. It panics, changing
// nothing, where [ResetCounter.TryPrune] returns an error, and if
// removed == into.
func (c *ResetCounter) Prune(removed, into string) { must(struct{}{}, c.TryPrune(removed, into)) }

// TryPrune is [ResetCounter.Prune] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when one of into's counts
// would exceed [vclock.MaxCounter]. It panics if removed == into.
func (c *ResetCounter) TryPrune(removed, into string) error {
	if removed == into {
		panic("crdt: Prune into the removed replica " + strconv.Quote(removed))
	}
	p, err := c.pruneCounts(removed, into)
	if err == nil {
		*c = p
	}
	return err
}

// PruningCleanup drops the counts of removed; see
// [RemovedNodePruning.PruningCleanup].
func (c *ResetCounter) PruningCleanup(removed string) { *c = must(c.pruneCounts(removed, "")) }

// EncodeMsgpack writes c as [[id, increments, increments reset,
// decrements, decrements reset]...], IDs in increasing order.
func (c ResetCounter) EncodeMsgpack(enc *msgpack.Encoder) error { return c.encodeStore(enc) }

// DecodeMsgpack replaces c with the counter written by
// [ResetCounter.EncodeMsgpack]. Errors wrap [ErrMalformed] (also for a
// reset part larger than its count, or a replica with no count); on
// error c is unchanged.
func (c *ResetCounter) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "ResetCounter", func(d *decoder) error {
		v, err := c.decodeStore(d)
		if err == nil {
			*c = v
		}
		return err
	})
}

// The methods below make ResetCounter a value of an ORMap. It has no
// dots and ignores the map's context.

func (c ResetCounter) join(_ *dotContext, o ResetCounter, _ *dotContext) ResetCounter {
	c.Merge(o)
	return c
}
func (c ResetCounter) empty() bool                                              { return len(c.counts) == 0 }
func (c ResetCounter) dots(func(vclock.Dot) bool)                               {}
func (c ResetCounter) mapDots(func(vclock.Dot) (vclock.Dot, bool)) ResetCounter { return c }
func (c ResetCounter) clone() ResetCounter                                      { return c.Clone() }
func (c ResetCounter) context() dotContext                                      { return dotContext{} }
func (c ResetCounter) withContext(dotContext) ResetCounter                      { return c }
func (c ResetCounter) recordTo(log *ResetCounter) ResetCounter                  { c.log = log; return c }

func (c ResetCounter) live() bool {
	return slices.ContainsFunc(c.counts, resetCount.live)
}

func (c ResetCounter) countIDs(yield func(string) bool) bool {
	for _, e := range c.counts {
		if !yield(e.id) {
			return false
		}
	}
	return true
}

// reset returns the delta of Reset: the live entries, all seen.
func (c ResetCounter) reset() (ResetCounter, []vclock.Dot) {
	var d ResetCounter
	for _, e := range c.counts {
		if e.live() {
			d.counts = append(d.counts, resetCount{e.id, e.inc, e.inc, e.dec, e.dec})
		}
	}
	return d, nil
}

// pruneCounts returns c with removed's counts added to into's, or dropped
// if into is "", in new storage.
func (c ResetCounter) pruneCounts(removed, into string) (ResetCounter, error) {
	i, ok := c.find(removed)
	if !ok {
		return c, nil
	}
	r := c.counts[i]
	out := ResetCounter{counts: slices.Delete(slices.Clone(c.counts), i, i+1)}
	if into == "" {
		return out, nil
	}
	j, found := out.find(into)
	e := resetCount{id: into}
	if found {
		e = out.counts[j]
	}
	for _, p := range [...]struct {
		to *uint64
		n  uint64
	}{{&e.inc, r.inc}, {&e.incSeen, r.incSeen}, {&e.dec, r.dec}, {&e.decSeen, r.decSeen}} {
		sum, err := vclock.AddCounter(*p.to, p.n)
		if err != nil {
			return c, fmt.Errorf("crdt: prune %s into %s: %w", strconv.Quote(removed), strconv.Quote(into), err)
		}
		*p.to = sum
	}
	if found {
		out.counts[j] = e
	} else {
		out.counts = slices.Insert(out.counts, j, e)
	}
	return out, nil
}

func (c ResetCounter) encodeStore(enc *encoder) error {
	if err := enc.EncodeArrayLen(len(c.counts)); err != nil {
		return err
	}
	for _, e := range c.counts {
		if err := enc.EncodeArrayLen(5); err != nil {
			return err
		}
		if err := enc.EncodeString(e.id); err != nil {
			return err
		}
		for _, n := range [...]uint64{e.inc, e.incSeen, e.dec, e.decSeen} {
			if err := enc.EncodeUint(n); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c ResetCounter) decodeStore(d *decoder) (ResetCounter, error) {
	n, prealloc, err := d.arrayLen(7) // [id, 4 numbers] takes at least 7 bytes
	if err != nil || n == 0 {
		return ResetCounter{}, err
	}
	out := ResetCounter{counts: make([]resetCount, 0, prealloc)}
	for range n {
		if err := d.tuple(5); err != nil {
			return ResetCounter{}, err
		}
		var e resetCount
		if e.id, err = d.id(); err != nil {
			return ResetCounter{}, err
		}
		for _, p := range [...]*uint64{&e.inc, &e.incSeen, &e.dec, &e.decSeen} {
			if *p, err = wire.Uint(d.Decoder); err != nil {
				return ResetCounter{}, err
			}
			if err := vclock.CheckCounter(*p); err != nil {
				return ResetCounter{}, err
			}
		}
		switch k := len(out.counts); {
		case k > 0 && cmp.Compare(out.counts[k-1].id, e.id) >= 0:
			return ResetCounter{}, fmt.Errorf("replica %q after %q: not sorted or repeated", e.id, out.counts[k-1].id)
		case e.incSeen > e.inc || e.decSeen > e.dec:
			return ResetCounter{}, fmt.Errorf("replica %q: more reset than counted", e.id)
		case e.inc == 0 && e.dec == 0:
			return ResetCounter{}, fmt.Errorf("replica %q with no count", e.id)
		}
		out.counts = append(out.counts, e)
	}
	return out, nil
}
