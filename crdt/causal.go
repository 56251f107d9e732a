package crdt

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/distkit/distkit/vclock"
)

// This file is the causal machinery shared by ORSet, MVRegister, EWFlag
// and ORMap, after Almeida, Shoker and Baquero, "Delta state replicated
// data types" (2018), section 4: a causal CRDT's state is a dot store (what
// is live, each piece tagged with the dot of the write that made it) and a
// causal context (every dot the replica has seen). A dot that is in the
// context but not in the store was removed; the join keeps a dot when both
// sides hold it or when the side lacking it has not seen it.

// compareDots orders dots by ID, then counter.
func compareDots(a, b vclock.Dot) int {
	if c := strings.Compare(a.ID, b.ID); c != 0 {
		return c
	}
	return cmp.Compare(a.Counter, b.Counter)
}

// dotContext is a causal context: a set of dots, kept compact as a version
// vector (for each ID, every dot from 1 to its counter) plus a dot cloud
// (the dots beyond a gap). Causal delivery keeps the cloud empty.
//
// Invariant: cloud is sorted by compareDots, has no duplicates, and every
// dot d in it has d.Counter > vv.Get(d.ID)+1, so equal sets of dots have
// equal representations. vv records no times.
//
// A read-only context (the context of a value handed out by ORMap.Get)
// refuses to draw dots: the map holds dots such a value does not know of.
type dotContext struct {
	vv       vclock.VClock
	cloud    []vclock.Dot
	readOnly bool
}

// contextOf returns the context holding exactly ds, taking ownership of
// the slice.
func contextOf(ds []vclock.Dot) dotContext {
	var c dotContext
	c.cloud = ds
	slices.SortFunc(c.cloud, compareDots)
	c.cloud = slices.CompactFunc(c.cloud, func(a, b vclock.Dot) bool { return a == b })
	c.compact()
	return c
}

// contains reports whether d is in the context.
func (c *dotContext) contains(d vclock.Dot) bool {
	if c.vv.Contains(d) {
		return true
	}
	_, ok := slices.BinarySearchFunc(c.cloud, d, compareDots)
	return ok
}

// next adds and returns a new dot for id: one past the largest dot of id
// in the context. It returns an error wrapping vclock.ErrExhausted,
// changing nothing, if that dot's counter would pass vclock.MaxCounter.
//
// It panics if c is read-only: programmer misuse.
func (c *dotContext) next(id string) (vclock.Dot, error) {
	if c.readOnly {
		panic("crdt: a value read with ORMap.Get cannot draw dots: change it with ORMap.Update")
	}
	n := c.last(id)
	if _, err := vclock.AddCounter(n, 1); err != nil {
		return vclock.Dot{}, fmt.Errorf("crdt: dot of %s: %w", strconv.Quote(id), err)
	}
	d := vclock.Dot{ID: id, Counter: n + 1}
	if n == c.vv.Get(id) {
		c.vv.Add(d) // contiguous; the cloud holds no dot of id
	} else {
		i, _ := slices.BinarySearchFunc(c.cloud, d, compareDots)
		c.cloud = slices.Insert(c.cloud, i, d)
	}
	return d, nil
}

// last returns the largest counter of id's dots in the context, 0 if none.
func (c *dotContext) last(id string) uint64 {
	i, _ := slices.BinarySearchFunc(c.cloud, vclock.Dot{ID: id, Counter: math.MaxUint64}, compareDots)
	if i > 0 && c.cloud[i-1].ID == id {
		return c.cloud[i-1].Counter
	}
	return c.vv.Get(id)
}

// merge adds every dot of o. o may be c itself.
func (c *dotContext) merge(o *dotContext) {
	c.vv.Merge(o.vv)
	if len(o.cloud) > 0 {
		c.cloud = unionDots(c.cloud, o.cloud)
	}
	c.compact()
}

// unionDots returns the sorted union of two sorted dot lists in a new slice.
func unionDots(a, b []vclock.Dot) []vclock.Dot {
	out := make([]vclock.Dot, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		switch c := compareDots(a[i], b[j]); {
		case c < 0:
			out = append(out, a[i])
			i++
		case c > 0:
			out = append(out, b[j])
			j++
		default:
			out = append(out, a[i])
			i++
			j++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// compact moves the cloud's dots that extend the version vector into it
// and drops those it already covers, restoring the invariant.
func (c *dotContext) compact() {
	keep := c.cloud[:0]
	for _, d := range c.cloud {
		switch n := c.vv.Get(d.ID); {
		case d.Counter == n+1:
			c.vv.Add(d)
		case d.Counter > n+1:
			keep = append(keep, d)
		}
	}
	clear(c.cloud[len(keep):])
	c.cloud = keep
	if len(keep) == 0 {
		c.cloud = nil // canonical, and a delta's dots do not linger
	}
}

// clone returns an independent copy.
func (c *dotContext) clone() dotContext {
	return dotContext{vv: c.vv.Clone(), cloud: slices.Clone(c.cloud), readOnly: c.readOnly}
}

// enumerate returns the dots of the context if there are at most limit.
func (c *dotContext) enumerate(limit int) ([]vclock.Dot, bool) {
	n := uint64(len(c.cloud))
	for _, k := range c.vv.All() {
		if k > uint64(limit) || n+k > uint64(limit) {
			return nil, false
		}
		n += k
	}
	if n > uint64(limit) {
		return nil, false
	}
	out := make([]vclock.Dot, 0, n)
	for id, k := range c.vv.All() {
		for i := range k {
			out = append(out, vclock.Dot{ID: id, Counter: i + 1})
		}
	}
	return append(out, c.cloud...), true
}

// deltaDots returns the dots of a delta's context when the delta, its
// keys and those dots, is much smaller than a state of n keys: then
// merging it through an index of the state's dots is cheaper than the
// full join.
func deltaDots(n, keys int, ctx *dotContext) ([]vclock.Dot, bool) {
	if n /= 8; keys > n {
		return nil, false
	}
	return ctx.enumerate(n)
}

// has reports whether the context holds any dot of id.
func (c *dotContext) has(id string) bool {
	if c.vv.Get(id) > 0 {
		return true
	}
	i, _ := slices.BinarySearchFunc(c.cloud, vclock.Dot{ID: id}, compareDots)
	return i < len(c.cloud) && c.cloud[i].ID == id
}

// drop removes every dot of id.
func (c *dotContext) drop(id string) {
	c.vv.Delete(id)
	c.cloud = slices.DeleteFunc(c.cloud, func(d vclock.Dot) bool { return d.ID == id })
}

// ids returns the IDs with a dot in the context, sorted.
func (c *dotContext) ids() []string {
	var out []string
	for id := range c.vv.All() {
		out = append(out, id)
	}
	for _, d := range c.cloud {
		out = append(out, d.ID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// dotStore is a dot store of the delta-state paper: a set of dots with
// optional payload, closed under join given the two sides' contexts.
// Stores are values; a store's dot lists are never modified in place once
// built, so stores may share them, but maps are owned by one store.
type dotStore[S any] interface {
	// join returns the join of (s, sc) and (o, oc)'s stores. It may reuse
	// s's storage (s is invalid afterwards) but never retains o's mutable
	// storage. o may be s itself.
	join(sc *dotContext, o S, oc *dotContext) S
	// empty reports whether the store holds no dot (the bottom element).
	empty() bool
	// dots yields every dot in the store.
	dots(yield func(vclock.Dot) bool)
	// mapDots returns the store with each dot d replaced by f(d), or
	// dropped when f returns false; it may reuse s's storage.
	mapDots(f func(vclock.Dot) (vclock.Dot, bool)) S
	// clone returns a store that shares no mutable storage with s.
	clone() S
	encodeStore(enc *encoder) error
	decodeStore(dec *decoder) (S, error)
}

// causal is a causal CRDT: a dot store and the context of every dot the
// replica has seen. Invariant: every dot of the store is in the context,
// and no dot appears twice in the store.
type causal[S dotStore[S]] struct {
	store S
	ctx   dotContext
}

// merge joins o into c. o may share storage with c.
func (c *causal[S]) merge(o *causal[S]) {
	c.store = c.store.join(&c.ctx, o.store, &o.ctx)
	c.ctx.merge(&o.ctx)
}

// live reports whether the store holds a dot: as a map's value, whether
// its key is present.
func (c causal[S]) live() bool { return !c.store.empty() }

// countIDs yields nothing: a causal type's replicas are those of its dots.
func (causal[S]) countIDs(func(string) bool) bool { return true }

// copyState returns an independent copy of c.
func (c *causal[S]) copyState() causal[S] {
	return causal[S]{store: c.store.clone(), ctx: c.ctx.clone()}
}

// ModifiedBy returns the IDs of the replicas whose dots the state has
// seen, sorted.
func (c *causal[S]) ModifiedBy() []string { return c.ctx.ids() }

// NeedPruningFrom reports whether the state holds any dot of removed.
func (c *causal[S]) NeedPruningFrom(removed string) bool { return c.ctx.has(removed) }

// Prune gives every live dot of the replica removed a new dot of into, so
// what removed wrote stays, and forgets removed's dots; see
// [RemovedNodePruning] for when this is safe. It panics, changing
// nothing, where TryPrune returns an error, and if removed == into.
func (c *causal[S]) Prune(removed, into string) { must(struct{}{}, c.TryPrune(removed, into)) }

// TryPrune is Prune that returns an error wrapping vclock.ErrExhausted,
// changing nothing, when into has too few dots left to take over removed's
// live ones. It panics if removed == into.
func (c *causal[S]) TryPrune(removed, into string) error {
	if removed == into {
		panic("crdt: Prune into the removed replica " + strconv.Quote(removed))
	}
	live := uint64(0)
	for d := range c.store.dots {
		if d.ID == removed {
			live++
		}
	}
	if _, err := vclock.AddCounter(c.ctx.last(into), live); err != nil {
		return fmt.Errorf("crdt: prune %s into %s: %w", strconv.Quote(removed), strconv.Quote(into), err)
	}
	c.store = c.store.mapDots(func(d vclock.Dot) (vclock.Dot, bool) {
		if d.ID != removed {
			return d, true
		}
		return must(c.ctx.next(into)), true // checked above
	})
	c.ctx.drop(removed)
	return nil
}

// PruningCleanup forgets every dot of removed, live or not: what a replica
// applies to its own and to every incoming state once another replica
// pruned removed.
func (c *causal[S]) PruningCleanup(removed string) {
	c.store = c.store.mapDots(func(d vclock.Dot) (vclock.Dot, bool) { return d, d.ID != removed })
	c.ctx.drop(removed)
}

// write replaces the store old of one element with a single new dot of id
// carrying v. It returns the new store and the delta's context: the new dot
// and the dots it supersedes. It returns an error wrapping
// vclock.ErrExhausted, changing nothing, when id has no dot left.
func write[T any](ctx *dotContext, old dotFun[T], id string, v T) (dotFun[T], dotContext, error) {
	d, err := ctx.next(id)
	if err != nil {
		return nil, dotContext{}, err
	}
	seen := make([]vclock.Dot, 0, len(old)+1)
	for _, e := range old {
		seen = append(seen, e.dot)
	}
	return dotFun[T]{{dot: d, v: v}}, contextOf(append(seen, d)), nil
}

// must returns x, or panics with err's message: how a mutator whose
// signature has no error reports what its Try variant returns.
func must[X any](x X, err error) X {
	if err != nil {
		panic(err.Error())
	}
	return x
}

// collect returns the dots of a store.
func collect(dots func(yield func(vclock.Dot) bool)) []vclock.Dot {
	var out []vclock.Dot
	for d := range dots {
		out = append(out, d)
	}
	return out
}
