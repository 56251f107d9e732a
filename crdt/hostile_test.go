package crdt

import (
	"encoding/hex"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/internal/wiretest"
	"github.com/distkit/distkit/vclock"
)

// TestDecodeHostileLengths: a value, element or key that claims a
// container longer than the input fails without being allocated for,
// from memory and from a stream. msgpack/v5 preallocates a []any, slice or
// map nested inside a value by the length its header claims, so a dozen
// bytes decoded into an `any` would ask for 256 MiB. (A string claiming
// more than the input is another matter: msgpack reads it in chunks of at
// most 1 MiB, whatever the claim, in every decoder.)
func TestDecodeHostileLengths(t *testing.T) {
	const huge = "dd01000000" // array32 claiming 1<<24 elements
	cases := []struct {
		name string
		into func() any
		in   string
	}{
		{"LWWRegister[any] value", func() any { return new(LWWRegister[any]) }, "93" + "91" + huge},
		{"LWWRegister[any] value in a map", func() any { return new(LWWRegister[any]) }, "93" + "81a161" + huge},
		{"LWWRegister[[]any] value", func() any { return new(LWWRegister[[]any]) }, "93" + "91" + huge},
		{"MVRegister[any] value", func() any { return new(MVRegister[any]) }, "92" + "91" + "93a16101" + "91" + huge},
		{"MVRegister[map[string]any] value", func() any { return new(MVRegister[map[string]any]) }, "92" + "91" + "93a16101" + "81a161" + huge},
		{"ORMap nested MVRegister[any] value", func() any { return new(ORMap[string, MVRegister[any]]) },
			"92" + "81a16b" + "91" + "93a16101" + "91" + huge},
		{"ORSet[string] element", func() any { return new(ORSet[string]) }, "92" + "81" + huge},
		{"ORMap[string, EWFlag] key", func() any { return new(ORMap[string, EWFlag]) }, "92" + "81" + "91" + huge},
		{"GSet[float64] element", func() any { return new(GSet[float64]) }, "91" + "81a161" + huge},
		{"Map names", func() any { return new(Map) }, "92" + "df01000000"},
		{"Map set field", func() any { return new(Map) }, "92" + "81a16b" + "8106" + "df01000000"},
		{"Map nested map field", func() any { return new(Map) }, "92" + "81a16b" + "8107" + "df01000000"},
		{"Map MV register value", func() any { return new(Map) }, "92" + "81a16b" + "8103" + "91" + "93a16101" + huge},
	}
	for _, c := range cases {
		in, err := hex.DecodeString(c.in)
		require.NoError(t, err)
		for path, dec := range wiretest.Decoders(in) {
			v := c.into()
			n := wiretest.Allocated(func() { err = dec.Decode(v) })
			assert.ErrorIs(t, err, ErrMalformed, "%s, %s", c.name, path)
			assert.Less(t, n, uint64(1<<20), "%s, %s: bytes allocated decoding %d bytes", c.name, path, len(in))
		}
	}
}

// TestHostileCounters: a counter above vclock.MaxCounter (2^63, 2^63+1,
// 2^64-1), in every place a decoder reads one, is refused with an error
// wrapping ErrMalformed and leaves the receiver as it was; afterwards the
// receiver's own mutators keep working.
func TestHostileCounters(t *testing.T) {
	dot := func(id string, n uint64) []any { return []any{id, n} }
	ctx := func(vv []any, cloud ...any) []any { return []any{vv, cloud} }
	for _, n := range []uint64{vclock.MaxCounter + 1, vclock.MaxCounter + 2, math.MaxUint64} {
		cases := []struct {
			name string
			into any
			in   []any
		}{
			{"GCounter count", new(GCounter), []any{dot("a", n)}},
			{"PNCounter increments", new(PNCounter), []any{[]any{dot("a", n)}, []any{}}},
			{"PNCounter decrements", new(PNCounter), []any{[]any{}, []any{dot("a", n)}}},
			{"ORSet store dot", new(ORSet[string]), []any{map[string]any{"x": []any{dot("a", n)}}, ctx([]any{dot("a", n)})}},
			{"ORSet version vector", new(ORSet[string]), []any{map[string]any{}, ctx([]any{dot("a", n)})}},
			{"ORSet dot cloud", new(ORSet[string]), []any{map[string]any{}, ctx(nil, dot("a", n))}},
			{"MVRegister dot", new(MVRegister[int]), []any{[]any{[]any{"a", n, 1}}, ctx([]any{dot("a", n)})}},
			{"EWFlag dot", new(EWFlag), []any{[]any{dot("a", n)}, ctx(nil, dot("a", n))}},
			{"ORMap nested dot", new(ORMap[string, EWFlag]), []any{map[string]any{"k": []any{dot("a", n)}}, ctx([]any{dot("a", n)})}},
		}
		for _, c := range cases {
			name := fmt.Sprintf("%s at %d", c.name, n)
			seed(c.into)
			before := encode(t, c.into)
			err := msgpack.Unmarshal(mustMarshal(c.in), c.into)
			require.ErrorIs(t, err, ErrMalformed, name)
			require.Equal(t, before, encode(t, c.into), "%s: receiver changed", name)
			require.NoError(t, seed(c.into), "%s: mutators after the refusal", name)
		}
	}
	// An LWWRegister's timestamp is bounded by hlc's range instead: the
	// last representable microsecond (2^64-1 is in it) is refused.
	var r LWWRegister[int]
	r.Set(1, 5, "a")
	err := msgpack.Unmarshal(mustMarshal([]any{2, uint64(math.MaxUint64), "b"}), &r)
	require.ErrorIs(t, err, ErrMalformed)
	v, ts := r.Get()
	require.Equal(t, 1, v)
	require.Equal(t, hlc.Timestamp(5), ts)
}

// seed applies one mutation of replica "a" to x through its Try mutator.
func seed(x any) error {
	var err error
	switch s := x.(type) {
	case *GCounter:
		_, err = s.TryInc("a", 1)
	case *PNCounter:
		_, err = s.TryDec("a", 1)
	case *ORSet[string]:
		_, err = s.TryAdd("a", "x")
	case *MVRegister[int]:
		_, err = s.TrySet("a", 1)
	case *EWFlag:
		_, err = s.TryEnable("a")
	case *ORMap[string, EWFlag]:
		_, err = s.TryUpdate("k", func(f *EWFlag) error { _, err := f.TryEnable("a"); return err })
	default:
		panic(fmt.Sprintf("seed: %T", x))
	}
	return err
}

// TestTryMutatorsAtMaxCounter: a replica whose dots or counts reached
// vclock.MaxCounter through a merge gets ErrExhausted from every Try
// mutator, with the state unchanged; other replicas' mutators work.
func TestTryMutatorsAtMaxCounter(t *testing.T) {
	var g GCounter
	g.Merge(GCounter{counts: clockOf("a", vclock.MaxCounter-1)})
	_, err := g.TryInc("a", 2)
	require.ErrorIs(t, err, vclock.ErrExhausted)
	_, err = g.TryInc("a", 1)
	require.NoError(t, err)
	var m ORMap[string, ORSet[string]]
	m.Update("old", func(s *ORSet[string]) { s.Add("c", "x") })
	m.ctx.vv.Merge(clockOf("a", vclock.MaxCounter))
	before := encode(t, m)
	for _, k := range []string{"k", "old"} { // a new key, and one whose value f changes first
		_, err = m.TryUpdate(k, func(s *ORSet[string]) error {
			if _, err := s.TryAdd("b", "first"); err != nil {
				return err
			}
			s.Remove("x")
			_, err := s.TryAdd("a", "second") // fails after changes
			return err
		})
		require.ErrorIs(t, err, vclock.ErrExhausted)
		require.Equal(t, before, encode(t, m), "TryUpdate of %q changed the map", k)
	}
	_, err = m.TryUpdate("k", func(s *ORSet[string]) error { _, err := s.TryAdd("b", "x"); return err })
	require.NoError(t, err)
	got, _ := m.Get("k")
	require.Equal(t, []string{"x"}, got.Elements())
}

func clockOf(id string, n uint64) vclock.VClock {
	var v vclock.VClock
	v.Add(vclock.Dot{ID: id, Counter: n})
	return v
}

// TestPruneAtomic: when into has too few dots or counts left below
// vclock.MaxCounter to take over removed's, TryPrune returns ErrExhausted
// and Prune panics, and neither changes anything, for every pruning type;
// with room, pruning finishes.
func TestPruneAtomic(t *testing.T) {
	var set ORSet[string]
	set.Add("b", "x")
	set.Add("b", "y")
	set.Add("a", "z")
	set.ctx.vv.Add(vclock.Dot{ID: "a", Counter: vclock.MaxCounter - 1}) // room for one dot, not two
	var m ORMap[string, ORSet[string]]
	m.Update("k", func(s *ORSet[string]) { s.Add("b", "x") })
	m.Update("l", func(s *ORSet[string]) { s.Add("b", "y") })
	m.ctx.vv.Add(vclock.Dot{ID: "a", Counter: vclock.MaxCounter - 1})
	var g GCounter
	g.Inc("b", 2)
	g.Merge(GCounter{counts: clockOf("a", vclock.MaxCounter-1)})
	var p PNCounter
	p.Inc("b", 1) // the increments have room, the decrements do not
	p.Dec("b", 2)
	p.Merge(PNCounter{n: GCounter{counts: clockOf("a", vclock.MaxCounter-1)}})
	value := p.Value()
	for name, s := range map[string]RemovedNodePruning{"ORSet": &set, "ORMap": &m, "GCounter": &g, "PNCounter": &p} {
		before := encode(t, s)
		require.ErrorIs(t, s.TryPrune("b", "a"), vclock.ErrExhausted, name)
		require.Equal(t, before, encode(t, s), "%s: TryPrune changed the state", name)
		require.Panics(t, func() { s.Prune("b", "a") }, name)
		require.Equal(t, before, encode(t, s), "%s: Prune changed the state", name)
		require.True(t, s.NeedPruningFrom("b"), name)
		require.NoError(t, s.TryPrune("b", "c"), name) // another replica has room
		require.False(t, s.NeedPruningFrom("b"), name)
	}
	require.Equal(t, []string{"x", "y", "z"}, set.Elements())
	require.Equal(t, []string{"k", "l"}, m.Keys())
	require.Equal(t, value, p.Value())
}
