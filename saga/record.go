package saga

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Kind says what a [Record] records. The zero Kind is none of the kinds.
type Kind uint8

// The kinds of record. A saga's history is Started; then, stage by
// stage (a step, or a group of steps that run concurrently), for each
// step one or more attempts of Do (StepStarted, then StepDone or
// StepFailed, or nothing if the process died or the attempt was
// stopped); then either Committed, or Compensating or Cancelled followed,
// for each step to undo, by attempts of Undo (UndoStarted, then UndoDone
// or UndoFailed, or nothing) and finally Compensated or Stuck. The
// records of the steps of one group interleave.
//
// The terminal kinds are contiguous; kinds added later take the next
// free numbers so that older records keep their meaning.
const (
	KindStarted      Kind = iota + 1 // Def, Input, Steps
	KindStepStarted                  // Step, Attempt: an attempt of Do began
	KindStepDone                     // Step, Attempt, Bag: Do succeeded; Bag holds its Puts
	KindStepFailed                   // Step, Attempt, Err, Permanent: an attempt of Do failed (Permanent only in a group)
	KindCompensating                 // Step, Err, Permanent: the forward phase gave up at Step
	KindUndoDone                     // Step, Attempt, Bag: Undo succeeded
	KindUndoFailed                   // Step, Attempt, Err, Permanent: an attempt of Undo failed
	KindCommitted                    // every step succeeded
	KindCompensated                  // every step that may have taken effect was undone
	KindStuck                        // Step: the step's Undo failed for good
	KindUndoStarted                  // Step, Attempt: an attempt of Undo began
	KindCancelled                    // Step, Err: Cancel stopped the forward phase before stage Step; Err: why
)

var kindNames = [...]string{
	KindStarted:      "Started",
	KindStepStarted:  "StepStarted",
	KindStepDone:     "StepDone",
	KindStepFailed:   "StepFailed",
	KindCompensating: "Compensating",
	KindUndoDone:     "UndoDone",
	KindUndoFailed:   "UndoFailed",
	KindCommitted:    "Committed",
	KindCompensated:  "Compensated",
	KindStuck:        "Stuck",
	KindUndoStarted:  "UndoStarted",
	KindCancelled:    "Cancelled",
}

// String returns the kind's name, or "Kind(n)" for an unknown kind.
func (k Kind) String() string {
	if k.valid() {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

func (k Kind) valid() bool { return k >= KindStarted && k <= KindCancelled }

// Terminal reports whether k ends a saga: Committed, Compensated or Stuck.
func (k Kind) Terminal() bool { return k >= KindCommitted && k <= KindStuck }

// Entry is one key-value pair of a saga's bag (see [Exec.Put]); a plain
// value.
type Entry struct {
	Key   string
	Value []byte
}

// Record is one durable fact about a saga's progress, as a [Log] stores
// it. Only the fields listed beside each [Kind] are meaningful; the
// others are zero.
//
// The zero Record has no Kind and is not valid. Records are plain values.
//
// A Record encodes to msgpack as an array of ten elements in field order
// (Kind, Saga, Def, Input, Steps, Step, Attempt, Bag as a flat array of
// alternating keys and values, Err, Permanent), each in its shortest
// form: the encoding is deterministic.
type Record struct {
	Kind      Kind
	Saga      string   // the saga's ID
	Def       string   // Started: the definition's name
	Input     []byte   // Started: the saga's input
	Steps     []string // Started: the definition's step names, a group's members as "group/member", to detect a changed definition
	Step      int      // the step's index in Steps of the saga's Started record
	Attempt   int      // 1 for the first attempt of Do or of Undo
	Bag       []Entry  // StepDone, UndoDone: the Puts of the attempt, sorted by key
	Err       string   // StepFailed, Compensating, UndoFailed, Cancelled: the error's text, or the reason
	Permanent bool     // StepFailed, Compensating, UndoFailed: the error was Permanent (a failed Do with no earlier attempt is then not undone)
}

// recordFields is the length of a Record's msgpack array.
const recordFields = 10

// ErrDecode is wrapped by the errors of [Record.UnmarshalMsgpack]: the
// bytes are not a valid record.
var ErrDecode = errors.New("saga: invalid record encoding")

// ErrInvalidRecord is wrapped by the error of MemLog.Append and
// FileLog.Append for a record its encoding cannot carry back unchanged:
// an unknown Kind, a Step or Attempt outside [0, 2^31-1], or Bag keys
// that are not sorted and unique.
var ErrInvalidRecord = errors.New("saga: invalid record")

// check returns an error wrapping ErrInvalidRecord unless r decodes back
// from its encoding to the same record.
func (r *Record) check() error {
	switch {
	case !r.Kind.valid():
		return fmt.Errorf("%w: unknown kind %d", ErrInvalidRecord, r.Kind)
	case r.Step < 0 || r.Step > math.MaxInt32 || r.Attempt < 0 || r.Attempt > math.MaxInt32:
		return fmt.Errorf("%w: step %d, attempt %d", ErrInvalidRecord, r.Step, r.Attempt)
	}
	for i := 1; i < len(r.Bag); i++ {
		if r.Bag[i-1].Key >= r.Bag[i].Key {
			return fmt.Errorf("%w: bag keys are not sorted and unique", ErrInvalidRecord)
		}
	}
	return nil
}

var (
	_ msgpack.Marshaler   = Record{}
	_ msgpack.Unmarshaler = (*Record)(nil)
)

// MarshalMsgpack returns r's msgpack encoding.
func (r Record) MarshalMsgpack() ([]byte, error) { return r.appendMsgpack(nil), nil }

// appendMsgpack appends r's encoding to b.
func (r Record) appendMsgpack(b []byte) []byte {
	b = append(b, msgpcode.FixedArrayLow|recordFields)
	b = appendUint(b, uint64(r.Kind))
	b = appendStr(b, r.Saga)
	b = appendStr(b, r.Def)
	b = appendBin(b, r.Input)
	b = appendArrayLen(b, len(r.Steps))
	for _, s := range r.Steps {
		b = appendStr(b, s)
	}
	b = appendUint(b, uint64(r.Step))
	b = appendUint(b, uint64(r.Attempt))
	b = appendArrayLen(b, 2*len(r.Bag))
	for _, e := range r.Bag {
		b = appendStr(b, e.Key)
		b = appendBin(b, e.Value)
	}
	b = appendStr(b, r.Err)
	if r.Permanent {
		return append(b, msgpcode.True)
	}
	return append(b, msgpcode.False)
}

// UnmarshalMsgpack decodes a record encoded by [Record.MarshalMsgpack],
// accepting every msgpack width for integers, strings and byte arrays
// (and nil for an empty byte array). It never panics and allocates at
// most in proportion to len(data). On error it returns an error wrapping
// [ErrDecode] and leaves r unchanged.
func (r *Record) UnmarshalMsgpack(data []byte) error {
	d := decoder{b: data}
	var x Record
	if n := d.arrayLen(); n != recordFields && d.err == nil {
		d.fail("record has %d fields, want %d", n, recordFields)
	}
	k := d.uint(math.MaxUint8)
	x.Kind = Kind(k)
	if !x.Kind.valid() && d.err == nil {
		d.fail("unknown kind %d", k)
	}
	x.Saga = d.str()
	x.Def = d.str()
	x.Input = d.bin()
	if n := d.arrayLen(); n > 0 {
		x.Steps = make([]string, n)
		for i := range x.Steps {
			x.Steps[i] = d.str()
		}
	}
	x.Step = int(d.uint(math.MaxInt32))
	x.Attempt = int(d.uint(math.MaxInt32))
	n := d.arrayLen()
	if n%2 != 0 && d.err == nil {
		d.fail("bag has an odd number of elements")
	}
	if n > 0 && d.err == nil {
		x.Bag = make([]Entry, n/2)
		for i := range x.Bag {
			x.Bag[i] = Entry{Key: d.str(), Value: d.bin()}
			if i > 0 && x.Bag[i-1].Key >= x.Bag[i].Key && d.err == nil {
				d.fail("bag keys are not sorted and unique")
			}
		}
	}
	x.Err = d.str()
	x.Permanent = d.bool()
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return d.err
	}
	*r = x
	return nil
}

func appendUint(b []byte, v uint64) []byte {
	switch {
	case v <= uint64(msgpcode.PosFixedNumHigh):
		return append(b, byte(v))
	case v <= math.MaxUint8:
		return append(b, msgpcode.Uint8, byte(v))
	case v <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Uint16), uint16(v))
	case v <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Uint32), uint32(v))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Uint64), v)
}

func appendStr(b []byte, s string) []byte {
	if len(s) <= 31 {
		b = append(b, msgpcode.FixedStrLow|byte(len(s)))
	} else {
		b = appendLen(b, len(s), msgpcode.Str8, msgpcode.Str16, msgpcode.Str32)
	}
	return append(b, s...)
}

// appendBin encodes nil as msgpack nil and any other slice, even an empty
// one, as bin, as the msgpack library does.
func appendBin(b, v []byte) []byte {
	if v == nil {
		return append(b, msgpcode.Nil)
	}
	return append(appendLen(b, len(v), msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32), v...)
}

// appendLen appends the shortest of the 8, 16 and 32-bit length headers.
func appendLen(b []byte, n int, c8, c16, c32 byte) []byte {
	switch {
	case n <= math.MaxUint8:
		return append(b, c8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, c16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, c32), uint32(n))
}

func appendArrayLen(b []byte, n int) []byte {
	switch {
	case n <= 15:
		return append(b, msgpcode.FixedArrayLow|byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Array16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, msgpcode.Array32), uint32(n))
}

// decoder reads msgpack values from b. After the first error every read
// returns a zero value, so callers check err once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrDecode, fmt.Sprintf(format, args...))
	}
}

// take consumes n bytes, or fails if fewer remain.
func (d *decoder) take(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("need %d bytes, %d remain", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) code() byte {
	if c := d.take(1); c != nil {
		return c[0]
	}
	return 0
}

// be reads a big-endian unsigned integer of size bytes.
func (d *decoder) be(size uint64) uint64 {
	var v uint64
	for _, c := range d.take(size) {
		v = v<<8 | uint64(c)
	}
	return v
}

// uint reads a non-negative integer no larger than limit, in any of
// msgpack's integer formats.
func (d *decoder) uint(limit uint64) uint64 {
	c := d.code()
	var v uint64
	switch {
	case d.err != nil:
		return 0
	case c <= msgpcode.PosFixedNumHigh:
		v = uint64(c)
	case c >= msgpcode.Uint8 && c <= msgpcode.Uint64:
		v = d.be(1 << (c - msgpcode.Uint8))
	case c >= msgpcode.Int8 && c <= msgpcode.Int64:
		size := uint64(1) << (c - msgpcode.Int8)
		if v = d.be(size); v>>(8*size-1) != 0 {
			d.fail("negative integer")
			return 0
		}
	default:
		d.fail("code %#x is not an integer", c)
		return 0
	}
	if v > limit {
		d.fail("integer %d exceeds %d", v, limit)
		return 0
	}
	return v
}

// length reads the length of a str, bin or array value; kinds says which.
func (d *decoder) length(str, bin, array bool) uint64 {
	c := d.code()
	switch {
	case d.err != nil:
		return 0
	case str && msgpcode.IsFixedString(c):
		return uint64(c & msgpcode.FixedStrMask)
	case str && c == msgpcode.Str8, bin && c == msgpcode.Bin8:
		return d.be(1)
	case str && c == msgpcode.Str16, bin && c == msgpcode.Bin16, array && c == msgpcode.Array16:
		return d.be(2)
	case str && c == msgpcode.Str32, bin && c == msgpcode.Bin32, array && c == msgpcode.Array32:
		return d.be(4)
	case array && msgpcode.IsFixedArray(c):
		return uint64(c & msgpcode.FixedArrayMask)
	case (bin || array) && c == msgpcode.Nil:
		return 0
	}
	d.fail("unexpected code %#x", c)
	return 0
}

func (d *decoder) str() string { return string(d.take(d.length(true, false, false))) }

// bin returns a copy of a bin value; nil for msgpack nil.
func (d *decoder) bin() []byte {
	if d.err == nil && len(d.b) > 0 && d.b[0] == msgpcode.Nil {
		d.b = d.b[1:]
		return nil
	}
	v := d.take(d.length(false, true, false))
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}

// arrayLen reads an array header. Every element takes at least one byte,
// so a length beyond the remaining input is an error, not an allocation.
func (d *decoder) arrayLen() int {
	n := d.length(false, false, true)
	if n > uint64(len(d.b)) {
		d.fail("array of %d elements in %d bytes", n, len(d.b))
		return 0
	}
	return int(n)
}

func (d *decoder) bool() bool {
	switch c := d.code(); {
	case d.err != nil:
	case c == msgpcode.True:
		return true
	case c == msgpcode.False:
	default:
		d.fail("code %#x is not a bool", c)
	}
	return false
}
