package idempotency

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// ErrCorrupt is returned when a recorded result or response does not
// decode: it was not written by this package, or was damaged in the store.
var ErrCorrupt = errors.New("idempotency: corrupt stored record")

// The stored forms, both msgpack with deterministic bytes:
//
//	outcome  = [0, bin | nil]                  fn returned (out, nil)
//	         | [1, str]                        fn returned (nil, err): err.Error()
//	response = [status, {name: [value, ...]}, bin body]   names sorted, unique
const (
	outcomeOK  = 0
	outcomeErr = 1
)

// encodeOutcome encodes what fn returned, for Store.Complete.
func encodeOutcome(out []byte, err error) []byte {
	if err != nil {
		msg := err.Error()
		return encode(len(msg)+8, func(enc *msgpack.Encoder) error {
			return firstErr(enc.EncodeArrayLen(2), enc.EncodeUint(outcomeErr), enc.EncodeString(msg))
		})
	}
	return encode(len(out)+8, func(enc *msgpack.Encoder) error {
		return firstErr(enc.EncodeArrayLen(2), enc.EncodeUint(outcomeOK), enc.EncodeBytes(out))
	})
}

// decodeOutcome decodes an encodeOutcome. A stored error comes back as a
// *StoredError. out aliases b.
func decodeOutcome(b []byte) (out []byte, err error) {
	r := newWireReader(b)
	defer r.close()
	if err := r.arrayLen(2); err != nil {
		return nil, err
	}
	kind, err := r.uint()
	if err != nil {
		return nil, err
	}
	switch kind {
	case outcomeOK:
		if out, err = r.bin(true); err != nil {
			return nil, err
		}
		return out, r.end()
	case outcomeErr:
		msg, err := r.str()
		if err != nil {
			return nil, err
		}
		if err := r.end(); err != nil {
			return nil, err
		}
		return nil, &StoredError{Message: string(msg)}
	}
	return nil, fmt.Errorf("%w: unknown outcome kind %d", ErrCorrupt, kind)
}

// response is an HTTP response as the middleware records and replays it.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (resp *response) encode() []byte {
	names := slices.Sorted(maps.Keys(resp.header))
	size := len(resp.body) + 16
	for _, k := range names {
		size += len(k) + 8
		for _, v := range resp.header[k] {
			size += len(v) + 4
		}
	}
	body := resp.body
	if body == nil {
		body = []byte{}
	}
	return encode(size, func(enc *msgpack.Encoder) error {
		err := firstErr(enc.EncodeArrayLen(3), enc.EncodeUint(uint64(resp.status)), enc.EncodeMapLen(len(names)))
		for _, k := range names {
			vs := resp.header[k]
			err = firstErr(err, enc.EncodeString(k), enc.EncodeArrayLen(len(vs)))
			for _, v := range vs {
				err = firstErr(err, enc.EncodeString(v))
			}
		}
		return firstErr(err, enc.EncodeBytes(body))
	})
}

// decodeResponse decodes a response.encode, checking that the status is a
// valid HTTP status, that header names are tokens and header values hold
// no control characters, so that replaying it can neither panic nor
// split a response. body aliases b.
func decodeResponse(b []byte) (*response, error) {
	r := newWireReader(b)
	defer r.close()
	if err := r.arrayLen(3); err != nil {
		return nil, err
	}
	status, err := r.uint()
	if err != nil {
		return nil, err
	}
	if status < 100 || status > 999 {
		return nil, fmt.Errorf("%w: status %d", ErrCorrupt, status)
	}
	n, err := r.mapLen()
	if err != nil {
		return nil, err
	}
	resp := &response{status: int(status), header: make(http.Header, n)}
	var prev []byte
	for i := range n {
		name, err := r.str()
		if err != nil {
			return nil, err
		}
		if i > 0 && bytes.Compare(prev, name) >= 0 {
			return nil, fmt.Errorf("%w: header names out of order", ErrCorrupt)
		}
		if !isToken(name) {
			return nil, fmt.Errorf("%w: header name %q", ErrCorrupt, name)
		}
		prev = name
		nv, err := r.len(r.dec.DecodeArrayLen)
		if err != nil {
			return nil, err
		}
		vs := make([]string, nv)
		for j := range vs {
			v, err := r.str()
			if err != nil {
				return nil, err
			}
			if !isFieldValue(v) {
				return nil, fmt.Errorf("%w: header value %q", ErrCorrupt, v)
			}
			vs[j] = string(v)
		}
		resp.header[string(name)] = vs
	}
	if resp.body, err = r.bin(false); err != nil {
		return nil, err
	}
	return resp, r.end()
}

// encode runs fn on a pooled encoder writing to a buffer of sizeHint bytes.
func encode(sizeHint int, fn func(*msgpack.Encoder) error) []byte {
	var buf bytes.Buffer
	buf.Grow(sizeHint)
	enc := msgpack.GetEncoder()
	enc.Reset(&buf)
	err := fn(enc)
	msgpack.PutEncoder(enc)
	if err != nil { // unreachable: writes to a bytes.Buffer do not fail
		panic("idempotency: encoding to memory: " + err.Error())
	}
	return buf.Bytes()
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// wireReader decodes msgpack from memory with a pooled decoder, checking
// every declared length against the bytes that remain before using it, so
// that hostile input can make it neither panic nor over-allocate. Strings
// and byte strings are returned as subslices of the input.
type wireReader struct {
	buf []byte
	rd  bytes.Reader
	dec *msgpack.Decoder
}

func newWireReader(b []byte) *wireReader {
	r := &wireReader{buf: b, dec: msgpack.GetDecoder()}
	r.rd.Reset(b)
	r.dec.Reset(&r.rd) // a bytes.Reader is an io.ByteScanner: no buffering
	return r
}

func (r *wireReader) close() { msgpack.PutDecoder(r.dec) }

func (r *wireReader) peek() (byte, error) {
	c, err := r.dec.PeekCode()
	if err != nil {
		return 0, corrupt(err)
	}
	return c, nil
}

// len reads a length with read and checks that at least that many bytes
// remain (every element takes at least one byte).
func (r *wireReader) len(read func() (int, error)) (int, error) {
	n, err := read()
	if err != nil {
		return 0, corrupt(err)
	}
	if n < 0 || n > r.rd.Len() {
		return 0, fmt.Errorf("%w: length %d with %d bytes left", ErrCorrupt, n, r.rd.Len())
	}
	return n, nil
}

func (r *wireReader) arrayLen(want int) error {
	n, err := r.len(r.dec.DecodeArrayLen)
	if err == nil && n != want {
		err = fmt.Errorf("%w: array of %d, want %d", ErrCorrupt, n, want)
	}
	return err
}

func (r *wireReader) mapLen() (int, error) { return r.len(r.dec.DecodeMapLen) }

func (r *wireReader) uint() (uint64, error) {
	c, err := r.peek()
	if err != nil {
		return 0, err
	}
	if c > msgpcode.PosFixedNumHigh && c != msgpcode.Uint8 && c != msgpcode.Uint16 &&
		c != msgpcode.Uint32 && c != msgpcode.Uint64 {
		return 0, fmt.Errorf("%w: code %#x is not an unsigned integer", ErrCorrupt, c)
	}
	v, err := r.dec.DecodeUint64()
	return v, corrupt(err)
}

func (r *wireReader) str() ([]byte, error) {
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	if !msgpcode.IsString(c) {
		return nil, fmt.Errorf("%w: code %#x is not a string", ErrCorrupt, c)
	}
	return r.raw()
}

// bin reads a byte string, or nil if nilOK and the value is nil.
func (r *wireReader) bin(nilOK bool) ([]byte, error) {
	c, err := r.peek()
	if err != nil {
		return nil, err
	}
	if nilOK && c == msgpcode.Nil {
		return nil, corrupt(r.dec.DecodeNil())
	}
	if !msgpcode.IsBin(c) {
		return nil, fmt.Errorf("%w: code %#x is not binary", ErrCorrupt, c)
	}
	return r.raw()
}

func (r *wireReader) raw() ([]byte, error) {
	n, err := r.len(r.dec.DecodeBytesLen)
	if err != nil {
		return nil, err
	}
	off := len(r.buf) - r.rd.Len()
	if _, err := r.rd.Seek(int64(n), io.SeekCurrent); err != nil {
		return nil, corrupt(err)
	}
	return r.buf[off : off+n : off+n], nil
}

func (r *wireReader) end() error {
	if r.rd.Len() != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, r.rd.Len())
	}
	return nil
}

func corrupt(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, err)
}

// isToken reports whether b is an RFC 9110 token: one or more tchar.
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isTchar(c) {
			return false
		}
	}
	return true
}

// isTchar reports whether c is an RFC 9110 tchar.
func isTchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// isFieldValue reports whether b may be sent as an HTTP field value:
// visible characters, obs-text, spaces and tabs.
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if !isFieldByte(c) {
			return false
		}
	}
	return true
}

// isFieldByte reports whether c may appear in an HTTP field value: it is
// not a control character other than tab.
func isFieldByte(c byte) bool { return c >= ' ' && c != 0x7f || c == '\t' }
