package merkle_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/merkle"
)

// replica is a store of n keys key-<i> with random value hashes, and its
// tree.
type replica struct {
	keys [][]byte
	vals []uint64
	tree *merkle.Tree
}

func newReplica(cfg merkle.Config, n int, seed uint64) *replica {
	r := rand.New(rand.NewPCG(seed, 7))
	rep := &replica{keys: make([][]byte, n), vals: make([]uint64, n), tree: merkle.New(cfg)}
	for i := range n {
		rep.keys[i] = binary.BigEndian.AppendUint32([]byte("key-"), uint32(i))
		rep.vals[i] = r.Uint64()
		rep.tree.Add(rep.keys[i], rep.vals[i])
	}
	return rep
}

// diverge returns a copy of t changed in d random keys of rep (updates,
// deletes, and inserts of new keys, in equal parts), and the changed keys.
func diverge(rep *replica, d int, seed uint64) (*merkle.Tree, [][]byte) {
	r := rand.New(rand.NewPCG(seed, 8))
	t := rep.tree.Clone()
	picked := map[int]bool{}
	var changed [][]byte
	for len(changed) < d {
		switch i := r.IntN(len(rep.keys)); {
		case picked[i]:
			continue
		case len(changed)%3 == 0:
			t.Update(rep.keys[i], rep.vals[i], r.Uint64())
			picked[i] = true
			changed = append(changed, rep.keys[i])
		case len(changed)%3 == 1:
			t.Add(rep.keys[i], rep.vals[i])
			picked[i] = true
			changed = append(changed, rep.keys[i])
		default:
			k := binary.BigEndian.AppendUint64([]byte("new-"), r.Uint64())
			t.Add(k, r.Uint64())
			changed = append(changed, k)
		}
	}
	return t, changed
}

func segmentsOf(t *merkle.Tree, keys [][]byte) []int {
	var s []int
	for _, k := range keys {
		s = append(s, t.Segment(k))
	}
	slices.Sort(s)
	return slices.Compact(s)
}

// messageOverhead bounds the bytes a message spends on anything but hashes
// and span varints: array, kind, config and bin headers.
const messageOverhead = 16

// TestDiffFindsExactlyTheDirtySegments diverges a replica of 100,000 keys
// (1,000,000 with -long) in 1 to 10,000 random keys and checks that Diff,
// in both directions, returns exactly the segments of the changed keys,
// in the predicted number of calls and within tight byte bounds.
func TestDiffFindsExactlyTheDirtySegments(t *testing.T) {
	n := 100_000
	if *long {
		n = 1_000_000
	}
	cfg := merkle.Config{}
	rep := newReplica(cfg, n, 1)
	t.Logf("%d keys, %+v; naive exchange of all key hashes: %d bytes", n, rep.tree.Config(), 16*n)
	t.Logf("%10s %10s %8s %6s %12s", "diffs", "segments", "branches", "calls", "bytes")
	prev := 0
	for i, d := range []int{0, 1, 10, 100, 1000, 10_000} {
		seed := uint64(100 + i)
		remote, changed := diverge(rep, d, seed)
		want := segmentsOf(remote, changed)
		res, err := merkle.Diff(context.Background(), rep.tree, merkle.Loopback(remote))
		require.NoError(t, err, "seed %d", seed)
		if !slices.Equal(want, res.Segments) {
			t.Fatalf("seed %d, %d differences: got %d segments, want %d", seed, d, len(res.Segments), len(want))
		}
		back, err := merkle.Diff(context.Background(), remote, merkle.Loopback(rep.tree))
		require.NoError(t, err)
		require.Equal(t, res, back, "Diff is symmetric")

		branches := map[int]bool{}
		for _, s := range want {
			branches[s/256] = true
		}
		db := len(branches)
		d := predict(rep.tree.Config(), want)
		require.Equal(t, d.calls, res.Calls, "seed %d", seed)
		minBytes := 8 * d.hashes
		maxBytes := minBytes + 2*messageOverhead*res.Calls + 6*d.spans
		require.True(t, minBytes <= res.Bytes && res.Bytes <= maxBytes,
			"seed %d: %d bytes not in [%d, %d]", seed, res.Bytes, minBytes, maxBytes)
		require.GreaterOrEqual(t, res.Bytes, prev, "bytes grow with the differences")
		prev = res.Bytes
		t.Logf("%10d %10d %8d %6d %12d", d, len(res.Segments), db, res.Calls, res.Bytes)
	}
}

// descent is the predicted cost of a Diff: round trips, hashes received
// and spans sent.
type descent struct{ calls, hashes, spans int }

// predict models Diff's documented descent over a tree with cfg whose
// differing segments are dirty (increasing): the root, then at each level
// the 16 (at the first level 16 to 128) subranges of every differing
// range, in requests of at most MaxHashes hashes and MaxCells cells.
func predict(cfg merkle.Config, dirty []int) descent {
	segBits := bits.TrailingZeros(uint(cfg.Branches * cfg.SegmentsPerBranch))
	branchBits := bits.TrailingZeros(uint(cfg.SegmentsPerBranch))
	d := descent{calls: 1, hashes: 1}
	parents := 0 // differing ranges at shift
	if len(dirty) > 0 {
		parents = 1
	}
	for shift := segBits; shift > 0 && parents > 0; {
		next := max(0, (shift-4)/4*4)
		children := parents << (shift - next)
		cost := 1 << next
		if next >= branchBits {
			cost = 1 << (next - branchBits)
		}
		batch := min(merkle.MaxHashes, merkle.MaxCells/cost)
		d.calls += (children + batch - 1) / batch
		d.hashes += children
		d.spans += parents + (children+batch-1)/batch // a split batch may cut a span
		ranges := map[int]bool{}
		for _, s := range dirty {
			ranges[s>>next] = true
		}
		parents, shift = len(ranges), next
	}
	return d
}

// TestDiffBytesIndependentOfSize runs the same divergence on trees of
// 1,000 and 100,000 keys: the bytes moved depend on the dirty branches
// only.
func TestDiffBytesIndependentOfSize(t *testing.T) {
	cfg := merkle.Config{Branches: 1024, SegmentsPerBranch: 64}
	var bytes []int
	for _, n := range []int{1000, 100_000} {
		rep := newReplica(cfg, n, 2)
		remote := rep.tree.Clone()
		for b := range 10 { // one new key in each of branches 0, 100, ..., 900
			remote.Add(keyInBranch(remote, 100*b), 1)
		}
		res, err := merkle.Diff(context.Background(), rep.tree, merkle.Loopback(remote))
		require.NoError(t, err)
		require.Len(t, res.Segments, 10)
		bytes = append(bytes, res.Bytes)
	}
	require.Equal(t, bytes[0], bytes[1])
}

// keyInBranch finds a key whose segment lies in branch b.
func keyInBranch(t *merkle.Tree, b int) []byte {
	for i := 0; ; i++ {
		k := fmt.Appendf(nil, "probe-%d", i)
		if t.Segment(k)/t.Config().SegmentsPerBranch == b {
			return k
		}
	}
}

// TestRepairThroughSegments is the whole anti-entropy round on two stores:
// Diff, then list each side's keys in the dirty segments with InSegments,
// then compare them. The keys found differing are exactly the changed
// keys, and after the repair the trees are equal.
func TestRepairThroughSegments(t *testing.T) {
	for seed := range uint64(10) {
		r := rand.New(rand.NewPCG(seed, 9))
		a, b := model{}, model{}
		for range 5000 {
			k, v := string(randKey(r)), r.Uint64()
			a[k], b[k] = v, v
		}
		changed := map[string]bool{}
		for k := range a {
			switch r.IntN(200) {
			case 0:
				b[k] = r.Uint64()
			case 1:
				delete(b, k)
			default:
				continue
			}
			changed[k] = true
		}
		for range r.IntN(20) {
			k := string(randKey(r))
			b[k] = r.Uint64()
			changed[k] = true
		}
		ta, tb := merkle.Build(small, a.all()), merkle.Build(small, b.all())
		res, err := merkle.Diff(context.Background(), ta, merkle.Loopback(tb))
		require.NoError(t, err)

		ka, kb := model{}, model{}
		for k, v := range merkle.InSegments(ta, res.Segments, a.all()) {
			ka[string(k)] = v
		}
		for k, v := range merkle.InSegments(tb, res.Segments, b.all()) {
			kb[string(k)] = v
		}
		found := map[string]bool{}
		for k, v := range ka {
			if w, ok := kb[k]; !ok || w != v {
				found[k] = true
			}
		}
		for k := range kb {
			if _, ok := ka[k]; !ok {
				found[k] = true
			}
		}
		require.Equal(t, changed, found, "seed %d", seed)
		for k := range found { // repair a from b
			if old, ok := a[k]; ok {
				ta.Add([]byte(k), old)
			}
			if v, ok := b[k]; ok {
				ta.Add([]byte(k), v)
			}
		}
		require.True(t, ta.Equal(tb), "seed %d", seed)
	}
}

func TestDiffEqualTrees(t *testing.T) {
	rep := newReplica(small, 1000, 3)
	res, err := merkle.Diff(context.Background(), rep.tree, merkle.Loopback(rep.tree.Clone()))
	require.NoError(t, err)
	// Root request [1, bin8 ""]: 4 bytes; response [1, 16, 32, bin8 8 bytes]: 14 bytes.
	require.Equal(t, merkle.DiffResult{Calls: 1, Bytes: 4 + 14}, res)
}

func TestDiffConfigMismatch(t *testing.T) {
	_, err := merkle.Diff(context.Background(), merkle.New(small), merkle.Loopback(merkle.New(merkle.Config{})))
	require.ErrorIs(t, err, merkle.ErrConfigMismatch)
}

// TestDiffManyBranches uses a tree of 2^16 single-segment branches and
// enough differences that the last levels need several requests.
func TestDiffManyBranches(t *testing.T) {
	cfg := merkle.Config{Branches: 1 << 16, SegmentsPerBranch: 1}
	a := merkle.New(cfg)
	b := a.Clone()
	var keys [][]byte
	for i := range 5000 {
		k := fmt.Appendf(nil, "k%d", i)
		b.Add(k, 1)
		keys = append(keys, k)
	}
	res, err := merkle.Diff(context.Background(), a, merkle.Loopback(b))
	require.NoError(t, err)
	want := segmentsOf(a, keys)
	require.Equal(t, want, res.Segments)
	d := predict(cfg, want)
	require.Equal(t, d.calls, res.Calls)
	require.Greater(t, d.calls, 5, "a level split over requests")
}

func TestDiffPeerFailures(t *testing.T) {
	local := newReplica(small, 100, 4).tree
	remote := local.Clone()
	remote.Add([]byte("extra"), 1)
	ctx := context.Background()

	boom := errors.New("boom")
	_, err := merkle.Diff(ctx, local, merkle.PeerFunc(func(context.Context, []byte) ([]byte, error) { return nil, boom }))
	require.ErrorIs(t, err, boom)

	res, err := merkle.Diff(ctx, local, merkle.PeerFunc(func(context.Context, []byte) ([]byte, error) { return []byte{0x92, 1}, nil }))
	require.ErrorIs(t, err, merkle.ErrMalformed)
	require.Equal(t, 1, res.Calls)
	require.Equal(t, 4+2, res.Bytes, "bytes are counted even on failure")

	// A peer that answers every request with the root response.
	rootResp, err := merkle.Serve(remote, mustMarshal(t, merkle.Request{Kind: merkle.KindRoot}))
	require.NoError(t, err)
	_, err = merkle.Diff(ctx, local, merkle.PeerFunc(func(context.Context, []byte) ([]byte, error) { return rootResp, nil }))
	require.ErrorIs(t, err, merkle.ErrBadResponse)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = merkle.Diff(cctx, local, merkle.Loopback(remote))
	require.ErrorIs(t, err, context.Canceled)
}

func mustMarshal(t testing.TB, m interface{ MarshalMsgpack() ([]byte, error) }) []byte {
	b, err := m.MarshalMsgpack()
	require.NoError(t, err)
	return b
}

func TestServe(t *testing.T) {
	tr := newReplica(small, 1000, 5).tree
	ask := func(q merkle.Request) (merkle.Response, error) {
		out, err := merkle.Serve(tr, mustMarshal(t, q))
		if err != nil {
			return merkle.Response{}, err
		}
		var resp merkle.Response
		require.NoError(t, resp.UnmarshalMsgpack(out))
		return resp, nil
	}
	resp, err := ask(merkle.Request{Kind: merkle.KindRoot})
	require.NoError(t, err)
	require.Equal(t, merkle.Response{Kind: merkle.KindRoot, Config: small, Hashes: []uint64{tr.Root()}}, resp)

	resp, err = ask(merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{0, 2}, {5, 1}, {15, 1}}})
	require.NoError(t, err)
	require.Equal(t, []uint64{tr.BranchHash(0), tr.BranchHash(1), tr.BranchHash(5), tr.BranchHash(15)}, resp.Hashes)

	resp, err = ask(merkle.Request{Kind: merkle.KindSegments, Spans: []merkle.Span{{3, 1}, {9, 2}}})
	require.NoError(t, err)
	var want []uint64
	for _, s := range slices.Concat(seq(3*32, 4*32), seq(9*32, 11*32)) {
		want = append(want, tr.SegmentHash(s))
	}
	require.Equal(t, want, resp.Hashes)

	_, err = ask(merkle.Request{Kind: merkle.KindBranches, Spans: []merkle.Span{{15, 2}}})
	require.ErrorIs(t, err, merkle.ErrBadRequest)
	big := merkle.New(merkle.Config{Branches: 1024, SegmentsPerBranch: 1024})
	_, err = merkle.Serve(big, mustMarshal(t, merkle.Request{Kind: merkle.KindSegments, Spans: []merkle.Span{{0, 17}}}))
	require.ErrorIs(t, err, merkle.ErrBadRequest, "17 × 1024 hashes exceed MaxHashes")
	_, err = merkle.Serve(tr, []byte{0xc0})
	require.ErrorIs(t, err, merkle.ErrMalformed)
}

func seq(lo, hi int) []int {
	s := make([]int, 0, hi-lo)
	for i := lo; i < hi; i++ {
		s = append(s, i)
	}
	return s
}
