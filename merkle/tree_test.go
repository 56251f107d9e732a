package merkle_test

import (
	"encoding/binary"
	"errors"
	"flag"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/merkle"
)

var long = flag.Bool("long", false, "run the exchange tests on 1,000,000 keys (default 100,000)")

// small is a geometry that keeps property tests fast while still having
// many segments per branch and many branches.
var small = merkle.Config{Branches: 16, SegmentsPerBranch: 32}

// model is the reference: the set of entries, key to value hash.
type model map[string]uint64

func (m model) all() func(func([]byte, uint64) bool) {
	return func(yield func([]byte, uint64) bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !yield([]byte(k), m[k]) {
				return
			}
		}
	}
}

// definition is EntryHash as documented.
func definition(key []byte, v uint64) uint64 {
	return xxhash.Sum64(binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, xxhash.Sum64(key)), v))
}

// modelRoot is the root by definition: the XOR of every entry's hash,
// computed from xxhash directly.
func modelRoot(m model) uint64 {
	var root uint64
	for k, v := range m {
		root ^= definition([]byte(k), v)
	}
	return root
}

func randKey(r *rand.Rand) []byte {
	return binary.BigEndian.AppendUint64([]byte("key-"), r.Uint64())
}

func TestEntryHashAndSegmentDefinition(t *testing.T) {
	tr := merkle.New(small) // 512 segments: 9 bits
	r := rand.New(rand.NewPCG(1, 1))
	for range 1000 {
		key := make([]byte, r.IntN(70))
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		v := r.Uint64()
		require.Equal(t, definition(key, v), merkle.EntryHash(key, v))
		require.Equal(t, int(xxhash.Sum64(key)>>55), tr.Segment(key))
	}
	// Pinned forever: changing these breaks compatibility between versions.
	d := merkle.New(merkle.Config{})
	// xxHash64("hello") = 0x26c7827d889f6da3 (the reference vector); the
	// default tree has 2^20 segments, so "hello" lies in segment 0x26c78.
	require.Equal(t, 0x26c78, d.Segment([]byte("hello")))
	require.Equal(t, uint64(0x6bc5db6887f22131), merkle.EntryHash([]byte("hello"), 1))
}

func TestConfig(t *testing.T) {
	require.Equal(t, merkle.Config{Branches: 4096, SegmentsPerBranch: 256}, merkle.New(merkle.Config{}).Config())
	require.Equal(t, merkle.Config{Branches: 4096, SegmentsPerBranch: 2}, merkle.New(merkle.Config{SegmentsPerBranch: 2}).Config())
	for _, ok := range []merkle.Config{{}, {Branches: 1, SegmentsPerBranch: 1}, {Branches: 1 << 16, SegmentsPerBranch: 256}, {Branches: 1024, SegmentsPerBranch: 1 << 14}} {
		require.NoError(t, ok.Validate(), "%+v", ok)
	}
	for _, bad := range []merkle.Config{
		{Branches: 3}, {SegmentsPerBranch: 100}, {Branches: -4}, {SegmentsPerBranch: -1},
		{Branches: 1 << 17, SegmentsPerBranch: 1}, {Branches: 1, SegmentsPerBranch: 1 << 15},
		{Branches: 1 << 16, SegmentsPerBranch: 512},
	} {
		err := bad.Validate()
		require.ErrorIs(t, err, merkle.ErrConfig, "%+v", bad)
		require.PanicsWithValue(t, err.Error(), func() { merkle.New(bad) })
	}
}

func TestOneSegment(t *testing.T) {
	tr := merkle.New(merkle.Config{Branches: 1, SegmentsPerBranch: 1})
	tr.Add([]byte("a"), 1)
	tr.Add([]byte("b"), 2)
	require.Equal(t, 0, tr.Segment([]byte("a")))
	require.Equal(t, tr.Root(), tr.SegmentHash(0))
	require.Equal(t, tr.Root(), tr.BranchHash(0))
	require.Equal(t, merkle.EntryHash([]byte("a"), 1)^merkle.EntryHash([]byte("b"), 2), tr.Root())
}

// TestIncrementalEqualsRebuild applies random inserts, updates and deletes
// to a tree and to a model, and checks the tree against a rebuild of the
// model and against the root computed from the definition.
func TestIncrementalEqualsRebuild(t *testing.T) {
	for seed := range uint64(30) {
		r := rand.New(rand.NewPCG(seed, 2))
		tr := merkle.New(small)
		m := model{}
		var keys []string
		for range 2000 {
			switch op := r.IntN(10); {
			case op < 4 || len(keys) == 0: // insert a new key or re-insert a deleted one
				k := string(randKey(r))
				if len(keys) > 0 && r.IntN(4) == 0 {
					k = keys[r.IntN(len(keys))]
				}
				if _, ok := m[k]; ok {
					continue
				}
				m[k] = r.Uint64()
				tr.Add([]byte(k), m[k])
				keys = append(keys, k)
			case op < 8: // update
				k := keys[r.IntN(len(keys))]
				if old, ok := m[k]; ok {
					m[k] = r.Uint64()
					tr.Update([]byte(k), old, m[k])
				}
			default: // delete
				k := keys[r.IntN(len(keys))]
				if old, ok := m[k]; ok {
					delete(m, k)
					tr.Add([]byte(k), old)
				}
			}
		}
		rebuilt := merkle.Build(small, m.all())
		if !tr.Equal(rebuilt) || tr.Root() != modelRoot(m) {
			t.Fatalf("seed %d: incremental tree differs from rebuild: %v", seed, tr.Differences(rebuilt))
		}
		require.NoError(t, merkle.Verify(tr, rebuilt), "seed %d", seed)
	}
}

func TestEmptyAndAddTwice(t *testing.T) {
	tr := merkle.New(small)
	require.Zero(t, tr.Root())
	tr.Add([]byte("k"), 7)
	require.NotZero(t, tr.Root())
	tr.Add([]byte("k"), 7)
	require.True(t, tr.Equal(merkle.New(small)), "adding an entry twice removes it")

	a, b := merkle.New(small), merkle.New(small)
	a.Update([]byte("k"), 1, 2)
	b.Add([]byte("k"), 1)
	b.Add([]byte("k"), 2)
	require.True(t, a.Equal(b), "Update(k, x, y) = Add(k, x); Add(k, y)")
	a.Update([]byte("k"), 5, 5)
	require.True(t, a.Equal(b), "Update to the same hash changes nothing")
}

func TestInsertionOrderIrrelevant(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 3))
		type entry struct {
			k []byte
			v uint64
		}
		es := make([]entry, 500)
		for i := range es {
			es[i] = entry{randKey(r), r.Uint64()}
		}
		a := merkle.New(small)
		for _, e := range es {
			a.Add(e.k, e.v)
		}
		r.Shuffle(len(es), func(i, j int) { es[i], es[j] = es[j], es[i] })
		b := merkle.New(small)
		for _, e := range es {
			b.Add(e.k, e.v)
		}
		require.True(t, a.Equal(b), "seed %d", seed)
	}
}

// TestMergeDisjoint splits a random entry set into parts, builds a tree per
// part and merges them in random order: the result is the union's tree.
func TestMergeDisjoint(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 4))
		all := model{}
		parts := make([]model, 1+r.IntN(6))
		for i := range parts {
			parts[i] = model{}
		}
		for range 1000 {
			k, v := string(randKey(r)), r.Uint64()
			all[k] = v
			parts[r.IntN(len(parts))][k] = v
		}
		r.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		merged := merkle.New(small)
		for _, p := range parts {
			merged.Merge(merkle.Build(small, p.all()))
		}
		require.True(t, merged.Equal(merkle.Build(small, all.all())), "seed %d", seed)
	}
}

func TestMergeMismatchPanics(t *testing.T) {
	a := merkle.New(small)
	require.PanicsWithValue(t,
		"merkle: Merge of trees with configs {Branches:16 SegmentsPerBranch:32} and {Branches:4096 SegmentsPerBranch:256}",
		func() { a.Merge(merkle.New(merkle.Config{})) })
	require.Panics(t, func() { a.Differences(merkle.New(merkle.Config{})) })
	require.False(t, a.Equal(merkle.New(merkle.Config{})))
}

func TestCloneIndependent(t *testing.T) {
	a := merkle.New(small)
	a.Add([]byte("x"), 1)
	b := a.Clone()
	require.True(t, a.Equal(b))
	b.Add([]byte("y"), 2)
	require.False(t, a.Equal(b))
	require.Equal(t, merkle.EntryHash([]byte("x"), 1), a.Root())
}

// TestVerify simulates a write that reached the tree but not the store
// (and one that reached the store but not the tree): Verify names exactly
// their segments.
func TestVerify(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 5))
	m := model{}
	for range 3000 {
		m[string(randKey(r))] = r.Uint64()
	}
	live := merkle.Build(small, m.all())
	require.NoError(t, merkle.Verify(live, merkle.Build(small, m.all())))

	ghost, lost := randKey(r), randKey(r)
	live.Add(ghost, 1)  // in the tree only
	m[string(lost)] = 2 // in the store only
	err := merkle.Verify(live, merkle.Build(small, m.all()))
	require.ErrorIs(t, err, merkle.ErrCorrupt)
	var ce *merkle.CorruptError
	require.True(t, errors.As(err, &ce))
	want := slices.Compact(slices.Sorted(slices.Values([]int{live.Segment(ghost), live.Segment(lost)})))
	require.Equal(t, want, ce.Segments)

	require.ErrorIs(t, merkle.Verify(live, merkle.New(merkle.Config{})), merkle.ErrConfigMismatch)
}

func TestInSegments(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	m := model{}
	for range 2000 {
		m[string(randKey(r))] = r.Uint64()
	}
	tr := merkle.New(small)
	segs := []int{500, 3, 77, 3, 200}
	var got []string
	for k, v := range merkle.InSegments(tr, segs, m.all()) {
		require.Equal(t, m[string(k)], v)
		got = append(got, string(k))
	}
	var want []string
	for k := range m.all() {
		if slices.Contains(segs, tr.Segment(k)) {
			want = append(want, string(k))
		}
	}
	require.NotEmpty(t, want)
	require.Equal(t, want, got)

	n := 0
	for range merkle.InSegments(tr, segs, m.all()) {
		n++
		break
	}
	require.Equal(t, 1, n, "stops when the consumer does")
}

// TestNoAllocs pins the hot paths at zero allocations.
func TestNoAllocs(t *testing.T) {
	tr := merkle.New(merkle.Config{})
	key := []byte("some-key-of-moderate-length-0123456789")
	var v uint64
	require.Zero(t, testing.AllocsPerRun(100, func() { v++; tr.Add(key, v) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { v++; tr.Update(key, v, v+1) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { _ = tr.Segment(key) + int(tr.Root()) }))
}
