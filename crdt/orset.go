package crdt

import (
	"cmp"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// ORSet is an add-wins observed-remove set without tombstones: Riak's
// ORSWOT (riak_dt_orswot), in the delta-state form of Almeida et al. Each
// present element carries the dots of the adds that put it there (at most
// one per replica), and the set keeps a causal context of every dot it has
// seen. Remove drops an element's dots; the context remembers them, so a
// merge with a replica that still holds them removes the element there
// too, while an add the remover had not seen (a concurrent add) survives:
// add wins. Nothing is kept for removed elements, so the state grows with
// the live elements and the number of replicas, not with history.
//
// A floating-point NaN cannot be an element. Deltas need causal delivery
// for causally consistent reads; see the package documentation.
//
// The zero ORSet is empty and ready to use. An ORSet is not safe for
// concurrent use.
type ORSet[T cmp.Ordered] struct {
	causal[dotMap[T, dotSet]]
}

// Add adds x on replica id with a new dot and returns the delta: x with
// that dot, and a context of the new dot and the dots of x it supersedes.
// It panics if x is NaN.
func (s *ORSet[T]) Add(id string, x T) ORSet[T] {
	x = normKey(x)
	ds, ctx := write(&s.ctx, s.store[x], id, struct{}{})
	if s.store == nil {
		s.store = make(dotMap[T, dotSet])
	}
	s.store[x] = ds
	return ORSet[T]{causal[dotMap[T, dotSet]]{store: dotMap[T, dotSet]{x: ds}, ctx: ctx}}
}

// Remove removes x and returns the delta: no elements, and a context of
// the dots of x that s had seen. Merging it removes x wherever x holds no
// other dots, that is, unless a concurrent Add of x happened. Removing an
// absent element changes nothing and returns the empty set. Remove needs
// no replica ID: it creates no dot.
func (s *ORSet[T]) Remove(x T) ORSet[T] {
	ds, ok := s.store[x]
	if !ok {
		return ORSet[T]{}
	}
	delete(s.store, x)
	return ORSet[T]{causal[dotMap[T, dotSet]]{ctx: contextOf(collect(ds.dots))}}
}

// Contains reports whether x is in s.
func (s ORSet[T]) Contains(x T) bool {
	_, ok := s.store[x]
	return ok
}

// Elements returns the elements in increasing order.
func (s ORSet[T]) Elements() []T { return s.store.keys() }

// Len returns the number of elements.
func (s ORSet[T]) Len() int { return len(s.store) }

// Merge sets s to the join of s and o. It visits every element of both:
// merging even a one-element delta into a large set takes time in
// proportion to the set's size (but allocates only for what changes).
func (s *ORSet[T]) Merge(o ORSet[T]) { s.merge(&o.causal) }

// Clone returns an independent copy of s.
func (s ORSet[T]) Clone() ORSet[T] { return ORSet[T]{s.copyState()} }

// EncodeMsgpack writes s as [{element: dots...}, context].
func (s ORSet[T]) EncodeMsgpack(enc *msgpack.Encoder) error { return s.encode(enc) }

// DecodeMsgpack replaces s with the set written by [ORSet.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error s is unchanged.
func (s *ORSet[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "ORSet", s.decode)
}

// The methods below make ORSet a value of an ORMap: they act on the
// elements alone, the map's context standing for the set's.

func (s ORSet[T]) join(sc *dotContext, o ORSet[T], oc *dotContext) ORSet[T] {
	s.store = s.store.join(sc, o.store, oc)
	return s
}
func (s ORSet[T]) empty() bool                       { return s.store.empty() }
func (s ORSet[T]) dots(yield func(vclock.Dot) bool)  { s.store.dots(yield) }
func (s ORSet[T]) clone() ORSet[T]                   { return s.Clone() }
func (s ORSet[T]) encodeStore(enc *encoder) error    { return s.store.encodeStore(enc) }
func (s ORSet[T]) context() dotContext               { return s.ctx }
func (s ORSet[T]) withContext(c dotContext) ORSet[T] { s.ctx = c; return s }
func (s ORSet[T]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) ORSet[T] {
	s.store = s.store.mapDots(f)
	return s
}
func (s ORSet[T]) decodeStore(dec *decoder) (ORSet[T], error) {
	st, err := s.store.decodeStore(dec)
	return ORSet[T]{causal[dotMap[T, dotSet]]{store: st}}, err
}
