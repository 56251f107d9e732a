package crdt

import (
	"cmp"
	"iter"
	"maps"
	"math"
	"slices"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// Nested is satisfied by the CRDTs of this package that an [ORMap] can
// hold: the causal ORSet, MVRegister, EWFlag, DWFlag and ORMap itself, and
// ResetCounter and LWWRegister, as value types
// (ORMap[string, ORSet[string]]). Its methods are unexported: a nested
// CRDT shares the map's causal context and reports its deltas to the
// map, which only this package's types know how to do.
type Nested[V any] interface {
	dotStore[V]
	context() dotContext
	withContext(c dotContext) V
	// recordTo returns the value whose mutators also merge each delta
	// they return into *log (nil: nowhere).
	recordTo(log *V) V
	// live reports whether the value holds an effect that no remove
	// has reset: whether its key is present.
	live() bool
	// reset returns the delta that resets the value for everything it
	// holds: a store (the value's tombstone, for the types that keep one)
	// and the dots it removes.
	reset() (V, []vclock.Dot)
	// countIDs yields the replicas with counts (not dots) in the value.
	countIDs(yield func(string) bool) bool
	// pruneCounts returns the value with removed's counts folded into
	// into's (dropped if into is ""), or an error wrapping
	// vclock.ErrExhausted if into's would pass vclock.MaxCounter.
	pruneCounts(removed, into string) (V, error)
	// compact returns the value without the tombstones stable holds as
	// they are, in new storage where it changes, and how many it dropped.
	compact(stable V) (V, int)
}

var (
	_ Nested[ORSet[string]]         = ORSet[string]{}
	_ Nested[MVRegister[string]]    = MVRegister[string]{}
	_ Nested[EWFlag]                = EWFlag{}
	_ Nested[DWFlag]                = DWFlag{}
	_ Nested[ResetCounter]          = ResetCounter{}
	_ Nested[LWWRegister[string]]   = LWWRegister[string]{}
	_ Nested[ORMap[string, EWFlag]] = ORMap[string, EWFlag]{}
	_ RemovedNodePruning            = (*ORMap[string, EWFlag])(nil)
)

// ORMap maps keys to nested CRDTs (ORSet, MVRegister, EWFlag, DWFlag,
// ResetCounter, LWWRegister or ORMap) with observed-remove semantics and
// riak_dt_map's reset-remove: the nested values share the map's causal
// context, an update of a key is an operation of the nested type, and
// removing a key resets its value for what the remover had observed. An
// update concurrent with the remove survives, with only its own effects:
// a nested set keeps the elements added concurrently, not the ones the
// remover saw; a counter keeps the increments the remover did not see; a
// register keeps a write newer than the newest the remover saw; a nested
// map is reset key by key, recursively.
//
// A key is present while its value holds an effect no remove has reset:
// an update that leaves the value empty (removing a nested set's last
// element, disabling a nested flag, resetting a counter) removes the key,
// exactly as Remove would. Counters and LWW registers have no dots, so a
// removed one stays in the state as a tombstone, its per-replica counts
// or its newest removed timestamp, which later merges need to tell seen
// from unseen effects (see [ResetCounter] and [LWWRegister]), until
// [ORMap.Compact] at a causally stable state discards it; the causal
// types leave nothing behind. A floating-point NaN cannot be a key.
// Deltas need causal delivery for causally consistent reads; see the
// package documentation.
//
// The zero ORMap is empty and ready to use. An ORMap is not safe for
// concurrent use.
type ORMap[K cmp.Ordered, V Nested[V]] struct {
	causal[dotMap[K, V]]
	log   *ORMap[K, V]     // nil, or where mutators merge their deltas
	byDot map[vclock.Dot]K // nil, or the key of every live dot
}

// Update applies f to the value of k (the zero V if k is absent) and
// returns the delta, which the map collects from the nested mutators f
// calls: f changes the value only through them (Add, Remove, Set, Inc,
// Enable, Disable, Reset, Update of the nested type), which then draw
// their dots from the map's context and report their deltas to the map;
// what they return can be ignored. f must not keep the pointer. Update
// panics if k is NaN; a nested mutator that panics leaves m in an
// unspecified state: where a replica's dots or counts may be exhausted by
// a forged counter, use [ORMap.TryUpdate].
//
//	var m crdt.ORMap[string, crdt.ORSet[string]]
//	delta := m.Update("cart", func(s *crdt.ORSet[string]) { s.Add("a", "apple") })
func (m *ORMap[K, V]) Update(k K, f func(v *V)) ORMap[K, V] {
	return must(m.update(k, false, func(v *V) error { f(v); return nil }))
}

// TryUpdate is [ORMap.Update] for an f that uses the nested types' Try
// mutators (TryAdd, TrySet, TryInc, TryEnable, TryUpdate) and returns
// their error: then TryUpdate returns it and m is unchanged. It costs a
// copy of the map's causal context and of k's value.
//
//	delta, err := m.TryUpdate("cart", func(s *crdt.ORSet[string]) error {
//		_, err := s.TryAdd("a", "apple")
//		return err
//	})
func (m *ORMap[K, V]) TryUpdate(k K, f func(v *V) error) (ORMap[K, V], error) {
	return m.update(k, true, f)
}

// update runs f on k's value and applies the result to m. With copy, f
// works on copies of the value and of the map's context, which its
// failure leaves behind; without, on m's own storage.
func (m *ORMap[K, V]) update(k K, copy bool, f func(v *V) error) (ORMap[K, V], error) {
	k = normKey(k)
	v, ctx := m.store[k], m.ctx
	if copy {
		v, ctx = v.clone(), ctx.clone()
	}
	// The value and the log of its deltas escape to f: one allocation.
	w := &struct{ v, log V }{}
	w.v = v.withContext(ctx).recordTo(&w.log)
	if err := f(&w.v); err != nil {
		return ORMap[K, V]{}, err
	}
	// A nested mutation only adds dots to the context; a value without
	// dots (a counter, a register) hands back none, and m keeps its own.
	if nc := w.v.context(); nc.vv.Len() > 0 || len(nc.cloud) > 0 {
		m.ctx = nc
	} else {
		m.ctx = ctx
	}
	m.set(k, w.v.withContext(dotContext{}).recordTo(nil))
	delta := ORMap[K, V]{causal: causal[dotMap[K, V]]{ctx: w.log.context()}}
	if !w.log.empty() {
		delta.store = dotMap[K, V]{k: w.log.withContext(dotContext{})}
	}
	m.index(k, &delta)
	m.record(delta)
	return delta, nil
}

// index keeps the index of live dots, if m has one, after the value of k
// changed by the delta d: the dots d has seen are no longer live, except
// those d holds, which are k's. It takes time in proportion to d.
func (m *ORMap[K, V]) index(k K, d *ORMap[K, V]) {
	if m.byDot == nil {
		return
	}
	seen, _ := d.ctx.enumerate(math.MaxInt)
	for _, dot := range seen {
		delete(m.byDot, dot)
	}
	for dot := range d.store[k].dots {
		m.byDot[dot] = k
	}
}

// set stores v under k, or deletes k if v is empty.
func (m *ORMap[K, V]) set(k K, v V) {
	switch {
	case v.empty():
		delete(m.store, k)
	case m.store == nil:
		m.store = dotMap[K, V]{k: v}
	default:
		m.store[k] = v
	}
}

// record merges a delta of m into its log, if it has one.
func (m *ORMap[K, V]) record(d ORMap[K, V]) {
	if m.log != nil {
		m.log.Merge(d)
	}
}

// Remove removes k and returns the delta: the reset of k's value for
// everything m holds of it, as a context of its dots and, for counters
// and LWW registers, their tombstones. Merging it resets k's value
// wherever it is for those effects; updates it does not cover (concurrent
// ones) remain. Removing an absent key changes nothing and returns the
// empty map. Remove needs no replica ID: it creates no dot.
func (m *ORMap[K, V]) Remove(k K) ORMap[K, V] { return m.remove(k, V.live, V.reset) }

// remove is Remove of the part of k's value that live tells present and
// reset resets.
func (m *ORMap[K, V]) remove(k K, live func(V) bool, reset func(V) (V, []vclock.Dot)) ORMap[K, V] {
	v, ok := m.store[k]
	if !ok || !live(v) {
		return ORMap[K, V]{}
	}
	rs, dots := reset(v)
	rc := contextOf(dots)
	m.set(k, v.join(&m.ctx, rs, &rc))
	delta := ORMap[K, V]{causal: causal[dotMap[K, V]]{ctx: rc}}
	if !rs.empty() {
		delta.store = dotMap[K, V]{k: rs}
	}
	m.index(k, &delta)
	m.record(delta)
	return delta
}

// Get returns a read-only copy of the value of k, and whether k is
// present. The copy reads like the value and merges like it, but its
// mutators that would draw a dot (Add, Set, Enable, Update...) panic: the
// map holds dots the copy does not know of. Change the value with
// [ORMap.Update].
func (m ORMap[K, V]) Get(k K) (V, bool) {
	v, ok := m.peek(k)
	if !ok {
		return v, false
	}
	return readOnly(v), true
}

// readOnly returns a copy of v whose context holds exactly its dots and
// refuses to draw new ones.
func readOnly[V Nested[V]](v V) V {
	v = v.clone()
	ctx := contextOf(collect(v.dots))
	ctx.readOnly = true
	return v.withContext(ctx)
}

// peek returns the value of k as m holds it, without a copy, and whether
// k is present: for reads inside the package that neither change nor keep
// the value.
func (m ORMap[K, V]) peek(k K) (V, bool) {
	v, ok := m.store[k]
	if !ok || !v.live() {
		var zero V
		return zero, false
	}
	return v, true
}

// Contains reports whether k is present.
func (m ORMap[K, V]) Contains(k K) bool {
	_, ok := m.peek(k)
	return ok
}

// Keys returns the present keys in increasing order.
func (m ORMap[K, V]) Keys() []K {
	ks := m.store.keys()
	return slices.DeleteFunc(ks, func(k K) bool { return !m.store[k].live() })
}

// All yields the present keys in increasing order with read-only copies
// of their values, as [ORMap.Get] returns them.
func (m ORMap[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, k := range m.Keys() {
			v, _ := m.Get(k)
			if !yield(k, v) {
				return
			}
		}
	}
}

// Len returns the number of present keys. It visits every key.
func (m ORMap[K, V]) Len() int {
	n := 0
	for _, v := range m.store {
		if v.live() {
			n++
		}
	}
	return n
}

// Merge sets m to the join of m and o, key by key, nested values joined
// under the two maps' contexts. Merging a full state visits every key of
// both. A delta much smaller than m (in keys and in the dots of its
// context) is merged in time proportional to the delta and the values of
// the keys it changes, through an index of m's live dots, built by the
// first such merge and dropped by a full-state merge, as [ORSet.Merge]
// does. A map that holds and has seen no dot (of counters or LWW
// registers) needs no index: only o's keys are visited.
func (m *ORMap[K, V]) Merge(o ORMap[K, V]) {
	if o.ctx.vv.Len() == 0 && len(o.ctx.cloud) == 0 {
		for k, ov := range o.store {
			m.set(k, m.store[k].join(&m.ctx, ov, &o.ctx))
		}
		return
	}
	if seen, ok := deltaDots(len(m.store), len(o.store), &o.ctx); ok {
		m.mergeDelta(&o, seen)
		return
	}
	m.byDot = nil
	m.merge(&o.causal)
}

// mergeDelta is the join with o, whose context holds the dots seen, as
// the generic join computes it, but visiting only the keys of o and the
// keys of m holding a dot o has seen: no other key holds a dot o can
// remove.
func (m *ORMap[K, V]) mergeDelta(o *ORMap[K, V], seen []vclock.Dot) {
	if m.byDot == nil {
		m.byDot = m.store.index()
	}
	touched := make(map[K]struct{}, len(o.store))
	for k := range o.store {
		touched[k] = struct{}{}
	}
	for _, d := range seen {
		if k, ok := m.byDot[d]; ok {
			touched[k] = struct{}{}
		}
	}
	for k := range touched {
		old := m.store[k]
		for d := range old.dots {
			delete(m.byDot, d)
		}
		v := old.join(&m.ctx, o.store[k], &o.ctx)
		for d := range v.dots {
			m.byDot[d] = k
		}
		m.set(k, v)
	}
	m.ctx.merge(&o.ctx)
}

// Clone returns an independent copy of m.
func (m ORMap[K, V]) Clone() ORMap[K, V] { return ORMap[K, V]{causal: m.copyState()} }

// Compact discards the tombstones of removed counters and LWW registers
// (and of the removed parts of counters, and of maps nested in m) that
// stable holds as m does, and returns how many it discarded: a counter's
// entry for a replica whose every increment and decrement a remove or
// reset took away, and a register's newest hidden write. A key left with
// nothing is dropped. Reads are unchanged. The causal values (sets, flags,
// MV registers) keep no tombstones and are left as they are.
//
// stable is a causally stable state; Compact is safe, that is, replicas
// still converge to the same values, when:
//  1. every replica has merged stable;
//  2. every state or delta this replica merges from now on was made after
//     its sender had merged stable;
//  3. every replica compacts with stable before it merges a state or
//     delta from a replica that has compacted with stable (a replica whose
//     counter entry was discarded counts from zero again, which a replica
//     still holding the entry would not see);
//  4. every register write made from now on is newer than the hidden
//     writes stable holds (a write an [hlc.Clock] issues after it was
//     updated with their timestamps is): a discarded floor no longer
//     hides older writes.
//
// All hold when replicas compact at a quiescent point: every delta sent
// has arrived, all have exchanged their states, stable is their common
// state, and each compacts before it updates or merges again (as for
// [Text.Compact]). Compacting otherwise can bring back what a remove took
// away, or lose a new increment: see the package tests for both.
// Deltas made by mutators carry what they need of the tombstones
// (a counter's delta its replica's whole entry, a register's the newest
// write its removes hid), so that condition 2 suffices for them.
func (m *ORMap[K, V]) Compact(stable ORMap[K, V]) int {
	var n int
	*m, n = m.compact(stable)
	return n
}

// ModifiedBy returns the IDs of the replicas whose dots or counts the
// state holds, sorted.
func (m *ORMap[K, V]) ModifiedBy() []string {
	ids := m.ctx.ids()
	m.countIDs(func(id string) bool { ids = append(ids, id); return true })
	slices.Sort(ids)
	return slices.Compact(ids)
}

// NeedPruningFrom reports whether the state holds any dot or count of
// removed.
func (m *ORMap[K, V]) NeedPruningFrom(removed string) bool {
	return m.ctx.has(removed) || m.hasCounts(removed)
}

// hasCounts reports whether a value holds counts of id.
func (m ORMap[K, V]) hasCounts(id string) bool {
	return !m.countIDs(func(c string) bool { return c != id })
}

// Prune gives every live dot of removed a new dot of into and folds
// removed's counts into into's, keeping every value; see
// [RemovedNodePruning] for when this is safe. It panics, changing
// nothing, where TryPrune returns an error, and if removed == into.
func (m *ORMap[K, V]) Prune(removed, into string) { must(struct{}{}, m.TryPrune(removed, into)) }

// TryPrune is [ORMap.Prune] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when into has too few dots or
// counts left below [vclock.MaxCounter] to take over removed's.
func (m *ORMap[K, V]) TryPrune(removed, into string) error {
	if _, err := m.pruneCounts(removed, into); err != nil {
		return err
	}
	if err := m.causal.TryPrune(removed, into); err != nil {
		return err
	}
	*m = must(m.pruneCounts(removed, into)) // checked above
	m.byDot = nil
	return nil
}

// PruningCleanup is [RemovedNodePruning.PruningCleanup]: it forgets
// removed's dots and counts.
func (m *ORMap[K, V]) PruningCleanup(removed string) {
	m.causal.PruningCleanup(removed)
	*m = must(m.pruneCounts(removed, ""))
	m.byDot = nil
}

// EncodeMsgpack writes m as [{key: nested state...}, context], where a
// nested state is the nested type's encoding without its context.
func (m ORMap[K, V]) EncodeMsgpack(enc *msgpack.Encoder) error { return m.encode(enc) }

// DecodeMsgpack replaces m with the map written by [ORMap.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error m is unchanged.
func (m *ORMap[K, V]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "ORMap", func(d *decoder) error {
		err := m.decode(d)
		if err == nil {
			m.byDot = nil
		}
		return err
	})
}

// The methods below make ORMap a value of an ORMap: they act on the
// entries alone, the outer map's context standing for this one's.

func (m ORMap[K, V]) join(mc *dotContext, o ORMap[K, V], oc *dotContext) ORMap[K, V] {
	m.store, m.byDot = m.store.join(mc, o.store, oc), nil
	return m
}
func (m ORMap[K, V]) empty() bool                          { return m.store.empty() }
func (m ORMap[K, V]) dots(yield func(vclock.Dot) bool)     { m.store.dots(yield) }
func (m ORMap[K, V]) clone() ORMap[K, V]                   { return m.Clone() }
func (m ORMap[K, V]) encodeStore(enc *encoder) error       { return m.store.encodeStore(enc) }
func (m ORMap[K, V]) context() dotContext                  { return m.ctx }
func (m ORMap[K, V]) withContext(c dotContext) ORMap[K, V] { m.ctx = c; return m }
func (m ORMap[K, V]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) ORMap[K, V] {
	m.store, m.byDot = m.store.mapDots(f), nil
	return m
}
func (m ORMap[K, V]) decodeStore(dec *decoder) (ORMap[K, V], error) {
	st, err := m.store.decodeStore(dec)
	return ORMap[K, V]{causal: causal[dotMap[K, V]]{store: st}}, err
}
func (m ORMap[K, V]) recordTo(log *ORMap[K, V]) ORMap[K, V] { m.log = log; return m }
func (m ORMap[K, V]) live() bool {
	for _, v := range m.store {
		if v.live() {
			return true
		}
	}
	return false
}
func (m ORMap[K, V]) countIDs(yield func(string) bool) bool {
	for _, v := range m.store {
		if !v.countIDs(yield) {
			return false
		}
	}
	return true
}

// pruneCounts returns m with the counts of its values pruned, in new
// storage when any changes; the map's dots are left as they are.
func (m ORMap[K, V]) pruneCounts(removed, into string) (ORMap[K, V], error) {
	if !m.hasCounts(removed) {
		return m, nil
	}
	out := m
	out.store = make(dotMap[K, V], len(m.store))
	for k, v := range m.store {
		nv, err := v.pruneCounts(removed, into)
		if err != nil {
			return m, err
		}
		out.set(k, nv)
	}
	return out, nil
}

// compact compacts every value with stable's value of its key, in new
// storage when any changes.
func (m ORMap[K, V]) compact(stable ORMap[K, V]) (ORMap[K, V], int) {
	var out dotMap[K, V]
	total := 0
	for k, v := range m.store {
		sv, ok := stable.store[k]
		if !ok {
			continue
		}
		nv, n := v.compact(sv)
		if n == 0 {
			continue
		}
		if out == nil {
			out = maps.Clone(m.store)
		}
		total += n
		if nv.empty() {
			delete(out, k)
		} else {
			out[k] = nv
		}
	}
	if out != nil {
		m.store = out
	}
	return m, total
}

// reset resets every key, recursively: the tombstones of the keys that
// keep one, and the dots of all.
func (m ORMap[K, V]) reset() (ORMap[K, V], []vclock.Dot) {
	var out ORMap[K, V]
	var dots []vclock.Dot
	for k, v := range m.store {
		rs, ds := v.reset()
		if !rs.empty() {
			out.set(k, rs)
		}
		dots = append(dots, ds...)
	}
	return out, dots
}
