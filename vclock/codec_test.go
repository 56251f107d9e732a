package vclock

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/internal/wiretest"
)

func marshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	require.NoError(t, err)
	return b
}

// TestEncodingVectors pins the wire format.
func TestEncodingVectors(t *testing.T) {
	var v VClock
	v.Tick("b")
	v.TickAt("a", time.Unix(0, 1000))
	v.Tick("b")
	for _, c := range []struct {
		name string
		v    any
		hex  string
	}{
		{"dot", Dot{ID: "a", Counter: 300}, "92a161cd012c"},
		{"empty clock", VClock{}, "90"},
		{"clock", v, "92" + "93a16101cd03e8" + "92a16202"},
		{"empty set", DVVSet[string]{}, "929090"},
		{"set", mk(strs{"x"}, ent[string]{"a", 2, strs{"y"}}), "92" + "91" + "93a16102" + "91a179" + "91a178"},
	} {
		require.Equal(t, c.hex, hex.EncodeToString(marshal(t, c.v)), c.name)
	}
}

// TestRoundTrip encodes random clocks and sets, decodes them, and checks
// the result is equal and re-encodes to the same bytes.
func TestRoundTrip(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 11))
		v := randomTimedClock(r)
		b := marshal(t, v)
		var got VClock
		require.NoError(t, msgpack.Unmarshal(b, &got), "seed %d", seed)
		require.Equal(t, v.entries, got.entries, "seed %d", seed)
		require.Equal(t, b, marshal(t, got), "seed %d", seed)

		d := Dot{ID: string(rune('a' + r.IntN(26))), Counter: r.Uint64N(MaxCounter + 1)}
		var gotDot Dot
		require.NoError(t, msgpack.Unmarshal(marshal(t, d), &gotDot))
		require.Equal(t, d, gotDot)
	}
	for seed := range seeds() / 10 {
		for _, s := range history(t, seed, false) {
			if seed%2 == 0 {
				s.Reconcile(func(vs []string) string { return vs[0] })
				s.Sync(NewDVVSet("anon"))
			}
			b := marshal(t, s)
			var got DVVSet[string]
			require.NoError(t, msgpack.Unmarshal(b, &got), "seed %d", seed)
			requireSet(t, s, got, "seed %d", seed)
			require.Equal(t, b, marshal(t, got), "seed %d", seed)
		}
	}
}

// TestDeterministicBytes builds equal clocks and sets in different orders:
// they encode to the same bytes.
func TestDeterministicBytes(t *testing.T) {
	var x, y VClock
	for _, id := range []string{"c", "a", "b", "a"} {
		x.Tick(id)
	}
	for _, id := range []string{"a", "b", "a", "c"} {
		y.Tick(id)
	}
	require.Equal(t, marshal(t, x), marshal(t, y))

	a := mk(strs{"p"}, ent[string]{"n", 1, nil})
	b := mk(strs{"q"}, ent[string]{"m", 1, nil})
	require.Equal(t, marshal(t, sync(a, b)), marshal(t, sync(b, a)))
}

// record is what a Dynamo-style store keeps per sibling.
type record struct {
	Data    []byte
	Deleted bool
	Meta    map[string]string
}

func TestDVVSetRecordRoundTrip(t *testing.T) {
	var s DVVSet[record]
	s.Update(VClock{}, "n1", record{Data: []byte("hello"), Meta: map[string]string{"b": "2", "a": "1"}})
	s.Update(VClock{}, "n2", record{Deleted: true})
	s.Sync(NewDVVSet(record{Data: []byte{0, 1}}))
	b := marshal(t, s)
	var got DVVSet[record]
	require.NoError(t, msgpack.Unmarshal(b, &got))
	require.Equal(t, s.Values(), got.Values())
	require.Equal(t, s.Context().entries, got.Context().entries)

	// A set embedded in a struct uses the custom codec too.
	type stored struct {
		Key  string
		Sibs DVVSet[record]
	}
	var st stored
	require.NoError(t, msgpack.Unmarshal(marshal(t, stored{Key: "k", Sibs: s}), &st))
	require.Equal(t, s.Values(), st.Sibs.Values())
}

// TestDecodeRejects feeds hostile inputs: each is an error wrapping
// ErrMalformed and leaves the receiver unchanged.
func TestDecodeRejects(t *testing.T) {
	cases := []struct {
		name, hex string
		into      func() any
	}{
		{"clock unsorted", "92" + "92a16201" + "92a16101", clockPtr},
		{"clock duplicate", "92" + "92a16101" + "92a16102", clockPtr},
		{"clock zero counter", "91" + "92a16100", clockPtr},
		{"clock negative counter", "91" + "92a161ff", clockPtr},
		{"clock negative int16 counter", "91" + "92a161d1ff00", clockPtr},
		{"clock entry of 4", "91" + "94a1610101" + "01", clockPtr},
		{"clock entry of 1", "91" + "91a161", clockPtr},
		{"clock not an array", "a161", clockPtr},
		{"clock absurd length", "dd7fffffff" + "92a16101", clockPtr},
		{"clock length beyond input", "93" + "92a16101" + "92a16201", clockPtr},
		{"clock bad time", "91" + "93a16101a178", clockPtr},
		{"clock truncated", "92" + "92a16101" + "92a162", clockPtr},
		{"dot of 3", "93a1610101", dotPtr},
		{"dot bad counter", "92a161a178", dotPtr},
		{"dot empty", "", dotPtr},
		{"set unsorted", "92" + "92" + "93a16201" + "90" + "93a16101" + "90" + "90", setPtr},
		{"set values beyond counter", "92" + "91" + "93a16101" + "92a178a179" + "90", setPtr},
		{"set zero counter", "92" + "91" + "93a16100" + "90" + "90", setPtr},
		{"set absurd values", "92" + "91" + "93a16101" + "dd7fffffff" + "90", setPtr},
		{"set absurd entries", "92" + "dd7fffffff" + "90", setPtr},
		{"set absurd anonymous", "92" + "90" + "dc7fff", setPtr},
		{"set wrong value type", "92" + "91" + "93a16101" + "9101" + "90", setPtr},
		{"set of 3", "93909090", setPtr},
		{"set entry of 2", "92" + "91" + "92a16101" + "90", setPtr},
		// Non-canonical forms: each decodes to a value that encodes otherwise.
		{"clock explicit zero time", "91" + "93a1610100", clockPtr},
		{"clock bin ID", "91" + "92c40161" + "01", clockPtr},
		{"clock long string header", "91" + "92d90161" + "01", clockPtr},
		{"clock non-minimal counter", "91" + "92a161" + "cc01", clockPtr},
		{"clock signed counter", "91" + "92a161" + "d001", clockPtr},
		{"clock long array header", "dc0001" + "92a16101", clockPtr},
		{"clock nil entry", "91" + "c0", clockPtr},
		{"clock non-minimal time", "91" + "93a16101" + "d1fff0", clockPtr},
		{"dot long array header", "dc0002a16101", dotPtr},
		{"set nil values", "92" + "91" + "93a16101" + "c0" + "90", setPtr},
		{"set nil anonymous", "92" + "90" + "c0", setPtr},
		{"set value as bin", "92" + "91" + "93a16101" + "91c40178" + "90", setPtr},
		{"set anonymous unsorted", "92" + "90" + "92a179a178", setPtr},
		{"set anonymous repeated", "92" + "90" + "92a178a178", setPtr},
	}
	for _, c := range cases {
		b, err := hex.DecodeString(c.hex)
		require.NoError(t, err, c.name)
		dst := c.into()
		before := marshal(t, dst)
		err = msgpack.Unmarshal(b, dst)
		require.ErrorIs(t, err, ErrMalformed, c.name)
		require.Equal(t, before, marshal(t, dst), "%s: receiver changed", c.name)
	}
}

func clockPtr() any {
	var v VClock
	v.Tick("keep")
	return &v
}

func dotPtr() any { return &Dot{ID: "keep", Counter: 1} }

func setPtr() any {
	var s DVVSet[string]
	s.Update(VClock{}, "keep", "me")
	return &s
}

// TestDecodeTruncated decodes every proper prefix of valid encodings: all
// fail with ErrMalformed.
func TestDecodeTruncated(t *testing.T) {
	var v VClock
	v.TickAt("a", time.Unix(5, 0))
	v.Tick("bb")
	var s DVVSet[string]
	s.Update(VClock{}, "n", "v1")
	s.Update(VClock{}, "n", "v2")
	s.Sync(NewDVVSet("x"))
	for _, c := range []struct {
		full []byte
		into func() any
	}{{marshal(t, v), clockPtr}, {marshal(t, s), setPtr}, {marshal(t, Dot{ID: "a", Counter: 9}), dotPtr}} {
		for n := range len(c.full) {
			require.ErrorIs(t, msgpack.Unmarshal(c.full[:n], c.into()), ErrMalformed, "prefix %d of %x", n, c.full)
		}
	}
}

// TestDecodeStream decodes from a reader of unknown length, one byte at a
// time: valid input decodes, and an absurd length fails at the end of the
// input instead of allocating for it.
func TestDecodeStream(t *testing.T) {
	var v VClock
	v.Tick("a")
	v.Tick("b")
	b := marshal(t, v)
	var got VClock
	require.NoError(t, msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(b))).Decode(&got))
	require.Equal(t, v.entries, got.entries)

	hostile, _ := hex.DecodeString("dd7fffffff" + "92a16101")
	err := msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(hostile))).Decode(&got)
	require.ErrorIs(t, err, ErrMalformed)
	require.True(t, errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF), "%v", err)
	allocs := testing.AllocsPerRun(10, func() {
		var v VClock
		_ = msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(hostile))).Decode(&v)
	})
	require.Less(t, allocs, 50.0)
}

func TestDecodeNil(t *testing.T) {
	v := *clockPtr().(*VClock)
	require.NoError(t, msgpack.Unmarshal([]byte{0xc0}, &v))
	require.Equal(t, 0, v.Len())
}

// decodeExact decodes a T from the front of b with its DecodeMsgpack
// method, as a decoder nested in another would call it. It fails t if the
// error does not wrap ErrMalformed, or if a decoded value does not encode
// back to exactly the bytes it was decoded from; it returns the value, the
// rest of b, and whether decoding succeeded.
func decodeExact[T any, P interface {
	*T
	msgpack.CustomDecoder
}](t *testing.T, b []byte) (T, []byte, bool) {
	var v T
	r := bytes.NewReader(b)
	if err := P(&v).DecodeMsgpack(msgpack.NewDecoder(r)); err != nil {
		require.ErrorIs(t, err, ErrMalformed)
		return v, nil, false
	}
	used := len(b) - r.Len()
	require.Equal(t, b[:used], marshal(t, v), "decoded %x, encodes otherwise", b[:used])
	return v, b[used:], true
}

func FuzzDecodeVClock(f *testing.F) {
	var v VClock
	v.TickAt("a", time.Unix(1, 0))
	v.Tick("b")
	f.Add(marshal(f, v))
	f.Add([]byte{0x90})
	f.Add([]byte{0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{0x91, 0x93, 0xa1, 'a', 0x01, 0x00})       // explicit zero time
	f.Add([]byte{0x91, 0x92, 0xc4, 0x01, 'a', 0x01})       // bin ID
	f.Add([]byte{0x91, 0x92, 0xa1, 'a', 0xcd, 0x00, 0x01}) // non-minimal counter
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, _, ok := decodeExact[VClock](t, b); ok {
			checkInvariants(t, v)
		}
	})
}

func FuzzDecodeDot(f *testing.F) {
	f.Add(marshal(f, Dot{ID: "a", Counter: 7}))
	f.Add([]byte{0x92, 0xa1, 0x61, 0xff})
	f.Add([]byte{0x92, 0xa1, 0x61, 0xd0, 0x07})
	f.Fuzz(func(t *testing.T, b []byte) { decodeExact[Dot](t, b) })
}

func FuzzDecodeDVVSet(f *testing.F) {
	var s DVVSet[string]
	s.Update(VClock{}, "n1", "v1")
	s.Update(VClock{}, "n1", "v2")
	s.Update(s.Context(), "n2", "v3")
	s.Sync(NewDVVSet("a"))
	s.Sync(NewDVVSet("b"))
	f.Add(marshal(f, s))
	f.Add(marshal(f, DVVSet[string]{}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var values DVVSet[any] // values msgpack would preallocate for
		if err := msgpack.Unmarshal(b, &values); err != nil {
			require.ErrorIs(t, err, ErrMalformed)
		}
		s, _, ok := decodeExact[DVVSet[string]](t, b)
		if !ok {
			return
		}
		dotted(t, s)
		for i := 1; i < len(s.anon); i++ {
			require.Negative(t, wire.Compare(&s.anon[i-1], &s.anon[i]))
		}
		// A decoded set is a valid server set: it accepts updates and syncs.
		if err := s.TryUpdate(s.Context(), "fuzz", "v"); err != nil {
			require.ErrorIs(t, err, ErrExhausted)
		}
		s.Sync(s.Clone())
		dotted(t, s)
	})
}

// FuzzSyncCommutes decodes two sets from the fuzzed bytes, one after the
// other, and syncs them in both orders: the results encode identically,
// also when the two hold different values under the same dot.
func FuzzSyncCommutes(f *testing.F) {
	var a, b DVVSet[string]
	a.Update(VClock{}, "n", "x")
	b.Update(VClock{}, "n", "y") // the same dot, another value
	f.Add(append(marshal(f, a), marshal(f, b)...))
	c := a.Clone()
	c.Update(a.Context(), "m", "z")
	c.Update(VClock{}, "n", "w")
	b.Sync(NewDVVSet("anon"))
	f.Add(append(marshal(f, c), marshal(f, b)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		a, rest, ok := decodeExact[DVVSet[string]](t, in)
		if !ok {
			return
		}
		b, _, ok := decodeExact[DVVSet[string]](t, rest)
		if !ok {
			return
		}
		ab, ba := a.Clone(), b.Clone()
		ab.Sync(b)
		ba.Sync(a)
		require.Equal(t, marshal(t, ab), marshal(t, ba))
	})
}

// TestDecodeHostileValueLengths: a length inside a value (V a slice or any)
// that the input cannot back must fail without being allocated for.
// msgpack itself preallocates such slices by their claimed length, so a
// dozen bytes could otherwise ask for gigabytes.
func TestDecodeHostileValueLengths(t *testing.T) {
	// [[["a", 1, [array32(1<<24) of nothing]]], []]
	hostile, _ := hex.DecodeString("92" + "91" + "93a16101" + "91" + "dd01000000" + "90")
	for _, into := range []func() any{
		func() any { return new(DVVSet[[]int64]) },
		func() any { return new(DVVSet[any]) },
	} {
		for name, dec := range wiretest.Decoders(hostile) {
			dst := into()
			var err error
			n := wiretest.Allocated(func() { err = dec.Decode(dst) })
			require.ErrorIs(t, err, ErrMalformed, "%s %T", name, dst)
			require.Less(t, n, uint64(1<<20), "%s %T: bytes allocated", name, dst)
		}
	}
}

// TestDecodeValuesWithDecoderSettings: from an in-memory reader, values
// are decoded with the caller's decoder and its settings.
func TestDecodeValuesWithDecoderSettings(t *testing.T) {
	type tagged struct {
		Name string `json:"n"`
	}
	var s DVVSet[tagged]
	s.Update(VClock{}, "a", tagged{Name: "x"})
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetCustomStructTag("json")
	require.NoError(t, enc.Encode(s))
	dec := msgpack.NewDecoder(bytes.NewReader(buf.Bytes()))
	dec.SetCustomStructTag("json")
	dec.DisallowUnknownFields(true)
	var got DVVSet[tagged]
	require.NoError(t, dec.Decode(&got))
	require.Equal(t, []tagged{{Name: "x"}}, got.Values())
}
