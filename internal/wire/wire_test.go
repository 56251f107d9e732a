package wire_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/internal/wiretest"
)

// TestDecodeValueHostileLengths: a length the input cannot back fails
// without being allocated for, for every kind of container msgpack
// preallocates, while dec.Decode on the same bytes allocates for it.
func TestDecodeValueHostileLengths(t *testing.T) {
	cases := map[string]string{
		"array32 of 1<<24":        "dd01000000",
		"nested array32 of 1<<24": "91" + "dd01000000",
		"map32 of 1<<24":          "df01000000",
		"array in map":            "81a161" + "dd01000000",
	}
	for name, h := range cases {
		hostile, err := hex.DecodeString(h)
		require.NoError(t, err)
		for path, dec := range wiretest.Decoders(hostile) {
			var err error
			n := wiretest.Allocated(func() { _, err = wire.DecodeValue[any](dec) })
			require.Error(t, err, "%s, %s", name, path)
			require.Less(t, n, uint64(1<<20), "%s, %s: bytes allocated", name, path)
		}
		for path, dec := range wiretest.Decoders(hostile) {
			var err error
			n := wiretest.Allocated(func() { _, err = wire.DecodeValue[[]int64](dec) })
			require.Error(t, err, "%s, %s as []int64", name, path)
			require.Less(t, n, uint64(1<<20), "%s, %s as []int64: bytes allocated", name, path)
		}
	}
	// The hole DecodeValue closes is real: msgpack allocates for the claim.
	hostile, _ := hex.DecodeString("91dd01000000")
	var v any
	n := wiretest.Allocated(func() { _ = msgpack.NewDecoder(bytes.NewReader(hostile)).Decode(&v) })
	require.Greater(t, n, uint64(1<<20), "msgpack no longer preallocates: DecodeValue may be unneeded")
}

// TestDecodeValueSequence: values decode in order and the decoder is left
// just after each, on both paths.
func TestDecodeValueSequence(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	want := [][]string{{"a", "b"}, nil, {}, {"c"}}
	for _, v := range want {
		require.NoError(t, enc.Encode(v))
	}
	require.NoError(t, enc.EncodeInt(7))
	for path, dec := range wiretest.Decoders(buf.Bytes()) {
		for i, w := range want {
			got, err := wire.DecodeValue[[]string](dec)
			require.NoError(t, err, "%s, value %d", path, i)
			require.Equal(t, w, got, "%s, value %d", path, i)
		}
		n, err := dec.DecodeInt()
		require.NoError(t, err, path)
		require.Equal(t, 7, n, path)
		_, err = wire.DecodeValue[any](dec)
		require.ErrorIs(t, err, io.EOF, path)
	}
}

// TestDecodeValueTruncated: every proper prefix of a value fails.
func TestDecodeValueTruncated(t *testing.T) {
	b, err := msgpack.Marshal(map[string]any{"k": []any{1, "two", []byte{3}}, "m": map[string]int{"x": 1}})
	require.NoError(t, err)
	for i := range len(b) {
		for path, dec := range wiretest.Decoders(b[:i]) {
			_, err := wire.DecodeValue[map[string]any](dec)
			require.Error(t, err, "%s, prefix of %d bytes", path, i)
		}
	}
}

// TestDecodeValueSettings: from an io.Seeker the caller's decoder and its
// settings are used; from a stream, msgpack's defaults.
func TestDecodeValueSettings(t *testing.T) {
	type tagged struct {
		Name string `json:"n"`
	}
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag("json")
	require.NoError(t, enc.Encode(tagged{Name: "x"}))

	dec := msgpack.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.SetCustomStructTag("json")
	dec.DisallowUnknownFields(true)
	got, err := wire.DecodeValue[tagged](dec)
	require.NoError(t, err)
	require.Equal(t, tagged{Name: "x"}, got)

	dec = msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(buf.Bytes())))
	dec.SetCustomStructTag("json")
	got, err = wire.DecodeValue[tagged](dec)
	require.NoError(t, err)
	require.Equal(t, tagged{}, got, "a stream is decoded with default settings: the field is named Name")
}

// FuzzDecodeValue: DecodeValue never panics, both paths agree, and
// whenever it succeeds it returns what dec.Decode returns for the bytes.
func FuzzDecodeValue(f *testing.F) {
	for _, h := range []string{"", "c0", "91dd01000000", "df01000000", "81a161dd01000000", "93a16101c3", "c4024142", "ff"} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mem, memErr := wire.DecodeValue[any](msgpack.NewDecoder(bytes.NewReader(b)))
		str, strErr := wire.DecodeValue[any](msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(b))))
		if (memErr == nil) != (strErr == nil) {
			t.Fatalf("memory error %v, stream error %v", memErr, strErr)
		}
		if memErr != nil {
			return
		}
		var want any
		if err := msgpack.NewDecoder(bytes.NewReader(b)).Decode(&want); err != nil {
			t.Fatalf("DecodeValue succeeded, Decode failed: %v", err)
		}
		wb := canonical(want)
		for _, got := range []any{mem, str} {
			gb := canonical(got)
			if !bytes.Equal(gb, wb) {
				t.Fatalf("got %x, Decode gives %x", gb, wb)
			}
		}
	})
}

// canonical encodes v with sorted map keys, so equal values give equal bytes.
func canonical(v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	_ = enc.Encode(v)
	return buf.Bytes()
}

// TestCheckLen: from memory, a length is checked against the bytes left
// after the header; from a stream, it passes with preallocation capped.
func TestCheckLen(t *testing.T) {
	in := []byte{0x93, 1, 2, 3, 4} // [1, 2, 3] and one byte more
	cases := []struct {
		n, minSize, count, prealloc int
		ok                          bool
	}{
		{3, 1, 3, 3, true},
		{4, 1, 4, 4, true}, // the byte after the array: CheckLen sees only the rest
		{5, 1, 0, 0, false},
		{2, 2, 2, 2, true},
		{3, 2, 0, 0, false},
		{-1, 1, 0, 0, true}, // a nil header
		{1 << 40, 1, 0, 0, false},
	}
	for _, c := range cases {
		for path, dec := range wiretest.Decoders(in) {
			_, err := dec.DecodeArrayLen()
			require.NoError(t, err)
			count, prealloc, err := wire.CheckLen(dec, c.n, c.minSize)
			if path == "stream" {
				require.NoError(t, err, "n %d, %s", c.n, path)
				require.Equal(t, max(c.n, 0), count, "n %d, %s", c.n, path)
				require.Equal(t, min(max(c.n, 0), 1024), prealloc, "n %d, %s", c.n, path)
				continue
			}
			if !c.ok {
				require.Error(t, err, "n %d, minSize %d", c.n, c.minSize)
				continue
			}
			require.NoError(t, err, "n %d, minSize %d", c.n, c.minSize)
			require.Equal(t, [2]int{c.count, c.prealloc}, [2]int{count, prealloc}, "n %d, minSize %d", c.n, c.minSize)
		}
	}
}
