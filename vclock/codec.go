package vclock

import (
	"errors"
	"fmt"

	"github.com/distkit/distkit/internal/wire"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrMalformed is wrapped by every decoding error: the input is truncated,
// is not the encoding of the type, or breaks an invariant (IDs unsorted or
// repeated, a zero counter, a counter above [MaxCounter], more values than
// an ID's counter, a length longer than the input).
var ErrMalformed = errors.New("vclock: malformed encoding")

// The wire format, all msgpack arrays:
//
//	Dot     [id, counter]
//	VClock  [entry...] in increasing order of id; entry = [id, counter]
//	        or [id, counter, unix nanoseconds] when a time is recorded
//	DVVSet  [[[id, counter, [value...]]...], [anonymous value...]], the
//	        values of an id newest first, the anonymous values in their
//	        canonical order
//
// Counters are unsigned, at least 1 and at most MaxCounter. Encoders
// write the shortest msgpack forms, so equal values encode to equal bytes,
// and decoders accept only those forms (no nil for an array, no bin for a
// string, no integer in a longer or signed form, no explicit zero time):
// whatever they decode encodes back to the bytes read.

var (
	_ msgpack.CustomEncoder = Dot{}
	_ msgpack.CustomDecoder = (*Dot)(nil)
	_ msgpack.CustomEncoder = VClock{}
	_ msgpack.CustomDecoder = (*VClock)(nil)
	_ msgpack.CustomEncoder = DVVSet[string]{}
	_ msgpack.CustomDecoder = (*DVVSet[string])(nil)
)

// EncodeMsgpack writes d as [id, counter].
func (d Dot) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.EncodeString(d.ID); err != nil {
		return err
	}
	return enc.EncodeUint(d.Counter)
}

// DecodeMsgpack reads a Dot written by [Dot.EncodeMsgpack]. A Counter of 0
// is accepted: it is a valid Dot value, though it names no event; one
// above [MaxCounter] is not. Errors wrap [ErrMalformed]; on error d is
// unchanged.
func (d *Dot) DecodeMsgpack(dec *msgpack.Decoder) error {
	if err := decodeTuple(dec, 2, 2); err != nil {
		return malformed("Dot", err)
	}
	id, err := wire.String(dec)
	if err != nil {
		return malformed("Dot", err)
	}
	n, err := decodeCounter(dec)
	if err != nil {
		return malformed("Dot", err)
	}
	*d = Dot{ID: id, Counter: n}
	return nil
}

// EncodeMsgpack writes v as an array of entries sorted by ID.
func (v VClock) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(len(v.entries)); err != nil {
		return err
	}
	for _, e := range v.entries {
		n := 2
		if e.time != 0 {
			n = 3
		}
		if err := enc.EncodeArrayLen(n); err != nil {
			return err
		}
		if err := enc.EncodeString(e.id); err != nil {
			return err
		}
		if err := enc.EncodeUint(e.counter); err != nil {
			return err
		}
		if e.time != 0 {
			if err := enc.EncodeInt(e.time); err != nil {
				return err
			}
		}
	}
	return nil
}

// DecodeMsgpack reads a VClock written by [VClock.EncodeMsgpack],
// replacing v's contents. (A msgpack nil never reaches it: msgpack stores
// the empty clock; called directly, it rejects nil.) Errors wrap
// [ErrMalformed]; on error v is unchanged.
func (v *VClock) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, prealloc, err := decodeLen(dec, 3) // an entry takes at least 3 bytes
	if err != nil {
		return malformed("VClock", err)
	}
	var es []entry
	if n > 0 {
		es = make([]entry, 0, prealloc)
	}
	for range n {
		k, err := decodeTupleLen(dec, 2, 3)
		if err != nil {
			return malformed("VClock entry", err)
		}
		e, err := decodeEntry(dec, es)
		if err != nil {
			return malformed("VClock entry", err)
		}
		if k == 3 {
			if e.time, err = wire.Int(dec); err != nil {
				return malformed("VClock entry time", err)
			}
			if e.time == 0 {
				return malformed("VClock entry time", fmt.Errorf("explicit zero time of %q", e.id))
			}
		}
		es = append(es, e)
	}
	v.entries = es
	return nil
}

// EncodeMsgpack writes s; values are encoded with enc, so they follow its
// settings (use SetSortMapKeys for deterministic maps inside values).
func (s DVVSet[V]) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.EncodeArrayLen(len(s.clock.entries)); err != nil {
		return err
	}
	for i, e := range s.clock.entries {
		if err := enc.EncodeArrayLen(3); err != nil {
			return err
		}
		if err := enc.EncodeString(e.id); err != nil {
			return err
		}
		if err := enc.EncodeUint(e.counter); err != nil {
			return err
		}
		if err := encodeValues(enc, s.vals[i]); err != nil {
			return err
		}
	}
	return encodeValues(enc, s.anon)
}

// DecodeMsgpack reads a DVVSet written by [DVVSet.EncodeMsgpack],
// replacing s's contents. Each value is checked before it is decoded: every
// length inside it must be backed by input, so that hostile input cannot
// make msgpack preallocate for it. Values are then decoded with dec when it
// reads from an [io.Seeker] (as [msgpack.Unmarshal] does), and from other
// readers with msgpack's default settings. Values of basic types (booleans,
// numbers, strings, byte slices) must be in the form msgpack's default
// encoder writes. The anonymous values must be in canonical order (see
// [DVVSet]), without duplicates. Errors wrap [ErrMalformed]; on error s is
// unchanged.
func (s *DVVSet[V]) DecodeMsgpack(dec *msgpack.Decoder) error {
	if err := decodeTuple(dec, 2, 2); err != nil {
		return malformed("DVVSet", err)
	}
	n, prealloc, err := decodeLen(dec, 4) // an entry takes at least 4 bytes
	if err != nil {
		return malformed("DVVSet", err)
	}
	var out DVVSet[V]
	if n > 0 {
		out.clock.entries, out.vals = make([]entry, 0, prealloc), make([][]V, 0, prealloc)
	}
	for range n {
		if err := decodeTuple(dec, 3, 3); err != nil {
			return malformed("DVVSet entry", err)
		}
		e, err := decodeEntry(dec, out.clock.entries)
		if err != nil {
			return malformed("DVVSet entry", err)
		}
		vs, err := decodeValues[V](dec)
		if err != nil {
			return malformed("DVVSet values", err)
		}
		if uint64(len(vs)) > e.counter {
			return malformed("DVVSet values", fmt.Errorf("%d values for %q with counter %d", len(vs), e.id, e.counter))
		}
		out.clock.entries = append(out.clock.entries, e)
		out.vals = append(out.vals, vs)
	}
	if out.anon, err = decodeValues[V](dec); err != nil {
		return malformed("DVVSet anonymous values", err)
	}
	for i := 1; i < len(out.anon); i++ {
		if wire.Compare(&out.anon[i-1], &out.anon[i]) >= 0 {
			return malformed("DVVSet anonymous values", fmt.Errorf("value %d not in canonical order or repeated", i))
		}
	}
	*s = out
	return nil
}

func encodeValues[V any](enc *msgpack.Encoder, vs []V) error {
	if err := enc.EncodeArrayLen(len(vs)); err != nil {
		return err
	}
	for i := range vs {
		// A pointer boxes into the interface without an allocation, and
		// msgpack encodes what it points to.
		if err := enc.Encode(&vs[i]); err != nil {
			return err
		}
	}
	return nil
}

func decodeValues[V any](dec *msgpack.Decoder) ([]V, error) {
	n, prealloc, err := decodeLen(dec, 1)
	if err != nil || n == 0 {
		return nil, err
	}
	vs := make([]V, 0, prealloc)
	for range n {
		v, err := wire.DecodeCanonical[V](dec)
		if err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, nil
}

// decodeEntry reads an entry's ID and counter and checks them against the
// entries before it.
func decodeEntry(dec *msgpack.Decoder, prev []entry) (entry, error) {
	id, err := wire.String(dec)
	if err != nil {
		return entry{}, err
	}
	if len(prev) > 0 && prev[len(prev)-1].id >= id {
		return entry{}, fmt.Errorf("ID %q after %q: not sorted or repeated", id, prev[len(prev)-1].id)
	}
	n, err := decodeCounter(dec)
	if err != nil {
		return entry{}, err
	}
	if n == 0 {
		return entry{}, fmt.Errorf("ID %q with counter 0", id)
	}
	return entry{id: id, counter: n}, nil
}

// decodeCounter reads an unsigned integer of at most MaxCounter, in its
// canonical form.
func decodeCounter(dec *msgpack.Decoder) (uint64, error) {
	n, err := wire.Uint(dec)
	if err == nil {
		err = CheckCounter(n)
	}
	return n, err
}

// decodeLen reads an array length and how many elements the caller may
// preallocate; see [wire.CheckLen].
func decodeLen(dec *msgpack.Decoder, minSize int) (n, prealloc int, err error) {
	if n, err = wire.ArrayLen(dec); err != nil {
		return 0, 0, err
	}
	return wire.CheckLen(dec, n, minSize)
}

// decodeTuple reads the header of an array of lo to hi elements.
func decodeTuple(dec *msgpack.Decoder, lo, hi int) error {
	_, err := decodeTupleLen(dec, lo, hi)
	return err
}

func decodeTupleLen(dec *msgpack.Decoder, lo, hi int) (int, error) {
	n, err := wire.ArrayLen(dec)
	if err != nil {
		return 0, err
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("array of %d elements, want %d to %d", n, lo, hi)
	}
	return n, nil
}

func malformed(what string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
}
