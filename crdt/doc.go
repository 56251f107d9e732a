// Package crdt provides state-based conflict-free replicated data types
// with delta mutators: the set of riak_dt and Akka Distributed Data, built
// on the delta-state framework of Almeida, Shoker and Baquero, "Delta state
// replicated data types" (J. Parallel Distrib. Comput., 2018).
//
//   - [GCounter] and [PNCounter]: counters (riak_dt_gcounter, _pncounter).
//   - [GSet]: a grow-only set (riak_dt_gset).
//   - [ORSet]: an add-wins observed-remove set without tombstones, Riak's
//     ORSWOT (riak_dt_orswot).
//   - [LWWRegister]: a last-writer-wins register on [hlc.Timestamp]s, ties
//     to the larger replica ID (riak_dt_lwwreg).
//   - [MVRegister]: a multi-value register that keeps concurrent writes.
//   - [EWFlag]: an enable-wins flag (riak_dt_od_flag), and [DWFlag], its
//     disable-wins dual.
//   - [MaxRegister]: the largest value set anywhere.
//   - [ResetCounter]: a counter whose reset takes away exactly what the
//     resetting replica saw (the counter of maps, riak_dt_emcntr).
//   - [ORMap]: a map from keys to nested ORSet, MVRegister, EWFlag,
//     DWFlag, ResetCounter, LWWRegister or ORMap values with
//     observed-remove and reset-remove semantics (riak_dt_map).
//   - [Map]: riak_dt_map itself, fields named by a name and a type
//     ([Field]) holding counters, LWW and MV registers, flags, sets and
//     nested Maps under one key space, over ORMap.
//   - [LWWMap], [PNCounterMap] and [ORMultiMap]: Akka's specialised maps,
//     over ORMap.
//   - [Text] and [List]: replicated sequences (a replicated growable array
//     with FugueMax's ordering), for collaborative editing.
//
// Every replica names itself with a replica ID, a string unique among the
// replicas that ever update the data (a node name, not a client name). A
// replica applies its own operations with the mutators (Inc, Add, Set, ...)
// and others' states or deltas with Merge.
//
// # Deltas
//
// Every mutator returns a delta: a value of the same type, usually tiny,
// such that merging it into any replica that holds the state before the
// mutation has exactly the effect of the mutation, and merging it anywhere
// else has the effect of the mutation as far as that replica has seen what
// the mutation replaced. Ship deltas instead of whole states; deltas join
// into delta-groups with Merge, so a sender can batch everything since
// its last acknowledged message into one value. A full state is also a
// valid delta, which is how a replica that missed deltas catches up.
//
// The counters (ResetCounter too), GSet, LWWRegister and the maps of
// counters and registers need nothing from delivery: their
// deltas may be reordered, duplicated, batched or lost (and later
// replaced by a full state), and the state is always the join of what
// arrived.
//
// ORSet, MVRegister, EWFlag, DWFlag, ORMultiMap and the ORMaps of these
// should receive deltas in causal
// order: a delta is merged only after the deltas its replica had merged
// before making it (per-sender FIFO for a replica's own deltas plus
// forwarding nothing out of order is enough, as is the anti-entropy
// algorithm of the paper, which ships delta-groups in order and full
// states otherwise). Without it, Merge is still a join, so every replica
// still converges to the same state once all deltas have arrived, but in
// between (1) reads may be causally inconsistent: a delta carries only
// the dots of what its operation replaced, not the replica's whole past,
// so a replica that got a Remove of x before the Add of x that Remove had
// already superseded shows x until the deltas in between arrive; and (2)
// the gaps keep dots in the causal context's dot cloud, so the state
// grows until they are filled (a lost delta's gap, until a full state
// arrives).
//
// # Causal machinery
//
// ORSet, MVRegister, EWFlag and ORMap share one implementation: a dot store
// (the live data, each piece tagged with the [vclock.Dot] of the write
// that made it) and a causal context (every dot the replica has seen),
// kept compact as a [vclock.VClock] plus a dot cloud for dots beyond a
// gap. A dot in the context but not in the store was removed; the join
// keeps a dot that both sides hold, or that one side holds and the other
// has not seen. Removal therefore needs no tombstones and no replica ID:
// a Remove delta is just the removed dots in a context. An ORSet's state
// holds its live elements, at most one dot per replica for each (a Prune
// can give the replica pruned into a second one, until that replica adds
// the element again), and one counter per replica.
//
// # Maps
//
// ORMap[K, V] takes V among this package's map values, as value types:
// ORMap[string, ORSet[string]], ORMap[string, ResetCounter],
// ORMap[string, LWWRegister[int]], ORMap[string, ORMap[string, EWFlag]].
// The constraint [Nested] has unexported methods because nested values
// share the map's causal context and report their deltas to it.
// [ORMap.Update] runs the nested type's own mutators inside the map and
// returns the map's delta, collected from them: nothing for the caller to
// forget. [ORMap.Get] returns a read-only copy, whose mutators that would
// draw a dot panic, as the map holds dots the copy does not know of.
//
// Removing a key resets its value for what the remover saw, as
// riak_dt_map does: an update concurrent with the remove survives with
// only its own effects. A nested set keeps the elements added
// concurrently; a nested map is reset key by key, recursively; a counter
// keeps exactly the increments and decrements the remover did not see
// (riak_dt_map keeps the concurrent updater's whole count); an LWW
// register keeps a write newer than every write the remover saw. A key is
// present exactly while its value holds such an effect. The causal
// values leave nothing behind when removed; a removed counter keeps its
// per-replica numbers and a removed register the timestamp it hides up
// to, so that a concurrent update arriving later is still told apart
// (riak_dt_map keeps such a tombstone per present field).
//
// [Map] mixes value types under one key space as riak_dt_map does: a
// field is named by its name and its type, so "likes" as a counter and
// "likes" as a set are independent fields, and removing one leaves the
// other. Typed updates return the delta (m.UpdateCounter("likes", ...),
// m.UpdateMap("profile", ...)) and typed reads return copies
// (m.Counter("likes").Value(), m.Map("profile").Register("name")).
// Registers and set elements are strings, riak_dt's binaries. Maps nest
// up to [MaxMapDepth] levels.
//
// [LWWMap], [PNCounterMap] and [ORMultiMap] give Akka's shapes:
// Put/Get/Remove of values, Inc/Dec of counters by key, and
// AddBinding/RemoveBinding/Put of sets by key.
//
// # Tombstones
//
// The tombstones of removed counters and LWW registers are collected by
// Compact ([ORMap.Compact], [Map.Compact], [PNCounterMap.Compact],
// [LWWMap.Compact], [ResetCounter.Compact]) given a causally stable
// state: one every replica has merged, with every replica compacting
// before it merges from a replica that has (in practice, at a quiescent
// point, as for [Text.Compact]). Counter and register deltas carry the
// tombstones they need, so a compacted replica takes them as any other.
//
// # Values
//
// LWWRegister and MVRegister hold values of any type T and never compare
// them with ==. Where a join must choose between two values (an
// LWWRegister's writes with the same timestamp and replica ID, or two
// states holding different values under the same dot, which only a buggy
// or forged writer produces), the larger wins in one fixed order on Go
// values: unexported fields, fields msgpack skips and map contents
// included, the same in every process for values built of booleans,
// numbers, strings, slices, arrays, structs, pointers, interfaces and
// maps; functions and channels order by address. So Merge gives the same
// result in both argument orders for every T. Equal values are recognised
// without allocating.
//
// # Pruning
//
// The counters and the causal types implement [RemovedNodePruning], Akka's
// way to remove a retired replica from the state: its entries are folded
// into another replica's. Pruning either finishes or changes nothing. See
// [RemovedNodePruning] for the safety precondition and the order of the
// steps (Akka's): retire, mark, wait until every replica has seen the
// mark, prune once, and only then clean up, on every replica, its own
// state and every incoming one, until no pre-prune state can arrive.
//
// # Sequences
//
// [Text] and [List] are replicated sequences for collaborative editing:
// each element has an ID and remembers its neighbours at insertion, and
// FugueMax's rule orders concurrent inserts so that concurrently typed
// runs never interleave. Their Merge is a join that needs nothing from
// delivery: an element whose neighbours have not arrived waits,
// invisible. Deleted elements leave tombstones, kept in runs, until
// Compact discards those every replica has seen (see [Text.Compact] for
// when that is safe).
//
// # Usage
//
//	var a, b crdt.ORSet[string]           // replicas "a" and "b"
//	d1 := a.Add("a", "apple")             // ship d1 to b
//	b.Merge(d1)
//	d2 := b.Remove("apple")               // b saw the apple: removes it
//	d3 := a.Add("a", "apple")             // concurrently, a adds it again
//	a.Merge(d2)
//	b.Merge(d3)
//	a.Contains("apple") && b.Contains("apple") // true: add wins
//
//	buf, err := msgpack.Marshal(a)        // full state or delta on the wire
//	var c crdt.ORSet[string]
//	err = msgpack.Unmarshal(buf, &c)      // errors wrap crdt.ErrMalformed
//
// # Guarantees
//
//   - Merge is commutative, associative and idempotent for every type:
//     replicas that have merged the same states and deltas, in any order,
//     any number of times, hold equal states (equal encodings).
//   - For every mutator, s.Merge(delta) on a copy of the state before the
//     mutation gives the state after it.
//   - ORSet, MVRegister, EWFlag and ORMap agree, under causal delivery,
//     with the classic observed-remove CRDTs with tombstones: an element is
//     present (a value kept, a flag enabled) exactly when some add (write,
//     enable) of it has not been seen by a remove (overwrite, disable).
//     Concurrent add and remove: add wins; concurrent writes of an
//     MVRegister are all kept; enable wins over a concurrent disable.
//   - No tombstones: an ORSet's encoded size is bounded by its live
//     elements and its replicas, whatever its history. (Removed counters
//     and LWW registers in maps keep a bounded tombstone, until Compact
//     at a stable state discards it; see Maps and Tombstones.)
//   - Encodings are deterministic (for values of T that encode
//     deterministically), and decoders accept only the canonical form:
//     whatever they decode encodes back to exactly the bytes read, so
//     equal states have equal bytes. Elements, keys and values of basic
//     types (booleans, numbers, strings, byte slices) are checked too;
//     values of other types are taken as msgpack decodes them.
//     Decoders never panic: they return errors wrapping [ErrMalformed],
//     leave the target unchanged, and allocate in proportion to their
//     input.
//   - Clone returns a deep copy; Merge never makes the receiver share
//     mutable storage with its argument. Values of T in registers are
//     copied by assignment.
//   - The zero value of every type is the empty state, ready to use.
//   - No counter or dot above [vclock.MaxCounter] (2^63-1) is ever held:
//     decoders refuse one, and every mutator that draws a dot or adds to a
//     count has a Try variant (TryInc, TryDec, TryAdd, TrySet, TryEnable,
//     TryDisable, TryUpdate, TryUpdateSet and Map's other TryUpdate
//     methods, TryAddBinding, TryPut, TryPrune) that
//     returns an error wrapping
//     [vclock.ErrExhausted] and changes nothing when the bound would be
//     passed. Use them on states merged from untrusted peers and for
//     amounts from clients; the plain mutators panic there instead,
//     changing nothing.
//     Text and List are the exception: their decoders refuse such
//     counters too, but a local insert may draw one, so that no counter
//     from the wire can make an insert panic; see [Text.Insert].
//   - Mutators panic only on misuse: a NaN element or key, Prune into the
//     replica being removed, a sequence position out of range, a dot drawn
//     by a value read with ORMap.Get, and the exhaustion above.
//
// No type in this package is safe for concurrent use, like Go maps:
// callers lock.
package crdt
