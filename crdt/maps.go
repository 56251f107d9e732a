package crdt

import (
	"cmp"
	"iter"
	"slices"

	"github.com/distkit/distkit/hlc"
	"github.com/vmihailenco/msgpack/v5"
)

// The shapes of Akka Distributed Data's specialised maps, over ORMap: each
// method is one call of the map, so their semantics, deltas, encodings
// and guarantees are ORMap's.

var (
	_ RemovedNodePruning = (*PNCounterMap[string])(nil)
	_ RemovedNodePruning = (*ORMultiMap[string, string])(nil)
)

// LWWMap maps keys to last-writer-wins values (Akka's LWWMap): an
// ORMap[K, LWWRegister[V]]. A Put concurrent with a Remove of its key
// survives when it is newer than every write the remover saw. It has no
// dots and no per-replica counts, so deltas need nothing from delivery
// and there is nothing to prune; a removed key keeps the timestamp and ID
// of the newest write removed (see [LWWRegister]).
//
// The zero LWWMap is empty and ready to use. An LWWMap is not safe for
// concurrent use.
type LWWMap[K cmp.Ordered, V any] struct {
	m ORMap[K, LWWRegister[V]]
}

// Put writes v under k at ts on replica id and returns the delta; see
// [LWWRegister.Set]. It panics if k is NaN.
func (m *LWWMap[K, V]) Put(k K, v V, ts hlc.Timestamp, id string) LWWMap[K, V] {
	return LWWMap[K, V]{m.m.Update(k, func(r *LWWRegister[V]) { r.Set(v, ts, id) })}
}

// Get returns the value of k, and whether k is present.
func (m LWWMap[K, V]) Get(k K) (V, bool) {
	r, ok := m.m.peek(k)
	v, _ := r.Get()
	return v, ok
}

// Entry returns the value of k with the timestamp and replica ID of its
// write, and whether k is present.
func (m LWWMap[K, V]) Entry(k K) (LWWRegister[V], bool) { return m.m.peek(k) }

// Remove removes k and returns the delta; see [ORMap.Remove].
func (m *LWWMap[K, V]) Remove(k K) LWWMap[K, V] { return LWWMap[K, V]{m.m.Remove(k)} }

// Keys returns the present keys in increasing order.
func (m LWWMap[K, V]) Keys() []K { return m.m.Keys() }

// Len returns the number of present keys.
func (m LWWMap[K, V]) Len() int { return m.m.Len() }

// All yields the present keys in increasing order with their values.
func (m LWWMap[K, V]) All() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for _, k := range m.m.Keys() {
			r, _ := m.m.peek(k)
			if v, _ := r.Get(); !yield(k, v) {
				return
			}
		}
	}
}

// Merge sets m to the join of m and o.
func (m *LWWMap[K, V]) Merge(o LWWMap[K, V]) { m.m.Merge(o.m) }

// Compact discards the newest hidden writes of removed keys that stable
// holds; see [ORMap.Compact] for when it is safe.
func (m *LWWMap[K, V]) Compact(stable LWWMap[K, V]) int { return m.m.Compact(stable.m) }

// Clone returns an independent copy of m.
func (m LWWMap[K, V]) Clone() LWWMap[K, V] { return LWWMap[K, V]{m.m.Clone()} }

// EncodeMsgpack writes m as its ORMap.
func (m LWWMap[K, V]) EncodeMsgpack(enc *msgpack.Encoder) error { return m.m.EncodeMsgpack(enc) }

// DecodeMsgpack replaces m with the map written by
// [LWWMap.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error m is
// unchanged.
func (m *LWWMap[K, V]) DecodeMsgpack(dec *msgpack.Decoder) error { return m.m.DecodeMsgpack(dec) }

// PNCounterMap maps keys to counters (Akka's PNCounterMap): an
// ORMap[K, ResetCounter]. Removing a key resets its counter for the
// increments and decrements the remover saw; those concurrent with the
// remove survive, so the key is present again with just their sum (Akka
// keeps the whole counter). Counters need nothing from delivery. The
// state keeps, per key, numbers per replica that updated it, also once
// the key is removed (see [ResetCounter]).
//
// The zero PNCounterMap is empty and ready to use. A PNCounterMap is not
// safe for concurrent use.
type PNCounterMap[K cmp.Ordered] struct {
	m ORMap[K, ResetCounter]
}

// Inc adds n to the counter of k on replica id and returns the delta. It
// panics if k is NaN, and, changing nothing, where
// [PNCounterMap.TryInc] returns an error.
func (m *PNCounterMap[K]) Inc(id string, k K, n uint64) PNCounterMap[K] {
	return must(m.TryInc(id, k, n))
}

// TryInc is [PNCounterMap.Inc] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when id's increments of k
// would exceed [vclock.MaxCounter].
func (m *PNCounterMap[K]) TryInc(id string, k K, n uint64) (PNCounterMap[K], error) {
	return m.add(id, k, n, false)
}

// Dec subtracts n from the counter of k on replica id and returns the
// delta; see [PNCounterMap.Inc].
func (m *PNCounterMap[K]) Dec(id string, k K, n uint64) PNCounterMap[K] {
	return must(m.TryDec(id, k, n))
}

// TryDec is [PNCounterMap.Dec] that returns an error; see
// [PNCounterMap.TryInc].
func (m *PNCounterMap[K]) TryDec(id string, k K, n uint64) (PNCounterMap[K], error) {
	return m.add(id, k, n, true)
}

// add adds n to id's increments of k, or decrements if dec.
func (m *PNCounterMap[K]) add(id string, k K, n uint64, dec bool) (PNCounterMap[K], error) {
	// A counter's failed mutator changes nothing: no copy is needed.
	d, err := m.m.update(k, false, func(c *ResetCounter) error {
		_, err := c.add(id, n, dec)
		return err
	})
	return PNCounterMap[K]{d}, err
}

// Get returns the value of k's counter, and whether k is present.
func (m PNCounterMap[K]) Get(k K) (int64, bool) {
	c, ok := m.m.peek(k)
	return c.Value(), ok
}

// Remove removes k, resetting its counter, and returns the delta; see
// [ORMap.Remove].
func (m *PNCounterMap[K]) Remove(k K) PNCounterMap[K] { return PNCounterMap[K]{m.m.Remove(k)} }

// Keys returns the present keys in increasing order.
func (m PNCounterMap[K]) Keys() []K { return m.m.Keys() }

// Len returns the number of present keys.
func (m PNCounterMap[K]) Len() int { return m.m.Len() }

// All yields the present keys in increasing order with their values.
func (m PNCounterMap[K]) All() iter.Seq2[K, int64] {
	return func(yield func(K, int64) bool) {
		for _, k := range m.m.Keys() {
			if c, _ := m.m.peek(k); !yield(k, c.Value()) {
				return
			}
		}
	}
}

// Merge sets m to the join of m and o.
func (m *PNCounterMap[K]) Merge(o PNCounterMap[K]) { m.m.Merge(o.m) }

// Compact discards the counts of removed keys that stable holds; see
// [ORMap.Compact] for when it is safe.
func (m *PNCounterMap[K]) Compact(stable PNCounterMap[K]) int { return m.m.Compact(stable.m) }

// Clone returns an independent copy of m.
func (m PNCounterMap[K]) Clone() PNCounterMap[K] { return PNCounterMap[K]{m.m.Clone()} }

// ModifiedBy is [RemovedNodePruning.ModifiedBy].
func (m *PNCounterMap[K]) ModifiedBy() []string { return m.m.ModifiedBy() }

// NeedPruningFrom is [RemovedNodePruning.NeedPruningFrom].
func (m *PNCounterMap[K]) NeedPruningFrom(removed string) bool { return m.m.NeedPruningFrom(removed) }

// Prune is [ORMap.Prune].
func (m *PNCounterMap[K]) Prune(removed, into string) { m.m.Prune(removed, into) }

// TryPrune is [ORMap.TryPrune].
func (m *PNCounterMap[K]) TryPrune(removed, into string) error { return m.m.TryPrune(removed, into) }

// PruningCleanup is [ORMap.PruningCleanup].
func (m *PNCounterMap[K]) PruningCleanup(removed string) { m.m.PruningCleanup(removed) }

// EncodeMsgpack writes m as its ORMap.
func (m PNCounterMap[K]) EncodeMsgpack(enc *msgpack.Encoder) error { return m.m.EncodeMsgpack(enc) }

// DecodeMsgpack replaces m with the map written by
// [PNCounterMap.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error m is
// unchanged.
func (m *PNCounterMap[K]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return m.m.DecodeMsgpack(dec)
}

// ORMultiMap maps keys to sets of elements (Akka's ORMultiMap, with value
// deltas): an ORMap[K, ORSet[E]]. Adding a binding is an add-wins set
// Add; removing a key removes the bindings the remover saw, and a
// binding added concurrently survives alone. A key is present while it
// has a binding. Deltas need causal delivery for causally consistent
// reads; see the package documentation.
//
// The zero ORMultiMap is empty and ready to use. An ORMultiMap is not
// safe for concurrent use.
type ORMultiMap[K, E cmp.Ordered] struct {
	m ORMap[K, ORSet[E]]
}

// AddBinding adds e to the set of k on replica id and returns the delta.
// It panics if k or e is NaN, and, changing nothing, where
// [ORMultiMap.TryAddBinding] returns an error.
func (m *ORMultiMap[K, E]) AddBinding(id string, k K, e E) ORMultiMap[K, E] {
	return must(m.TryAddBinding(id, k, e))
}

// TryAddBinding is [ORMultiMap.AddBinding] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when id's dots have reached
// [vclock.MaxCounter].
func (m *ORMultiMap[K, E]) TryAddBinding(id string, k K, e E) (ORMultiMap[K, E], error) {
	// A failed TryAdd changes nothing: no copy is needed.
	d, err := m.m.update(k, false, func(s *ORSet[E]) error {
		_, err := s.TryAdd(id, e)
		return err
	})
	return ORMultiMap[K, E]{d}, err
}

// RemoveBinding removes e from the set of k and returns the delta; k is
// removed with its last binding.
func (m *ORMultiMap[K, E]) RemoveBinding(k K, e E) ORMultiMap[K, E] {
	if !m.m.Contains(k) {
		return ORMultiMap[K, E]{}
	}
	return ORMultiMap[K, E]{m.m.Update(k, func(s *ORSet[E]) { s.Remove(e) })}
}

// Put replaces the set of k with es on replica id, as one update, and
// returns the delta: the elements of k not in es are removed and those
// of es added. Put with no elements removes the bindings of k. It panics
// if k or an element is NaN, and, changing nothing, where
// [ORMultiMap.TryPut] returns an error.
func (m *ORMultiMap[K, E]) Put(id string, k K, es ...E) ORMultiMap[K, E] {
	return must(m.TryPut(id, k, es...))
}

// TryPut is [ORMultiMap.Put] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when id's dots would pass
// [vclock.MaxCounter].
func (m *ORMultiMap[K, E]) TryPut(id string, k K, es ...E) (ORMultiMap[K, E], error) {
	d, err := m.m.TryUpdate(k, func(s *ORSet[E]) error {
		for _, x := range s.Elements() {
			if !slices.Contains(es, x) {
				s.Remove(x)
			}
		}
		for _, x := range es {
			if _, err := s.TryAdd(id, x); err != nil {
				return err
			}
		}
		return nil
	})
	return ORMultiMap[K, E]{d}, err
}

// Get returns the elements of k in increasing order, and whether k is
// present.
func (m ORMultiMap[K, E]) Get(k K) ([]E, bool) {
	s, ok := m.m.peek(k)
	return s.Elements(), ok
}

// Contains reports whether e is bound to k.
func (m ORMultiMap[K, E]) Contains(k K, e E) bool {
	s, ok := m.m.peek(k)
	return ok && s.Contains(e)
}

// Remove removes k with all its bindings the remover saw and returns the
// delta; see [ORMap.Remove].
func (m *ORMultiMap[K, E]) Remove(k K) ORMultiMap[K, E] { return ORMultiMap[K, E]{m.m.Remove(k)} }

// Keys returns the present keys in increasing order.
func (m ORMultiMap[K, E]) Keys() []K { return m.m.Keys() }

// Len returns the number of present keys.
func (m ORMultiMap[K, E]) Len() int { return m.m.Len() }

// All yields the present keys in increasing order with their elements.
func (m ORMultiMap[K, E]) All() iter.Seq2[K, []E] {
	return func(yield func(K, []E) bool) {
		for _, k := range m.m.Keys() {
			if s, _ := m.m.peek(k); !yield(k, s.Elements()) {
				return
			}
		}
	}
}

// Merge sets m to the join of m and o.
func (m *ORMultiMap[K, E]) Merge(o ORMultiMap[K, E]) { m.m.Merge(o.m) }

// Clone returns an independent copy of m.
func (m ORMultiMap[K, E]) Clone() ORMultiMap[K, E] { return ORMultiMap[K, E]{m.m.Clone()} }

// ModifiedBy is [RemovedNodePruning.ModifiedBy].
func (m *ORMultiMap[K, E]) ModifiedBy() []string { return m.m.ModifiedBy() }

// NeedPruningFrom is [RemovedNodePruning.NeedPruningFrom].
func (m *ORMultiMap[K, E]) NeedPruningFrom(removed string) bool {
	return m.m.NeedPruningFrom(removed)
}

// Prune is [ORMap.Prune].
func (m *ORMultiMap[K, E]) Prune(removed, into string) { m.m.Prune(removed, into) }

// TryPrune is [ORMap.TryPrune].
func (m *ORMultiMap[K, E]) TryPrune(removed, into string) error { return m.m.TryPrune(removed, into) }

// PruningCleanup is [ORMap.PruningCleanup].
func (m *ORMultiMap[K, E]) PruningCleanup(removed string) { m.m.PruningCleanup(removed) }

// EncodeMsgpack writes m as its ORMap.
func (m ORMultiMap[K, E]) EncodeMsgpack(enc *msgpack.Encoder) error { return m.m.EncodeMsgpack(enc) }

// DecodeMsgpack replaces m with the map written by
// [ORMultiMap.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error m is
// unchanged.
func (m *ORMultiMap[K, E]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return m.m.DecodeMsgpack(dec)
}
