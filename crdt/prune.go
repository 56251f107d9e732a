package crdt

// RemovedNodePruning is implemented by the types whose state keeps
// something per replica, so that the entries of a replica retired for good
// can be removed, as Akka Distributed Data's RemovedNodePruning does.
//
// In counters the retired replica's counts are folded into another
// replica's: GCounter {a:3, b:5} pruned from b into a becomes {a:8}, with
// the same value (a ResetCounter folds its reset parts alike, and an
// ORMap its nested counters'). In ORSet, MVRegister, EWFlag and ORMap, every live dot of
// the retired replica is replaced by a new dot of the other replica (what
// it wrote stays, as if rewritten there), and its dots leave the causal
// context.
//
// Pruning either finishes or changes nothing: Prune and TryPrune check
// first that into has enough counts or dots left below
// [vclock.MaxCounter] to take over removed's, and TryPrune returns an
// error wrapping [vclock.ErrExhausted] (Prune panics) before any change.
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
// # The order of the steps
//
// Akka Distributed Data runs pruning as a protocol carried in the
// replicated data itself; this package provides the state operations, and
// a caller that follows the same order meets the precondition:
//
//  1. Removal. The replica removed has left the cluster for good (Akka:
//     the node is removed from membership) and no longer writes.
//  2. Initialization. One replica, into (Akka: the leader), marks the
//     data as being pruned from removed into itself (Akka's
//     PruningInitialized marker, with the set of replicas that have seen
//     it), and the marker travels with the data.
//  3. Wait. into waits until every live replica has seen the marker, and
//     until its own state has merged every replica's (the marker's seen
//     set holds every member; Akka also requires that all replicas have
//     seen the marker before it acts).
//  4. Prune. into calls TryPrune(removed, into) on its state, once. On
//     error nothing changed: into keeps the marker and tries later, or
//     gives the pruning to another replica.
//  5. Performed. into replaces the marker with a performed marker (Akka's
//     PruningPerformed) and disseminates the pruned state with it.
//  6. Cleanup. Each replica, from the moment it first sees the performed
//     marker and before it merges the pruned state, calls
//     PruningCleanup(removed) on its own state, and from then on on every
//     state or delta it receives before merging it, since replicas that
//     have not yet seen the marker still send removed's entries.
//  7. Expiry. Once no replica can still hold or send a state from before
//     the prune (Akka: after max-pruning-dissemination, 300 s by
//     default), replicas drop the marker and stop cleaning up.
//
// A replica must never call PruningCleanup before step 5, on any state:
// cleaning up before into has pruned loses removed's entries everywhere
// the cleaned state reaches.

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
	_ RemovedNodePruning = (*DWFlag)(nil)
	_ RemovedNodePruning = (*ResetCounter)(nil)
)
