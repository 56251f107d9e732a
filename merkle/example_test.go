package merkle_test

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/cespare/xxhash/v2"

	"github.com/distkit/distkit/merkle"
)

// store is a toy replica: keys to values, and the tree kept beside them.
type store struct {
	data map[string]string
	tree *merkle.Tree
}

func newStore(cfg merkle.Config) *store {
	return &store{data: map[string]string{}, tree: merkle.New(cfg)}
}

func (s *store) put(k, v string) {
	if old, ok := s.data[k]; ok {
		s.tree.Update([]byte(k), xxhash.Sum64String(old), xxhash.Sum64String(v))
	} else {
		s.tree.Add([]byte(k), xxhash.Sum64String(v))
	}
	s.data[k] = v
}

func (s *store) delete(k string) {
	if old, ok := s.data[k]; ok {
		s.tree.Add([]byte(k), xxhash.Sum64String(old)) // adding again removes
		delete(s.data, k)
	}
}

// entries yields the store's keys in sorted order with their value hashes.
func (s *store) entries(yield func([]byte, uint64) bool) {
	for _, k := range slices.Sorted(maps.Keys(s.data)) {
		if !yield([]byte(k), xxhash.Sum64String(s.data[k])) {
			return
		}
	}
}

// An anti-entropy round between two replicas: Diff finds the dirty
// segments, then only the keys in those segments are compared.
func Example() {
	cfg := merkle.Config{Branches: 64, SegmentsPerBranch: 64}
	a, b := newStore(cfg), newStore(cfg)
	for i := range 1000 {
		k := fmt.Sprintf("user:%04d", i)
		a.put(k, "v1")
		b.put(k, "v1")
	}
	b.put("user:0042", "v2") // b has a newer write
	b.delete("user:0777")    // and a delete a missed

	// Over a network, the peer's Call would carry the bytes to Serve(b.tree, req).
	res, err := merkle.Diff(context.Background(), a.tree, merkle.Loopback(b.tree))
	if err != nil {
		panic(err)
	}
	// Calls: the root, then the hashes of 16 ranges of 256 segments, of
	// the 16 subranges of each of the 2 that differ, and of the 16
	// segments of each of the 2 subranges that differ: 1+16+32+32 hashes.
	fmt.Println("dirty segments:", len(res.Segments), "calls:", res.Calls, "bytes:", res.Bytes)

	theirs := map[string]uint64{}
	for k, h := range merkle.InSegments(b.tree, res.Segments, b.entries) {
		theirs[string(k)] = h
	}
	for k, h := range merkle.InSegments(a.tree, res.Segments, a.entries) {
		if theirs[string(k)] != h {
			fmt.Println("differs:", string(k))
		}
	}
	// Output:
	// dirty segments: 2 calls: 4 bytes: 704
	// differs: user:0042
	// differs: user:0777
}

// Rebuilding a tree from the store and verifying the live tree catches
// updates that reached one but not the other.
func ExampleVerify() {
	s := newStore(merkle.Config{Branches: 16, SegmentsPerBranch: 16})
	s.put("a", "1")
	s.put("b", "2")
	fmt.Println(merkle.Verify(s.tree, merkle.Build(s.tree.Config(), s.entries)))

	s.data["c"] = "3" // a write that bypassed the tree
	err := merkle.Verify(s.tree, merkle.Build(s.tree.Config(), s.entries))
	fmt.Println(err)
	// Output:
	// <nil>
	// merkle: live tree differs from its rebuild: 1 segments differ
}

// Trees of disjoint key ranges add up with Merge.
func ExampleTree_Merge() {
	cfg := merkle.Config{Branches: 16, SegmentsPerBranch: 16}
	left, right, whole := merkle.New(cfg), merkle.New(cfg), merkle.New(cfg)
	for i := range 100 {
		k := fmt.Appendf(nil, "k%03d", i)
		whole.Add(k, uint64(i))
		if i < 50 {
			left.Add(k, uint64(i))
		} else {
			right.Add(k, uint64(i))
		}
	}
	left.Merge(right)
	fmt.Println(left.Equal(whole))
	// Output: true
}
