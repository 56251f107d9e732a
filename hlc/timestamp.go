package hlc

import (
	"bytes"
	"cmp"
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/internal/wire"
)

// Timestamp packs microseconds since the Unix epoch in the high 52 bits and a
// logical counter in the low 12 bits, so integer order is HLC order and a
// logical overflow carries into the next microsecond.
//
// The zero Timestamp is the Unix epoch with logical counter 0; it sorts
// before every timestamp a [Clock] issues and reports [Timestamp.IsZero].
// Timestamps are plain values, safe to copy and to use concurrently.
//
// # Range and precision
//
// 52 bits of microseconds span 2^52 µs ≈ 142.7 years: from
// 1970-01-01T00:00:00Z to 2112-09-17T23:53:47.370495Z, the largest wall
// time a Timestamp holds. 12 logical bits allow 4096 events per microsecond
// before the counter carries into the wall part — 4 billion events per
// second, far above what one clock can issue, so in practice the wall part
// of a timestamp stays within a microsecond of the physical time that drove
// it. Microseconds rather than nanoseconds are the resolution NTP-disciplined
// clocks can honestly claim, and they leave room for both the logical counter
// and a century of range in the 8 bytes that a uint64 sort key costs.
type Timestamp uint64

const (
	logicalBits = 12

	// MaxLogical is the largest logical counter a Timestamp holds: one more
	// carries into the next microsecond.
	MaxLogical = 1<<logicalBits - 1

	// MaxTimestamp is the largest Timestamp: the last logical tick of the
	// last representable microsecond (2112-09-17T23:53:47.370495Z).
	MaxTimestamp Timestamp = math.MaxUint64

	maxMicros = 1<<(64-logicalBits) - 1

	// textLayout is RFC 3339 with exactly six fractional digits, in UTC.
	textLayout = "2006-01-02T15:04:05.000000Z07:00"
)

var (
	// ErrRange reports a wall time outside the range a Timestamp holds
	// (1970 to 2112), or a logical counter above [MaxLogical].
	ErrRange = errors.New("hlc: timestamp out of range")

	// ErrSyntax reports text or bytes that do not encode a Timestamp.
	ErrSyntax = errors.New("hlc: invalid timestamp encoding")
)

var (
	_ encoding.TextMarshaler     = Timestamp(0)
	_ encoding.TextAppender      = Timestamp(0)
	_ encoding.TextUnmarshaler   = (*Timestamp)(nil)
	_ encoding.BinaryMarshaler   = Timestamp(0)
	_ encoding.BinaryAppender    = Timestamp(0)
	_ encoding.BinaryUnmarshaler = (*Timestamp)(nil)
	_ msgpack.CustomEncoder      = Timestamp(0)
	_ msgpack.CustomDecoder      = (*Timestamp)(nil)
	_ fmt.Stringer               = Timestamp(0)
)

// unixMicros returns wall in microseconds since the Unix epoch, truncated,
// and whether wall lies within the range a Timestamp holds. Out of range,
// it returns the nearest end of the range.
func unixMicros(wall time.Time) (us uint64, ok bool) {
	sec := wall.Unix()
	switch {
	case sec < 0:
		return 0, false
	case sec > maxMicros/1_000_000:
		return maxMicros, false
	}
	us = uint64(sec)*1e6 + uint64(wall.Nanosecond())/1e3
	if us > maxMicros {
		return maxMicros, false
	}
	return us, true
}

// Make returns the timestamp with the wall time wall, truncated to the
// microsecond, and the logical counter logical.
//
// Make never fails, it saturates: a wall time before the Unix epoch is
// taken as the epoch, one after 2112-09-17T23:53:47.370495Z as that
// instant, and a logical counter above [MaxLogical] carries into the wall
// part (Make(w, l) == Make(w, 0) + Timestamp(l)), up to [MaxTimestamp].
// Use [MakeChecked] where such input must be rejected instead.
func Make(wall time.Time, logical uint16) Timestamp {
	us, _ := unixMicros(wall)
	t := Timestamp(us << logicalBits)
	return t + min(Timestamp(logical), MaxTimestamp-t)
}

// MakeChecked is [Make] for input that must not be altered: it returns an
// error wrapping [ErrRange] when wall lies outside the range of a Timestamp
// or logical exceeds [MaxLogical]. Like Make, it truncates wall to the
// microsecond.
func MakeChecked(wall time.Time, logical uint16) (Timestamp, error) {
	us, ok := unixMicros(wall)
	if !ok {
		return 0, fmt.Errorf("%w: wall time %s", ErrRange, wall.UTC().Format(time.RFC3339Nano))
	}
	if logical > MaxLogical {
		return 0, fmt.Errorf("%w: logical %d > %d", ErrRange, logical, MaxLogical)
	}
	return Timestamp(us<<logicalBits | uint64(logical)), nil
}

// inLastMicrosecond reports whether t's wall part is the last
// representable microsecond, from which a clock cannot advance: no clock
// reads it before 2112, and no decoder or receive accepts it.
func (t Timestamp) inLastMicrosecond() bool { return t>>logicalBits >= maxMicros }

// checkWire returns an error wrapping ErrRange if t may not come from
// another process (see inLastMicrosecond).
func checkWire(t Timestamp) error {
	if t.inLastMicrosecond() {
		return fmt.Errorf("%w: %s is in the last representable microsecond", ErrRange, t)
	}
	return nil
}

// micros returns the wall part: microseconds since the Unix epoch.
func (t Timestamp) micros() int64 { return int64(t >> logicalBits) }

// WallTime returns the physical part of t, in UTC.
func (t Timestamp) WallTime() time.Time { return time.UnixMicro(t.micros()).UTC() }

// Logical returns the logical counter of t, at most [MaxLogical].
func (t Timestamp) Logical() uint16 { return uint16(t & MaxLogical) }

// Compare returns -1, 0 or +1 as t happens before, equals or happens after u
// in HLC order, which is integer order.
func (t Timestamp) Compare(u Timestamp) int { return cmp.Compare(t, u) }

// IsZero reports whether t is the zero Timestamp.
func (t Timestamp) IsZero() bool { return t == 0 }

// String returns t as its wall time in RFC 3339 with microseconds, in UTC,
// a comma and the logical counter in decimal:
// "2026-11-27T14:06:57.123456Z,3". [Timestamp.UnmarshalText] parses it back.
func (t Timestamp) String() string {
	var buf [40]byte
	return string(t.appendText(buf[:0]))
}

// AppendText appends the [Timestamp.String] form of t to b.
func (t Timestamp) AppendText(b []byte) ([]byte, error) { return t.appendText(b), nil }

// MarshalText returns the [Timestamp.String] form of t.
func (t Timestamp) MarshalText() ([]byte, error) { return t.AppendText(nil) }

func (t Timestamp) appendText(b []byte) []byte {
	b = t.WallTime().AppendFormat(b, textLayout)
	b = append(b, ',')
	return strconv.AppendUint(b, uint64(t.Logical()), 10)
}

// UnmarshalText parses the [Timestamp.String] form. It accepts any RFC 3339
// wall time (other zone offsets denote the same instant) and rejects, with
// an error wrapping [ErrSyntax] or [ErrRange], anything it cannot represent
// exactly: a malformed text, sub-microsecond digits that are not zero, a wall
// time before 1970 or after 2112, a logical counter above [MaxLogical]. Like
// every decoder of a Timestamp, it also rejects a wall time in the last
// representable microsecond (2112-09-17T23:53:47.370495Z), where no clock
// can advance: a value only a corrupt or hostile peer sends. On error t is
// unchanged.
func (t *Timestamp) UnmarshalText(text []byte) error {
	i := bytes.LastIndexByte(text, ',')
	if i < 0 {
		return fmt.Errorf("%w: %q: no logical part", ErrSyntax, text)
	}
	wall, err := time.Parse(time.RFC3339Nano, string(text[:i]))
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrSyntax, text, err)
	}
	if wall.Nanosecond()%1e3 != 0 {
		return fmt.Errorf("%w: %q: finer than a microsecond", ErrRange, text)
	}
	logical, err := strconv.ParseUint(string(text[i+1:]), 10, 16)
	if err != nil {
		return fmt.Errorf("%w: %q: logical part: %w", ErrSyntax, text, err)
	}
	u, err := MakeChecked(wall, uint16(logical))
	if err == nil {
		err = checkWire(u)
	}
	if err != nil {
		return fmt.Errorf("%q: %w", text, err)
	}
	*t = u
	return nil
}

// AppendBinary appends t to b as 8 bytes, big-endian, so that byte order is
// HLC order.
func (t Timestamp) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint64(b, uint64(t)), nil
}

// MarshalBinary returns t as 8 bytes, big-endian.
func (t Timestamp) MarshalBinary() ([]byte, error) { return t.AppendBinary(make([]byte, 0, 8)) }

// UnmarshalBinary decodes the 8 bytes [Timestamp.MarshalBinary] produces.
// Any other length is an error wrapping [ErrSyntax], a timestamp in the
// last representable microsecond (see [Timestamp.UnmarshalText]) one
// wrapping [ErrRange]; on error t is unchanged.
func (t *Timestamp) UnmarshalBinary(data []byte) error {
	if len(data) != 8 {
		return fmt.Errorf("%w: %d bytes, want 8", ErrSyntax, len(data))
	}
	u := Timestamp(binary.BigEndian.Uint64(data))
	if err := checkWire(u); err != nil {
		return err
	}
	*t = u
	return nil
}

// EncodeMsgpack encodes t as a msgpack unsigned integer in its shortest
// form, so equal timestamps encode to equal bytes.
func (t Timestamp) EncodeMsgpack(enc *msgpack.Encoder) error { return enc.EncodeUint(uint64(t)) }

// DecodeMsgpack decodes the msgpack unsigned integer
// [Timestamp.EncodeMsgpack] writes, in its shortest form only, so that
// whatever it accepts encodes back to the same bytes. Other integer forms
// and other types are rejected with an error wrapping [ErrSyntax], and a
// timestamp in the last representable microsecond (see
// [Timestamp.UnmarshalText]) with one wrapping [ErrRange], leaving t
// unchanged. (A msgpack nil never reaches DecodeMsgpack: the msgpack
// decoder stores the zero value, as it does for every type.)
func (t *Timestamp) DecodeMsgpack(dec *msgpack.Decoder) error {
	u, err := wire.Uint(dec)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSyntax, err)
	}
	if err := checkWire(Timestamp(u)); err != nil {
		return err
	}
	*t = Timestamp(u)
	return nil
}
