package vclock

import (
	"fmt"
	"iter"
	"slices"
	"strconv"

	"github.com/distkit/distkit/internal/wire"
)

// DVVSet is Riak's dotted version vector set (dvvset.erl, after Preguiça,
// Baquero, Almeida et al.): the server-side state of one key, holding the
// concurrent values (siblings) a store must keep together with their causal
// history, so that interleaved writers never multiply siblings.
//
// For every ID it keeps a counter and the values written by that ID that
// are still live, newest first: the k-th value (from 0) of an ID with
// counter n is the event (ID, n-k). Values without a dot ("anonymous"
// values, from [NewDVVSet], [DVVSet.Reconcile] or [DVVSet.LWW]) are kept
// apart, sorted and deduplicated in a fixed order on values of any V (the
// order of Go values, unexported fields and map contents included; see
// "Values" in the package documentation), so that equal sets are equal
// value by value and encode to the same bytes, and Sync agrees with itself
// in both argument orders for every V, including maps, structs with
// unexported or skipped fields, and values msgpack cannot encode.
//
// The zero DVVSet is empty and ready to use. A DVVSet is not safe for
// concurrent use. Like [VClock] it refers to shared storage when copied:
// use [DVVSet.Clone] for an independent copy. Values are copied as V
// values, shallowly.
type DVVSet[V any] struct {
	clock VClock // IDs and counters; no times
	vals  [][]V  // vals[i] belongs to clock.entries[i], newest first, len(vals[i]) <= counter
	anon  []V    // anonymous values, canonical (see canonical)
}

// NewDVVSet returns a set holding v as its only value, with an empty
// causal history (dvvset:new/1). The value is anonymous: it has no dot.
// A server should rather start from the zero DVVSet and call
// [DVVSet.Update], which gives the value a dot.
func NewDVVSet[V any](v V) DVVSet[V] { return DVVSet[V]{anon: []V{v}} }

// Values returns the set's values, the siblings a read returns: the
// anonymous values first, then each ID's values in increasing order of ID,
// newest first (dvvset:values/1). The slice is newly allocated.
func (s DVVSet[V]) Values() []V {
	out := make([]V, 0, s.Len())
	out = append(out, s.anon...)
	for _, vs := range s.vals {
		out = append(out, vs...)
	}
	return out
}

// Dotted returns an iterator over the set's values that have a dot, each
// with the dot of the event that wrote it, in the order of [DVVSet.Values]
// (each ID in increasing order, newest first). Anonymous values have no
// dot and are left out: a set built with Update and Sync has none.
func (s DVVSet[V]) Dotted() iter.Seq2[Dot, V] {
	return func(yield func(Dot, V) bool) {
		for i, vs := range s.vals {
			e := s.clock.entries[i]
			for k, v := range vs {
				if !yield(Dot{ID: e.id, Counter: e.counter - uint64(k)}, v) {
					return
				}
			}
		}
	}
}

// Len returns the number of values (dvvset:size/1).
func (s DVVSet[V]) Len() int {
	n := len(s.anon)
	for _, vs := range s.vals {
		n += len(vs)
	}
	return n
}

// Context returns the set's causal history as a version vector
// (dvvset:join/1): the context a read hands to the client, which sends it
// back with its next write. The clock is newly allocated and has no
// times.
func (s DVVSet[V]) Context() VClock { return s.clock.Clone() }

// Compare returns the causal relation between the histories of s and o,
// ignoring values (dvvset:less/2 is Compare == Before). It does not
// allocate.
func (s DVVSet[V]) Compare(o DVVSet[V]) Ordering { return s.clock.Compare(o.clock) }

// Clone returns a copy of s that shares no storage with it.
func (s DVVSet[V]) Clone() DVVSet[V] {
	c := DVVSet[V]{clock: s.clock.Clone(), anon: slices.Clone(s.anon)}
	if s.vals != nil {
		c.vals = make([][]V, len(s.vals))
		for i, vs := range s.vals {
			c.vals[i] = slices.Clone(vs)
		}
	}
	return c
}

// Update records a client's write of v, coordinated by the server id, on
// the server's set s: dvvset:update(dvvset:new(ctx, v), s, id). ctx is
// the context the client read (see [DVVSet.Context]); the zero VClock is a
// blind write. Every value whose dot ctx contains is discarded, as is
// every anonymous value if ctx is strictly newer than s; the remaining
// values stay as siblings. s's history grows to cover ctx, and v becomes
// the newest value of id with the dot (id, max(s, ctx)[id] + 1). Times in
// ctx are ignored.
//
// Update panics, changing nothing, if max(s, ctx)[id] is already
// [MaxCounter]; a server that takes contexts from clients calls
// [DVVSet.TryUpdate] instead.
func (s *DVVSet[V]) Update(ctx VClock, id string, v V) {
	if err := s.TryUpdate(ctx, id, v); err != nil {
		panic(err.Error())
	}
}

// TryUpdate is [DVVSet.Update] that returns an error wrapping
// [ErrExhausted], leaving s unchanged, where Update panics: when the new
// dot's counter would pass [MaxCounter] (a client sent a context with a
// forged counter near it, or s was decoded with one).
func (s *DVVSet[V]) TryUpdate(ctx VClock, id string, v V) error {
	if _, err := AddCounter(max(s.clock.Get(id), ctx.Get(id)), 1); err != nil {
		return fmt.Errorf("vclock: update by %s: %w", strconv.Quote(id), err)
	}
	if s.clock.Compare(ctx) == Before {
		s.anon = nil
	}
	s.syncEntries(ctx.entries, nil)
	n := s.clock.Len()
	i, _ := s.clock.tickIndex(id) // checked above
	if s.clock.Len() > n {
		s.vals = slices.Insert(s.vals, i, []V{v})
	} else {
		s.vals[i] = slices.Insert(s.vals[i], 0, v)
	}
	return nil
}

// Sync merges o into s (dvvset:sync/2): the histories are joined, and a
// value survives if it is in both sets or if the set without it has not
// seen its dot. Anonymous values follow dvvset: those of the set with the
// strictly older history are dropped; if neither history is older both
// sides' are kept, deduplicated.
//
// Sync is commutative and idempotent. It is associative on sets without
// anonymous values (those built from the zero value with Update and Sync,
// as a server's are); with anonymous values dvvset's rule is not.
func (s *DVVSet[V]) Sync(o DVVSet[V]) {
	switch s.clock.Compare(o.clock) {
	case Before:
		s.anon = slices.Clone(o.anon)
	case After:
	default:
		if len(o.anon) > 0 {
			s.anon = canonical(append(slices.Clone(s.anon), o.anon...))
		}
	}
	s.syncEntries(o.clock.entries, o.vals)
}

// syncEntries merges the entries oe, with their values ovals (nil: no
// values), into s's entries (dvvset's sync2). It works in place when oe
// adds no ID to s.
func (s *DVVSet[V]) syncEntries(oe []entry, ovals [][]V) {
	a, av := s.clock.entries, s.vals
	n := unionLen(a, oe)
	ce, cv := a, av
	if n > len(a) {
		ce, cv = make([]entry, n), make([][]V, n)
	}
	i, j := 0, 0
	for k := range n {
		var theirs []V
		if ovals != nil && j < len(oe) {
			theirs = ovals[j]
		}
		switch {
		case j == len(oe) || (i < len(a) && a[i].id < oe[j].id):
			ce[k], cv[k] = a[i], av[i]
			i++
		case i == len(a) || oe[j].id < a[i].id:
			ce[k], cv[k] = entry{id: oe[j].id, counter: oe[j].counter}, slices.Clone(theirs)
			j++
		default:
			// Values first: ce may be a, and ce[k] is a[i].
			cv[k] = syncValues(a[i].counter, av[i], oe[j].counter, theirs)
			ce[k] = entry{id: a[i].id, counter: max(a[i].counter, oe[j].counter)}
			i++
			j++
		}
	}
	s.clock.entries, s.vals = ce, cv
}

// syncValues returns the live values of one ID present in both sets, with
// counters n1 and n2 and values l1 and l2 (dvvset's merge/5): the values of
// the side with the larger counter whose dots the other side either holds
// or has not seen. On equal counters both sides hold the same dots; should
// they hold different values for a dot (a dot names one write, so only a
// corrupt or forged state does), the larger in the order of wire.Compare
// is kept, so that Sync stays commutative. A list taken from the second
// side is copied.
func syncValues[V any](n1 uint64, l1 []V, n2 uint64, l2 []V) []V {
	if n1 < n2 {
		return slices.Clone(l2[:live(n2, len(l2), n1, len(l1))])
	}
	k := live(n1, len(l1), n2, len(l2))
	if n1 == n2 {
		for i := range k {
			if wire.Compare(&l2[i], &l1[i]) > 0 {
				l1[i] = l2[i]
			}
		}
	}
	clear(l1[k:])
	return l1[:k]
}

// live returns how many of the newest values of the side with counter n1
// and len1 values survive against a side with counter n2 <= n1 and len2
// values: those whose dots are above n2 - len2.
func live(n1 uint64, len1 int, n2 uint64, len2 int) int {
	floor := n2 - uint64(len2) // every dot up to floor was discarded by side 2
	return int(min(n1-floor, uint64(len1)))
}

// Last returns the newest value according to cmp (dvvset:last/2), and
// false if s is empty. The candidates are each ID's newest value, in
// increasing order of ID, then the anonymous values; a candidate replaces
// the best so far when cmp(best, candidate) <= 0, so on ties the later
// candidate wins.
func (s DVVSet[V]) Last(cmp func(a, b V) int) (V, bool) {
	v, _, ok := s.last(cmp)
	return v, ok
}

// last implements Last and also returns the index of the winner's entry,
// -1 for an anonymous winner.
func (s DVVSet[V]) last(cmp func(a, b V) int) (best V, at int, ok bool) {
	for i, vs := range s.vals {
		if len(vs) > 0 && (!ok || cmp(best, vs[0]) <= 0) {
			best, at, ok = vs[0], i, true
		}
	}
	for _, v := range s.anon {
		if !ok || cmp(best, v) <= 0 {
			best, at, ok = v, -1, true
		}
	}
	return best, at, ok
}

// LWW keeps only the value [DVVSet.Last] picks (dvvset:lww/2), with the
// history unchanged. A winner with a dot keeps it; an anonymous winner
// stays anonymous. An empty set is left as it is.
func (s *DVVSet[V]) LWW(cmp func(a, b V) int) {
	best, at, ok := s.last(cmp)
	if !ok {
		return
	}
	s.dropValues()
	if at < 0 {
		s.anon = []V{best}
	} else {
		s.vals[at] = []V{best}
	}
}

// Reconcile replaces all values with the single value f(s.Values()),
// keeping the history (dvvset:reconcile/2). The new value is anonymous, so
// a later Update keeps it as a sibling unless its context is strictly
// newer than s: a store that resolves siblings itself should rather write
// the resolved value back with s.Update(s.Context(), id, v), which gives
// it a dot. An empty set is left as it is (f is not called).
func (s *DVVSet[V]) Reconcile(f func(values []V) V) {
	if s.Len() == 0 {
		return
	}
	v := f(s.Values())
	s.dropValues()
	s.anon = []V{v}
}

// dropValues removes every value, keeping the history.
func (s *DVVSet[V]) dropValues() {
	clear(s.vals)
	s.anon = nil
}

// canonical sorts vs in the order of wire.Compare and removes duplicates
// (values equal in that order), in place.
func canonical[V any](vs []V) []V {
	if len(vs) < 2 {
		return vs
	}
	slices.SortFunc(vs, func(x, y V) int { return wire.Compare(&x, &y) })
	k := 1
	for i := 1; i < len(vs); i++ {
		if wire.Compare(&vs[k-1], &vs[i]) != 0 {
			vs[k] = vs[i]
			k++
		}
	}
	clear(vs[k:])
	return vs[:k]
}
