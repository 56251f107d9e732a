// Package quorum is the arithmetic and the machinery of Dynamo-style
// quorums: N/R/W settings and what they tolerate, the availability of a
// quorum, Cassandra's consistency levels across zones, Probabilistically
// Bounded Staleness (Bailis et al., VLDB 2012), and [Gather], a fan-out that
// returns as soon as a quorum of replicas answered.
//
// # Usage
//
// Quorum math:
//
//	c := quorum.Config{N: 3, R: 1, W: 1}
//	if err := c.Validate(); err != nil { ... }
//	c.Overlapping()                      // false: reads may be stale
//	quorum.StaleProbability(c, 1)        // 2/3: a read misses the last write
//	quorum.Availability(3, 2, 0.99)      // P(a quorum of 2 of 3 is up)
//
// t-visibility: how soon after a write commits are reads consistent?
//
//	m := quorum.WARS{W: quorum.Exponential{Mean: 10 * time.Millisecond},
//		A: quorum.Fixed(time.Millisecond), R: quorum.Fixed(time.Millisecond),
//		S: quorum.Fixed(time.Millisecond)}
//	v, err := m.Simulate(c, 100_000, seed)
//	v.Consistent(5 * time.Millisecond)   // P(consistent read 5ms after commit)
//	v.Window(0.999)                      // the delay that makes 99.9% consistent
//
// Latencies come from any [Distribution]: [Fixed], [Exponential], [Pareto],
// measured samples ([NewEmpirical]) or a [Mixture] of them.
//
// Consistency levels over zones:
//
//	req, err := quorum.LevelLocalQuorum.Requirement(quorum.Placement{
//		Zones: map[string][]string{"eu": {"a", "b", "c"}, "us": {"d", "e", "f"}},
//		Local: "eu"})
//	req.Satisfied([]string{"a", "c"})    // true
//	replies, err := quorum.GatherFor(ctx, req, get) // calls a, b and c only
//
// A read at QUORUM that hedges after 20ms and on every failure:
//
//	replies, err := quorum.Gather(ctx, replicas, quorum.Majority(len(replicas)),
//		func(ctx context.Context, replica string) ([]byte, error) {
//			return client.Get(ctx, replica, key)
//		}, quorum.Hedge(20*time.Millisecond))
//	if errors.Is(err, quorum.ErrNoQuorum) { ... }
//
// Adaptive hedging, Cassandra's speculative_retry = 99p: one Tracker per
// cluster records per-replica latencies; a read hedges once its calls
// have run for the replicas' 99th percentile, on at most 10% of reads, and
// calls the idle, fast replicas first:
//
//	var tr quorum.Tracker
//	replies, err := quorum.Gather(ctx, replicas, 2, get, quorum.Track(&tr),
//		quorum.HedgeAt(0.99, 0.1), quorum.Prefer(quorum.LeastLoaded))
//
// Replies that hold resources (streams, bodies): KeepWinners leaves the
// winners' contexts running until ctx ends, and Cleanup releases the
// successes that arrive too late to be returned:
//
//	replies, err := quorum.Gather(ctx, replicas, 2, open, quorum.KeepWinners(),
//		quorum.Cleanup(func(r quorum.Reply[io.ReadCloser]) { r.Value.Close() }))
//
// # Guarantees
//
//   - Overlapping is R + W > N; exactly then [StaleProbability] is 0 for
//     every k and [WARS.Simulate] finds every read consistent at t >= 0.
//   - Majority(n) + Majority(n) > n: two majorities always intersect.
//   - Availability(n, k, p) + Unavailability(n, k, p) = 1 (up to rounding),
//     both are sums of non-negative terms with no cancellation, and
//     Availability falls as k rises and rises with p.
//   - StaleProbability(c, k) = StaleProbability(c, 1)^k, and it never rises
//     as R or W grows.
//   - [WARS.Simulate] is a pure function of its arguments (and the
//     distributions' determinism): the same seed gives the same curve;
//     [Visibility.Consistent] never decreases in t.
//   - A [Requirement] is satisfied only by distinct acknowledgements from the
//     replicas it counts; duplicates and strangers never count.
//   - [Gather] never reports success with fewer than need successful replies,
//     never calls a replica twice, never starts a call after it returned, and
//     fails as soon as need successes are impossible. Its goroutines end as
//     its documentation states. With [HedgeAt], timed hedges over the
//     Gathers sharing a [Tracker] number at most budget times those
//     Gathers, plus [HedgeBurst]. With [Cleanup], every success Gather does not
//     return reaches the cleanup function once. [GatherFor] succeeds exactly when the
//     successful replies satisfy its [Requirement].
//
// Everything except Gather, GatherFor and the [Tracker] they record into
// is pure: no goroutines, no clock, no I/O.
package quorum
