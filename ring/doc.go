// Package ring places keys on nodes: a consistent-hash ring with virtual
// nodes, weights, zone-aware preference lists and rebalancing plans;
// bounded-load assignment on top of it; weighted rendezvous hashing; and
// jump consistent hashing.
//
// # Usage
//
//	r, err := ring.New([]ring.Node{
//		{ID: "n1", Zone: "eu-1a"}, {ID: "n2", Zone: "eu-1b"}, {ID: "n3", Zone: "eu-1c", Weight: 2},
//	}, ring.Config{})
//	owner := r.Lookup(key)                   // the primary
//	prefs = r.Replicas(key, 3, prefs[:0])    // three nodes, three zones; no allocation
//	next, err := r.With(ring.Node{ID: "n4"}) // r is unchanged
//	for _, m := range ring.Moves(r, next) {
//		stream(m.Start, m.End, m.From, m.To)   // keys hashing into (Start, End]
//	}
//
//	b, err := ring.NewBounded(r, 1.25)       // no node above 1.25x the average
//	node, err := b.Add("conn-17")
//	moved, ok := b.Remove("conn-3")          // keys moved to keep the bound
//	moved, err = b.Rebalance(next)           // follow a membership change
//
//	h, err := ring.NewRendezvous(nodes)      // O(nodes) per lookup, no vnodes
//	prefs = h.Replicas(key, 3, prefs[:0])    // zone-aware, as Ring.Replicas
//	bucket := ring.Jump(ring.KeyHash(key), 16)
//
//	owner = r.LookupHash(ring.KeyedHash(secret, key)) // clients cannot aim keys
//
// # Placement (frozen)
//
// Placement must agree between processes and across versions, so it is
// defined exactly here and pinned by testdata/golden.txt:
//
// The placement hash is public and unkeyed: anyone who knows the node IDs
// can compute where a key lands, and so choose many keys that land on one
// node. Where clients choose keys and that matters, place a secret-keyed
// hash of each key instead, [KeyedHash] (SipHash-2-4) with the Hash
// variants of the lookups ([Ring.LookupHash], [Ring.ReplicasHash],
// [Rendezvous.LookupHash], [Rendezvous.ReplicasHash]); every process then
// needs the same secret.
//
//   - A key's position is xxhash64 (seed 0) of its bytes ([KeyHash]).
//   - A node of weight w (zero meaning 1) has max(1, round(w*VNodes)) points;
//     point i is the (i+1)-th output of SplitMix64 seeded with xxhash64 of
//     the node's ID ([PointHash]).
//   - A key belongs to the first point at or after its position, wrapping
//     around; so each point owns the range (previous point, point]. When
//     points of different nodes have equal hashes, the smallest ID keeps the
//     point.
//   - Replicas walks on from that point as Cassandra's
//     NetworkTopologyStrategy does within a data centre: the first node of
//     each unseen zone, in walk order, then the nodes skipped for their zone,
//     in walk order.
//
// # Default virtual nodes
//
// [DefaultVNodes] (1024) was chosen by measurement: for 1000 rings of ten
// equal nodes with distinct IDs, the exact share of the circle held by the
// most loaded node, divided by the mean share (TestVNodesTable, go test
// -long):
//
//	VNodes   median   p90     p99     max
//	    64   1.188    1.294   1.410   1.581
//	   128   1.135    1.206   1.266   1.327
//	   256   1.095    1.143   1.190   1.229
//	   512   1.066    1.099   1.141   1.178
//	  1024   1.047    1.071   1.093   1.121
//	  2048   1.033    1.050   1.068   1.087
//
// 1024 is the smallest power of two whose 99th percentile is within 1.10;
// the ten nodes node-0..node-9 hold at most 1.10x the mean of a fixed key
// set (TestDefaultBalance). Each point costs about 20 bytes (hash, owner,
// index), so a 1000-node ring at the default takes about 20 MB; large
// clusters that can accept more skew may set VNodes lower, or bound loads
// with [Bounded].
//
// # Guarantees
//
//   - [Ring] and [Rendezvous] are immutable and safe for concurrent use.
//     Lookups do not allocate; Replicas and LookupN do not allocate when dst
//     has room (see their limits).
//   - A ring is a function of its node set and Config: the order of nodes,
//     and the order of With and Without calls that reach a set, never
//     matter, including when point hashes collide.
//   - Minimal movement: adding a node moves only keys to it (about its
//     weight's share of them); removing one moves only its keys; changing a
//     node's weight moves keys only to or from it. The same holds for
//     [Rendezvous] and, for the last bucket, [Jump].
//   - Replicas(key, n) holds min(n, nodes) distinct nodes, its first entry is
//     Lookup(key), its first min(n, zones) entries lie in distinct zones, and
//     it is a prefix of Replicas(key, n+1).
//   - Moves(from, to) holds a hash exactly when its owner differs between the
//     rings, with those owners.
//   - [Bounded] never lets a node hold more than ceil(c * m * share) of m
//     keys, through any sequence of arrivals, departures and ring changes
//     ([Bounded.Rebalance], which moves only the keys of departed nodes and
//     each node's excess); a load factor that cannot fit (c < 1) is an
//     error, never a panic.
//   - [Rendezvous] has the same With, Without, zone-aware Replicas and
//     string and hash lookups as [Ring]; invalid nodes are an error from
//     [NewRendezvous], never a panic, and a nil *Rendezvous is empty.
//   - Jump reproduces Lamping and Veach's reference code exactly.
//
// Invalid input to [New], [Ring.With], [NewRendezvous] and
// [Rendezvous.With] is an error: [ErrEmptyID],
// [ErrDuplicateID], [ErrWeight], [ErrVNodes], [ErrTooLarge].
package ring
