package merkle

import (
	"iter"
	"sync"
)

// Rebuild builds a fresh tree from a store while writes to the store go
// on, losing none of them: the rebuild-and-swap of Riak's TicTac AAE, whose
// tree rebuilds queue the changes made during the scan and replay them.
// Here no queue is needed: a write during the rebuild XORs its change into
// the tree being built straight away, and since XOR is commutative the
// result is the same as replaying it after the scan, whichever entries the
// scan has reached.
//
// The protocol, with the store's write lock held where stated:
//
//  1. Under the lock, take a snapshot of the store (an LSM snapshot, a
//     read transaction) and call [NewRebuild].
//  2. Release the lock and [Rebuild.Scan] the snapshot's entries, on any
//     goroutine, in any number of parts. Meanwhile every write, under the
//     lock, updates the live tree and the Rebuild alike ([Rebuild.Toggle],
//     [Rebuild.Update]).
//  3. Under the lock, call [Rebuild.Finish], compare its tree with the
//     live one ([Verify]) if wanted, and swap it in before releasing the
//     lock.
//
// The tree then holds exactly the entries of the store at step 3: those of
// the snapshot plus every change made after it. Entries must come from a
// snapshot taken in step 1; scanning a live store instead counts twice a
// write that the scan also sees.
//
// A Rebuild is safe for concurrent use. Using it after Finish panics: it
// is a program error, and the write would be lost.
type Rebuild struct {
	mu   sync.Mutex
	tree *Tree // nil once finished
}

// NewRebuild returns a rebuild of a tree with the geometry cfg. Like [New]
// it panics on an invalid cfg.
func NewRebuild(cfg Config) *Rebuild { return &Rebuild{tree: New(cfg)} }

// building returns the tree being built; r.mu must be held.
func (r *Rebuild) building() *Tree {
	if r.tree == nil {
		panic("merkle: Rebuild used after Finish")
	}
	return r.tree
}

// Scan adds the entries of the snapshot, as [Tree.Toggle] does. It may be
// called several times, for disjoint parts of the snapshot, and
// concurrently with writes.
func (r *Rebuild) Scan(entries iter.Seq2[[]byte, uint64]) {
	for k, v := range entries {
		r.Toggle(k, v)
	}
}

// Toggle records an insert or a delete made after the snapshot: the
// [Tree.Toggle] the live tree receives.
func (r *Rebuild) Toggle(key []byte, valueHash uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.building().Toggle(key, valueHash)
}

// Update records an overwrite made after the snapshot: the [Tree.Update]
// the live tree receives.
func (r *Rebuild) Update(key []byte, oldHash, newHash uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.building().Update(key, oldHash, newHash)
}

// Finish returns the rebuilt tree, which the caller then owns. Call it
// when the scan is complete, under the lock that orders writes.
func (r *Rebuild) Finish() *Tree {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.building()
	r.tree = nil
	return t
}
