package wire

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"reflect"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The readers below accept exactly what msgpack's encoder writes for the
// value they return (the shortest header or integer form; strings in a str
// format, never bin; no nil where a collection is expected), so that a
// decoder built from them accepts only canonical input: whatever it
// decodes, it encodes back to the same bytes.

// ArrayLen reads an array header in its shortest form and returns its
// length. A nil is an error.
func ArrayLen(dec *msgpack.Decoder) (int, error) {
	return collectionLen(dec, "array", msgpcode.IsFixedArray, msgpcode.Array16, msgpcode.Array32, dec.DecodeArrayLen)
}

// MapLen reads a map header in its shortest form and returns its length.
// A nil is an error.
func MapLen(dec *msgpack.Decoder) (int, error) {
	return collectionLen(dec, "map", msgpcode.IsFixedMap, msgpcode.Map16, msgpcode.Map32, dec.DecodeMapLen)
}

func collectionLen(dec *msgpack.Decoder, what string, fixed func(byte) bool, c16, c32 byte, decode func() (int, error)) (int, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if !fixed(c) && c != c16 && c != c32 {
		return 0, fmt.Errorf("msgpack code %#x is not an %s", c, what)
	}
	n, err := decode()
	if err != nil {
		return 0, err
	}
	if c == c16 && n < 16 || c == c32 && n <= math.MaxUint16 {
		return 0, fmt.Errorf("%s of %d elements with a longer header than needed", what, n)
	}
	return n, nil
}

// String reads a msgpack str (not bin) with the shortest header.
func String(dec *msgpack.Decoder) (string, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsFixedString(c) && c != msgpcode.Str8 && c != msgpcode.Str16 && c != msgpcode.Str32 {
		return "", fmt.Errorf("msgpack code %#x is not a string", c)
	}
	s, err := dec.DecodeString()
	if err != nil {
		return "", err
	}
	if n := len(s); c == msgpcode.Str8 && n < 32 || c == msgpcode.Str16 && n <= math.MaxUint8 || c == msgpcode.Str32 && n <= math.MaxUint16 {
		return "", fmt.Errorf("string of %d bytes with a longer header than needed", n)
	}
	return s, nil
}

// Uint reads an unsigned integer in its shortest unsigned form (a
// positive fixnum or uint8 to uint64), as msgpack's EncodeUint writes it.
// Signed forms are errors, even for non-negative values.
func Uint(dec *msgpack.Decoder) (uint64, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if !msgpcode.IsFixedNum(c) && (c < msgpcode.Uint8 || c > msgpcode.Uint64) || msgpcode.IsFixedNum(c) && int8(c) < 0 {
		return 0, fmt.Errorf("msgpack code %#x is not an unsigned integer", c)
	}
	n, err := dec.DecodeUint64()
	if err != nil {
		return 0, err
	}
	if c == msgpcode.Uint8 && n <= math.MaxInt8 || c == msgpcode.Uint16 && n <= math.MaxUint8 ||
		c == msgpcode.Uint32 && n <= math.MaxUint16 || c == msgpcode.Uint64 && n <= math.MaxUint32 {
		return 0, fmt.Errorf("integer %d in a longer form than needed", n)
	}
	return n, nil
}

// Int reads a signed integer in the form msgpack's EncodeInt writes:
// non-negative values as [Uint] reads them, negative ones in the shortest
// signed form.
func Int(dec *msgpack.Decoder) (int64, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if msgpcode.IsFixedNum(c) && int8(c) >= 0 || c >= msgpcode.Uint8 && c <= msgpcode.Uint64 {
		n, err := Uint(dec)
		if err == nil && n > math.MaxInt64 {
			err = fmt.Errorf("integer %d out of the range of int64", n)
		}
		return int64(n), err
	}
	if !msgpcode.IsFixedNum(c) && (c < msgpcode.Int8 || c > msgpcode.Int64) {
		return 0, fmt.Errorf("msgpack code %#x is not an integer", c)
	}
	n, err := dec.DecodeInt64()
	if err != nil {
		return 0, err
	}
	if n >= 0 || c == msgpcode.Int8 && n >= -32 || c == msgpcode.Int16 && n >= math.MinInt8 ||
		c == msgpcode.Int32 && n >= math.MinInt16 || c == msgpcode.Int64 && n >= math.MinInt32 {
		return 0, fmt.Errorf("integer %d in a longer or signed form than needed", n)
	}
	return n, nil
}

// DecodeCanonical is [DecodeValue] that also rejects a value of a basic
// type (a boolean, number, string or byte slice, possibly of a named
// type) that msgpack's encoder, with its default settings, would not
// write as the bytes read: a non-minimal header, a bin where a string is
// written, an integer in another form than V's, a nil. Values of other
// types are decoded as DecodeValue does, without the check.
func DecodeCanonical[V any](dec *msgpack.Decoder) (V, error) {
	if !basic(reflect.TypeFor[V]()) {
		return DecodeValue[V](dec)
	}
	r, seeker := dec.Buffered().(io.ReadSeeker)
	var raw []byte
	var v V
	var start int64
	var err error
	if seeker {
		if start, err = r.Seek(0, io.SeekCurrent); err != nil {
			return v, err
		}
		v, err = DecodeValue[V](dec)
	} else {
		if raw, err = dec.DecodeRaw(); err == nil {
			err = msgpack.Unmarshal(raw, &v)
		}
	}
	if err != nil {
		return v, err
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	buf.Reset()
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(&v); err != nil {
		return v, err
	}
	want := buf.Bytes()
	same := bytes.Equal(raw, want)
	if seeker {
		if same, err = rereads(r, start, want); err != nil {
			return v, err
		}
	}
	if !same {
		return v, fmt.Errorf("value not in its canonical form %x", want)
	}
	return v, nil
}

// rereads reports whether the bytes of r from start to the current
// position are want, leaving r at that position.
func rereads(r io.ReadSeeker, start int64, want []byte) (bool, error) {
	end, err := r.Seek(0, io.SeekCurrent)
	if err != nil || end-start != int64(len(want)) {
		return false, err
	}
	if _, err := r.Seek(start, io.SeekStart); err != nil {
		return false, err
	}
	same := true
	var chunk [64]byte
	for rest := want; len(rest) > 0 && same; {
		n := min(len(rest), len(chunk))
		if _, err := io.ReadFull(r, chunk[:n]); err != nil {
			return false, err
		}
		same, rest = bytes.Equal(chunk[:n], rest[:n]), rest[n:]
	}
	_, err = r.Seek(end, io.SeekStart)
	return same, err
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// basic reports whether values of t encode in one canonical msgpack form
// that the default decoder reads back exactly.
func basic(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return !t.Implements(customEncoder) && !reflect.PointerTo(t).Implements(customEncoder)
	case reflect.Slice:
		return t.Elem().Kind() == reflect.Uint8 && !t.Implements(customEncoder)
	}
	return false
}

var customEncoder = reflect.TypeFor[msgpack.CustomEncoder]()
