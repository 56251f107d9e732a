package kv

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cespare/xxhash/v2"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/distkit/distkit/vclock"
)

// ErrMalformed is wrapped by every error from decoding a stored or
// received [Object] or [Version].
var ErrMalformed = errors.New("kv: malformed encoding")

// Version is one sibling of a key: the bytes a client wrote, or a
// tombstone left by a delete, and the idempotency key the client wrote it
// with, if any. It is a plain value; the zero Version is an empty, live
// value without an idempotency key.
type Version struct {
	Value   []byte
	Deleted bool // a tombstone; Value is empty
	// IdempotencyKey is the client's Idempotency-Key for the write that
	// made this sibling ("": none), at most [MaxIdempotencyKeyLen] bytes.
	// A coordinator asked to write with a key that a sibling already
	// carries does not write again (see [Node.Write]).
	IdempotencyKey string
}

// MaxIdempotencyKeyLen is the longest [Version.IdempotencyKey], in bytes.
const MaxIdempotencyKeyLen = 1024

var (
	_ msgpack.CustomEncoder = Version{}
	_ msgpack.CustomDecoder = (*Version)(nil)
)

// EncodeMsgpack writes v as the array [value bin, deleted bool], or
// [value bin, deleted bool, idempotency key str] when v has a key: a
// Version without a key encodes as it did before keys existed, and every
// Version has exactly one encoding.
func (v Version) EncodeMsgpack(enc *msgpack.Encoder) error {
	n := 2
	if v.IdempotencyKey != "" {
		n = 3
	}
	err := firstErr(enc.EncodeArrayLen(n), enc.EncodeBytes(v.Value), enc.EncodeBool(v.Deleted))
	if err != nil || n == 2 {
		return err
	}
	return enc.EncodeString(v.IdempotencyKey)
}

// DecodeMsgpack reads a Version written by [Version.EncodeMsgpack]. A
// tombstone with a value, an empty idempotency key written out (the
// encoding without a key is the two-field one) and a key longer than
// [MaxIdempotencyKeyLen] are rejected. Errors wrap [ErrMalformed].
func (v *Version) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return fmt.Errorf("%w: version: %w", ErrMalformed, err)
	}
	if n != 2 && n != 3 {
		return fmt.Errorf("%w: version of %d fields, want 2 or 3", ErrMalformed, n)
	}
	val, err := decodeBin(dec)
	if err != nil {
		return fmt.Errorf("%w: version value: %w", ErrMalformed, err)
	}
	del, err := dec.DecodeBool()
	if err != nil {
		return fmt.Errorf("%w: version flag: %w", ErrMalformed, err)
	}
	if del && len(val) > 0 {
		return fmt.Errorf("%w: tombstone with a %d-byte value", ErrMalformed, len(val))
	}
	var key string
	if n == 3 {
		if key, err = decodeIdempotencyKey(dec); err != nil {
			return fmt.Errorf("%w: version idempotency key: %w", ErrMalformed, err)
		}
	}
	*v = Version{Value: val, Deleted: del, IdempotencyKey: key}
	return nil
}

// decodeIdempotencyKey reads a msgpack str of 1 to MaxIdempotencyKeyLen
// bytes.
func decodeIdempotencyKey(dec *msgpack.Decoder) (string, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return "", err
	}
	if !msgpcode.IsFixedString(c) && c != msgpcode.Str8 && c != msgpcode.Str16 && c != msgpcode.Str32 {
		return "", fmt.Errorf("code %#x is not a string", c)
	}
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return "", err
	}
	if n < 1 || n > MaxIdempotencyKeyLen {
		return "", fmt.Errorf("%d bytes, want 1 to %d", n, MaxIdempotencyKeyLen)
	}
	if err := fits(dec, n, 1); err != nil {
		return "", err
	}
	b := make([]byte, n)
	if err := dec.ReadFull(b); err != nil {
		return "", err
	}
	return string(b), nil
}

// Same reports whether v and o are the same write's payload: the same
// value, both tombstones or both not.
func (v Version) Same(o Version) bool {
	return v.Deleted == o.Deleted && bytes.Equal(v.Value, o.Value)
}

// decodeBin reads a msgpack bin (nil: empty), refusing a length longer
// than the rest of an in-memory input before allocating for it.
func decodeBin(dec *msgpack.Decoder) ([]byte, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return nil, err
	}
	if err := fits(dec, n, 1); err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if err := dec.ReadFull(b); err != nil {
		return nil, err
	}
	return b, nil
}

// fits returns an error when n elements of at least minSize bytes each
// cannot fit in the rest of an in-memory input.
func fits(dec *msgpack.Decoder, n, minSize int) error {
	if rest, ok := dec.Buffered().(interface{ Len() int }); ok && n > rest.Len()/minSize {
		return fmt.Errorf("length %d exceeds the %d bytes left", n, rest.Len())
	}
	return nil
}

// Object is the state of one key on one replica: its siblings, each a
// [Version] with the dot of the write that made it, and the key's causal
// history. The zero Object is a key never written.
type Object = vclock.DVVSet[Version]

// Live returns the values of o that are not tombstones, in o's order of
// siblings. A key whose Live values are empty reads as not found, though
// its context still matters for the next write.
func Live(o Object) [][]byte {
	var out [][]byte
	for _, v := range o.Values() {
		if !v.Deleted {
			out = append(out, v.Value)
		}
	}
	return out
}

// EncodeObject returns the msgpack encoding of o, the form in which
// replicas store and exchange it. Equal objects encode to equal bytes.
func EncodeObject(o Object) ([]byte, error) {
	return encode(o.EncodeMsgpack)
}

// DecodeObject decodes an [Object] encoded by [EncodeObject]. It never
// panics and allocates in proportion to b, plus at most msgpack's 1 MiB
// read chunk; errors wrap [ErrMalformed]
// (and vclock.ErrMalformed for a malformed history). Trailing bytes are an
// error.
func DecodeObject(b []byte) (Object, error) {
	var o Object
	if err := unmarshalExact("object", b, &o); err != nil {
		return Object{}, err
	}
	return o, nil
}

// unmarshalExact decodes all of b into v; errors, including trailing
// bytes, wrap ErrMalformed and name what.
func unmarshalExact(what string, b []byte, v any) error {
	rest, err := decode(b, func(d *msgpack.Decoder) error { return d.Decode(v) })
	if err == nil && rest > 0 {
		err = fmt.Errorf("%d trailing bytes", rest)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

// hashBytes is the value hash of an encoded object in the merkle trees:
// replicas holding equal objects hold equal bytes, hence equal hashes.
func hashBytes(enc []byte) uint64 { return xxhash.Sum64(enc) }
