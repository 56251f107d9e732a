package crdt

// RemovedNodePruning is implemented by the types whose state keeps
// something per replica, so that the entries of a replica retired for good
// can be removed, as Akka Distributed Data's RemovedNodePruning does.
//
// In counters the retired replica's counts are folded into another
// replica's: GCounter {a:3, b:5} pruned from b into a becomes {a:8}, with
// the same value. In ORSet, MVRegister, EWFlag and ORMap, every live dot of
// the retired replica is replaced by a new dot of the other replica (what
// it wrote stays, as if rewritten there), and its dots leave the causal
// context.
//
// Safety precondition. Pruning is an operation of the replica into, done
// once, and is only safe when:
//
//  1. the replica removed will never update again under its ID;
//  2. into's state has seen every update removed made and every update
//     that observed them (its state descends from every replica's state,
//     for example after a full anti-entropy round with no writes from
//     replicas that have not synced); otherwise a count is lost, or a
//     concurrent Remove of an element removed wrote is undone;
//  3. from then on every replica calls PruningCleanup(removed) on its own
//     state and on every state or delta it receives before merging it;
//     otherwise a counter counts removed's increments twice (once in
//     removed's entry, once folded into into's) and a set resurrects
//     what removed's dots no longer justify.
//
// Akka coordinates this with a pruning marker in the replicated state that
// every replica must have seen before the prune is performed, and keeps
// cleaning up incoming data for a configured time afterwards; this package
// provides the state operations and leaves that protocol to the caller.
type RemovedNodePruning interface {
	// ModifiedBy returns the IDs of the replicas that have entries in the
	// state, sorted.
	ModifiedBy() []string
	// NeedPruningFrom reports whether the state has entries of removed.
	NeedPruningFrom(removed string) bool
	// Prune folds removed's entries into into's (see above). It panics if
	// removed == into, and, changing nothing, where TryPrune returns an
	// error.
	Prune(removed, into string)
	// TryPrune is Prune that returns an error wrapping
	// vclock.ErrExhausted, changing nothing, when into's counter would
	// pass vclock.MaxCounter. Pruning either finishes or changes nothing.
	TryPrune(removed, into string) error
	// PruningCleanup drops removed's entries without folding them.
	PruningCleanup(removed string)
}

var (
	_ RemovedNodePruning = (*GCounter)(nil)
	_ RemovedNodePruning = (*PNCounter)(nil)
	_ RemovedNodePruning = (*ORSet[string])(nil)
	_ RemovedNodePruning = (*MVRegister[string])(nil)
	_ RemovedNodePruning = (*EWFlag)(nil)
)
