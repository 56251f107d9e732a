package crdt

import (
	"iter"
	"slices"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// List is a replicated list of values of type T: a sequence CRDT in which
// every replica inserts and deletes at positions of its own copy and all
// copies converge. See [Text] for the semantics, which List shares; a
// position counts elements. Values are copied by assignment.
//
// The zero List is empty and ready to use. A List is not safe for
// concurrent use.
type List[T any] struct {
	s seq[T]
}

// Insert inserts xs before the element at pos (at the end when pos is
// Len()) as replica id, and returns the delta. It panics when pos is out of
// range, or, changing nothing, when id's element counter would pass
// [vclock.MaxCounter]; [List.TryInsert] returns that error instead.
func (l *List[T]) Insert(id string, pos int, xs ...T) List[T] {
	return must(l.TryInsert(id, pos, xs...))
}

// TryInsert is [List.Insert] that returns an error wrapping
// [vclock.ErrExhausted], leaving l unchanged, when id's element counter
// would pass [vclock.MaxCounter] (which only a forged counter from a peer
// can bring about). It panics when pos is out of range.
func (l *List[T]) TryInsert(id string, pos int, xs ...T) (List[T], error) {
	var d List[T]
	if len(xs) == 0 {
		if pos < 0 || pos > l.Len() {
			panic("crdt: insert position out of range")
		}
		return d, nil
	}
	sp, err := l.s.insert(id, pos, slices.Clone(xs))
	if err != nil {
		return d, err
	}
	d.s.deltaOf(sp)
	return d, nil
}

// Delete deletes the n elements from pos and returns the delta. It panics
// when pos or n is negative or pos+n is beyond Len().
func (l *List[T]) Delete(pos, n int) List[T] {
	return List[T]{s: seq[T]{dead: l.s.remove(pos, n)}}
}

// Merge joins o into l: afterwards l holds every element and deletion of
// either. o is unchanged and shares no storage with l.
func (l *List[T]) Merge(o List[T]) { l.s.merge(&o.s) }

// Len returns the number of elements.
func (l List[T]) Len() int { return l.s.Len() }

// Get returns the element at pos, 0 <= pos < Len(); it panics otherwise.
func (l List[T]) Get(pos int) T {
	if pos < 0 || pos >= l.Len() {
		panic("crdt: list index out of range")
	}
	sp, off := l.s.locate(pos)
	return sp.items[off]
}

// All returns the positions and elements in order.
func (l List[T]) All() iter.Seq2[int, T] {
	return func(yield func(int, T) bool) {
		i := 0
		l.s.each(func(sp *span[T]) bool {
			for _, x := range sp.items {
				if !yield(i, x) {
					return false
				}
				i++
			}
			return true
		})
	}
}

// Items returns the elements in order, in a new slice.
func (l List[T]) Items() []T {
	out := make([]T, 0, l.Len())
	for _, x := range l.All() {
		out = append(out, x)
	}
	return out
}

// Clone returns a deep copy of l.
func (l List[T]) Clone() List[T] { return List[T]{s: l.s.clone()} }

// Version returns, for every replica, the largest element counter l has
// seen: the frontier to pass to Compact once every replica has seen it.
func (l List[T]) Version() vclock.VClock { return l.s.version() }

// Compact discards the deleted elements that stable covers and returns
// their number. See [Text.Compact] for when it is safe.
func (l *List[T]) Compact(stable vclock.VClock) int { return l.s.compact(stable) }

// Pending returns the number of elements that arrived before one of their
// origins and wait, invisible, for it. Every Merge retries them, at a cost
// in proportion to their number: a count that keeps growing means deltas
// whose predecessors were lost (merge a full state from a peer) or a
// forged state. An element whose right origin is not after its left one,
// which no replica inserts, waits for good on every replica alike.
func (l List[T]) Pending() int { return l.s.pendingLen() }

// EncodeMsgpack writes l in the canonical, run-length encoded form
// described in the package's wire format.
func (l List[T]) EncodeMsgpack(enc *msgpack.Encoder) error { return l.s.encode(enc, encodeValues[T]) }

// DecodeMsgpack reads a List. Errors wrap [ErrMalformed] and leave l
// unchanged.
func (l *List[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return l.s.decode(dec, decodeValues[T])
}
