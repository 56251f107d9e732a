package ring

import "slices"

// Move is one step of a rebalancing plan: the keys whose hash lies in the
// range (Start, End] change primary owner from From to To. A range with
// Start >= End wraps around zero: it holds the hashes above Start and those
// at or below End; Start == End is the whole circle. From is "" when the old
// ring is empty and To is "" when the new ring is empty.
type Move struct {
	Start, End uint64
	From, To   string
}

// Contains reports whether hash h lies in the move's range.
func (m Move) Contains(h uint64) bool { return inRange(m.Start, m.End, h) }

// ReplicaMove is one step of a rebalancing plan for replica sets: the keys
// whose hash lies in (Start, End] (wrapping as for [Move]) had the
// preference list From and have To. The nodes of To missing from From must
// receive the range; those of From missing from To may drop it.
type ReplicaMove struct {
	Start, End uint64
	From, To   []string
}

// Contains reports whether hash h lies in the move's range.
func (m ReplicaMove) Contains(h uint64) bool { return inRange(m.Start, m.End, h) }

func inRange(start, end, h uint64) bool {
	if start < end {
		return start < h && h <= end
	}
	return h > start || h <= end
}

// Moves returns the plan that takes a store from ring from to ring to: the
// maximal hash ranges whose primary owner differs, in ring order starting
// with the range that holds hash 0. For every hash h, from.LookupHash(h) !=
// to.LookupHash(h) exactly when h lies in one of the ranges, and then that
// range's From and To are the two owners. Adjacent ranges with the same
// From and To are merged. Moves(r, r) is empty; nil rings are empty rings.
// It costs O(points) of both rings.
func Moves(from, to *Ring) []Move {
	spans := plan(from, to, func(end uint64) (Move, bool) {
		m := Move{From: from.LookupHash(end), To: to.LookupHash(end)}
		return m, m.From != m.To
	}, func(a, b Move) bool { return a.From == b.From && a.To == b.To })
	out := make([]Move, len(spans))
	for i, s := range spans {
		out[i] = s.label
		out[i].Start, out[i].End = s.start, s.end
	}
	return out
}

// ReplicaMoves is [Moves] for replica sets of size n: the maximal hash
// ranges whose set of n replicas ([Ring.Replicas]) differs between the
// rings, with both preference lists. A range whose list only changes order
// moves no data and is not listed. For every hash h, the sets of
// from.ReplicasHash(h, n) and to.ReplicasHash(h, n) differ exactly when h
// lies in one of the ranges.
func ReplicaMoves(from, to *Ring, n int) []ReplicaMove {
	spans := plan(from, to, func(end uint64) (ReplicaMove, bool) {
		m := ReplicaMove{From: from.ReplicasHash(end, n, nil), To: to.ReplicasHash(end, n, nil)}
		return m, !sameSet(m.From, m.To)
	}, func(a, b ReplicaMove) bool { return slices.Equal(a.From, b.From) && slices.Equal(a.To, b.To) })
	out := make([]ReplicaMove, len(spans))
	for i, s := range spans {
		out[i] = s.label
		out[i].Start, out[i].End = s.start, s.end
	}
	return out
}

// sameSet reports whether a and b, each without duplicates, hold the same
// IDs.
func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

type span[L any] struct {
	start, end uint64
	label      L
}

// plan labels the elementary ranges between the union of both rings'
// points, keeps those for which label reports true, and merges neighbours
// with equal labels. Owners are constant on an elementary range (b', b] and
// equal to those of b, so label is given b alone. The first span is the
// one that holds hash 0.
func plan[L any](from, to *Ring, label func(end uint64) (L, bool), equal func(a, b L) bool) []span[L] {
	var fh, th []uint64
	if from != nil {
		fh = from.hashes
	}
	if to != nil {
		th = to.hashes
	}
	if len(fh)+len(th) == 0 {
		return nil
	}
	last := uint64(0)
	if len(fh) > 0 {
		last = fh[len(fh)-1]
	}
	if len(th) > 0 {
		last = max(last, th[len(th)-1])
	}
	var out []span[L]
	prev := last // the first elementary range wraps: (last, first point]
	for i, j := 0, 0; i < len(fh) || j < len(th); {
		var b uint64
		if j == len(th) || (i < len(fh) && fh[i] <= th[j]) {
			b = fh[i]
		} else {
			b = th[j]
		}
		for i < len(fh) && fh[i] == b {
			i++
		}
		for j < len(th) && th[j] == b {
			j++
		}
		l, keep := label(b)
		start := prev
		prev = b
		if !keep {
			continue
		}
		if n := len(out); n > 0 && out[n-1].end == start && equal(out[n-1].label, l) {
			out[n-1].end = b
			continue
		}
		out = append(out, span[L]{start, b, l})
	}
	// The first range and the last may join across zero.
	if n := len(out); n > 1 && out[0].start == last && out[n-1].end == last && equal(out[0].label, out[n-1].label) {
		out[0].start = out[n-1].start
		out = out[:n-1]
	}
	return out
}
