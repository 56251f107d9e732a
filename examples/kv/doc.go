// Package kv is a Dynamo-style replicated key-value store assembled from
// distkit's primitives: a store node keeps each key as a
// [vclock.DVVSet] of [Version] values (siblings for concurrent writes,
// tombstones for deletes) in bbolt, with [merkle] trees for anti-entropy
// kept up to date on every write.
//
// # Usage
//
// One replica's storage is a [Store]:
//
//	s, err := kv.Open(path, kv.StoreConfig{})
//	o, err := s.Update(key, ctx, "n1", kv.Version{Value: v}) // coordinate a client's write
//	o, err = s.Sync(key, fromPeer)                            // replicate, repair, hand off
//	o, found, err := s.Get(key)
//	kv.Live(o)                                                 // the values a read returns
//	o.Context()                                                // the context it returns
//
// A write coordinated by a replica gets a new dot of that replica's actor
// ID with [Store.Update]; the resulting object goes to the other replicas,
// which merge it with [Store.Sync]. A delete is an Update with a tombstone
// (Version{Deleted: true}), which discards exactly the values its context
// has seen, like any write. A replica that cannot be reached gets its
// copy later through a hint held by another node ([Store.AddHint],
// bounded and durable). Two replicas find the keys they disagree on with
// [merkle.Diff] between their trees of one group ([Store.Tree],
// [Store.Serve]) and read those keys with [Store.Scan].
//
// # Guarantees
//
//   - Durability: Update, Sync, AddHint and DropHint return after bbolt
//     committed and fsync'd the change (unless [StoreConfig.NoSync]), so
//     a replica never acknowledges a write a crash can lose.
//   - Causality: Update and Sync follow [vclock.DVVSet]: no value is
//     dropped unless a write whose context contained its dot replaced it;
//     Sync is commutative and idempotent, so replication, read repair,
//     anti-entropy and handoff may repeat and reorder freely.
//   - Trees: after any sequence of writes, reopenings and [Store.Regroup]
//     calls, each group's tree equals [merkle.Build] over the group's keys
//     with the xxHash64 of their encoded objects: replicas holding equal
//     objects hold equal trees.
//   - Encoding: objects encode deterministically with msgpack
//     ([EncodeObject]); [DecodeObject] never panics and allocates in
//     proportion to its input.
//
// A [Store] is safe for concurrent use.
package kv
