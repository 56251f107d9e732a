package crdt

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/vclock"
)

// dotted is one entry of a dotFun: a dot and the value written with it.
type dotted[T any] struct {
	dot vclock.Dot
	v   T
}

// dotFun maps dots to values (the paper's DotFun), sorted by dot. It is
// never modified in place, so copies may share it. MVRegister keeps its
// values in one.
type dotFun[T any] []dotted[T]

// dotSet is a set of dots (the paper's DotSet): an EWFlag's state and the
// state of each element of an ORSet.
type dotSet = dotFun[struct{}]

// isDotSet reports whether a dotFun carries no values, which changes its
// encoding.
func (s dotFun[T]) isDotSet() bool {
	_, ok := any(s).(dotSet)
	return ok
}

// join keeps the dots both sides hold and the dots one side holds that the
// other has not seen. It returns s itself when nothing changes.
func (s dotFun[T]) join(sc *dotContext, o dotFun[T], oc *dotContext) dotFun[T] {
	var out dotFun[T]
	changed := false
	change := func(i int) {
		if !changed {
			changed = true
			out = append(make(dotFun[T], 0, len(s)+len(o)), s[:i]...)
		}
	}
	i, j := 0, 0
	for i < len(s) || j < len(o) {
		c := -1
		switch {
		case i == len(s):
			c = 1
		case j < len(o):
			c = compareDots(s[i].dot, o[j].dot)
		}
		switch {
		case c == 0 && wire.Compare(&o[j].v, &s[i].v) > 0:
			// The same dot with another value: only a corrupt or forged
			// state has one, as a dot names one write. The larger value
			// wins, so that the join stays commutative.
			change(i)
			out = append(out, o[j])
			i++
			j++
		case c == 0:
			if changed {
				out = append(out, s[i])
			}
			i++
			j++
		case c < 0:
			if oc.contains(s[i].dot) {
				change(i)
			} else if changed {
				out = append(out, s[i])
			}
			i++
		default:
			if !sc.contains(o[j].dot) {
				change(i)
				out = append(out, o[j])
			}
			j++
		}
	}
	if !changed {
		return s
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

func (s dotFun[T]) empty() bool { return len(s) == 0 }

func (s dotFun[T]) dots(yield func(vclock.Dot) bool) {
	for _, e := range s {
		if !yield(e.dot) {
			return
		}
	}
}

func (s dotFun[T]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) dotFun[T] {
	var out dotFun[T]
	for _, e := range s {
		if d, ok := f(e.dot); ok {
			out = append(out, dotted[T]{dot: d, v: e.v})
		}
	}
	slices.SortFunc(out, func(a, b dotted[T]) int { return compareDots(a.dot, b.dot) })
	return out
}

func (s dotFun[T]) clone() dotFun[T] { return s }

// values returns the values in dot order.
func (s dotFun[T]) values() []T {
	out := make([]T, len(s))
	for i, e := range s {
		out[i] = e.v
	}
	return out
}

// encodeStore writes [[id, counter] or [id, counter, value]...] in dot
// order.
func (s dotFun[T]) encodeStore(enc *encoder) error {
	if err := enc.EncodeArrayLen(len(s)); err != nil {
		return err
	}
	n := 3
	if s.isDotSet() {
		n = 2
	}
	for _, e := range s {
		if err := enc.EncodeArrayLen(n); err != nil {
			return err
		}
		if err := enc.EncodeString(e.dot.ID); err != nil {
			return err
		}
		if err := enc.EncodeUint(e.dot.Counter); err != nil {
			return err
		}
		if n == 3 {
			if err := enc.Encode(e.v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s dotFun[T]) decodeStore(dec *decoder) (dotFun[T], error) {
	n, prealloc, err := dec.arrayLen(3) // [id, counter] takes at least 3 bytes
	if err != nil || n == 0 {
		return nil, err
	}
	k := 3
	if s.isDotSet() {
		k = 2
	}
	out := make(dotFun[T], 0, prealloc)
	for range n {
		if err := dec.tuple(k); err != nil {
			return nil, err
		}
		var e dotted[T]
		if e.dot, err = dec.dotFields(); err != nil {
			return nil, err
		}
		if k == 3 {
			if e.v, err = wire.DecodeCanonical[T](dec.Decoder); err != nil {
				return nil, err
			}
		}
		if len(out) > 0 && compareDots(out[len(out)-1].dot, e.dot) >= 0 {
			return nil, fmt.Errorf("dot %v after %v: not sorted or repeated", e.dot, out[len(out)-1].dot)
		}
		out = append(out, e)
	}
	return out, nil
}

// dotMap maps keys to non-empty dot stores (the paper's DotMap): an
// ORSet's elements to their dots, an ORMap's keys to nested CRDTs.
type dotMap[K cmp.Ordered, V dotStore[V]] map[K]V

// join joins key by key; a key whose joined store is empty is absent.
func (m dotMap[K, V]) join(mc *dotContext, o dotMap[K, V], oc *dotContext) dotMap[K, V] {
	var zero V
	var addedK []K // keys only o has, with their stores (o's minus what m saw)
	var addedV []V
	for k, ov := range o {
		if _, ok := m[k]; !ok {
			if v := zero.join(mc, ov, oc); !v.empty() {
				addedK, addedV = append(addedK, k), append(addedV, v)
			}
		}
	}
	for k, v := range m {
		ov, ok := o[k]
		if !ok {
			ov = zero
		}
		if v = v.join(mc, ov, oc); v.empty() {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	if len(addedK) > 0 && m == nil {
		m = make(dotMap[K, V], len(addedK))
	}
	for i, k := range addedK {
		m[k] = addedV[i]
	}
	return m
}

func (m dotMap[K, V]) empty() bool { return len(m) == 0 }

func (m dotMap[K, V]) dots(yield func(vclock.Dot) bool) {
	for _, v := range m {
		for d := range v.dots {
			if !yield(d) {
				return
			}
		}
	}
}

func (m dotMap[K, V]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) dotMap[K, V] {
	for k, v := range m {
		if v = v.mapDots(f); v.empty() {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func (m dotMap[K, V]) clone() dotMap[K, V] {
	if m == nil {
		return nil
	}
	out := make(dotMap[K, V], len(m))
	for k, v := range m {
		out[k] = v.clone()
	}
	return out
}

// index returns the key of every dot of m.
func (m dotMap[K, V]) index() map[vclock.Dot]K {
	out := make(map[vclock.Dot]K, len(m))
	for k, v := range m {
		for d := range v.dots {
			out[d] = k
		}
	}
	return out
}

// keys returns the keys in increasing order.
func (m dotMap[K, V]) keys() []K {
	ks := make([]K, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, cmp.Compare)
	return ks
}

// encodeStore writes a msgpack map from key to store, keys in increasing
// order.
func (m dotMap[K, V]) encodeStore(enc *encoder) error {
	if err := enc.EncodeMapLen(len(m)); err != nil {
		return err
	}
	for _, k := range m.keys() {
		if err := enc.Encode(k); err != nil {
			return err
		}
		if err := m[k].encodeStore(enc); err != nil {
			return err
		}
	}
	return nil
}

func (m dotMap[K, V]) decodeStore(dec *decoder) (dotMap[K, V], error) {
	n, prealloc, err := dec.mapLen(2) // a key and an empty store take at least 2 bytes
	if err != nil || n == 0 {
		return nil, err
	}
	out := make(dotMap[K, V], prealloc)
	var prev K
	for i := range n {
		k, err := decodeKey[K](dec)
		if err != nil {
			return nil, err
		}
		if i > 0 && cmp.Compare(prev, k) >= 0 {
			return nil, fmt.Errorf("key %v after %v: not sorted or repeated", k, prev)
		}
		var zero V
		v, err := zero.decodeStore(dec)
		if err != nil {
			return nil, err
		}
		if v.empty() {
			return nil, fmt.Errorf("key %v with an empty state", k)
		}
		out[k], prev = v, k
	}
	return out, nil
}
