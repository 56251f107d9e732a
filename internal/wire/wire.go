// Package wire holds msgpack decoding helpers shared by distkit's codecs.
//
// msgpack/v5 preallocates a slice, []any or map inside a value by the
// length its header claims, whatever limits the decoder was given, so a
// dozen hostile bytes decoded with [msgpack.Decoder.Decode] can ask for
// gigabytes. [DecodeValue] decodes a value of any type without that hole.
//
// # Usage
//
//	v, err := wire.DecodeValue[V](dec) // instead of dec.Decode(&v)
//
// # Guarantees
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
