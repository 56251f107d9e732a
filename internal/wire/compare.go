package wire

import (
	"bytes"
	"encoding/binary"
	"math"
	"reflect"
	"slices"
	"unsafe"
)

// Compare returns -1, 0 or +1 as *a orders before, with or after *b in a
// fixed total order on the values of any type V: the tie-break that makes
// merges commutative whatever V is.
//
// The order compares values as Go sees them, not as msgpack encodes them
// (msgpack skips unexported and "-" fields, and writes maps in random
// order, or fails): booleans, numbers and strings by value, floats by
// their IEEE total order; arrays and slices element by element, shorter
// first, nil before empty; structs field by field, unexported fields
// included; pointers and interfaces by what they point to (interfaces by
// dynamic type name first), nil first; maps by their entries sorted in
// this order. It is the same in every process for values built of those.
// Functions, channels and unsafe pointers order by address, so only
// within one process, and nesting deeper than 64 levels (a cyclic value)
// is not looked into. Compare returns 0 only for values that are equal in
// every respect it looks at, which are then interchangeable but for
// aliasing.
//
// Identical values, the common case in merges, are recognised without
// allocating; values of size 0 are always equal.
func Compare[V any](a, b *V) int {
	if unsafe.Sizeof(*a) == 0 || a == b {
		return 0
	}
	x, y := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	if identical(x, y) {
		return 0
	}
	return bytes.Compare(appendKey(nil, x, 0), appendKey(nil, y, 0))
}

// maxDepth bounds the nesting appendKey follows.
const maxDepth = 64

// appendKey appends to b a binary form of v whose byte order is the order
// of Compare.
func appendKey(b []byte, v reflect.Value, depth int) []byte {
	if depth > maxDepth {
		return b
	}
	u64 := func(n uint64) []byte { return binary.BigEndian.AppendUint64(b, n) }
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			return append(b, 1)
		}
		return append(b, 0)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return u64(uint64(v.Int()) ^ 1<<63)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return u64(v.Uint())
	case reflect.Float32, reflect.Float64:
		return u64(floatKey(v.Float()))
	case reflect.Complex64, reflect.Complex128:
		c := v.Complex()
		b = u64(floatKey(real(c)))
		return binary.BigEndian.AppendUint64(b, floatKey(imag(c)))
	case reflect.String:
		return appendBytes(b, []byte(v.String()))
	case reflect.Slice:
		if v.IsNil() {
			return append(b, 0)
		}
		b = append(b, 1)
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return appendBytes(b, v.Bytes())
		}
		fallthrough
	case reflect.Array:
		b = u64(uint64(v.Len()))
		for i := range v.Len() {
			b = appendKey(b, v.Index(i), depth+1)
		}
		return b
	case reflect.Struct:
		for i := range v.NumField() {
			b = appendKey(b, v.Field(i), depth+1)
		}
		return b
	case reflect.Pointer:
		if v.IsNil() {
			return append(b, 0)
		}
		return appendKey(append(b, 1), v.Elem(), depth+1)
	case reflect.Interface:
		if v.IsNil() {
			return append(b, 0)
		}
		b = appendBytes(append(b, 1), []byte(v.Elem().Type().String()))
		return appendKey(b, v.Elem(), depth+1)
	case reflect.Map:
		if v.IsNil() {
			return append(b, 0)
		}
		entries := make([][]byte, 0, v.Len())
		for it := v.MapRange(); it.Next(); {
			e := appendKey(nil, it.Key(), depth+1)
			entries = append(entries, appendKey(e, it.Value(), depth+1))
		}
		slices.SortFunc(entries, bytes.Compare)
		b = u64(uint64(len(entries)))
		for _, e := range entries {
			b = appendBytes(b, e)
		}
		return b
	}
	return u64(uint64(v.Pointer())) // functions, channels, unsafe pointers
}

// appendBytes appends p, escaped so that a shorter byte string that is a
// prefix of a longer one orders first and nothing after it can change
// that: 0x00 becomes 0x00 0xff, and the end is 0x00 0x00.
func appendBytes(b, p []byte) []byte {
	for _, c := range p {
		b = append(b, c)
		if c == 0 {
			b = append(b, 0xff)
		}
	}
	return append(b, 0, 0)
}

// floatKey maps a float to a uint64 whose order is the IEEE total order.
func floatKey(f float64) uint64 {
	n := math.Float64bits(f)
	if n>>63 == 1 {
		return ^n
	}
	return n | 1<<63
}

// identical reports whether a and b, of the same type, certainly have the
// same key; false means they differ or it could not tell cheaply.
func identical(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Bool:
		return a.Bool() == b.Bool()
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return a.Int() == b.Int()
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return a.Uint() == b.Uint()
	case reflect.Float32, reflect.Float64:
		return math.Float64bits(a.Float()) == math.Float64bits(b.Float())
	case reflect.Complex64, reflect.Complex128:
		x, y := a.Complex(), b.Complex()
		return math.Float64bits(real(x)) == math.Float64bits(real(y)) && math.Float64bits(imag(x)) == math.Float64bits(imag(y))
	case reflect.String:
		return a.String() == b.String()
	case reflect.Pointer:
		return a.Pointer() == b.Pointer()
	case reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() && b.IsNil()
		}
		return a.Elem().Type() == b.Elem().Type() && identical(a.Elem(), b.Elem())
	case reflect.Slice:
		if a.IsNil() != b.IsNil() || a.Len() != b.Len() {
			return false
		}
		if a.Type().Elem().Kind() == reflect.Uint8 {
			return bytes.Equal(a.Bytes(), b.Bytes())
		}
		return identicalElems(a, b)
	case reflect.Array:
		return identicalElems(a, b)
	case reflect.Struct:
		for i := range a.NumField() {
			if !identical(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return false // maps, functions, channels, unsafe pointers: appendKey decides
}

func identicalElems(a, b reflect.Value) bool {
	for i := range a.Len() {
		if !identical(a.Index(i), b.Index(i)) {
			return false
		}
	}
	return true
}
