package detector

import (
	"math"
	"math/bits"
	"time"
)

// window is a fixed-capacity ring buffer of heartbeat intervals with a
// running sum and sum of squares, so that adding an interval (and evicting
// the oldest) and reading the mean and variance are O(1) and allocate
// nothing.
//
// The sums are exact integers: every interval is clamped to
// [0, math.MaxInt64/cap], so the sum fits in a uint64 and count times the
// sum of squares fits in 128 bits. The variance is therefore computed from
// n·Σx² − (Σx)², exact until the final conversion to float64, and the sums
// never drift however many intervals pass through the window.
//
// A window is not safe for concurrent use; its owner locks.
type window struct {
	ring []int64 // len == capacity; the live samples are the n before next
	next int     // where the next sample goes
	n    int     // live samples, ≤ len(ring)
	max  int64   // largest interval accepted, math.MaxInt64/len(ring)
	sum  uint64  // Σx
	sqHi uint64  // Σx², high 64 bits
	sqLo uint64  // Σx², low 64 bits
}

func newWindow(capacity int) window {
	return window{ring: make([]int64, capacity), max: math.MaxInt64 / int64(capacity)}
}

// add appends an interval, evicting the oldest when the window is full.
// Negative intervals count as 0 and intervals above w.max as w.max.
func (w *window) add(d time.Duration) {
	x := min(max(int64(d), 0), w.max)
	if w.n == len(w.ring) {
		old := uint64(w.ring[w.next])
		w.sum -= old
		hi, lo := bits.Mul64(old, old)
		var borrow uint64
		w.sqLo, borrow = bits.Sub64(w.sqLo, lo, 0)
		w.sqHi, _ = bits.Sub64(w.sqHi, hi, borrow)
	} else {
		w.n++
	}
	w.ring[w.next] = x
	w.next++
	if w.next == len(w.ring) {
		w.next = 0
	}
	u := uint64(x)
	w.sum += u
	hi, lo := bits.Mul64(u, u)
	var carry uint64
	w.sqLo, carry = bits.Add64(w.sqLo, lo, 0)
	w.sqHi, _ = bits.Add64(w.sqHi, hi, carry)
}

// mean returns the mean interval in nanoseconds; 0 for an empty window.
func (w *window) mean() float64 {
	if w.n == 0 {
		return 0
	}
	return float64(w.sum) / float64(w.n)
}

// variance returns the population variance of the intervals in
// nanoseconds squared (Σx²/n − mean², as Akka computes it); 0 for an empty
// window.
func (w *window) variance() float64 {
	if w.n == 0 {
		return 0
	}
	n := uint64(w.n)
	// n·Σx²: Σx² < 2^128/n by the clamp, so the product fits in 128 bits.
	hi1, lo := bits.Mul64(w.sqLo, n)
	hi := w.sqHi*n + hi1
	// (Σx)², which Cauchy–Schwarz keeps ≤ n·Σx².
	shi, slo := bits.Mul64(w.sum, w.sum)
	var borrow uint64
	lo, borrow = bits.Sub64(lo, slo, 0)
	hi, _ = bits.Sub64(hi, shi, borrow)
	nf := float64(n)
	return (float64(hi)*0x1p64 + float64(lo)) / (nf * nf)
}

// stdDev returns the population standard deviation in nanoseconds.
func (w *window) stdDev() float64 { return math.Sqrt(w.variance()) }

// history is what a detector keeps of one node's heartbeats: the window of
// intervals, the time of the latest heartbeat and whether one has arrived.
// It is not safe for concurrent use; its owner locks.
type history struct {
	w         window
	last      time.Time
	monitored bool
}

// record notes a heartbeat at now. The first heartbeat adds the intervals
// seed to the window; a later one adds the interval since the latest if
// accept; one dated before the latest is ignored.
func (h *history) record(now time.Time, accept bool, seed ...time.Duration) {
	switch {
	case !h.monitored:
		h.monitored = true
		for _, d := range seed {
			h.w.add(d)
		}
	case now.Before(h.last):
		return
	case accept:
		h.w.add(now.Sub(h.last))
	}
	h.last = now
}

// since returns the time from the latest heartbeat to now (0 if now is
// before it), and false before the first heartbeat.
func (h *history) since(now time.Time) (time.Duration, bool) {
	return max(now.Sub(h.last), 0), h.monitored
}
