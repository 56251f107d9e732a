package idempotency

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"net/http"
	"slices"
	"strings"
)

// ErrCorrupt is returned when a record from the store cannot be trusted:
// its result or response does not decode (it was not written by this
// package, or was damaged in the store), or the store broke its contract
// (a record for another key, a fingerprint of another length than the
// caller's, a claim granted under token 0).
var ErrCorrupt = errors.New("idempotency: corrupt stored record")

// The stored forms, both msgpack with deterministic bytes (the shortest
// encoding of every length and integer):
//
//	outcome  = [0, bin | nil]                  fn returned (out, nil)
//	         | [1, str message]                fn returned (nil, err), err without a code
//	         | [1, str message, str code]      fn returned (nil, err), err with a code
//	response = [status, {name: [value, ...]}, bin body]   names sorted, unique
//
// They are written and read by the few functions below rather than by a
// general msgpack codec: a replay decodes its record without allocating.
const (
	outcomeOK  = 0
	outcomeErr = 1
)

// appendOutcome appends the encoding of what fn returned, for
// Store.Complete: out when err is nil, else err's message and code.
func appendOutcome(b, out []byte, err error, code string) []byte {
	if err == nil {
		b = append(b, 0x92, outcomeOK)
		return appendBin(b, out)
	}
	if code == "" {
		b = append(b, 0x92, outcomeErr)
		return appendStr(b, err.Error())
	}
	b = append(b, 0x93, outcomeErr)
	return appendStr(appendStr(b, err.Error()), code)
}

// decodeOutcome decodes an appendOutcome: fn's bytes, aliasing b, or the
// recorded error as a *StoredError.
func decodeOutcome(b []byte) (out []byte, stored *StoredError, err error) {
	r := wireReader{buf: b}
	n, err := r.arrayLen()
	if err != nil {
		return nil, nil, err
	}
	kind, err := r.uint()
	if err != nil {
		return nil, nil, err
	}
	switch {
	case kind == outcomeOK && n == 2:
		if out, err = r.bin(true); err != nil {
			return nil, nil, err
		}
		return out, nil, r.end()
	case kind == outcomeErr && (n == 2 || n == 3):
		msg, err := r.str()
		if err != nil {
			return nil, nil, err
		}
		var code []byte
		if n == 3 {
			if code, err = r.str(); err != nil {
				return nil, nil, err
			}
			if len(code) == 0 {
				return nil, nil, fmt.Errorf("%w: empty error code", ErrCorrupt)
			}
		}
		if err := r.end(); err != nil {
			return nil, nil, err
		}
		return nil, &StoredError{Message: string(msg), Code: string(code)}, nil
	}
	return nil, nil, fmt.Errorf("%w: outcome kind %d in an array of %d", ErrCorrupt, kind, n)
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
	b := make([]byte, 0, size)
	b = appendUint(append(b, 0x93), uint64(resp.status))
	b = appendLen(b, len(names), 0x80, 16, mapCodes)
	for _, k := range names {
		vs := resp.header[k]
		b = appendLen(appendStr(b, k), len(vs), 0x90, 16, arrayCodes)
		for _, v := range vs {
			b = appendStr(b, v)
		}
	}
	body := resp.body
	if body == nil {
		body = []byte{}
	}
	return appendBin(b, body)
}

// decodeResponse decodes a response.encode, checking that the status is a
// valid HTTP status, that header names are tokens and header values hold
// no control characters, so that replaying it can neither panic nor
// split a response. body aliases b.
func decodeResponse(b []byte) (*response, error) {
	r := wireReader{buf: b}
	if n, err := r.arrayLen(); err != nil || n != 3 {
		return nil, wantArray(err, n, 3)
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
		nv, err := r.arrayLen()
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

func wantArray(err error, n, want int) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: array of %d, want %d", ErrCorrupt, n, want)
}

// The codes of the 8-, 16- and 32-bit length forms of the msgpack types
// the stored forms use (0: no such form).
var (
	arrayCodes = [3]byte{0, 0xdc, 0xdd}
	mapCodes   = [3]byte{0, 0xde, 0xdf}
	strCodes   = [3]byte{0xd9, 0xda, 0xdb}
	binCodes   = [3]byte{0xc4, 0xc5, 0xc6}
)

// appendLen appends the header of an array, map or string of n elements
// or bytes: the fixed form, with code fix, when n is below fixN, else
// the shortest of the length forms in codes.
func appendLen(b []byte, n int, fix, fixN byte, codes [3]byte) []byte {
	switch {
	case n < int(fixN):
		return append(b, fix|byte(n))
	case n <= math.MaxUint8 && codes[0] != 0:
		return append(b, codes[0], byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, codes[1]), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, codes[2]), uint32(n))
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= 0x7f:
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, 0xcc, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, 0xcd), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, 0xce), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, 0xcf), v)
}

func appendStr(b []byte, s string) []byte {
	return append(appendLen(b, len(s), 0xa0, 32, strCodes), s...)
}

// appendBin appends p as a msgpack bin, or nil if p is nil.
func appendBin(b, p []byte) []byte {
	if p == nil {
		return append(b, 0xc0)
	}
	return append(appendLen(b, len(p), 0, 0, binCodes), p...)
}

// wireReader reads the msgpack subset of the stored forms from memory,
// checking every declared length against the bytes that remain before
// using it, so that hostile input can make it neither panic nor
// over-allocate. Strings and byte strings are returned as subslices of
// the input. Its errors wrap ErrCorrupt.
type wireReader struct {
	buf []byte
	off int
}

func (r *wireReader) fail(what string) error {
	if r.off >= len(r.buf) {
		return fmt.Errorf("%w: truncated before %s", ErrCorrupt, what)
	}
	return fmt.Errorf("%w: code %#x at offset %d is not %s", ErrCorrupt, r.buf[r.off], r.off, what)
}

// next returns the next n bytes, or nil and false if fewer remain.
func (r *wireReader) next(n uint64) ([]byte, bool) {
	if n > uint64(len(r.buf)-r.off) {
		return nil, false
	}
	b := r.buf[r.off : r.off+int(n) : r.off+int(n)]
	r.off += int(n)
	return b, true
}

// size reads the big-endian length or integer of width bytes after the
// code byte.
func (r *wireReader) size(width int) (uint64, bool) {
	b, ok := r.next(uint64(width))
	if !ok {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		v = v<<8 | uint64(c)
	}
	return v, true
}

// header reads a code in [fixLo, fixLo+fixN) holding its length in its
// low bits, or one of codes (the 8-, 16- and 32-bit forms, 0 where a form
// does not exist) followed by the length, and checks that the length fits
// in what remains, each element taking at least one byte.
func (r *wireReader) header(what string, fixLo, fixN byte, codes [3]byte) (int, error) {
	if r.off >= len(r.buf) {
		return 0, r.fail(what)
	}
	c := r.buf[r.off]
	var n uint64
	switch {
	case c >= fixLo && c-fixLo < fixN:
		r.off++
		n = uint64(c - fixLo)
	case c == codes[0] && c != 0, c == codes[1], c == codes[2]:
		width := 1 << (slices.Index(codes[:], c)) // 1, 2, 4
		r.off++
		v, ok := r.size(width)
		if !ok {
			return 0, r.fail(what)
		}
		n = v
	default:
		return 0, r.fail(what)
	}
	if n > uint64(len(r.buf)-r.off) {
		return 0, fmt.Errorf("%w: %s of length %d with %d bytes left", ErrCorrupt, what, n, len(r.buf)-r.off)
	}
	return int(n), nil
}

func (r *wireReader) arrayLen() (int, error) {
	return r.header("an array", 0x90, 16, arrayCodes)
}

func (r *wireReader) mapLen() (int, error) {
	return r.header("a map", 0x80, 16, mapCodes)
}

func (r *wireReader) uint() (uint64, error) {
	if r.off >= len(r.buf) {
		return 0, r.fail("an unsigned integer")
	}
	c := r.buf[r.off]
	if c <= 0x7f {
		r.off++
		return uint64(c), nil
	}
	if c < 0xcc || c > 0xcf {
		return 0, r.fail("an unsigned integer")
	}
	r.off++
	v, ok := r.size(1 << (c - 0xcc))
	if !ok {
		return 0, r.fail("an unsigned integer")
	}
	return v, nil
}

func (r *wireReader) str() ([]byte, error) {
	n, err := r.header("a string", 0xa0, 32, strCodes)
	if err != nil {
		return nil, err
	}
	b, _ := r.next(uint64(n)) // header checked the length
	return b, nil
}

// bin reads a byte string, or nil if nilOK and the value is nil.
func (r *wireReader) bin(nilOK bool) ([]byte, error) {
	if nilOK && r.off < len(r.buf) && r.buf[r.off] == 0xc0 {
		r.off++
		return nil, nil
	}
	n, err := r.header("binary", 0, 0, binCodes)
	if err != nil {
		return nil, err
	}
	b, _ := r.next(uint64(n))
	return b, nil
}

func (r *wireReader) end() error {
	if n := len(r.buf) - r.off; n != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, n)
	}
	return nil
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
