// Package wire holds msgpack decoding helpers shared by distkit's codecs,
// and [Compare], the fixed order on values of any type with which merges
// break ties.
//
// msgpack/v5 preallocates a slice, []any or map inside a value by the
// length its header claims, whatever limits the decoder was given, so a
// dozen hostile bytes decoded with [msgpack.Decoder.Decode] can ask for
// gigabytes. [DecodeValue] decodes a value of any type without that hole,
// and [CheckLen] checks a length a codec reads itself before it allocates.
//
// # Usage
//
//	v, err := wire.DecodeValue[V](dec) // instead of dec.Decode(&v)
//
//	n, err := dec.DecodeArrayLen()
//	...
//	n, prealloc, err := wire.CheckLen(dec, n, 3) // elements of 3 bytes or more
//	out := make([]T, 0, prealloc)                  // then append n elements
//
// # Guarantees
//
// CheckLen never lets through a length whose elements cannot fit in the
// rest of an input held in memory, and caps preallocation at 1024
// elements when the input is a stream of unknown size.
//
// DecodeValue never allocates for a length the input does not back: it
// first skips the value, which reads every element each length claims and
// so fails at the end of the input, and decodes it only then. On success
// it returns exactly what dec.Decode would have returned for the same
// bytes (with dec's settings when dec reads from an [io.Seeker]) and
// leaves dec just after the value, as dec.Decode does. It never panics
// where dec.Decode would not.
package wire

import (
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// DecodeValue decodes the next value from dec into a V. The value is
// skipped first, so that every length inside it must be backed by input
// before anything is allocated for it; then it is decoded: with dec,
// rewound, when dec reads from an [io.Seeker] (a [bytes.Reader], as in
// [msgpack.Unmarshal]), so that dec's settings apply; otherwise from the
// bytes the skip recorded, with msgpack's default settings. Errors are
// those of msgpack (io.EOF or io.ErrUnexpectedEOF on truncated input).
func DecodeValue[V any](dec *msgpack.Decoder) (V, error) {
	var v V
	if r, ok := dec.Buffered().(io.Seeker); ok {
		pos, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return v, err
		}
		if err := dec.Skip(); err != nil {
			return v, err
		}
		if _, err := r.Seek(pos, io.SeekStart); err != nil {
			return v, err
		}
		return v, dec.Decode(&v)
	}
	raw, err := dec.DecodeRaw()
	if err != nil {
		return v, err
	}
	return v, msgpack.Unmarshal(raw, &v)
}

// maxPrealloc caps preallocation when the size of the input is unknown.
const maxPrealloc = 1024

// CheckLen checks the length n of a collection just read from dec (a
// msgpack array or map header; a negative n, from a nil header, counts as
// 0), whose elements take at least minSize >= 1 bytes each, and returns
// the count and how many elements the caller may preallocate. When dec
// reads from memory (a reader with a Len method, such as the
// [bytes.Reader] of [msgpack.Unmarshal]), a length whose elements could
// not fit in the rest of the input is an error and prealloc is n; from a
// stream of unknown size, prealloc is capped and the caller grows its
// collection as elements actually arrive.
func CheckLen(dec *msgpack.Decoder, n, minSize int) (count, prealloc int, err error) {
	n = max(n, 0)
	rest, ok := dec.Buffered().(interface{ Len() int })
	if !ok {
		return n, min(n, maxPrealloc), nil
	}
	if n > rest.Len()/minSize {
		return 0, 0, fmt.Errorf("length %d exceeds the %d bytes left", n, rest.Len())
	}
	return n, n, nil
}
