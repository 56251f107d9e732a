package ring_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/ring"
)

// TestKeyedHashVectors checks SipHash-2-4 against the vectors of the
// SipHash paper's reference implementation: key 00 01 .. 0f, messages
// 00 01 .. (len-1).
func TestKeyedHashVectors(t *testing.T) {
	var secret [16]byte
	for i := range secret {
		secret[i] = byte(i)
	}
	msg := make([]byte, 16)
	for i := range msg {
		msg[i] = byte(i)
	}
	for _, v := range []struct {
		n    int
		want uint64
	}{
		{0, 0x726fdb47dd0e0e31},
		{1, 0x74f839c593dc67fd},
		{7, 0xab0200f58b01d137},
		{8, 0x93f5f5799a932462},
		{15, 0xa129ca6149be45e5},
	} {
		require.Equal(t, v.want, ring.KeyedHash(secret, msg[:v.n]), "length %d", v.n)
	}
	other := secret
	other[0]++
	require.NotEqual(t, ring.KeyedHash(secret, msg), ring.KeyedHash(other, msg), "the secret matters")
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = ring.KeyedHash(secret, msg) }))
}
