// Package kv is a Dynamo-style replicated key-value store assembled from
// distkit's primitives: placement on a [ring] with vnodes and zones, W/R
// quorums ([quorum.Config]) counted by a pure coordinator core, siblings and causal contexts with
// [vclock.DVVSet], anti-entropy with [merkle] trees, failure detection
// with [swim] over UDP, idempotent writes with [idempotency], and a
// write-ahead log in front of bbolt for durable storage.
//
// # Usage
//
// One replica's storage is a [Store]: every key's [Object] (a DVVSet of
// [Version] values, tombstones included), anti-entropy trees kept up to
// date on every write, and durable, bounded hints for other nodes:
//
//	s, err := kv.Open(path, kv.StoreConfig{})
//	o, err := s.Update(key, ctx, "n1.7f3a", kv.Version{Value: v}) // coordinate a write
//	o, err = s.Merge(key, fromPeer)                                // replicate, repair, hand off
//
// A [Node] serves one member of the cluster over a [Transport] (in
// process for tests, [HTTPTransport] between processes). Any node takes
// any client request:
//
//	n, err := kv.NewNode(kv.NodeConfig{ID: "n1", Ring: r, Store: s, Transport: t})
//	res, err := n.Get(ctx, key, 0)                   // res.Values, res.Context
//	w, err := n.Put(ctx, key, res.Context, value, 0) // w.Context, w.Dot
//	_, err = n.Delete(ctx, key, w.Context, 0)
//	go n.Maintain(ctx, kv.MaintainConfig{})          // handoff and anti-entropy
//	k, err := n.ApplyRing(ctx, next)                 // a ring change: regroup, then rebalance
//
// [API] is the HTTP API (PUT/GET/DELETE /kv/{key} with X-Context and
// Idempotency-Key, /cluster, /healthz, /readyz, /metrics), and
// [StartServer] runs a whole node as cmd/kvnode does. Every error
// response of the API is a [Problem] (RFC 9457), its status saying whose
// fault it is: 4xx the client's, 503 too few replicas, 500 this node's
// disk, 502 the coordinator a write was forwarded to. [Metrics] exports
// the node on Prometheus' client library with labels bounded by the
// routes, the methods and the ring's members. [Check] is the
// verdict over a finished run: no acknowledged write lost, every key's
// replicas identical; [CheckReads] checks the reads of a client history
// ([Op], recorded from the API's answers with [Op.Record]): each returned
// every write acknowledged before it began that nothing could have
// replaced since.
//
// # Who owns what
//
//   - placement: the ring, N, the fallbacks and the replica groups of
//     a node, immutable, behind one atomic pointer in [Node];
//     [Node.ApplyRing] publishes a new one together with the trees of
//     its groups, then rebalances.
//   - readRound and writeRound, the coordinator core: given a request,
//     the placement and the replies so far, they return the calls to
//     make, when a call timed out, when to hedge or take a fallback
//     (assigned up front), and the outcome. No locks, no I/O, no clock.
//   - coordinator: clients' reads and writes on a node: where a write is
//     coordinated (forwarded to the key's first live home replica, or
//     applied here), the local apply, and which rounds to run.
//   - replicator: drives the rounds (the I/O), fans a write out to its
//     replicas and hints, places the copies of rebalances and handovers,
//     passes hints on, sends read repairs.
//   - maintainer: hinted handoff, anti-entropy, reaping and rebalancing,
//     over a narrow interface to the other nodes (peers) and the
//     replicator; it serves the pages of other nodes' exchanges.
//   - leaver: a node's departure ([Node.Leave]) and the refusal of
//     writes while it leaves.
//   - mover: the paging and the bandwidth of rebalances and handovers,
//     shared by the maintainer and the leaver; the progress of bulk
//     work ([Node.Progress]) is counted and logged by one task per kind.
//   - [Node]: the facade: configuration and validation, the RPC
//     dispatch ([Node.Handle]), the background goroutines, stats.
//   - [Store]: objects and tombstones (the reap floor, the epoch) in one
//     bbolt file, fronted by a write-ahead log and a memory table of the
//     writes since its last checkpoint; its [HintStore] holds hints in a
//     file and under a lock of their own; its [TreeIndex] owns the merkle
//     trees, fed by a hook after each commit. [IdempotencyStore] shares
//     the data file.
//   - [API] and [Server]: HTTP and the process, through Node's exported
//     methods only.
//
// A write, Node.Put → Node.Write → coordinator: a node that is not the
// key's first live home replica forwards it there (opCoordinate); that
// node's coordinator applies it with [Store.UpdateOnce] (the TreeIndex learns of it from
// the commit hook) and hands the object to the replicator, which starts
// a writeRound for the other home replicas and drives it on a background
// goroutine: each call's reply goes into the round, which answers with
// the next calls (a fallback with a hint for a replica down or failed)
// and, once W-1 replicas took it, decides the write; the coordinator
// answers the client then, while the round goes on until every replica
// is settled or the timeout passed. A replica applies the object with
// [Store.Merge], a fallback with [HintStore.Add].
//
// # How a write and a read go
//
// A key's home replicas are the first N nodes of ring.Replicas (distinct
// zones first); the next few are its fallbacks. A node that is not a home
// replica forwards a write to the first live home replica, which applies
// it with [Store.Update] under its actor ID (node ID and store epoch,
// "n1.7f3a"), and sends the resulting object to the other home replicas
// while its own copy is being fsync'd; a home replica that is down or fails has its copy
// taken by a fallback as a hint (sloppy quorum), each replica's fallback
// chosen before the first call. The write succeeds once W replicas, the
// coordinator included, hold it durably, while the others still receive
// it. A read gathers R replies (this node first, then live home
// replicas, hedging on failures and after HedgeDelay), merges them with
// DVVSet.Sync, and sends the merge back to the home replicas whose reply
// was older (read repair, in the background). [Node.HandOff] returns
// hints to their home when it is alive again; [Node.AntiEntropy] diffs the
// merkle trees of each replica set two nodes share (the union of the ring
// ranges with that preference list) and syncs exactly the keys of the
// dirty segments, in rounds of a bounded number of segments, walking both
// sides' keys a page at a time.
//
// # Guarantees
//
//   - Durability: a replica acknowledges a write only after it is in
//     the store's write-ahead log and the log is fsync'd (unless
//     [StoreConfig.NoSync]); a node killed with SIGKILL at any point
//     restarts with everything it acknowledged, replaying the log into
//     its bbolt file, and with nothing of a commit it did not finish (a
//     torn last record is cut; any other damage refuses the store).
//     Reads see only what is on disk. Concurrent writes on a node share
//     a commit and its fsync (group commit: a commit takes every write
//     that arrived while the one before it ran), and each is
//     acknowledged only once that commit is on disk. A coordinator
//     counts itself among the W only once its own copy is on disk too,
//     though it sends the copies to the other replicas while its commit
//     syncs (a write with an idempotency key waits for the sync first).
//     On Linux the fsync (fdatasync) runs through an io_uring where the
//     kernel allows one, the committing goroutine waiting for it in the
//     runtime's poller rather than blocked in the system call; elsewhere,
//     or where io_uring is refused, the store calls it directly.
//   - No silent loss: a value leaves a key only when a write whose
//     context contained its dot replaced it; concurrent writes become
//     siblings. An acknowledged write is held by W replicas, so it
//     survives the loss of W-1 disks; with one disk lost (W = 2), the
//     seeded cluster tests and kvdemo check it with [CheckReaped].
//   - Unique dots: a coordinator's actor ID includes its store's epoch,
//     fixed when the file is created, so a node that lost its disk never
//     reuses the dots of its lost writes; a store not closed cleanly (a
//     crash, a failed disk) reopens under the epoch's next incarnation
//     ([Store.Epoch]), so the dot of a write sent to other replicas but
//     lost to the crash before its sync is never handed out again; and
//     its reap floor keeps it from reusing those of reaped keys (see
//     Deletes and reaping). Each crash thus adds one actor to the
//     clocks of the keys the node writes afterwards.
//   - Convergence: Merge is commutative, associative (for stores' objects)
//     and idempotent, so replication, read repair, handoff and
//     anti-entropy may repeat, reorder and duplicate; once hints are
//     handed off and every pair of replicas ran an exchange without
//     finding a difference, the replicas of every key are identical.
//   - Idempotent writes: a PUT or DELETE with an Idempotency-Key is
//     recorded in the node's bbolt file ([IdempotencyStore], durable
//     before the response goes out) and replayed to retries through that
//     node. The key also travels into the written [Version], and the
//     write goes to the key's first live home replica, which does not
//     apply a key it already holds as a sibling: it answers with that
//     sibling's dot and sends it to the replicas again, so a retry through
//     any node, after a 503 or a crash, applies once and succeeds once W
//     replicas hold the write. A key reused with another value gets 422.
//     A retry is applied again only when its coordinator never saw the
//     first attempt or a later write superseded it ([Node.Write]).
//   - Bounded bulk work: anti-entropy, rebalances and handovers move
//     pages of at most [RepairConfig.PageBytes] (plus one object) and
//     hold a few pages in memory, whatever the data, so a replica that
//     lost its disk in a group of any size is repaired; a peer's page is
//     refused unless its keys are of the group and segments asked for,
//     each after the one before, within the limit, so an exchange always
//     advances; each of its calls is bounded by [RepairConfig.PageTimeout],
//     a failing group does not stop the others, and the bytes per second
//     are bounded by [RepairConfig.AntiEntropyRate] and HandoverRate.
//     [Node.Progress] counts the work.
//   - Trees: each replica set's tree equals merkle.Build over its keys
//     with the xxHash64 of their encoded objects, after any sequence of
//     writes, reopenings and regroupings.
//   - Encoding: objects and RPCs are deterministic msgpack; their
//     decoders never panic and allocate in proportion to their input,
//     plus at most msgpack's 1 MiB read chunk.
//   - Authentication: with a cluster key ([ServerConfig.ClusterKey]),
//     a node serves a replica RPC only with an HMAC-SHA256 of it under
//     one of its keys ([ClusterKeys]: it signs with the primary and
//     accepts any), dated within [AuthWindow] of its clock (a recorded
//     RPC replays within it: keep ReapAfter above it); without one, keep
//     the nodes' addresses private. The authenticator covers the body's
//     length and digest, so it is checked before the body is read: a
//     sender without the key makes a node read nothing. Replica RPCs
//     multiplexed on one connection per peer ([HTTPTransport.Mux],
//     [ServerConfig.RPCMux]) keep this: the key authenticates the
//     connection's upgrade, and each frame carries an HMAC bound to the
//     connection's two nonces and the frame's place in its direction, so
//     a frame cannot be forged, replayed, reordered or moved to another
//     connection; every request on it still takes an RPC slot and
//     carries its deadline, and a request the connection fails to write
//     is not delivered. SWIM's packets
//     are then sealed (AES-256-GCM, swim.Keyring) under [GossipKey] of
//     the primary and opened under that of any key, with
//     [ServerConfig.ClusterName] as their label: a packet that does not
//     open is dropped and counted (kv_gossip_packets_unopened_total in
//     /metrics), so no member, no replica address and no ring change
//     comes from a process without a key, and clusters of other names
//     never merge. [Server.SetClusterKeys] rotates the keys at runtime
//     without a partition: add the new key everywhere, make it primary
//     everywhere, remove the old one.
//   - Encryption: with [ServerConfig.TLS] ([PeerTLS]), a node serves its
//     API over TLS 1.3 and speaks mutual TLS with its peers: a replica
//     RPC is served only to a peer whose certificate chains to the
//     cluster's CA, and a node verifies its peers' certificates against
//     the CA and their address. Without it, requests are not encrypted.
//   - Hostile clients: a write's context counts only as far as its
//     coordinator's copy of the key has seen it (after catching up from
//     the other home replicas): writers that copy never saw are pruned
//     and larger counters cut down, so a forged context supersedes
//     nothing and never enters a key's history, and the reap floor
//     counts only the store's own dots. Contexts, siblings per key, the
//     bytes of a key's values, concurrent requests and the time a body
//     may take are bounded ([Limits], [StoreConfig.MaxSiblings],
//     [StoreConfig.MaxObjectLen]); what passes a bound is refused with a
//     4xx status (503 with Retry-After for load) and a body that says
//     what to do.
//
// [Store], [Node], [HTTPTransport], [Metrics] and [Server] are safe for
// concurrent use.
//
// # Membership
//
// Membership: [Server] runs SWIM over UDP. A member that joins (with its
// HTTP address and zone in its SWIM metadata) is added to the ring and
// one that leaves is removed ([Node.ApplyRing]), and every node streams
// the keys whose replica set changed to their new replicas (from
// ring.ReplicaMoves). A member that fails stays
// in the ring: its writes go to fallbacks with hints until it returns.
//
// Leaving: a node that shuts down gracefully ([Server.Shutdown]) first
// hands its data over ([Node.Leave]), as Riak's cluster leave and
// Cassandra's decommission do, so that its disk may be discarded: it
// stops taking writes (clients' are forwarded, replicas' refused, so
// their coordinators place them elsewhere), sends every key it holds to
// the key's replicas in the ring without it (a fallback with a hint for
// one that is down), passes every hint it holds to its target or to
// another node, and leaves SWIM only once every
// key and hint found a node; otherwise it stops as a failed node would,
// its disk the way back. Hints held for a node no longer in the ring go
// to their keys' replicas ([Node.HandOff]).
//
// # Deletes and reaping
//
// A delete is a write of a tombstone with the context of a read: it
// replaces exactly the values that read returned, and a concurrent write
// survives it as a sibling. A key whose every version is a tombstone is
// dead; it reads as not found, but its tombstone and history stay until
// [Node.Reap] (run by [Node.Maintain] once the key has been dead, its
// tombstones unchanged, for MaintainConfig.ReapAfter) finds that every
// home replica holds the same tombstone, or none, and that no fallback
// holds a hint for the key, and then deletes it everywhere. Each store
// keeps a reap floor, the largest counter of its own dots (those of its
// actor IDs, with its epoch) in any object it reaped, and
// numbers a write above it when the key holds no value of the writing
// node: its dots are not reused, and a late copy of a reaped value that
// node wrote is superseded by its next write of the key rather than
// coming back as a sibling. What reaping cannot guard against is a copy
// of a reaped value outside the key's replicas and fallbacks (after a
// ring change) or in a message delayed past ReapAfter; such a value comes
// back, and should it be the writing node's own and arrive before that
// node's next write of the key, that write may reuse a reaped dot. Keep
// ReapAfter well above the node's Timeout and the duration of an
// anti-entropy exchange, as Cassandra keeps gc_grace_seconds above its
// repair period.
package kv
