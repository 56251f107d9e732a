// Package vclock provides vector clocks with Riak's pruning, dots, and
// Riak's dotted version vector sets (DVVSet) for storing concurrent values
// without sibling explosion.
//
// A [VClock] maps actor IDs to event counters, kept as a slice sorted by
// ID: comparisons and lookups are linear or logarithmic walks that never
// allocate, and [VClock.Merge] is one linear merge that reuses storage. A
// [Dot] names a single event; [VClock.Add] and [VClock.Contains] move
// between dots and clocks, which is what causal CRDTs need.
//
// A [DVVSet] is what a Dynamo-style store keeps per key: its siblings,
// each tagged with the dot of the write that produced it, and the version
// vector of everything the key has seen. It follows Riak's dvvset.erl.
//
// # Usage
//
// Vector clocks:
//
//	var a, b vclock.VClock
//	a.Tick("a")                   // {"a":1}
//	b.Merge(a)
//	b.Tick("b")                   // {"a":1, "b":1}
//	a.Compare(b)                  // vclock.Before
//	b.Descends(a)                 // true
//	b.Contains(vclock.Dot{ID: "a", Counter: 1}) // true
//
// A store with [DVVSet]: every read returns the values and the context
// (the set's history); every write sends back the context it read, and the
// coordinating server (here "n1") applies it with [DVVSet.Update]:
//
//	var s vclock.DVVSet[string]       // the key's state on the server
//	s.Update(vclock.VClock{}, "n1", "v1") // blind first write: {"n1":1} [v1]
//	ctx := s.Context()                // clients B and C both read [v1], {"n1":1}
//	s.Update(ctx, "n1", "v2")         // B overwrites v1:        {"n1":2} [v2]
//	s.Update(ctx, "n1", "v3")         // C never saw v2: sibling {"n1":3} [v3 v2]
//	s.Update(s.Context(), "n1", "v4") // D read both, resolves:  {"n1":4} [v4]
//
// Replicas exchange sets with [DVVSet.Sync] (anti-entropy, read repair).
// Because each value carries its own dot, a write discards exactly the
// values its context has seen, however many writes happened at the same
// server in between. Two clients that keep writing alternately, each with
// the context of its own previous write, therefore hold the key at two
// siblings, their two latest values, and k concurrent writers at no more
// than k; with one vector clock per key and server-side IDs, the same
// workload grows a new sibling on every write (Riak's "sibling
// explosion").
//
// To collapse siblings on the server use [DVVSet.LWW], or write the
// resolved value back with Update(s.Context(), id, v). [DVVSet.Reconcile]
// follows dvvset.erl and leaves an anonymous value, which a later Update
// keeps as a sibling.
//
// Pruning bounds a clock's size the Riak way, with [VClock.TickAt]
// recording each entry's time:
//
//	v.TickAt("n1", now)
//	v.Prune(now, vclock.RiakPrunePolicy())
//
// # Values
//
// A DVVSet holds values of any type V and never compares them with ==.
// Where it must choose between values, it uses one fixed order on Go
// values: anonymous values are kept sorted and deduplicated in it, and
// should two sets hold different values for the same dot (a dot names one
// write, so only a corrupt or forged set does), Sync keeps the larger. The
// order looks at values as Go sees them, unexported fields, fields msgpack
// skips and map contents included, and is the same in every process for
// values built of booleans, numbers, strings, slices, arrays, structs,
// pointers, interfaces and maps; functions and channels order by address.
// So Sync gives the same result in both argument orders for every V.
//
// # Guarantees
//
//   - Compare is a partial order: v.Compare(v) is Equal; Before and After
//     are antisymmetric (a.Compare(b) == Before exactly when b.Compare(a)
//     == After) and transitive. Compare agrees with Descends:
//     Equal = both descend, Before = only o descends from v, After = only
//     v from o, Concurrent = neither.
//   - Merge is the least upper bound: afterwards v descends from both
//     inputs, and from nothing less than them. It is commutative,
//     associative and idempotent on counters.
//   - Get, Contains, Compare and Descends do not allocate. Merge allocates
//     only when the result outgrows v's capacity.
//   - Prune removes the same entries whatever order the clock was built
//     in: ties in time are broken by ID.
//   - DVVSet.Sync is commutative (for every V; see Values) and idempotent,
//     and associative for sets without anonymous values. After Update(ctx, id, v) the set holds v
//     and exactly the values whose dots ctx does not contain.
//   - Encodings are deterministic: equal clocks and sets (with
//     deterministically encoded values) give equal bytes. Decoders never
//     panic, reject unsorted or repeated IDs, zero counters and lengths
//     longer than the input with errors wrapping [ErrMalformed], and
//     allocate in proportion to their input.
//   - No counter above [MaxCounter] (2^63-1) is ever held: decoders refuse
//     one, and local ticks stop there ([VClock.TryTick] and
//     [DVVSet.TryUpdate] return an error wrapping [ErrExhausted] and change
//     nothing; Tick and Update panic, changing nothing). So nothing a peer
//     or a client sends can make a later tick overflow, and every state a
//     replica encodes, every other replica decodes. A server that takes
//     contexts from clients uses TryUpdate.
//
// No type in this package is safe for concurrent use; callers lock.
package vclock
