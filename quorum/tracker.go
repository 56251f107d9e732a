package quorum

import (
	"math"
	"slices"
	"sync"
	"time"
)

// trackerWindow is the number of latest latencies a [Tracker] keeps per
// replica; its quantiles describe them.
const trackerWindow = 256

// MinSamples is the number of latencies a [Tracker] needs from a replica
// before [Tracker.Quantile] reports a quantile for it, and so before
// [HedgeAt] hedges a call to it.
const MinSamples = 20

// Tracker records, per replica, the calls in flight and the latencies of
// recent calls, across Gathers: [Track] makes [Gather] record into it,
// [Prefer] orders replicas by it and [HedgeAt] derives its hedge delays
// from it. It also holds the hedge budget of HedgeAt. Latencies are kept
// for the latest 256 calls of each replica.
//
// The zero Tracker is ready to use; a Tracker is safe for concurrent use
// and must not be copied after first use. Its memory grows with the number
// of distinct replica names it sees, about 2 KiB each; use one Tracker per
// set of replicas that comes and goes together (a cluster) and replace it
// when membership changes much.
type Tracker struct {
	mu       sync.Mutex
	replicas map[string]*replicaStats
	tokens   float64 // HedgeAt's allowance: hedges it may still start, less hedgeBurst
}

type replicaStats struct {
	inFlight int
	n        int                          // latencies recorded in all
	window   [trackerWindow]time.Duration // the latest, cyclically at n % trackerWindow
	ewma     float64                      // nanoseconds, weight 1/8 to the latest
	sorted   []time.Duration              // the window, sorted, or nil when stale
}

// stats returns the entry of replica, creating it. t.mu must be held.
func (t *Tracker) stats(replica string) *replicaStats {
	s := t.replicas[replica]
	if s == nil {
		if t.replicas == nil {
			t.replicas = map[string]*replicaStats{}
		}
		s = new(replicaStats)
		t.replicas[replica] = s
	}
	return s
}

// begin counts a call to replica in flight.
func (t *Tracker) begin(replica string) {
	t.mu.Lock()
	t.stats(replica).inFlight++
	t.mu.Unlock()
}

// end counts a call to replica as returned, and records its latency d if
// record is set.
func (t *Tracker) end(replica string, d time.Duration, record bool) {
	t.mu.Lock()
	s := t.stats(replica)
	s.inFlight--
	if record {
		s.observe(d)
	}
	t.mu.Unlock()
}

// Observe records that a call to replica took d, as [Gather] does for the
// calls it tracks. A negative d counts as 0.
func (t *Tracker) Observe(replica string, d time.Duration) {
	t.mu.Lock()
	t.stats(replica).observe(max(d, 0))
	t.mu.Unlock()
}

func (s *replicaStats) observe(d time.Duration) {
	if s.n == 0 {
		s.ewma = float64(d)
	} else {
		s.ewma += (float64(d) - s.ewma) / 8
	}
	s.window[s.n%trackerWindow] = d
	s.n++
	s.sorted = s.sorted[:0] // stale; the memory is reused
}

// InFlight returns the number of tracked calls to replica that have
// started and not returned.
func (t *Tracker) InFlight(replica string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s := t.replicas[replica]; s != nil {
		return s.inFlight
	}
	return 0
}

// Quantile returns the q-quantile (0 <= q <= 1, nearest rank) of the
// latest latencies of replica, and false when fewer than [MinSamples] were
// recorded or q is outside [0, 1].
func (t *Tracker) Quantile(replica string, q float64) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.replicas[replica]
	if s == nil || s.n < MinSamples || !(q >= 0 && q <= 1) {
		return 0, false
	}
	return s.quantile(q), true
}

// quantile is Quantile for a replica with samples; t.mu must be held. The
// sorted window is kept until the next latency arrives.
func (s *replicaStats) quantile(q float64) time.Duration {
	if len(s.sorted) == 0 {
		k := min(s.n, trackerWindow)
		s.sorted = append(s.sorted[:0], s.window[:k]...)
		slices.Sort(s.sorted)
	}
	rank := int(math.Ceil(q*float64(len(s.sorted)))) - 1
	return s.sorted[max(rank, 0)]
}

// order sorts idx, indexes into replicas, by calls in flight and then by
// recent latency (an exponentially weighted mean), fewest and fastest
// first; replicas without latencies count as fastest, so that they are
// tried. The sort is stable, so ties keep their order.
func (t *Tracker) order(replicas []string, idx []int) {
	type key struct {
		inFlight int
		latency  float64
	}
	t.mu.Lock()
	keys := make([]key, len(replicas))
	for i, r := range replicas {
		if s := t.replicas[r]; s != nil {
			keys[i] = key{s.inFlight, s.ewma}
		}
	}
	t.mu.Unlock()
	slices.SortStableFunc(idx, func(a, b int) int {
		ka, kb := keys[a], keys[b]
		if ka.inFlight != kb.inFlight {
			return ka.inFlight - kb.inFlight
		}
		switch {
		case ka.latency < kb.latency:
			return -1
		case ka.latency > kb.latency:
			return 1
		}
		return 0
	})
}

// hedgeDelay returns the longest q-quantile of the latencies of replicas,
// and false if one of them has fewer than MinSamples.
func (t *Tracker) hedgeDelay(replicas []string, q float64) (time.Duration, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var d time.Duration
	for _, r := range replicas {
		s := t.replicas[r]
		if s == nil || s.n < MinSamples {
			return 0, false
		}
		d = max(d, s.quantile(q))
	}
	return d, true
}

// HedgeBurst is the reserve of the hedge allowance of a [Tracker]: it
// starts with HedgeBurst hedges and never holds more than HedgeBurst plus
// one Gather's budget, so that a burst of slow calls can be hedged without
// exceeding the budget over a long run by more than HedgeBurst hedges.
const HedgeBurst = 10

// earn adds budget to the hedges that may start.
func (t *Tracker) earn(budget float64) {
	t.mu.Lock()
	t.tokens = min(t.tokens+budget, budget)
	t.mu.Unlock()
}

// spend takes one hedge from the allowance, if it holds one; the margin
// absorbs the rounding of sums such as ten times 0.1.
func (t *Tracker) spend() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tokens+HedgeBurst < 1-1e-9 {
		return false
	}
	t.tokens--
	return true
}
