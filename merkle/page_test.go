package merkle_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/merkle"
)

// TestDiffPage pages through random divergences with random limits: the
// pages are increasing, at most limit long, resume where the last one
// stopped, and together are exactly Diff's segments; each round moves
// bytes bounded by the limit, not by the differences.
func TestDiffPage(t *testing.T) {
	cfg := merkle.Config{Branches: 256, SegmentsPerBranch: 64} // 16,384 segments: 4 levels
	rep := newReplica(cfg, 20_000, 11)
	for i, d := range []int{0, 1, 7, 300, 5000} {
		seed := uint64(200 + i)
		remote, _ := diverge(rep, d, seed)
		full, err := merkle.Diff(context.Background(), rep.tree, merkle.Loopback(remote))
		require.NoError(t, err)
		for _, limit := range []int{1, 3, 128, 1 << 20} {
			var got []int
			from, rounds := 0, 0
			for {
				res, err := merkle.DiffPage(context.Background(), rep.tree, merkle.Loopback(remote), from, limit)
				require.NoError(t, err)
				require.LessOrEqual(t, len(res.Segments), limit)
				require.True(t, slices.IsSorted(res.Segments))
				if len(res.Segments) > 0 {
					require.GreaterOrEqual(t, res.Segments[0], from)
				}
				// Per level at most limit ranges expanded 16 ways (128 at
				// the first), 8 bytes a hash plus headers and spans.
				bound := 32 + 4*(8*16*min(limit, 16384)+8*128+64+6*min(limit, 16384))
				require.LessOrEqual(t, res.Bytes, bound, "seed %d limit %d", seed, limit)
				got = append(got, res.Segments...)
				rounds++
				if res.Next == 0 {
					break
				}
				require.Len(t, res.Segments, limit, "a page is cut short only by the limit")
				require.Equal(t, res.Segments[len(res.Segments)-1]+1, res.Next)
				from = res.Next
			}
			require.Equal(t, full.Segments, got, "seed %d limit %d: %d rounds", seed, limit, rounds)
			require.LessOrEqual(t, rounds, len(full.Segments)/limit+1)
		}
	}
	// Against an empty replica, a round of 128 moves tens of KiB, not the
	// whole tree.
	big := newReplica(merkle.Config{}, 50_000, 12)
	res, err := merkle.DiffPage(context.Background(), big.tree, merkle.Loopback(merkle.New(merkle.Config{})), 0, 128)
	require.NoError(t, err)
	require.Len(t, res.Segments, 128)
	require.Less(t, res.Bytes, 100_000)
	t.Logf("a round of 128 against an empty replica of %d segments: %d bytes in %d calls", 1<<20, res.Bytes, res.Calls)

	for _, bad := range [][2]int{{0, 0}, {-1, 5}, {1 << 20, 5}} {
		res, err := merkle.DiffPage(context.Background(), big.tree, nil, bad[0], bad[1])
		require.NoError(t, err)
		require.Zero(t, res, "no call for from %d limit %d", bad[0], bad[1])
	}
}

// TestConfirm: segments that differed only because a write was in flight
// drop out on confirmation; the others stay.
func TestConfirm(t *testing.T) {
	rep := newReplica(small, 2000, 13)
	local := rep.tree
	remote := local.Clone()
	inFlight := fmt.Appendf(nil, "in-flight")
	real := fmt.Appendf(nil, "missed")
	remote.Toggle(inFlight, 1)
	remote.Toggle(real, 2)
	found, err := merkle.Diff(context.Background(), local, merkle.Loopback(remote))
	require.NoError(t, err)
	require.Equal(t, segmentsOf(local, [][]byte{inFlight, real}), found.Segments)
	local.Toggle(inFlight, 1) // the write arrives
	res, err := merkle.Confirm(context.Background(), local, merkle.Loopback(remote), append(found.Segments, found.Segments...))
	require.NoError(t, err)
	require.Equal(t, []int{local.Segment(real)}, res.Segments)
	require.Equal(t, 1, res.Calls)
	require.Less(t, res.Bytes, 64)

	_, err = merkle.Confirm(context.Background(), local, merkle.Loopback(remote), []int{1 << 20})
	require.ErrorIs(t, err, merkle.ErrBadRequest)
	res, err = merkle.Confirm(context.Background(), local, merkle.Loopback(remote), nil)
	require.NoError(t, err)
	require.Empty(t, res.Segments)
}

// TestZeroTree: the zero Tree is the empty tree of the default geometry,
// for reading, writing and exchanging.
func TestZeroTree(t *testing.T) {
	var z merkle.Tree
	empty := merkle.New(merkle.Config{})
	require.Equal(t, empty.Config(), z.Config())
	require.Zero(t, z.Root())
	require.Zero(t, z.SegmentHash(5))
	require.True(t, z.Equal(empty))
	require.True(t, empty.Equal(&z))
	require.NoError(t, merkle.Verify(&z, empty))
	res, err := merkle.Diff(context.Background(), &z, merkle.Loopback(&merkle.Tree{}))
	require.NoError(t, err)
	require.Empty(t, res.Segments)
	key := []byte("k")
	require.Equal(t, empty.Segment(key), z.Segment(key))
	z.Toggle(key, 7)
	empty.Toggle(key, 7)
	require.True(t, z.Equal(empty))
	require.Equal(t, merkle.EntryHash(key, 7), z.Root())
	var m merkle.Tree
	m.Merge(&z)
	require.True(t, m.Equal(&z))
	c := (&merkle.Tree{}).Clone()
	c.Add(key, 7)
	require.True(t, c.Equal(&z))
}

// TestToggle: Toggle inserts an absent entry and removes a present one, and
// Add is the same operation.
func TestToggle(t *testing.T) {
	a, b := merkle.New(small), merkle.New(small)
	a.Toggle([]byte("k"), 1)
	b.Add([]byte("k"), 1)
	require.True(t, a.Equal(b))
	a.Toggle([]byte("k"), 1)
	require.Zero(t, a.Root(), "toggling twice removes")
}

// TestServeRangesBounded: a ranges request that would make the server XOR
// more than MaxCells hashes, or asks for ranges beyond the tree, is
// refused before any work; Serve answers ranges with the XOR of their
// segments.
func TestServeRangesBounded(t *testing.T) {
	huge := merkle.New(merkle.Config{Branches: 1024, SegmentsPerBranch: 16384}) // 2^24 segments
	// 2^11 ranges of 2^13 segments: 2^24 segment reads.
	req := mustMarshal(t, merkle.Request{Kind: merkle.KindRanges, Shift: 13, Spans: []merkle.Span{{0, 1 << 11}}})
	_, err := merkle.Serve(huge, req)
	require.ErrorIs(t, err, merkle.ErrBadRequest)
	// Within the bound: 2^7 ranges of 2^13 segments.
	_, err = merkle.Serve(huge, mustMarshal(t, merkle.Request{Kind: merkle.KindRanges, Shift: 13, Spans: []merkle.Span{{0, 1 << 7}}}))
	require.NoError(t, err)

	tr := newReplica(small, 1000, 16).tree // 512 segments
	for _, bad := range []merkle.Request{
		{Kind: merkle.KindRanges, Shift: 10, Spans: []merkle.Span{{0, 1}}}, // a range larger than the tree
		{Kind: merkle.KindRanges, Shift: 4, Spans: []merkle.Span{{31, 2}}}, // beyond the 32 ranges
	} {
		_, err := merkle.Serve(tr, mustMarshal(t, bad))
		require.ErrorIs(t, err, merkle.ErrBadRequest, "%+v", bad)
	}
	out, err := merkle.Serve(tr, mustMarshal(t, merkle.Request{Kind: merkle.KindRanges, Shift: 6, Spans: []merkle.Span{{1, 2}}}))
	require.NoError(t, err)
	var resp merkle.Response
	require.NoError(t, resp.UnmarshalMsgpack(out))
	var want [2]uint64
	for s := 64; s < 192; s++ {
		want[(s-64)/64] ^= tr.SegmentHash(s)
	}
	require.Equal(t, want[:], resp.Hashes)
	require.Equal(t, tr.BranchHash(2)^tr.BranchHash(3), want[0], "a range of whole branches")
}
