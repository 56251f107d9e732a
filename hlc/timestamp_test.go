package hlc_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/hlc"
)

// maxWall is the largest wall time a Timestamp holds.
var maxWall = time.Date(2112, 9, 17, 23, 53, 47, 370495000, time.UTC)

func TestPacking(t *testing.T) {
	at := time.Date(2026, 11, 27, 14, 6, 57, 123456789, time.UTC)
	ts := hlc.Make(at, 7)
	require.Equal(t, uint64(at.UnixMicro())<<12|7, uint64(ts))
	require.Equal(t, at.Truncate(time.Microsecond), ts.WallTime())
	require.Equal(t, time.UTC, ts.WallTime().Location())
	require.Equal(t, uint16(7), ts.Logical())
	require.Equal(t, "2026-11-27T14:06:57.123456Z,7", ts.String())

	// The logical counter carries into the next microsecond.
	require.Equal(t, hlc.Make(at.Add(time.Microsecond), 0), hlc.Make(at, 0)+hlc.MaxLogical+1)
	require.Equal(t, hlc.Make(at.Add(time.Microsecond), 4), hlc.Make(at, hlc.MaxLogical+5))

	require.True(t, hlc.Timestamp(0).IsZero())
	require.False(t, ts.IsZero())
	require.Equal(t, "1970-01-01T00:00:00.000000Z,0", hlc.Timestamp(0).String())
	require.Equal(t, maxWall, hlc.MaxTimestamp.WallTime())
	require.Equal(t, uint16(hlc.MaxLogical), hlc.MaxTimestamp.Logical())
}

func TestMakeRange(t *testing.T) {
	before := time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC)
	after := maxWall.Add(time.Microsecond)
	far := time.Date(300000, 1, 1, 0, 0, 0, 0, time.UTC) // UnixMicro would overflow

	require.Equal(t, hlc.Timestamp(5), hlc.Make(before, 5), "before the epoch: clamped to it")
	require.Equal(t, hlc.Make(maxWall, 3), hlc.Make(after, 3), "after 2112: clamped")
	require.Equal(t, hlc.Make(maxWall, 3), hlc.Make(far, 3))
	require.Equal(t, hlc.MaxTimestamp, hlc.Make(maxWall, math.MaxUint16), "saturates, never wraps")

	for _, w := range []time.Time{before, after, far, time.Date(-5, 1, 1, 0, 0, 0, 0, time.UTC)} {
		_, err := hlc.MakeChecked(w, 0)
		require.ErrorIs(t, err, hlc.ErrRange, w)
	}
	_, err := hlc.MakeChecked(maxWall, hlc.MaxLogical+1)
	require.ErrorIs(t, err, hlc.ErrRange)
	ts, err := hlc.MakeChecked(maxWall, hlc.MaxLogical)
	require.NoError(t, err)
	require.Equal(t, hlc.MaxTimestamp, ts)
	ts, err = hlc.MakeChecked(time.Unix(0, 0), 0)
	require.NoError(t, err)
	require.Zero(t, ts)
}

// TestOrder checks that Compare, integer order, binary byte order and the
// (wall, logical) lexicographic order agree on random pairs.
func TestOrder(t *testing.T) {
	const seed = 1
	r := rand.New(rand.NewPCG(seed, 2))
	for range 10000 {
		a, b := hlc.Timestamp(r.Uint64()), hlc.Timestamp(r.Uint64())
		if r.IntN(4) == 0 {
			b = a + hlc.Timestamp(r.IntN(3)) - 1
		}
		lex := a.WallTime().Compare(b.WallTime())
		if lex == 0 {
			lex = int(a.Logical()) - int(b.Logical())
			lex = max(-1, min(1, lex))
		}
		ab, _ := a.MarshalBinary()
		bb, _ := b.MarshalBinary()
		cmp := a.Compare(b)
		if cmp != lex || cmp != bytes.Compare(ab, bb) || (cmp < 0) != (a < b) {
			t.Fatalf("seed %d: %v vs %v: Compare %d, lexicographic %d", seed, a, b, cmp, lex)
		}
	}
}

func TestTextRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, ts := range append([]hlc.Timestamp{0, 1, hlc.MaxTimestamp - hlc.MaxLogical - 1}, randomTimestamps(r, 1000)...) {
		text, err := ts.MarshalText()
		require.NoError(t, err)
		require.Equal(t, ts.String(), string(text))
		var got hlc.Timestamp
		require.NoError(t, got.UnmarshalText(text), string(text))
		require.Equal(t, ts, got)
	}
}

// TestDecodeLastMicrosecond: every decoder refuses a timestamp in the last
// representable microsecond, where no clock can advance (2^64-1 is
// MaxTimestamp), with ErrRange, leaving the receiver unchanged; the
// microsecond before it, and 2^63 and 2^63+1 (wall times in 2041), decode.
func TestDecodeLastMicrosecond(t *testing.T) {
	last := hlc.MaxTimestamp - hlc.MaxLogical
	for _, ts := range []hlc.Timestamp{last, last + 1, hlc.MaxTimestamp} {
		text, _ := ts.MarshalText()
		bin, _ := ts.MarshalBinary()
		mp, err := msgpack.Marshal(ts)
		require.NoError(t, err)
		for name, decode := range map[string]func(*hlc.Timestamp) error{
			"text":    func(t *hlc.Timestamp) error { return t.UnmarshalText(text) },
			"binary":  func(t *hlc.Timestamp) error { return t.UnmarshalBinary(bin) },
			"msgpack": func(t *hlc.Timestamp) error { return msgpack.Unmarshal(mp, t) },
		} {
			got := hlc.Timestamp(42)
			require.ErrorIs(t, decode(&got), hlc.ErrRange, "%s %v", name, ts)
			require.Equal(t, hlc.Timestamp(42), got, "%s %v", name, ts)
		}
	}
	for _, ts := range []hlc.Timestamp{last - 1, 1 << 63, 1<<63 + 1} {
		bin, _ := ts.MarshalBinary()
		var got hlc.Timestamp
		require.NoError(t, got.UnmarshalBinary(bin))
		require.Equal(t, ts, got)
	}
}

func TestUnmarshalText(t *testing.T) {
	want := hlc.Make(time.Date(2026, 11, 27, 14, 6, 57, 123456000, time.UTC), 3)
	for _, ok := range []string{
		"2026-11-27T14:06:57.123456Z,3",
		"2026-11-27T16:06:57.123456+02:00,3",
		"2026-11-27T14:06:57.123456000Z,3",
		"2026-11-27T14:06:57.123456Z,0003",
	} {
		var ts hlc.Timestamp
		require.NoError(t, ts.UnmarshalText([]byte(ok)), ok)
		require.Equal(t, want, ts, ok)
	}
	for text, sentinel := range map[string]error{
		"":                                  hlc.ErrSyntax,
		"2026-11-27T14:06:57.123456Z":       hlc.ErrSyntax,
		"2026-11-27T14:06:57.123456Z,":      hlc.ErrSyntax,
		"2026-11-27T14:06:57.123456Z,-1":    hlc.ErrSyntax,
		"2026-11-27T14:06:57.123456Z,+1":    hlc.ErrSyntax,
		"2026-11-27T14:06:57.123456Z,70000": hlc.ErrSyntax,
		"2026-11-27 14:06:57.123456Z,1":     hlc.ErrSyntax,
		"2026-11-27T14:06:57.123456Z,4096":  hlc.ErrRange,
		"2026-11-27T14:06:57.1234567Z,1":    hlc.ErrRange,
		"1969-12-31T23:59:59.999999Z,1":     hlc.ErrRange,
		"2112-09-17T23:53:47.370496Z,0":     hlc.ErrRange,
		"9999-01-01T00:00:00Z,0":            hlc.ErrRange,
	} {
		ts := hlc.Timestamp(42)
		err := ts.UnmarshalText([]byte(text))
		require.ErrorIs(t, err, sentinel, text)
		require.Equal(t, hlc.Timestamp(42), ts, "unchanged on error")
	}
}

func TestBinary(t *testing.T) {
	ts := hlc.Timestamp(0x0102030405060708)
	b, err := ts.MarshalBinary()
	require.NoError(t, err)
	require.Equal(t, []byte{1, 2, 3, 4, 5, 6, 7, 8}, b)
	var got hlc.Timestamp
	require.NoError(t, got.UnmarshalBinary(b))
	require.Equal(t, ts, got)
	for _, n := range []int{0, 7, 9} {
		require.ErrorIs(t, got.UnmarshalBinary(make([]byte, n)), hlc.ErrSyntax)
	}
	require.Equal(t, ts, got)
}

func TestMsgpack(t *testing.T) {
	for ts, want := range map[hlc.Timestamp][]byte{
		0:                                     {0x00},
		0x7f:                                  {0x7f},
		0x80:                                  {0xcc, 0x80},
		0x1234:                                {0xcd, 0x12, 0x34},
		hlc.MaxTimestamp - hlc.MaxLogical - 1: {0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xef, 0xff},
		0x0102030405060708:                    {0xcf, 1, 2, 3, 4, 5, 6, 7, 8},
	} {
		b, err := msgpack.Marshal(ts)
		require.NoError(t, err)
		require.Equal(t, want, b, "%#x", uint64(ts))
		var got hlc.Timestamp
		require.NoError(t, msgpack.Unmarshal(b, &got))
		require.Equal(t, ts, got)
	}
	// Only the canonical form is accepted: signed integers and longer
	// forms than needed are not, so every decoded timestamp re-encodes to
	// the bytes it came from.
	for _, b := range []string{"\xd0\x05", "\xd1\x01\x00", "\xd3\x00\x00\x00\x00\x00\x00\x00\x09", "\xcc\x05", "\xcd\x00\xff", "\xcf\x00\x00\x00\x00\xff\xff\xff\xff"} {
		got := hlc.Timestamp(42)
		require.ErrorIs(t, msgpack.Unmarshal([]byte(b), &got), hlc.ErrSyntax, "%x", b)
		require.Equal(t, hlc.Timestamp(42), got)
	}
	// msgpack itself decodes nil into the zero value of any type.
	nilTS := hlc.Timestamp(42)
	require.NoError(t, msgpack.Unmarshal([]byte{0xc0}, &nilTS))
	require.Zero(t, nilTS)
	for _, b := range []string{"", "\xff", "\xd0\xff", "\xd3\x80\x00\x00\x00\x00\x00\x00\x00", "\xa1x", "\xcf\x01", "\xca\x00\x00\x00\x00"} {
		got := hlc.Timestamp(42)
		require.Error(t, msgpack.Unmarshal([]byte(b), &got), "%x", b)
		require.Equal(t, hlc.Timestamp(42), got, "unchanged on error: %x", b)
	}
	// As a struct field.
	type msg struct{ TS hlc.Timestamp }
	b, err := msgpack.Marshal(msg{TS: 300})
	require.NoError(t, err)
	var m msg
	require.NoError(t, msgpack.Unmarshal(b, &m))
	require.Equal(t, hlc.Timestamp(300), m.TS)
}

func TestStringAllocs(t *testing.T) {
	ts := hlc.Make(time.Date(2026, 11, 27, 14, 6, 57, 0, time.UTC), 1)
	buf := make([]byte, 0, 64)
	require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = ts.AppendText(buf[:0]) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = ts.AppendBinary(buf[:0]) }))
}

func randomTimestamps(r *rand.Rand, n int) []hlc.Timestamp {
	out := make([]hlc.Timestamp, n)
	for i := range out {
		out[i] = hlc.Timestamp(r.Uint64())
	}
	return out
}

func FuzzUnmarshalText(f *testing.F) {
	for _, s := range []string{"2026-11-27T14:06:57.123456Z,3", "1970-01-01T00:00:00.000000Z,0",
		"2112-09-17T23:53:47.370495Z,4095", "2026-11-27T16:06:57.1+02:00,1", ",", "x,1", "2026-11-27T14:06:57Z,99999"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, text []byte) {
		var ts hlc.Timestamp
		if err := ts.UnmarshalText(text); err != nil {
			if !errors.Is(err, hlc.ErrSyntax) && !errors.Is(err, hlc.ErrRange) {
				t.Fatalf("%q: unexpected error %v", text, err)
			}
			return
		}
		var again hlc.Timestamp
		if err := again.UnmarshalText([]byte(ts.String())); err != nil || again != ts {
			t.Fatalf("%q -> %v -> %v, %v", text, ts, again, err)
		}
	})
}

func FuzzUnmarshalBinary(f *testing.F) {
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{})
	f.Add([]byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	f.Fuzz(func(t *testing.T, b []byte) {
		var ts hlc.Timestamp
		err := ts.UnmarshalBinary(b)
		switch {
		case len(b) != 8:
			require.ErrorIs(t, err, hlc.ErrSyntax)
			return
		case binary.BigEndian.Uint64(b) > uint64(hlc.MaxTimestamp-hlc.MaxLogical-1):
			require.ErrorIs(t, err, hlc.ErrRange)
			return
		}
		require.NoError(t, err)
		require.Equal(t, binary.BigEndian.Uint64(b), uint64(ts))
		out, _ := ts.MarshalBinary()
		require.Equal(t, b, out)
	})
}

func FuzzDecodeMsgpack(f *testing.F) {
	for _, s := range []string{"\x00", "\x7f", "\xcc\x80", "\xcf\x01\x02\x03\x04\x05\x06\x07\x08", "\xd0\xff", "\xc0", "\xa1x", "\xd3\x00\x00\x00\x00\x00\x00\x00\x09"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var ts hlc.Timestamp
		r := bytes.NewReader(b)
		if err := ts.DecodeMsgpack(msgpack.NewDecoder(r)); err != nil {
			if !errors.Is(err, hlc.ErrSyntax) && !errors.Is(err, hlc.ErrRange) {
				t.Fatalf("%x: unexpected error %v", b, err)
			}
			return
		}
		// A decoded value re-encodes to exactly the bytes it came from.
		out, err := msgpack.Marshal(ts)
		require.NoError(t, err)
		require.Equal(t, b[:len(b)-r.Len()], out)
	})
}
