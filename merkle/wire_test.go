package merkle_test

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/merkle"
)

// TestWireVectors pins the encoding byte for byte.
func TestWireVectors(t *testing.T) {
	for _, tc := range []struct {
		msg  interface{ MarshalMsgpack() ([]byte, error) }
		want []byte
	}{
		// [1, bin8 ""]
		{merkle.Request{Kind: merkle.KindRoot}, []byte{0x92, 0x01, 0xc4, 0x00}},
		// [2, bin8 (gap 0, len 4096 = varint 80 20)]
		{merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{0, 4096}}}, []byte{0x92, 0x02, 0xc4, 0x03, 0x00, 0x80, 0x20}},
		// [3, bin8 (5, 1) (gap 3 after 6, 2)]: branches 5, 9 and 10
		{merkle.Request{Kind: merkle.KindSegments, Spans: []merkle.Span{{5, 1}, {9, 2}}}, []byte{0x92, 0x03, 0xc4, 0x04, 0x05, 0x01, 0x03, 0x02}},
		// [1, 4096, 256, bin8 le64(1)]
		{merkle.Response{Kind: merkle.KindRoot, Config: merkle.Config{Branches: 4096, SegmentsPerBranch: 256}, Hashes: []uint64{1}},
			[]byte{0x94, 0x01, 0xcd, 0x10, 0x00, 0xcd, 0x01, 0x00, 0xc4, 0x08, 1, 0, 0, 0, 0, 0, 0, 0}},
		// [2, 1, 1, bin8 ""]
		{merkle.Response{Kind: merkle.KindBranches, Config: merkle.Config{Branches: 1, SegmentsPerBranch: 1}}, []byte{0x94, 0x02, 0x01, 0x01, 0xc4, 0x00}},
	} {
		got, err := tc.msg.MarshalMsgpack()
		require.NoError(t, err)
		require.Equal(t, tc.want, got, "%+v", tc.msg)
		// msgpack.Marshal uses the same encoding.
		viaLib, err := msgpack.Marshal(tc.msg)
		require.NoError(t, err)
		require.Equal(t, tc.want, viaLib)
	}
}

func TestWireRejectsInvalidMessages(t *testing.T) {
	cfg := merkle.Config{Branches: 16, SegmentsPerBranch: 16}
	for _, bad := range []interface{ MarshalMsgpack() ([]byte, error) }{
		merkle.Request{},
		merkle.Request{Kind: 5},
		merkle.Request{Kind: merkle.KindRanges, Spans: []merkle.Span{{0, 1}}, Shift: 25},
		merkle.Request{Kind: merkle.KindRanges, Spans: []merkle.Span{{0, 3}}, Shift: 23},
		merkle.Request{Kind: merkle.KindRanges, Spans: []merkle.Span{{0, 1}}, Shift: -1},
		merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{0, 1}}, Shift: 1},
		merkle.Request{Kind: merkle.KindRoot, Spans: []merkle.Span{{0, 1}}},
		merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{0, 0}}},
		merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{-1, 2}}},
		merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{0, 2}, {2, 1}}}, // touching
		merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{5, 2}, {1, 1}}}, // out of order
		merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{merkle.MaxBranches, 1}}},
		merkle.Response{Kind: merkle.KindRoot, Config: cfg},
		merkle.Response{Kind: merkle.KindBranches, Config: merkle.Config{Branches: 3, SegmentsPerBranch: 1}},
		merkle.Response{Kind: merkle.KindBranches},
		merkle.Response{Kind: merkle.KindBranches, Config: cfg, Hashes: make([]uint64, merkle.MaxHashes+1)},
		merkle.Response{Kind: 0, Config: cfg},
	} {
		_, err := bad.MarshalMsgpack()
		require.ErrorIs(t, err, merkle.ErrMalformed, "%+v", bad)
	}

	for name, in := range map[string][]byte{
		"empty":              {},
		"nil":                {0xc0},
		"trailing byte":      {0x92, 0x01, 0xc4, 0x00, 0x00},
		"short array":        {0x91, 0x01},
		"kind 0":             {0x92, 0x00, 0xc4, 0x00},
		"kind 257":           {0x92, 0xcd, 0x01, 0x01, 0xc4, 0x00},
		"negative kind":      {0x92, 0xff, 0xc4, 0x00},
		"spans as nil":       {0x92, 0x01, 0xc0},
		"bin beyond input":   {0x92, 0x02, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00},
		"truncated varint":   {0x92, 0x02, 0xc4, 0x01, 0x80},
		"zero-length span":   {0x92, 0x02, 0xc4, 0x02, 0x00, 0x00},
		"touching spans":     {0x92, 0x02, 0xc4, 0x04, 0x00, 0x01, 0x00, 0x01},
		"span beyond limit":  {0x92, 0x02, 0xc4, 0x04, 0x80, 0x80, 0x04, 0x01},
		"root with spans":    {0x92, 0x01, 0xc4, 0x02, 0x00, 0x01},
		"varint overflowing": {0x92, 0x02, 0xc4, 0x0b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"ranges, no shift":   {0x92, 0x04, 0xc4, 0x00},
		"ranges, shift 25":   {0x93, 0x04, 0xc4, 0x00, 0x19},
		"branches, shift":    {0x93, 0x02, 0xc4, 0x00, 0x00},
		"ranges beyond tree": {0x93, 0x04, 0xc4, 0x02, 0x00, 0x03, 0x17},
	} {
		var q merkle.Request
		require.ErrorIs(t, q.UnmarshalMsgpack(in), merkle.ErrMalformed, name)
		require.Zero(t, q, name)
	}
	for name, in := range map[string][]byte{
		"empty":             {},
		"request":           {0x92, 0x01, 0xc4, 0x00},
		"hashes not words":  {0x94, 0x02, 0x01, 0x01, 0xc4, 0x01, 0x00},
		"config not pow2":   {0x94, 0x02, 0x03, 0x01, 0xc4, 0x00},
		"config zero":       {0x94, 0x02, 0x00, 0x01, 0xc4, 0x00},
		"config huge":       {0x94, 0x02, 0xcf, 1, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xc4, 0x00},
		"root without hash": {0x94, 0x01, 0x01, 0x01, 0xc4, 0x00},
		"bin beyond input":  {0x94, 0x02, 0x01, 0x01, 0xc6, 0x7f, 0xff, 0xff, 0xf8},
		"trailing":          {0x94, 0x02, 0x01, 0x01, 0xc4, 0x00, 0xc0},
	} {
		var r merkle.Response
		require.ErrorIs(t, r.UnmarshalMsgpack(in), merkle.ErrMalformed, name)
		require.Zero(t, r, name)
	}
}

// TestWireRoundTrip encodes random valid messages and decodes them back.
func TestWireRoundTrip(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 10))
		q := merkle.Request{Kind: merkle.Kind(1 + r.IntN(3))}
		if q.Kind != merkle.KindRoot {
			for next := r.IntN(100); next < merkle.MaxBranches && r.IntN(8) != 0; {
				s := merkle.Span{Start: next, Len: 1 + r.IntN(min(1000, merkle.MaxBranches-next))}
				q.Spans = append(q.Spans, s)
				next = s.Start + s.Len + 1 + r.IntN(3000)
			}
		}
		var q2 merkle.Request
		require.NoError(t, q2.UnmarshalMsgpack(mustMarshal(t, q)), "seed %d", seed)
		require.Equal(t, q, q2, "seed %d", seed)

		resp := merkle.Response{
			Kind:   merkle.Kind(1 + r.IntN(3)),
			Config: merkle.Config{Branches: 1 << r.IntN(17), SegmentsPerBranch: 1 << r.IntN(8)},
			Hashes: make([]uint64, r.IntN(2000)),
		}
		if resp.Kind == merkle.KindRoot {
			resp.Hashes = resp.Hashes[:0:0]
			resp.Hashes = append(resp.Hashes, 0)
		}
		for i := range resp.Hashes {
			resp.Hashes[i] = r.Uint64()
		}
		var resp2 merkle.Response
		require.NoError(t, resp2.UnmarshalMsgpack(mustMarshal(t, resp)), "seed %d", seed)
		require.Equal(t, resp, resp2, "seed %d", seed)
	}
}

// FuzzRequest: decoding never panics, and whatever decodes re-encodes to a
// message that decodes to the same value (and is accepted by Serve or
// rejected as out of range).
func FuzzRequest(f *testing.F) {
	f.Add([]byte{0x92, 0x01, 0xc4, 0x00})
	f.Add([]byte{0x92, 0x02, 0xc4, 0x03, 0x00, 0x80, 0x20})
	f.Add([]byte{0x92, 0x03, 0xc4, 0x04, 0x05, 0x01, 0x03, 0x02})
	f.Add([]byte{0x92, 0x02, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00})
	f.Add([]byte{0x93, 0x04, 0xc4, 0x02, 0x00, 0x03, 0x02})
	f.Add([]byte{0x93, 0x04, 0xc4, 0x02, 0x05, 0x01, 0x00})
	tr := merkle.New(merkle.Config{Branches: 64, SegmentsPerBranch: 512})
	f.Fuzz(func(t *testing.T, in []byte) {
		var q merkle.Request
		if err := q.UnmarshalMsgpack(in); err != nil {
			require.ErrorIs(t, err, merkle.ErrMalformed)
			return
		}
		var q2 merkle.Request
		require.NoError(t, q2.UnmarshalMsgpack(mustMarshal(t, q)))
		require.Equal(t, q, q2)
		if out, err := merkle.Serve(tr, in); err != nil {
			require.ErrorIs(t, err, merkle.ErrBadRequest)
		} else {
			var resp merkle.Response
			require.NoError(t, resp.UnmarshalMsgpack(out))
			require.Equal(t, q.Kind, resp.Kind)
		}
	})
}

// FuzzResponse: decoding never panics and allocates only what the input
// holds, and whatever decodes round-trips.
func FuzzResponse(f *testing.F) {
	f.Add([]byte{0x94, 0x01, 0xcd, 0x10, 0x00, 0xcd, 0x01, 0x00, 0xc4, 0x08, 1, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x94, 0x02, 0x01, 0x01, 0xc4, 0x00})
	f.Add([]byte{0x94, 0x02, 0x01, 0x01, 0xc6, 0x7f, 0xff, 0xff, 0xf8})
	f.Fuzz(func(t *testing.T, in []byte) {
		var r merkle.Response
		if err := r.UnmarshalMsgpack(in); err != nil {
			require.ErrorIs(t, err, merkle.ErrMalformed)
			return
		}
		require.LessOrEqual(t, 8*len(r.Hashes), len(in))
		var r2 merkle.Response
		require.NoError(t, r2.UnmarshalMsgpack(mustMarshal(t, r)))
		require.Equal(t, r, r2)
	})
}

// TestWireArityErrors: a message array of the wrong length is reported
// with both lengths (not a formatting artefact of a nil error).
func TestWireArityErrors(t *testing.T) {
	var q merkle.Request
	require.EqualError(t, q.UnmarshalMsgpack([]byte{0x93, 0x01, 0xc4, 0x00, 0x01}),
		"merkle: malformed message: array of 3 elements, want 2")
	var r merkle.Response
	require.EqualError(t, r.UnmarshalMsgpack([]byte{0x91, 0x01}),
		"merkle: malformed message: array of 1 elements, want 4")
}
