package crdt

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// GCounter is a grow-only counter (riak_dt_gcounter): each replica counts
// its own increments, and the value is the sum. Its state is a version
// vector from replica ID to that replica's count, and Merge takes the
// larger count of each replica.
//
// The zero GCounter is 0 and ready to use. A GCounter is not safe for
// concurrent use.
type GCounter struct {
	counts vclock.VClock // counts >= 1, no times
}

// Inc adds n to the count of replica id and returns the delta: the counter
// holding only id's new count. Inc(id, 0) changes nothing and returns the
// empty counter. Inc panics, changing nothing, where [GCounter.TryInc]
// returns an error.
func (c *GCounter) Inc(id string, n uint64) GCounter { return must(c.TryInc(id, n)) }

// TryInc is [GCounter.Inc] that returns an error wrapping
// [vclock.ErrExhausted], leaving c unchanged, when id's count would exceed
// [vclock.MaxCounter]: an n from a client, or a count a peer forged.
func (c *GCounter) TryInc(id string, n uint64) (GCounter, error) {
	if n == 0 {
		return GCounter{}, nil
	}
	next, err := vclock.AddCounter(c.counts.Get(id), n)
	if err != nil {
		return GCounter{}, fmt.Errorf("crdt: count of %s: %w", strconv.Quote(id), err)
	}
	d := vclock.Dot{ID: id, Counter: next}
	c.counts.Add(d)
	var delta GCounter
	delta.counts.Add(d)
	return delta, nil
}

// Value returns the sum of all replicas' counts, modulo 2^64.
func (c GCounter) Value() uint64 {
	var sum uint64
	for _, n := range c.counts.All() {
		sum += n
	}
	return sum
}

// Count returns the count of replica id alone.
func (c GCounter) Count(id string) uint64 { return c.counts.Get(id) }

// Merge sets c to the join of c and o: each replica's larger count.
func (c *GCounter) Merge(o GCounter) { c.counts.Merge(o.counts) }

// Clone returns an independent copy of c.
func (c GCounter) Clone() GCounter { return GCounter{counts: c.counts.Clone()} }

// ModifiedBy returns the IDs of the replicas that incremented c, sorted.
func (c GCounter) ModifiedBy() []string {
	var ids []string
	for id := range c.counts.All() {
		ids = append(ids, id)
	}
	return ids
}

// NeedPruningFrom reports whether c has a count of removed.
func (c GCounter) NeedPruningFrom(removed string) bool { return c.counts.Get(removed) > 0 }

// Prune folds the count of removed into the count of into, keeping the
// value; see [RemovedNodePruning] for when this is safe. It panics,
// changing nothing, where [GCounter.TryPrune] returns an error, and if
// removed == into.
func (c *GCounter) Prune(removed, into string) { must(struct{}{}, c.TryPrune(removed, into)) }

// TryPrune is [GCounter.Prune] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when into's count would exceed
// [vclock.MaxCounter]. It panics if removed == into.
func (c *GCounter) TryPrune(removed, into string) error {
	if err := c.checkPrune(removed, into); err != nil {
		return err
	}
	if n := c.counts.Get(removed); n > 0 {
		must(c.TryInc(into, n)) // checked above
		c.counts.Delete(removed)
	}
	return nil
}

// checkPrune reports whether Prune(removed, into) would fail, changing
// nothing.
func (c *GCounter) checkPrune(removed, into string) error {
	if removed == into {
		panic("crdt: Prune into the removed replica " + strconv.Quote(removed))
	}
	if _, err := vclock.AddCounter(c.counts.Get(into), c.counts.Get(removed)); err != nil {
		return fmt.Errorf("crdt: prune %s into %s: %w", strconv.Quote(removed), strconv.Quote(into), err)
	}
	return nil
}

// PruningCleanup drops the count of removed without folding it anywhere:
// what a replica applies to its own and to every incoming state once the
// count was folded elsewhere.
func (c *GCounter) PruningCleanup(removed string) { c.counts.Delete(removed) }

// EncodeMsgpack writes c as [[id, count]...], IDs in increasing order.
func (c GCounter) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.Encode(c.counts) }

// DecodeMsgpack replaces c with the counter written by
// [GCounter.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error c is
// unchanged.
func (c *GCounter) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "GCounter", func(d *decoder) (err error) {
		v, err := d.clock()
		if err == nil {
			c.counts = v
		}
		return err
	})
}

// PNCounter is a counter that goes up and down (riak_dt_pncounter): a
// GCounter of increments and one of decrements.
//
// The zero PNCounter is 0 and ready to use. A PNCounter is not safe for
// concurrent use.
type PNCounter struct {
	p, n GCounter
}

// Inc adds n on replica id and returns the delta; see [GCounter.Inc].
func (c *PNCounter) Inc(id string, n uint64) PNCounter { return must(c.TryInc(id, n)) }

// TryInc is [PNCounter.Inc] that returns an error; see [GCounter.TryInc].
func (c *PNCounter) TryInc(id string, n uint64) (PNCounter, error) {
	d, err := c.p.TryInc(id, n)
	return PNCounter{p: d}, err
}

// Dec subtracts n on replica id and returns the delta; see [GCounter.Inc].
func (c *PNCounter) Dec(id string, n uint64) PNCounter { return must(c.TryDec(id, n)) }

// TryDec is [PNCounter.Dec] that returns an error; see [GCounter.TryInc].
func (c *PNCounter) TryDec(id string, n uint64) (PNCounter, error) {
	d, err := c.n.TryInc(id, n)
	return PNCounter{n: d}, err
}

// Value returns the increments minus the decrements, modulo 2^64 as an
// int64: exact while the true value fits in an int64.
func (c PNCounter) Value() int64 { return int64(c.p.Value() - c.n.Value()) }

// Merge sets c to the join of c and o.
func (c *PNCounter) Merge(o PNCounter) {
	c.p.Merge(o.p)
	c.n.Merge(o.n)
}

// Clone returns an independent copy of c.
func (c PNCounter) Clone() PNCounter { return PNCounter{p: c.p.Clone(), n: c.n.Clone()} }

// ModifiedBy returns the IDs of the replicas that changed c, sorted.
func (c PNCounter) ModifiedBy() []string {
	var all GCounter
	all.Merge(c.p)
	all.Merge(c.n)
	return all.ModifiedBy()
}

// NeedPruningFrom reports whether c has counts of removed.
func (c PNCounter) NeedPruningFrom(removed string) bool {
	return c.p.NeedPruningFrom(removed) || c.n.NeedPruningFrom(removed)
}

// Prune folds the counts of removed into into's; see [GCounter.Prune].
// It folds both or, panicking, neither.
func (c *PNCounter) Prune(removed, into string) { must(struct{}{}, c.TryPrune(removed, into)) }

// TryPrune is [PNCounter.Prune] that returns an error wrapping
// [vclock.ErrExhausted] when either of into's counts would exceed
// [vclock.MaxCounter]; then it changes neither.
func (c *PNCounter) TryPrune(removed, into string) error {
	if err := errors.Join(c.p.checkPrune(removed, into), c.n.checkPrune(removed, into)); err != nil {
		return err
	}
	must(struct{}{}, c.p.TryPrune(removed, into)) // checked above
	must(struct{}{}, c.n.TryPrune(removed, into))
	return nil
}

// PruningCleanup drops the counts of removed; see
// [GCounter.PruningCleanup].
func (c *PNCounter) PruningCleanup(removed string) {
	c.p.PruningCleanup(removed)
	c.n.PruningCleanup(removed)
}

// EncodeMsgpack writes c as [increments, decrements], each as a GCounter.
func (c PNCounter) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := c.p.EncodeMsgpack(enc); err != nil {
		return err
	}
	return c.n.EncodeMsgpack(enc)
}

// DecodeMsgpack replaces c with the counter written by
// [PNCounter.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error c is
// unchanged.
func (c *PNCounter) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "PNCounter", func(d *decoder) error {
		if err := d.tuple(2); err != nil {
			return err
		}
		p, err := d.clock()
		if err != nil {
			return err
		}
		n, err := d.clock()
		if err != nil {
			return err
		}
		c.p.counts, c.n.counts = p, n
		return nil
	})
}
