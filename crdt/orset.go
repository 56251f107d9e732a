package crdt

import (
	"cmp"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// ORSet is an add-wins observed-remove set without tombstones: Riak's
// ORSWOT (riak_dt_orswot), in the delta-state form of Almeida et al. Each
// present element carries the dots of the adds that put it there (at most
// one per replica, but see [ORSet.Prune]), and the set keeps a causal context of every dot it has
// seen. Remove drops an element's dots; the context remembers them, so a
// merge with a replica that still holds them removes the element there
// too, while an add the remover had not seen (a concurrent add) survives:
// add wins. Nothing is kept for removed elements, so the state grows with
// the live elements and the number of replicas, not with history.
//
// A floating-point NaN cannot be an element. Deltas need causal delivery
// for causally consistent reads; see the package documentation.
//
// Merging a full state visits every element of both sides. To merge a
// small delta in time proportional to the delta, a large set keeps an
// index from its live dots to their elements, built by the first such
// merge and dropped by a full-state merge.
//
// The zero ORSet is empty and ready to use. An ORSet is not safe for
// concurrent use.
type ORSet[T cmp.Ordered] struct {
	causal[dotMap[T, dotSet]]
	byDot map[vclock.Dot]T // nil, or the element of every live dot
	log   *ORSet[T]        // nil, or where mutators merge their deltas
}

// Add adds x on replica id with a new dot and returns the delta: x with
// that dot, and a context of the new dot and the dots of x it supersedes.
// It panics if x is NaN, and, changing nothing, where [ORSet.TryAdd]
// returns an error.
func (s *ORSet[T]) Add(id string, x T) ORSet[T] { return must(s.TryAdd(id, x)) }

// TryAdd is [ORSet.Add] that returns an error wrapping
// [vclock.ErrExhausted], leaving s unchanged, when id's dots have reached
// [vclock.MaxCounter] (which only a forged counter from a peer can bring
// about). It panics if x is NaN.
func (s *ORSet[T]) TryAdd(id string, x T) (ORSet[T], error) {
	x = normKey(x)
	old := s.store[x]
	ds, ctx, err := write(&s.ctx, old, id, struct{}{})
	if err != nil {
		return ORSet[T]{}, err
	}
	s.set(x, old, ds)
	return s.record(ORSet[T]{causal: causal[dotMap[T, dotSet]]{store: dotMap[T, dotSet]{x: ds}, ctx: ctx}}), nil
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
	s.set(x, ds, nil)
	return s.record(ORSet[T]{causal: causal[dotMap[T, dotSet]]{ctx: contextOf(collect(ds.dots))}})
}

// record merges the delta d into s's log, if it has one, and returns d.
func (s *ORSet[T]) record(d ORSet[T]) ORSet[T] {
	if s.log != nil {
		s.log.Merge(d)
	}
	return d
}

// set replaces the dots of x, old, with ds (none: x is absent), keeping
// the index.
func (s *ORSet[T]) set(x T, old, ds dotSet) {
	if s.byDot != nil {
		for _, e := range old {
			delete(s.byDot, e.dot)
		}
		for _, e := range ds {
			s.byDot[e.dot] = x
		}
	}
	switch {
	case len(ds) == 0:
		delete(s.store, x)
	case s.store == nil:
		s.store = dotMap[T, dotSet]{x: ds}
	default:
		s.store[x] = ds
	}
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

// Merge sets s to the join of s and o. Merging a full state visits every
// element of both; a delta much smaller than s (in elements and in the
// dots of its context) is merged through the index of s's dots, in time
// proportional to the delta.
func (s *ORSet[T]) Merge(o ORSet[T]) {
	if seen, ok := deltaDots(len(s.store), len(o.store), &o.ctx); ok {
		s.mergeDelta(&o, seen)
		return
	}
	s.byDot = nil
	s.merge(&o.causal)
}

// mergeDelta is the join with o, whose context holds the dots seen, as
// the generic join computes it, but visiting only the elements of o and
// the elements of s holding a dot o has seen.
func (s *ORSet[T]) mergeDelta(o *ORSet[T], seen []vclock.Dot) {
	if s.byDot == nil {
		s.byDot = s.store.index()
	}
	for x, ods := range o.store {
		old := s.store[x]
		s.set(x, old, old.join(&s.ctx, ods, &o.ctx))
	}
	for _, d := range seen {
		if x, ok := s.byDot[d]; ok {
			if _, ok := o.store[x]; !ok {
				old := s.store[x]
				s.set(x, old, old.join(&s.ctx, nil, &o.ctx))
			}
		}
	}
	s.ctx.merge(&o.ctx)
}

// Prune is [RemovedNodePruning.Prune]; see there for when it is safe. An
// element that held dots of both removed and into is left with two dots
// of into (so that a concurrent Remove that saw only one of them does not
// remove it) until into adds it again. It panics, changing nothing, where
// [ORSet.TryPrune] returns an error, and if removed == into.
func (s *ORSet[T]) Prune(removed, into string) { must(struct{}{}, s.TryPrune(removed, into)) }

// TryPrune is [ORSet.Prune] that returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when into has too few dots left
// below [vclock.MaxCounter] to take over removed's.
func (s *ORSet[T]) TryPrune(removed, into string) error {
	if err := s.causal.TryPrune(removed, into); err != nil {
		return err
	}
	s.byDot = nil
	return nil
}

// PruningCleanup is [RemovedNodePruning.PruningCleanup].
func (s *ORSet[T]) PruningCleanup(removed string) {
	s.byDot = nil
	s.causal.PruningCleanup(removed)
}

// Clone returns an independent copy of s.
func (s ORSet[T]) Clone() ORSet[T] { return ORSet[T]{causal: s.copyState()} }

// EncodeMsgpack writes s as [{element: dots...}, context].
func (s ORSet[T]) EncodeMsgpack(enc *msgpack.Encoder) error { return s.encode(enc) }

// DecodeMsgpack replaces s with the set written by [ORSet.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error s is unchanged.
func (s *ORSet[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "ORSet", func(d *decoder) error {
		err := s.decode(d)
		if err == nil {
			s.byDot = nil
		}
		return err
	})
}

// The methods below make ORSet a value of an ORMap: they act on the
// elements alone, the map's context standing for the set's. A nested set
// has no index.

func (s ORSet[T]) join(sc *dotContext, o ORSet[T], oc *dotContext) ORSet[T] {
	s.store, s.byDot = s.store.join(sc, o.store, oc), nil
	return s
}
func (s ORSet[T]) empty() bool                       { return s.store.empty() }
func (s ORSet[T]) dots(yield func(vclock.Dot) bool)  { s.store.dots(yield) }
func (s ORSet[T]) clone() ORSet[T]                   { return s.Clone() }
func (s ORSet[T]) encodeStore(enc *encoder) error    { return s.store.encodeStore(enc) }
func (s ORSet[T]) context() dotContext               { return s.ctx }
func (s ORSet[T]) withContext(c dotContext) ORSet[T] { s.ctx = c; return s }
func (s ORSet[T]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) ORSet[T] {
	s.store, s.byDot = s.store.mapDots(f), nil
	return s
}
func (s ORSet[T]) recordTo(log *ORSet[T]) ORSet[T]              { s.log = log; return s }
func (s ORSet[T]) reset() (ORSet[T], []vclock.Dot)              { return ORSet[T]{}, collect(s.dots) }
func (s ORSet[T]) compact(ORSet[T]) (ORSet[T], int)             { return s, 0 }
func (s ORSet[T]) pruneCounts(string, string) (ORSet[T], error) { return s, nil }
func (s ORSet[T]) decodeStore(dec *decoder) (ORSet[T], error) {
	st, err := s.store.decodeStore(dec)
	return ORSet[T]{causal: causal[dotMap[T, dotSet]]{store: st}}, err
}
