package kv

import (
	"slices"
	"sync"

	"github.com/distkit/distkit/merkle"
)

// TreeIndex is a store's anti-entropy index: one [merkle.Tree] per group
// of keys (a node groups them by replica set), over the xxHash64 of each
// key's encoded object. The store feeds it from its commit hook, after
// every committed change of an object, and rebuilds it with one scan of
// the data when the grouping changes ([Store.Regroup]); the index never
// reads the data itself. Each group's tree equals merkle.Build over the
// group's keys after any sequence of writes, reaps, reopenings and
// regroupings.
//
// A TreeIndex is safe for concurrent use. Get it from [Store.Trees]; its
// lock is its own, held for a tree update or copy and never across I/O.
type TreeIndex struct {
	cfg merkle.Config

	mu    sync.Mutex
	group func(key []byte) string
	trees map[string]*merkle.Tree // by group; absent: empty
}

// change is one committed change of a key's object, as the commit hook
// reports it: the hashes of its encoding before and after, and whether it
// was held before and is held now.
type change struct {
	key             []byte
	old, new        uint64
	existed, exists bool
}

// committed applies c to the tree of c.key's group.
func (x *TreeIndex) committed(c change) {
	x.mu.Lock()
	defer x.mu.Unlock()
	t := x.treeOf(x.group(c.key))
	switch {
	case c.existed && c.exists:
		t.Update(c.key, c.old, c.new)
	case c.existed:
		t.Add(c.key, c.old) // XOR: toggles the entry out
	case c.exists:
		t.Add(c.key, c.new)
	}
}

// rebuild replaces the grouping (nil: one group "") and the trees with
// those of the keys scan lists with the hashes of their encoded objects.
// The caller keeps commits out until it returns.
func (x *TreeIndex) rebuild(group func(key []byte) string, scan func(f func(key []byte, h uint64)) error) error {
	if group == nil {
		group = func([]byte) string { return "" }
	}
	trees := map[string]*merkle.Tree{}
	err := scan(func(key []byte, h uint64) {
		g := group(key)
		t := trees[g]
		if t == nil {
			t = merkle.New(x.cfg)
			trees[g] = t
		}
		t.Add(key, h)
	})
	if err != nil {
		return err
	}
	x.mu.Lock()
	x.group, x.trees = group, trees
	x.mu.Unlock()
	return nil
}

// grouping returns the current grouping function.
func (x *TreeIndex) grouping() func(key []byte) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.group
}

// treeOf returns group g's tree, creating it empty. x.mu must be held.
func (x *TreeIndex) treeOf(g string) *merkle.Tree {
	t := x.trees[g]
	if t == nil {
		t = merkle.New(x.cfg)
		x.trees[g] = t
	}
	return t
}

// Tree returns a copy of group g's tree (empty if the group has no keys
// here), for [merkle.Diff] against a peer's.
func (x *TreeIndex) Tree(g string) *merkle.Tree {
	x.mu.Lock()
	defer x.mu.Unlock()
	if t := x.trees[g]; t != nil {
		return t.Clone()
	}
	return merkle.New(x.cfg)
}

// Serve answers an encoded merkle request from group g's tree: the
// serving side of an exchange (see [merkle.Serve] for its errors).
func (x *TreeIndex) Serve(g string, req []byte) ([]byte, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	return merkle.Serve(x.treeOf(g), req)
}

// Groups returns the groups that hold keys, sorted.
func (x *TreeIndex) Groups() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	gs := make([]string, 0, len(x.trees))
	for g, t := range x.trees {
		if t.Root() != 0 {
			gs = append(gs, g)
		}
	}
	slices.Sort(gs)
	return gs
}
