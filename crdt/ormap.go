package crdt

import (
	"cmp"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// Nested is satisfied by the causal CRDTs of this package, the types an
// [ORMap] can hold: ORSet, MVRegister, EWFlag and ORMap itself, as value
// types (ORMap[string, ORSet[string]]). Its methods are unexported: a
// nested CRDT shares the map's causal context, which only this package's
// types know how to do.
type Nested[V any] interface {
	dotStore[V]
	context() dotContext
	withContext(c dotContext) V
}

var (
	_ Nested[ORSet[string]]         = ORSet[string]{}
	_ Nested[MVRegister[string]]    = MVRegister[string]{}
	_ Nested[EWFlag]                = EWFlag{}
	_ Nested[ORMap[string, EWFlag]] = ORMap[string, EWFlag]{}
	_ RemovedNodePruning            = (*ORMap[string, EWFlag])(nil)
)

// ORMap maps keys to nested causal CRDTs (ORSet, MVRegister, EWFlag or
// ORMap) with observed-remove semantics, as riak_dt_map and the delta-state
// paper's map: the nested values share the map's causal context, an update
// of a key is an operation of the nested type, and removing a key resets
// its value for the dots the remover had seen. An update concurrent with
// the remove survives, with only what the remover had not seen (a nested
// set keeps the elements added concurrently, not the ones the remover saw).
//
// A key is present while its value holds a dot: an update that leaves the
// value empty (removing a nested set's last element, disabling a nested
// flag) removes the key, exactly as Remove would. A floating-point NaN
// cannot be a key. Deltas need causal delivery for causally consistent
// reads; see the package documentation.
//
// The zero ORMap is empty and ready to use. An ORMap is not safe for
// concurrent use.
type ORMap[K cmp.Ordered, V Nested[V]] struct {
	causal[dotMap[K, V]]
}

// Update applies f to the value of k (the zero V if k is absent) and
// returns the delta: k with the delta f returns. f must change the value
// only through its mutators (Add, Remove, Set, Enable, Disable, Update of
// the nested type), which then draw their dots from the map's context, and
// return their delta, or the Merge of their deltas when it calls several.
// f must not keep the pointer. Update panics if k is NaN; a nested mutator
// that panics leaves m in an unspecified state: where a replica's dots may
// be exhausted by a forged counter, use [ORMap.TryUpdate].
//
//	var m crdt.ORMap[string, crdt.ORSet[string]]
//	delta := m.Update("cart", func(s *crdt.ORSet[string]) crdt.ORSet[string] {
//		return s.Add("a", "apple")
//	})
func (m *ORMap[K, V]) Update(k K, f func(v *V) V) ORMap[K, V] {
	return must(m.update(k, false, func(v *V) (V, error) { return f(v), nil }))
}

// TryUpdate is [ORMap.Update] for an f that uses the nested types' Try
// mutators (TryAdd, TrySet, TryEnable, TryUpdate) and returns their error:
// then TryUpdate returns it and m is unchanged. It costs a copy of the
// map's causal context and of k's value.
//
//	delta, err := m.TryUpdate("cart", func(s *crdt.ORSet[string]) (crdt.ORSet[string], error) {
//		return s.TryAdd("a", "apple")
//	})
func (m *ORMap[K, V]) TryUpdate(k K, f func(v *V) (V, error)) (ORMap[K, V], error) {
	return m.update(k, true, f)
}

// update runs f on k's value and applies the result to m. With copy, f
// works on copies of the value and of the map's context, which its
// failure leaves behind; without, on m's own storage.
func (m *ORMap[K, V]) update(k K, copy bool, f func(v *V) (V, error)) (ORMap[K, V], error) {
	k = normKey(k)
	v, ctx := m.store[k], m.ctx
	if copy {
		v, ctx = v.clone(), ctx.clone()
	}
	v = v.withContext(ctx)
	d, err := f(&v)
	if err != nil {
		return ORMap[K, V]{}, err
	}
	m.ctx = v.context()
	if v.empty() {
		delete(m.store, k)
	} else {
		if m.store == nil {
			m.store = make(dotMap[K, V])
		}
		m.store[k] = v.withContext(dotContext{})
	}
	delta := ORMap[K, V]{causal[dotMap[K, V]]{ctx: d.context()}}
	if !d.empty() {
		delta.store = dotMap[K, V]{k: d.withContext(dotContext{})}
	}
	return delta, nil
}

// Remove removes k and returns the delta: no keys, and a context of the
// dots k's value held. Merging it resets k's value wherever it is for those
// dots; updates they do not cover (concurrent ones) remain. Removing an
// absent key changes nothing and returns the empty map.
func (m *ORMap[K, V]) Remove(k K) ORMap[K, V] {
	v, ok := m.store[k]
	if !ok {
		return ORMap[K, V]{}
	}
	delete(m.store, k)
	return ORMap[K, V]{causal[dotMap[K, V]]{ctx: contextOf(collect(v.dots))}}
}

// Get returns a copy of the value of k, and whether k is present. Change
// the value with Update, not through the copy.
func (m ORMap[K, V]) Get(k K) (V, bool) {
	v, ok := m.store[k]
	if !ok {
		return v, false
	}
	return v.clone(), true
}

// Contains reports whether k is present.
func (m ORMap[K, V]) Contains(k K) bool {
	_, ok := m.store[k]
	return ok
}

// Keys returns the present keys in increasing order.
func (m ORMap[K, V]) Keys() []K { return m.store.keys() }

// Len returns the number of present keys.
func (m ORMap[K, V]) Len() int { return len(m.store) }

// Merge sets m to the join of m and o, key by key, nested values joined
// under the two maps' contexts. It visits every key of both, as
// [ORSet.Merge] does.
func (m *ORMap[K, V]) Merge(o ORMap[K, V]) { m.merge(&o.causal) }

// Clone returns an independent copy of m.
func (m ORMap[K, V]) Clone() ORMap[K, V] { return ORMap[K, V]{m.copyState()} }

// EncodeMsgpack writes m as [{key: nested state...}, context], where a
// nested state is the nested type's encoding without its context.
func (m ORMap[K, V]) EncodeMsgpack(enc *msgpack.Encoder) error { return m.encode(enc) }

// DecodeMsgpack replaces m with the map written by [ORMap.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error m is unchanged.
func (m *ORMap[K, V]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "ORMap", m.decode)
}

// The methods below make ORMap a value of an ORMap: they act on the
// entries alone, the outer map's context standing for this one's.

func (m ORMap[K, V]) join(mc *dotContext, o ORMap[K, V], oc *dotContext) ORMap[K, V] {
	m.store = m.store.join(mc, o.store, oc)
	return m
}
func (m ORMap[K, V]) empty() bool                          { return m.store.empty() }
func (m ORMap[K, V]) dots(yield func(vclock.Dot) bool)     { m.store.dots(yield) }
func (m ORMap[K, V]) clone() ORMap[K, V]                   { return m.Clone() }
func (m ORMap[K, V]) encodeStore(enc *encoder) error       { return m.store.encodeStore(enc) }
func (m ORMap[K, V]) context() dotContext                  { return m.ctx }
func (m ORMap[K, V]) withContext(c dotContext) ORMap[K, V] { m.ctx = c; return m }
func (m ORMap[K, V]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) ORMap[K, V] {
	m.store = m.store.mapDots(f)
	return m
}
func (m ORMap[K, V]) decodeStore(dec *decoder) (ORMap[K, V], error) {
	st, err := m.store.decodeStore(dec)
	return ORMap[K, V]{causal[dotMap[K, V]]{store: st}}, err
}
