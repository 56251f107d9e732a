// Package merkle provides incremental anti-entropy trees and an exchange
// that finds where two replicas differ while sending bytes proportional to
// the differences.
//
// A [Tree] is a two-level XOR Merkle tree in the manner of Riak's TicTac
// AAE trees: Branches branches of SegmentsPerBranch segments, each a
// uint64. An entry (key, value hash) lands in the segment given by the key's
// xxHash64 ([Tree.Segment]) and XORs [EntryHash](key, valueHash) into that
// segment, its branch and the root. Because XOR is its own inverse, a write
// costs O(1) whatever the tree's size (no rehashing of a path as in
// Cassandra's or Riak's hashtree.erl Merkle trees), an entry is removed by
// adding it again, and trees of disjoint key sets combine with
// [Tree.Merge]. The value hash is the caller's: any 64-bit digest of the
// stored value (or of its version vector) that replicas compute alike.
//
// # Usage
//
// Each replica keeps a tree beside its store and updates it with every
// write:
//
//	t := merkle.New(merkle.Config{})             // 4096 × 256 segments, 8 MiB
//	t.Add(key, h)                                // insert
//	t.Update(key, h, h2)                         // overwrite
//	t.Add(key, h2)                               // delete
//
// To repair, one replica diffs its tree against the other's over any
// transport that carries bytes to [Serve] on the far side:
//
//	res, err := merkle.Diff(ctx, t, peer)        // peer.Call(ctx, req) → Serve(remoteTree, req)
//	// res.Segments: the dirty segments; res.Bytes: the cost
//
// and then compares only the keys of res.Segments with the other replica.
// The tree stores no keys, so the store must find the keys of a segment:
//
//   - Index: keep the segment next to each key, for example as a prefix of
//     the key in an ordered engine ([segment uint32][key]), so that the keys
//     of a segment are one range scan. Segment(key) is fixed forever, so
//     the prefix stays valid across versions. (Riak's leveled backend
//     likewise keeps each key's segment beside it to fold over dirty
//     segments.)
//   - Scan: with no index, stream the store's entries through [InSegments]
//     to keep those in the dirty segments; one pass over the data per
//     exchange, which suits rare repairs of small stores.
//
// Periodically rebuild a tree from the store and compare it with the live
// one ([Verify]) to catch bit rot and writes that bypassed the tree;
// replace the live tree with the rebuild when they differ. [Rebuild] does
// this while writes go on, from a snapshot of the store, losing none of
// them; [Build] suits a store that is quiet while it runs.
//
// Writes in flight between replicas make segments differ for a moment.
// Before repairing, re-check the segments found with [Confirm] a little
// later, as TicTac AAE does, and bound each round with [DiffPage] (TicTac
// repairs at most 128 segments a round):
//
//	res, err := merkle.DiffPage(ctx, t, peer, next, 128)
//	next = res.Next                              // resume here next round
//	// ... later ...
//	sure, err := merkle.Confirm(ctx, t, peer, res.Segments)
//
// A restart need not rebuild: save the tree with [Tree.MarshalBinary] and
// load it with [Tree.UnmarshalBinary], which checks its checksum.
//
// # Memory and bytes
//
// A tree takes 8 × Branches × (SegmentsPerBranch + 1) bytes: 8.03 MiB with
// the default 4096 × 256, sized for a million keys (one or two keys per
// dirty segment). [Diff] descends from the root by ranges of segments, 16
// subranges per differing range, so trees that differ in d segments
// exchange about 128 bytes per difference per level, in 6 round trips for
// the default geometry: 10 changed values among 100,000 keys in 131,072
// segments cost 3,993 bytes in 5 round trips (an RFC 6962 descent over
// the sorted keys: 9,741 bytes in 18), and 10 inserted or deleted keys
// 4,128 bytes (RFC 6962: 5.9 MB, since every later leaf shifts), against
// 1.6 MB for sending every key's hash with its value hash (the bench
// module's BenchmarkMerkleExchange).
// Fewer segments in all mean a smaller tree and more keys to compare per
// dirty segment. For many small partitions, Config{Branches: 1024,
// SegmentsPerBranch: 256} takes 2 MiB.
//
// # Guarantees
//
//   - The tree is a function of its set of entries: any order of Add and
//     Update calls that leaves the same entries yields equal trees
//     ([Tree.Equal]), equal to [Build] over those entries. Adding an
//     entry twice is the identity; Update(k, a, b) equals Add(k, a) then
//     Add(k, b).
//   - Merge is XOR: commutative and associative; merging the trees of
//     disjoint entry sets gives the tree of their union.
//   - Add, Update, Root and Segment run in O(1) time (O(len(key)) hashing)
//     and never allocate.
//   - [Diff] returns exactly the segments whose hashes differ, which are
//     the segments holding entries present on one side only (barring 64-bit
//     XOR collisions, probability 2⁻⁶⁴ per compared hash). Its requests
//     and responses are msgpack ([Request], [Response]); decoders reject
//     malformed input with [ErrMalformed], never panic and allocate only in
//     proportion to their input. No response exceeds [MaxHashes] hashes.
//   - Segment and EntryHash are defined by xxHash64 and fixed forever, so
//     trees built by any version and process compare.
//   - [DiffPage] returns at most its limit of segments per round, and its
//     rounds together return exactly Diff's segments; [Confirm] returns
//     exactly the given segments that still differ.
//   - A [Rebuild] fed a snapshot and every later write yields the tree of
//     the store when it finishes, whatever the interleaving.
//   - [Tree.UnmarshalBinary] loads exactly what [Tree.MarshalBinary]
//     saved and refuses anything else (checksum, geometry, length) with
//     [ErrMalformed], without panicking or allocating beyond its input.
//   - The zero Tree is the empty tree of the default geometry.
//
// Like a map, a Tree is not safe for concurrent use. Trees are pure data:
// no goroutines, no I/O; Diff does I/O only through the caller's [Peer].
package merkle
