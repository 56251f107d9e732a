// Package detector provides heartbeat failure detectors: the φ accrual
// detector of Hayashibara et al. (2004) as Akka implements it ([Phi]),
// Cassandra's exponential-model variant ([Exponential]), a fixed timeout
// ([Timeout]), and a [Registry] that runs one detector per node for a whole
// cluster with Cassandra's guard against the local process's own pauses.
//
// An accrual detector does not answer "up or down": it reports a suspicion
// level φ, where φ = k means that a heartbeat this late has probability
// about 10^−k under the intervals seen so far (φ = 8: one in a hundred
// million), and the application picks the threshold. SWIM membership,
// which detects failures by probing rather than by heartbeats, lives in
// package detector/swim.
//
// The detectors are pure: they never read the clock. Every call takes the
// current time, so tests and simulations drive them in virtual time.
//
// # Usage
//
//	reg := detector.NewRegistry(func() *detector.Phi {
//		return detector.NewPhi(detector.PhiConfig{AcceptablePause: 3 * time.Second})
//	}, detector.RegistryConfig{})
//
//	// on every heartbeat received:
//	reg.Heartbeat(from, time.Now())
//
//	// every gossip round (say each second):
//	for _, id := range reg.Suspects(time.Now()) {
//		markDown(id)
//	}
//
// One detector alone:
//
//	d := detector.NewPhi(detector.PhiConfig{})
//	d.Heartbeat(now)
//	if !d.Available(later) { ... }
//
// # Guarantees
//
//   - [PhiOf] is Akka's logistic approximation of −log10(1 − Φ(y)), computed
//     stably: never NaN, never negative, non-decreasing in elapsed, and it
//     matches the numeric expectations of Akka's AccrualFailureDetectorSpec.
//   - [Phi] follows Akka's PhiAccrualFailureDetector: φ is 0 before the first
//     heartbeat; the first heartbeat seeds the statistics with FirstHeartbeat
//     ± FirstHeartbeat/4; AcceptablePause is added to the mean; the standard
//     deviation is at least MinStdDev; a node is available while φ is below
//     the threshold; the first heartbeat after a suspicion is not recorded.
//   - [Exponential] follows Cassandra: φ = t / (mean · ln 10); the first
//     heartbeat records FirstHeartbeat; intervals above MaxInterval are not
//     recorded; a node is available while φ is at most the threshold.
//   - For every detector, with no heartbeat arriving, φ never decreases as
//     now advances and a node once suspected stays suspected; a heartbeat
//     dated before the latest one is ignored.
//   - The interval statistics are exact: the window's running sum and sum of
//     squares are integers that never drift, however many heartbeats pass.
//     Intervals are clamped to [0, math.MaxInt64/MaxSamples] (106 days for
//     the default 1000 samples).
//   - Heartbeat, Phi and Available are O(1) and allocate nothing (after a
//     zero-value detector's first heartbeat, which allocates its window).
//     [Registry.Heartbeat] allocates only for a new node, and
//     [Registry.AppendSuspects] only to grow dst.
//   - [Registry.Suspects] returns sorted IDs, and none while the local-pause
//     guard is active: from a tick that comes more than MaxLocalPause after
//     the previous one, until MaxLocalPause later.
//   - Every type is safe for concurrent use.
package detector
