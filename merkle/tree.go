package merkle

import (
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"math/bits"
	"slices"
	"sync"

	"github.com/cespare/xxhash/v2"
)

// Default geometry: 4096 branches of 256 segments, 1,048,576 segments in
// all, the size of Riak's "large" TicTac tree. With a million keys a dirty
// segment holds one or two keys, and an exchange costs 32 KiB of branch
// hashes plus 2 KiB per differing key.
const (
	DefaultBranches          = 4096
	DefaultSegmentsPerBranch = 256
)

// Limits on a [Config]. They keep a tree below 128 MiB and every
// exchange message below [MaxHashes] hashes.
const (
	MaxBranches          = 1 << 16
	MaxSegmentsPerBranch = MaxHashes
	MaxSegments          = 1 << 24
)

// ErrConfig is returned by [Config.Validate] for a geometry that is not a
// power of two or exceeds the limits.
var ErrConfig = errors.New("merkle: invalid config")

// ErrConfigMismatch is returned when two trees that must be compared have
// different geometries: their hashes cannot be compared.
var ErrConfigMismatch = errors.New("merkle: trees have different configs")

// ErrCorrupt is wrapped by the [*CorruptError] that [Verify] returns.
var ErrCorrupt = errors.New("merkle: live tree differs from its rebuild")

// Config is the geometry of a [Tree] (a plain value): Branches branches of
// SegmentsPerBranch segments each. Both are powers of two; a zero field
// takes its default ([DefaultBranches], [DefaultSegmentsPerBranch]).
//
// A tree needs 8 bytes per segment and per branch:
// 8 × Branches × (SegmentsPerBranch + 1) bytes, 8.03 MiB by default.
// Two trees can be compared or merged only if their configs are equal.
type Config struct {
	Branches          int
	SegmentsPerBranch int
}

// withDefaults returns c with its zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Branches == 0 {
		c.Branches = DefaultBranches
	}
	if c.SegmentsPerBranch == 0 {
		c.SegmentsPerBranch = DefaultSegmentsPerBranch
	}
	return c
}

// Validate reports whether c, with its defaults applied, describes a
// usable tree: both fields powers of two, Branches ≤ [MaxBranches],
// SegmentsPerBranch ≤ [MaxSegmentsPerBranch] and their product ≤
// [MaxSegments]. It returns an error wrapping [ErrConfig] otherwise. Use it
// on configuration that comes from users; [New] panics instead.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case !powerOfTwo(c.Branches) || c.Branches > MaxBranches:
		return fmt.Errorf("%w: Branches %d is not a power of two in [1, %d]", ErrConfig, c.Branches, MaxBranches)
	case !powerOfTwo(c.SegmentsPerBranch) || c.SegmentsPerBranch > MaxSegmentsPerBranch:
		return fmt.Errorf("%w: SegmentsPerBranch %d is not a power of two in [1, %d]",
			ErrConfig, c.SegmentsPerBranch, MaxSegmentsPerBranch)
	case c.Branches*c.SegmentsPerBranch > MaxSegments:
		return fmt.Errorf("%w: %d segments exceed %d", ErrConfig, c.Branches*c.SegmentsPerBranch, MaxSegments)
	}
	return nil
}

func powerOfTwo(n int) bool { return n > 0 && n&(n-1) == 0 }

// Tree is a two-level XOR ("TicTac") Merkle tree of uint64 hashes over a set
// of (key, value hash) entries. It stores hashes only, never keys.
//
// Every entry contributes [EntryHash](key, valueHash) to one segment, chosen
// by the key alone (see [Tree.Segment]); a segment's hash is the XOR of its
// entries' contributions, a branch's hash the XOR of its segments, and the
// root the XOR of the branches. Adding an entry twice therefore removes it.
//
// The zero Tree is an empty tree with the default geometry (the zero
// Config), ready to use; it allocates its 8 MiB on the first write. [New]
// gives other geometries. A Tree is not safe for concurrent use: callers
// serialise writes, and reads (including [Serve]) must not overlap writes.
type Tree struct {
	cfg         Config
	segBits     uint // log2 of the number of segments
	branchShift uint // log2 of SegmentsPerBranch
	root        uint64
	branches    []uint64
	segments    []uint64
}

// New returns an empty tree with the geometry cfg (zero fields take their
// defaults). It panics if cfg is invalid (see [Config.Validate]): the
// geometry is fixed by the program, not by input.
func New(cfg Config) *Tree {
	if err := cfg.Validate(); err != nil {
		panic(err.Error())
	}
	cfg = cfg.withDefaults()
	n := cfg.Branches * cfg.SegmentsPerBranch
	return &Tree{
		cfg:         cfg,
		segBits:     uint(bits.TrailingZeros(uint(n))),
		branchShift: uint(bits.TrailingZeros(uint(cfg.SegmentsPerBranch))),
		branches:    make([]uint64, cfg.Branches),
		segments:    make([]uint64, n),
	}
}

// Build returns a tree with the geometry cfg holding every entry of
// entries: the rebuild path, after a crash or to check a live tree with
// [Verify]. Like [New] it panics on an invalid cfg.
func Build(cfg Config, entries iter.Seq2[[]byte, uint64]) *Tree {
	t := New(cfg)
	for k, v := range entries {
		t.Add(k, v)
	}
	return t
}

// Config returns the tree's geometry, with defaults applied.
func (t *Tree) Config() Config { return t.read().cfg }

// emptyDefault is the empty tree of the default geometry, which reads of a
// zero Tree see; it is never written.
var emptyDefault = sync.OnceValue(func() *Tree { return New(Config{}) })

// read returns t, or for a zero Tree the empty tree it stands for, for
// reading only: a zero Tree is not written by reads, so concurrent reads
// stay safe.
func (t *Tree) read() *Tree {
	if t.segments == nil {
		return emptyDefault()
	}
	return t
}

// write gives a zero Tree its default geometry before its first write.
func (t *Tree) write() {
	if t.segments == nil {
		*t = *New(Config{})
	}
}

// EntryHash is the contribution of the entry (key, valueHash) to its
// segment: xxHash64 (seed 0) of the 16 bytes xxHash64(key) ‖ valueHash,
// both little-endian. The definition is part of the wire format and fixed
// forever: replicas compare trees built by different versions.
func EntryHash(key []byte, valueHash uint64) uint64 {
	return entryHash(xxhash.Sum64(key), valueHash)
}

func entryHash(keyHash, valueHash uint64) uint64 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], keyHash)
	binary.LittleEndian.PutUint64(b[8:], valueHash)
	return xxhash.Sum64(b[:])
}

// Segment returns the segment of key, in [0, Branches × SegmentsPerBranch):
// the top log2(segments) bits of xxHash64(key) (seed 0). Segment s belongs
// to branch s / SegmentsPerBranch. The mapping is fixed forever, so a
// store may persist a key's segment next to the key.
func (t *Tree) Segment(key []byte) int {
	return t.read().segmentOf(xxhash.Sum64(key))
}

func (t *Tree) segmentOf(keyHash uint64) int {
	return int(keyHash >> (64 - t.segBits)) // a shift by 64 yields 0: one segment
}

// Toggle toggles the entry (key, valueHash): it inserts the entry if it is
// absent and removes it if it is present, in O(1) without allocating. The
// tree cannot tell which: it stores no keys, and XORing the entry's hash
// in and out are the same operation. So inserting an entry that is
// already present removes it, and removing one that is absent inserts it:
// call Toggle exactly once per insert and once per delete, with the value
// hash the entry had, and [Tree.Update] to change a value.
func (t *Tree) Toggle(key []byte, valueHash uint64) {
	kh := xxhash.Sum64(key)
	t.flip(t.read().segmentOf(kh), entryHash(kh, valueHash))
}

// Add is [Tree.Toggle], under the name it first had: it does not add an
// entry that is present, it removes it. Insert and delete both call it.
func (t *Tree) Add(key []byte, valueHash uint64) { t.Toggle(key, valueHash) }

// Update replaces key's value hash oldHash with newHash in O(1) without
// allocating: Toggle(key, oldHash) then Toggle(key, newHash), hashing key
// once.
func (t *Tree) Update(key []byte, oldHash, newHash uint64) {
	kh := xxhash.Sum64(key)
	t.flip(t.read().segmentOf(kh), entryHash(kh, oldHash)^entryHash(kh, newHash))
}

// flip XORs h into segment s, its branch and the root.
func (t *Tree) flip(s int, h uint64) {
	t.write()
	t.segments[s] ^= h
	t.branches[s>>t.branchShift] ^= h
	t.root ^= h
}

// Root returns the root hash: the XOR of every entry's [EntryHash]; 0 for
// an empty tree.
func (t *Tree) Root() uint64 { return t.root }

// BranchHash returns the hash of branch b, the XOR of its segments. It
// panics if b is out of range.
func (t *Tree) BranchHash(b int) uint64 { return t.read().branches[b] }

// SegmentHash returns the hash of segment s, the XOR of its entries. It
// panics if s is out of range.
func (t *Tree) SegmentHash(s int) uint64 { return t.read().segments[s] }

// Merge XORs o into t, so that t becomes the tree of the union of both key
// sets when they are disjoint (for example the trees of two partitions of a
// key range). Entries present in both cancel out. It panics if the configs
// differ.
func (t *Tree) Merge(o *Tree) {
	o = o.read()
	t.mustMatch(o, "Merge")
	t.write()
	for i, h := range o.segments {
		t.segments[i] ^= h
	}
	for i, h := range o.branches {
		t.branches[i] ^= h
	}
	t.root ^= o.root
}

// Clone returns an independent copy of t.
func (t *Tree) Clone() *Tree {
	c := *t.read()
	c.branches = slices.Clone(t.branches)
	c.segments = slices.Clone(t.segments)
	return &c
}

// Equal reports whether t and o have the same config and the same hashes.
func (t *Tree) Equal(o *Tree) bool {
	t, o = t.read(), o.read()
	return t.cfg == o.cfg && t.root == o.root &&
		slices.Equal(t.branches, o.branches) && slices.Equal(t.segments, o.segments)
}

// Differences returns, in increasing order, the segments whose hashes
// differ between t and o: the segments holding entries present in one tree
// only. It compares every branch and the segments of differing branches.
// It panics if the configs differ.
func (t *Tree) Differences(o *Tree) []int {
	t, o = t.read(), o.read()
	t.mustMatch(o, "Differences")
	var dirty []int
	for _, b := range differing(nil, 0, t.branches, o.branches) {
		lo := b << t.branchShift
		hi := lo + t.cfg.SegmentsPerBranch
		dirty = differing(dirty, lo, t.segments[lo:hi], o.segments[lo:hi])
	}
	return dirty
}

// differing appends to dst offset+i for every i where a[i] != b[i].
func differing(dst []int, offset int, a, b []uint64) []int {
	for i := range a {
		if a[i] != b[i] {
			dst = append(dst, offset+i)
		}
	}
	return dst
}

func (t *Tree) mustMatch(o *Tree, op string) {
	if t.read().cfg != o.cfg {
		panic(fmt.Sprintf("merkle: %s of trees with configs %+v and %+v", op, t.cfg, o.cfg))
	}
}

// CorruptError reports the segments where a live tree differs from a
// rebuild of the same data. It wraps [ErrCorrupt]. It is a plain value,
// safe for concurrent reads.
type CorruptError struct {
	Segments []int // in increasing order
}

// Error reports how many segments differ.
func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v: %d segments differ", ErrCorrupt, len(e.Segments))
}

// Unwrap returns [ErrCorrupt].
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// Verify checks a live, incrementally maintained tree against rebuilt, a
// tree built with [Build] from the store's current data, as Riak's AAE does
// to catch bit rot and missed updates. It returns nil when they are equal,
// an error wrapping [ErrConfigMismatch] when their configs differ, and a
// [*CorruptError] listing the differing segments otherwise; repair by
// replacing the live tree with the rebuild.
func Verify(live, rebuilt *Tree) error {
	live, rebuilt = live.read(), rebuilt.read()
	if live.cfg != rebuilt.cfg {
		return fmt.Errorf("%w: %+v and %+v", ErrConfigMismatch, live.cfg, rebuilt.cfg)
	}
	if d := live.Differences(rebuilt); len(d) > 0 {
		return &CorruptError{Segments: d}
	}
	return nil
}

// InSegments returns the entries of entries whose keys fall in one of
// segments, in the order entries yields them. A store uses it to list its
// keys in the dirty segments an exchange found, when it keeps no index from
// segment to keys (see the package documentation). It hashes each key once.
func InSegments[V any](t *Tree, segments []int, entries iter.Seq2[[]byte, V]) iter.Seq2[[]byte, V] {
	want := slices.Sorted(slices.Values(segments))
	return func(yield func([]byte, V) bool) {
		for k, v := range entries {
			if _, ok := slices.BinarySearch(want, t.Segment(k)); ok && !yield(k, v) {
				return
			}
		}
	}
}
