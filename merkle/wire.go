package merkle

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxHashes is the most hashes one [Response] carries (128 KiB). [Diff]
// splits its requests to stay within it and [Serve] refuses requests that
// would exceed it, so one request costs the server bounded work.
const MaxHashes = 1 << 14

// ErrMalformed is returned when decoding a message that is not a valid
// encoding of a [Request] or [Response].
var ErrMalformed = errors.New("merkle: malformed message")

// Kind is the level of the tree a [Request] asks for. The zero Kind is
// invalid.
type Kind uint8

// The kinds of request, one per level of the tree.
const (
	// KindRoot asks for the root hash; the request has no spans.
	KindRoot Kind = iota + 1
	// KindBranches asks for the hashes of the branches in the spans.
	KindBranches
	// KindSegments asks for the segment hashes of the branches in the
	// spans: SegmentsPerBranch hashes per branch, in segment order.
	KindSegments
	// KindRanges asks for the hashes of ranges of 2^Shift consecutive
	// segments, range r holding segments [r·2^Shift, (r+1)·2^Shift): the
	// XOR of their hashes, one per range in the spans. With Shift 0 the
	// ranges are single segments. [Diff] descends the tree with it.
	KindRanges
)

// maxShift bounds [Request].Shift: a range is at most the whole tree.
const maxShift = 24 // log2(MaxSegments)

// String returns "root", "branches", "segments" or "ranges", and "Kind(n)"
// for any other value.
func (k Kind) String() string {
	switch k {
	case KindRoot:
		return "root"
	case KindBranches:
		return "branches"
	case KindSegments:
		return "segments"
	case KindRanges:
		return "ranges"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Span is the range of branch indices [Start, Start+Len), or of range
// indices for [KindRanges]. The zero Span is empty, which no valid
// [Request] holds. It is a plain value.
type Span struct {
	Start, Len int
}

// Request is a question one replica asks another's tree during an
// exchange. Its Spans are non-empty, in increasing order, and neither
// overlap nor touch (a gap separates consecutive spans), so that every set
// of branches has exactly one encoding.
//
// The zero Request is invalid (no kind). Requests are values: safe for
// concurrent use when not mutated.
type Request struct {
	Kind  Kind
	Spans []Span
	// Shift is, for KindRanges, log2 of the number of segments per range
	// (at most 24); it is 0 for the other kinds.
	Shift int
}

// Response answers a [Request]. It carries the serving tree's geometry so
// that the asking side detects mismatched configs, and the hashes asked
// for, in request order: one for [KindRoot], one per branch for
// [KindBranches], SegmentsPerBranch per branch for [KindSegments], one per
// range for [KindRanges].
//
// The zero Response is invalid. Responses are values: safe for concurrent
// use when not mutated.
type Response struct {
	Kind   Kind
	Config Config
	Hashes []uint64
}

// Encoding. A Request is the msgpack array [kind, spans], or [kind, spans,
// shift] for KindRanges, where spans is a bin of unsigned varint pairs
// (gap, len), gap being Start minus the end of the previous span (0 before
// the first). A Response is the array [kind,
// branches, segmentsPerBranch, hashes] where hashes is a bin of 8-byte
// little-endian words. Integers use msgpack's shortest form, so equal
// messages encode to equal bytes.

// MarshalMsgpack encodes r. It returns an error wrapping [ErrMalformed]
// when r is not valid (unknown kind, spans out of order, empty, touching,
// beyond [MaxBranches], or present on a root request).
func (r Request) MarshalMsgpack() ([]byte, error) {
	spans := make([]byte, 0, 4*len(r.Spans)) // never nil: msgpack encodes a nil slice as nil, not as a bin
	end := 0
	for _, s := range r.Spans {
		spans = binary.AppendUvarint(spans, uint64(s.Start-end))
		spans = binary.AppendUvarint(spans, uint64(s.Len))
		end = s.Start + s.Len
	}
	return encode(r.validate(), 8+len(spans), func(e *msgpack.Encoder) error {
		if r.Kind == KindRanges {
			return errors.Join(e.EncodeArrayLen(3), e.EncodeUint(uint64(r.Kind)), e.EncodeBytes(spans), e.EncodeUint(uint64(r.Shift)))
		}
		return errors.Join(e.EncodeArrayLen(2), e.EncodeUint(uint64(r.Kind)), e.EncodeBytes(spans))
	})
}

func (r Request) validate() error {
	if r.Kind < KindRoot || r.Kind > KindRanges {
		return fmt.Errorf("request kind %d", r.Kind)
	}
	if r.Kind == KindRoot && len(r.Spans) > 0 {
		return errors.New("root request with spans")
	}
	limit := MaxBranches // indices run below limit
	switch {
	case r.Kind == KindRanges && (r.Shift < 0 || r.Shift > maxShift):
		return fmt.Errorf("shift %d", r.Shift)
	case r.Kind == KindRanges:
		limit = MaxSegments >> r.Shift
	case r.Shift != 0:
		return fmt.Errorf("shift %d on a %v request", r.Shift, r.Kind)
	}
	end := -1 // spans must leave a gap: the next starts after end
	for _, s := range r.Spans {
		if s.Start <= end || s.Len < 1 || s.Len > limit || s.Start > limit-s.Len {
			return fmt.Errorf("span %+v after branch %d", s, end)
		}
		end = s.Start + s.Len
	}
	return nil
}

// UnmarshalMsgpack decodes b, which must hold exactly one encoded Request,
// into r. It returns an error wrapping [ErrMalformed] for anything else; it
// never panics and allocates at most in proportion to len(b).
func (r *Request) UnmarshalMsgpack(b []byte) error {
	var req Request
	err := decode(b, func(d *decoder) error {
		n, err := d.DecodeArrayLen()
		if err != nil {
			return err
		}
		kind, err := d.uint(uint64(KindRanges))
		if err != nil {
			return err
		}
		if want := 2 + btoi(Kind(kind) == KindRanges); n != want {
			return fmt.Errorf("array of %d elements, want %d", n, want)
		}
		raw, err := d.bin()
		if err != nil {
			return err
		}
		if n == 3 {
			shift, err := d.uint(maxShift)
			if err != nil {
				return err
			}
			req.Shift = int(shift)
		}
		req.Kind = Kind(kind)
		end := 0
		for len(raw) > 0 {
			gap, n1 := binary.Uvarint(raw)
			if n1 <= 0 {
				return errors.New("bad varint")
			}
			length, n2 := binary.Uvarint(raw[n1:])
			if n2 <= 0 {
				return errors.New("bad varint")
			}
			raw = raw[n1+n2:]
			if gap > MaxSegments || length > MaxSegments {
				return fmt.Errorf("span (%d, %d) beyond %d", gap, length, MaxSegments)
			}
			s := Span{Start: end + int(gap), Len: int(length)}
			req.Spans = append(req.Spans, s)
			end = s.Start + s.Len
		}
		return req.validate()
	})
	if err == nil {
		*r = req
	}
	return err
}

// MarshalMsgpack encodes r. It returns an error wrapping [ErrMalformed]
// when r is not valid (unknown kind, invalid config, more than [MaxHashes]
// hashes, or not exactly one hash for [KindRoot]).
func (r Response) MarshalMsgpack() ([]byte, error) {
	return encode(r.validate(), 24+8*len(r.Hashes), func(e *msgpack.Encoder) error {
		err := errors.Join(e.EncodeArrayLen(4), e.EncodeUint(uint64(r.Kind)),
			e.EncodeUint(uint64(r.Config.Branches)), e.EncodeUint(uint64(r.Config.SegmentsPerBranch)),
			e.EncodeBytesLen(8*len(r.Hashes)))
		w := e.Writer()
		var word [8]byte
		for _, h := range r.Hashes {
			binary.LittleEndian.PutUint64(word[:], h)
			_, werr := w.Write(word[:])
			err = errors.Join(err, werr)
		}
		return err
	})
}

func (r Response) validate() error {
	switch {
	case r.Kind < KindRoot || r.Kind > KindRanges:
		return fmt.Errorf("response kind %d", r.Kind)
	case r.Config.Branches == 0 || r.Config.SegmentsPerBranch == 0:
		return fmt.Errorf("response config %+v", r.Config)
	case r.Kind == KindRoot && len(r.Hashes) != 1:
		return fmt.Errorf("root response with %d hashes", len(r.Hashes))
	case len(r.Hashes) > MaxHashes:
		return fmt.Errorf("%d hashes exceed %d", len(r.Hashes), MaxHashes)
	}
	return r.Config.Validate()
}

// UnmarshalMsgpack decodes b, which must hold exactly one encoded Response,
// into r. It returns an error wrapping [ErrMalformed] for anything else; it
// never panics and allocates at most in proportion to len(b).
func (r *Response) UnmarshalMsgpack(b []byte) error {
	var resp Response
	err := decode(b, func(d *decoder) error {
		if err := d.tuple(4); err != nil {
			return err
		}
		kind, err := d.uint(uint64(KindRanges))
		if err != nil {
			return err
		}
		var cfg [2]int
		for i := range cfg {
			v, err := d.uint(MaxSegments)
			if err != nil {
				return err
			}
			cfg[i] = int(v)
		}
		raw, err := d.bin()
		if err != nil {
			return err
		}
		if len(raw)%8 != 0 || len(raw)/8 > MaxHashes {
			return fmt.Errorf("%d bytes of hashes", len(raw))
		}
		resp = Response{
			Kind:   Kind(kind),
			Config: Config{Branches: cfg[0], SegmentsPerBranch: cfg[1]},
			Hashes: make([]uint64, len(raw)/8),
		}
		for i := range resp.Hashes {
			resp.Hashes[i] = binary.LittleEndian.Uint64(raw[8*i:])
		}
		return resp.validate()
	})
	if err == nil {
		*r = resp
	}
	return err
}

// encode runs body to encode a message that failed validation with
// invalid (nil: valid) and encodes to about size bytes. Every failure
// wraps ErrMalformed.
func encode(invalid error, size int, body func(e *msgpack.Encoder) error) ([]byte, error) {
	if invalid != nil {
		return nil, malformed(invalid)
	}
	buf := bytes.NewBuffer(make([]byte, 0, size))
	e := msgpack.GetEncoder()
	defer msgpack.PutEncoder(e)
	e.Reset(buf)
	if err := body(e); err != nil {
		return nil, malformed(err)
	}
	return buf.Bytes(), nil
}

// decoder reads msgpack from an in-memory message, so that lengths can be
// checked against the input left before anything is allocated.
type decoder struct {
	*msgpack.Decoder
	in []byte
	r  *bytes.Reader
}

// tuple reads the header of an array of exactly n elements.
func (d *decoder) tuple(n int) error {
	got, err := d.DecodeArrayLen()
	if err != nil {
		return err
	}
	if got != n {
		return fmt.Errorf("array of %d elements, want %d", got, n)
	}
	return nil
}

// uint returns the next unsigned integer, which must not exceed limit.
func (d *decoder) uint(limit uint64) (uint64, error) {
	v, err := d.DecodeUint64()
	if err != nil {
		return 0, err
	}
	if v > limit {
		return 0, fmt.Errorf("integer %d exceeds %d", v, limit)
	}
	return v, nil
}

// bin returns the next bin value as a subslice of the input.
func (d *decoder) bin() ([]byte, error) {
	n, err := d.DecodeBytesLen()
	if err != nil {
		return nil, err
	}
	if n < 0 || n > d.r.Len() {
		return nil, fmt.Errorf("bin of %d bytes with %d left", n, d.r.Len())
	}
	off := len(d.in) - d.r.Len()
	if _, err := d.r.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, err
	}
	return d.in[off : off+n], nil
}

// decode runs body over b and requires it to consume b entirely. Every
// failure wraps ErrMalformed.
func decode(b []byte, body func(d *decoder) error) error {
	r := bytes.NewReader(b)
	md := msgpack.GetDecoder()
	defer msgpack.PutDecoder(md)
	md.Reset(r) // a bytes.Reader is an io.ByteScanner: the decoder does not buffer ahead
	if err := body(&decoder{Decoder: md, in: b, r: r}); err != nil {
		return malformed(err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, r.Len())
	}
	return nil
}

func malformed(err error) error { return fmt.Errorf("%w: %w", ErrMalformed, err) }

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
