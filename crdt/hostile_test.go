package crdt

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/internal/wiretest"
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
