package merkle_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/merkle"
)

// TestBinaryRoundTrip: a tree survives MarshalBinary and UnmarshalBinary
// with every hash, the zero Tree included; flipping any byte, truncating or
// extending the encoding is refused and leaves the receiver unchanged.
func TestBinaryRoundTrip(t *testing.T) {
	tree := newReplica(small, 500, 15).tree
	b, err := tree.MarshalBinary()
	require.NoError(t, err)
	require.Len(t, b, 7+8*16*32+8)
	var back merkle.Tree
	require.NoError(t, back.UnmarshalBinary(b))
	require.True(t, back.Equal(tree))
	require.Equal(t, tree.Root(), back.Root())
	for i := range 16 {
		require.Equal(t, tree.BranchHash(i), back.BranchHash(i))
	}

	var zero merkle.Tree
	zb, err := zero.MarshalBinary()
	require.NoError(t, err)
	var z2 merkle.Tree
	require.NoError(t, z2.UnmarshalBinary(zb))
	require.True(t, z2.Equal(merkle.New(merkle.Config{})))

	keep := back.Clone()
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x10
		require.ErrorIs(t, back.UnmarshalBinary(bad), merkle.ErrMalformed, "byte %d", i)
		require.True(t, back.Equal(keep))
	}
	bad := append([]byte(nil), b...)
	bad[100] ^= 1
	require.ErrorIs(t, back.UnmarshalBinary(bad), merkle.ErrChecksum)
	for _, in := range [][]byte{nil, b[:len(b)-1], append(append([]byte(nil), b...), 0), []byte("DKMT\x01\x10\x0f")} {
		require.ErrorIs(t, back.UnmarshalBinary(in), merkle.ErrMalformed)
	}
}

// FuzzUnmarshalBinary: hostile bytes never panic, and whatever decodes
// encodes back to the same bytes.
func FuzzUnmarshalBinary(f *testing.F) {
	b, _ := merkle.New(merkle.Config{Branches: 2, SegmentsPerBranch: 2}).MarshalBinary()
	f.Add(b)
	tr := merkle.New(merkle.Config{Branches: 4, SegmentsPerBranch: 1})
	tr.Toggle([]byte("k"), 1)
	b, _ = tr.MarshalBinary()
	f.Add(b)
	f.Add([]byte("DKMT\x01\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		var tree merkle.Tree
		if tree.UnmarshalBinary(in) != nil {
			return
		}
		out, err := tree.MarshalBinary()
		require.NoError(t, err)
		require.Equal(t, in, out)
	})
}
