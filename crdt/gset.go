package crdt

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
)

// GSet is a grow-only set (riak_dt_gset): elements are added and never
// removed, and Merge is set union. Elements are ordered so that encodings
// are deterministic; a floating-point NaN cannot be an element.
//
// The zero GSet is empty and ready to use. A GSet is not safe for
// concurrent use.
type GSet[T cmp.Ordered] struct {
	elems map[T]struct{}
}

// Add adds x and returns the delta: the set {x}. It panics if x is NaN.
func (s *GSet[T]) Add(x T) GSet[T] {
	x = normKey(x)
	if s.elems == nil {
		s.elems = make(map[T]struct{})
	}
	s.elems[x] = struct{}{}
	return GSet[T]{elems: map[T]struct{}{x: {}}}
}

// Contains reports whether x is in s.
func (s GSet[T]) Contains(x T) bool {
	_, ok := s.elems[x]
	return ok
}

// Elements returns the elements in increasing order.
func (s GSet[T]) Elements() []T {
	out := make([]T, 0, len(s.elems))
	for x := range s.elems {
		out = append(out, x)
	}
	slices.Sort(out)
	return out
}

// Len returns the number of elements.
func (s GSet[T]) Len() int { return len(s.elems) }

// Merge adds every element of o to s.
func (s *GSet[T]) Merge(o GSet[T]) {
	if s.elems == nil && len(o.elems) > 0 {
		s.elems = make(map[T]struct{}, len(o.elems))
	}
	for x := range o.elems {
		s.elems[x] = struct{}{}
	}
}

// Clone returns an independent copy of s.
func (s GSet[T]) Clone() GSet[T] {
	if s.elems == nil {
		return GSet[T]{}
	}
	out := GSet[T]{elems: make(map[T]struct{}, len(s.elems))}
	for x := range s.elems {
		out.elems[x] = struct{}{}
	}
	return out
}

// EncodeMsgpack writes s as the array of its elements in increasing order.
func (s GSet[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(len(s.elems)); err != nil {
		return err
	}
	for _, x := range s.Elements() {
		if err := enc.Encode(x); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack replaces s with the set written by [GSet.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error s is unchanged.
func (s *GSet[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "GSet", func(d *decoder) error {
		n, prealloc, err := d.arrayLen(1)
		if err != nil {
			return err
		}
		var elems map[T]struct{}
		if n > 0 {
			elems = make(map[T]struct{}, prealloc)
		}
		var prev T
		for i := range n {
			x, err := decodeKey[T](d)
			if err != nil {
				return err
			}
			if i > 0 && cmp.Compare(prev, x) >= 0 {
				return fmt.Errorf("element %v after %v: not sorted or repeated", x, prev)
			}
			elems[x], prev = struct{}{}, x
		}
		s.elems = elems
		return nil
	})
}
