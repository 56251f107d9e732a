package saga

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// randomRecord returns a record with every field filled at random, in
// sizes that cross msgpack's format boundaries.
func randomRecord(r *rand.Rand) Record {
	sizes := []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536}
	str := func() string { return strings.Repeat("x", sizes[r.IntN(len(sizes))]) }
	bin := func() []byte {
		if r.IntN(4) == 0 {
			return nil
		}
		b := make([]byte, sizes[r.IntN(len(sizes)-2)])
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	}
	rec := Record{
		Kind: Kind(1 + r.IntN(int(KindCancelled))), Saga: str(), Def: str(), Input: bin(),
		Step: r.IntN(1 << 20), Attempt: r.IntN(1 << 17), Err: str(), Permanent: r.IntN(2) == 0,
	}
	for i := range r.IntN(20) {
		rec.Steps = append(rec.Steps, strings.Repeat("s", i))
	}
	for i := range r.IntN(20) {
		rec.Bag = append(rec.Bag, Entry{strings.Repeat("k", i+1), bin()})
	}
	return rec
}

// TestRecordRoundTrip checks that records survive encoding, and that the
// encoding is exactly what the msgpack library writes for the same
// values (so other msgpack readers decode it, and it is deterministic).
func TestRecordRoundTrip(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		rec := randomRecord(r)
		b, err := rec.MarshalMsgpack()
		require.NoError(t, err)
		var got Record
		require.NoError(t, got.UnmarshalMsgpack(b), "seed %d", seed)
		require.Equal(t, rec, got, "seed %d", seed)

		flat := make([]any, 0, 2*len(rec.Bag))
		for _, e := range rec.Bag {
			flat = append(flat, e.Key, e.Value)
		}
		steps := rec.Steps
		if steps == nil {
			steps = []string{}
		}
		var want bytes.Buffer
		enc := msgpack.NewEncoder(&want)
		enc.UseCompactInts(true)
		require.NoError(t, enc.Encode([]any{uint64(rec.Kind), rec.Saga, rec.Def, rec.Input, steps,
			uint64(rec.Step), uint64(rec.Attempt), flat, rec.Err, rec.Permanent}))
		require.True(t, bytes.Equal(want.Bytes(), b), "seed %d: encoding differs from the msgpack library's", seed)

		var viaLib Record
		require.NoError(t, msgpack.Unmarshal(b, &viaLib))
		require.Equal(t, rec, viaLib)
	}
}

// TestRecordDecodeWidths checks that the decoder accepts integers in
// every width, including signed ones, as other encoders may write them.
func TestRecordDecodeWidths(t *testing.T) {
	for _, v := range []any{int8(3), int16(3), int32(3), int64(3), uint8(3), uint16(3), uint32(3), uint64(3)} {
		var buf bytes.Buffer
		require.NoError(t, msgpack.NewEncoder(&buf).Encode([]any{v, "s", "d", nil, []string{}, v, v, []any{}, "", false}))
		var got Record
		require.NoError(t, got.UnmarshalMsgpack(buf.Bytes()), "%T", v)
		require.Equal(t, Record{Kind: 3, Saga: "s", Def: "d", Step: 3, Attempt: 3}, got)
	}
	b, _ := msgpack.Marshal([]any{int8(-1), "", "", nil, nil, 0, 0, nil, "", false})
	var got Record
	require.ErrorIs(t, got.UnmarshalMsgpack(b), ErrDecode)
}

func TestRecordDecodeErrors(t *testing.T) {
	good, _ := Record{Kind: KindStepDone, Saga: "s", Bag: []Entry{{"a", nil}, {"b", []byte{1}}}}.MarshalMsgpack()
	unsorted, _ := Record{Kind: KindStepDone, Bag: []Entry{{"b", nil}, {"a", nil}}}.MarshalMsgpack()
	unknown, _ := Record{Kind: 99}.MarshalMsgpack()
	huge := []byte{0x9a, 0x01, 0xa0, 0xa0, 0xc0, 0xdd, 0xff, 0xff, 0xff, 0xff}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte{}, good...), 0),
		"unsorted bag":   unsorted,
		"unknown kind":   unknown,
		"huge array":     huge,
		"not an array":   {0x01},
		"nine fields":    {0x99},
		"string as kind": append([]byte{0x9a, 0xa1, 'x'}, good[2:]...),
	} {
		var r Record
		err := r.UnmarshalMsgpack(b)
		require.ErrorIs(t, err, ErrDecode, name)
		require.Equal(t, Record{}, r, "%s: record changed on error", name)
	}
	var r Record
	require.NoError(t, r.UnmarshalMsgpack(good))
}

// FuzzRecordDecode checks that the decoder never panics, never allocates
// beyond its input, and that whatever it accepts re-encodes to the same
// record.
func FuzzRecordDecode(f *testing.F) {
	for seed := range uint64(8) {
		rec := randomRecord(rand.New(rand.NewPCG(seed, 2)))
		rec.Input, rec.Bag = nil, rec.Bag[:min(len(rec.Bag), 2)]
		b, _ := rec.MarshalMsgpack()
		if len(b) < 4096 {
			f.Add(b)
		}
	}
	f.Add([]byte{0x9a, 0x01, 0xa0, 0xa0, 0xc0, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x9a, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r Record
		if err := r.UnmarshalMsgpack(b); err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		again, _ := r.MarshalMsgpack()
		var r2 Record
		if err := r2.UnmarshalMsgpack(again); err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		require.Equal(t, r, r2)
	})
}

func TestRecordDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	// A header claiming a 4 GiB string in 7 bytes allocates only the
	// error (its message and wrapping), not the string.
	huge := []byte{0x9a, 0x01, 0xdb, 0xff, 0xff, 0xff, 0xff}
	var r Record
	require.Equal(t, 4.0, testing.AllocsPerRun(100, func() { _ = r.UnmarshalMsgpack(huge) }))
	// A valid record allocates its strings and slices only: Saga, Steps
	// and its two elements, Bag and its key.
	b, _ := Record{Kind: KindStarted, Saga: "saga-1", Steps: []string{"reserve", "charge"}, Bag: []Entry{{"key", nil}}}.MarshalMsgpack()
	require.Equal(t, 6.0, testing.AllocsPerRun(100, func() { _ = r.UnmarshalMsgpack(b) }))
}
