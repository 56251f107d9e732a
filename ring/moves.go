package ring

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
func (m Move) Contains(h uint64) bool {
	if m.Start < m.End {
		return m.Start < h && h <= m.End
	}
	return h > m.Start || h <= m.End
}

// Moves returns the plan that takes a store from ring from to ring to: the
// maximal hash ranges whose owner differs, in ring order starting with the
// range that holds hash 0. For every hash h, from.LookupHash(h) !=
// to.LookupHash(h) exactly when h lies in one of the ranges, and then that
// range's From and To are the two owners. Adjacent ranges with the same
// From and To are merged. Moves(r, r) is empty. Nil rings are empty rings.
//
// Moves describes primary ownership. For replica sets, compare
// [Ring.ReplicasHash] at the End of each range of the plan between the two
// rings' combined points; the owners of every hash in (Start, End] are those
// of End.
func Moves(from, to *Ring) []Move {
	fh, th := points(from), points(to)
	if len(fh)+len(th) == 0 {
		return nil
	}
	var out []Move
	// Walk the union of both rings' points in increasing order. Each union
	// point b ends the elementary range (previous union point, b], owned in
	// each ring by that ring's first point at or after b.
	var prev uint64
	first := true
	emit := func(start, end uint64, f, t string) {
		if f == t {
			return
		}
		if n := len(out); n > 0 && out[n-1].End == start && out[n-1].From == f && out[n-1].To == t {
			out[n-1].End = end
			return
		}
		out = append(out, Move{Start: start, End: end, From: f, To: t})
	}
	i, j := 0, 0
	var last uint64
	for i < len(fh) || j < len(th) {
		var b uint64
		switch {
		case j == len(th) || (i < len(fh) && fh[i] <= th[j]):
			b = fh[i]
		default:
			b = th[j]
		}
		f, t := ownerAt(from, fh, i), ownerAt(to, th, j)
		if first {
			// The wrapping range (last union point, b] comes first; its Start
			// is known only at the end, so record it provisionally.
			first = false
			last = maxPoint(fh, th)
			emit(last, b, f, t)
		} else {
			emit(prev, b, f, t)
		}
		prev = b
		for i < len(fh) && fh[i] == b {
			i++
		}
		for j < len(th) && th[j] == b {
			j++
		}
	}
	// The wrapping range and the last one may join across zero.
	if n := len(out); n > 1 && out[n-1].End == last && out[0].Start == last &&
		out[0].From == out[n-1].From && out[0].To == out[n-1].To {
		out[0].Start = out[n-1].Start
		out = out[:n-1]
	}
	return out
}

// points returns the ring's sorted point hashes; nil for an empty ring.
func points(r *Ring) []uint64 {
	if r == nil {
		return nil
	}
	return r.hashes
}

// ownerAt returns the owner of point i of r (wrapping past the end), or ""
// for an empty ring.
func ownerAt(r *Ring, hashes []uint64, i int) string {
	if len(hashes) == 0 {
		return ""
	}
	if i == len(hashes) {
		i = 0
	}
	return r.nodes[r.owner[i]].ID
}

// maxPoint returns the largest hash of a and b, at least one non-empty.
func maxPoint(a, b []uint64) uint64 {
	var m uint64
	if len(a) > 0 {
		m = a[len(a)-1]
	}
	if len(b) > 0 {
		m = max(m, b[len(b)-1])
	}
	return m
}
