package swim

import (
	"math"
	"slices"
	"time"
)

// suspicion is Lifeguard's dynamic suspicion timer for one suspect member.
//
// The timeout starts at max and shrinks towards min as independent
// confirmations arrive (suspect messages about the same member from other
// nodes), following memberlist's formula:
//
//	timeout(c) = max(min, max - (max-min) * log(c+1) / log(k+1))
//
// where c is the number of distinct confirmations so far and k the number
// expected. With k confirmations the timeout is min; with none, max. The
// logarithm makes the first confirmations count most: each one is strong
// evidence that the suspicion is not a local problem of the suspector. The
// member is declared dead once now >= start + timeout(c).
type suspicion struct {
	start      time.Time
	min, max   time.Duration
	k          int       // confirmations that bring the timeout down to min
	from       string    // the node whose suspicion started the timer
	confirmers []string  // distinct confirmers other than from, at most k
	verifies   int       // verification pings sent after expiry (see Core.verify)
	verifyAt   time.Time // the verdict after the last verification ping
}

// verifyPings bounds the verification pings of a weakly confirmed
// suspicion.
const verifyPings = 3

func newSuspicion(now time.Time, from string, k int, min, max time.Duration) *suspicion {
	if k < 1 || max < min {
		max = min
	}
	return &suspicion{start: now, min: min, max: max, k: k, from: from}
}

// confirm records a suspicion from node and reports whether it was a new,
// counted confirmation.
func (s *suspicion) confirm(node string) bool {
	if len(s.confirmers) >= s.k || node == s.from || slices.Contains(s.confirmers, node) {
		return false
	}
	s.confirmers = append(s.confirmers, node)
	return true
}

// timeout returns the current timeout, rounded down to the millisecond as
// memberlist does.
func (s *suspicion) timeout() time.Duration {
	if s.max == s.min {
		return s.min
	}
	frac := math.Log(float64(len(s.confirmers))+1) / math.Log(float64(s.k)+1)
	raw := float64(s.max) - frac*float64(s.max-s.min)
	t := time.Duration(math.Floor(raw/float64(time.Millisecond))) * time.Millisecond
	return max(t, s.min)
}

// deadline returns when the suspicion expires, or, once verification
// started, when its current verification ping times out.
func (s *suspicion) deadline() time.Time {
	if s.verifies > 0 {
		return s.verifyAt
	}
	return s.start.Add(s.timeout())
}

// suspicionTimeout is the minimum suspicion timeout for a cluster of n live
// members: mult * max(1, log10(n)) * interval (memberlist's).
func suspicionTimeout(mult, n int, interval time.Duration) time.Duration {
	scale := max(1, math.Log10(float64(max(1, n))))
	return time.Duration(float64(mult) * scale * float64(interval))
}

// retransmitLimit is how many times an update is piggybacked in a cluster
// of n live members: mult * ceil(log10(n+1)).
func retransmitLimit(mult, n int) int {
	return mult * int(math.Ceil(math.Log10(float64(n+1))))
}

// pushPullScale stretches the push-pull interval for clusters above 32
// members so that the full-state traffic per node stays bounded
// (memberlist's): interval * (ceil(log2(n) - log2(32)) + 1).
func pushPullScale(interval time.Duration, n int) time.Duration {
	const threshold = 32
	if n <= threshold {
		return interval
	}
	mult := math.Ceil(math.Log2(float64(n))-math.Log2(threshold)) + 1
	return time.Duration(mult) * interval
}
