package merkle

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrBadRequest is returned by [Serve] for a well-formed request the tree
// cannot answer: a branch beyond the tree, or an answer of more than
// [MaxHashes] hashes.
var ErrBadRequest = errors.New("merkle: request out of range")

// ErrBadResponse is returned by [Diff] when a response does not answer the
// request it was sent for (another kind or the wrong number of hashes).
var ErrBadResponse = errors.New("merkle: response does not answer the request")

// Peer is the transport's side of an exchange: Call delivers one encoded
// [Request] to the remote replica, which answers it with [Serve] on its
// tree, and returns the encoded [Response]. The transport only moves bytes;
// it may add framing, authentication or compression of its own.
//
// Call must honour ctx. Diff makes its calls one at a time, so an
// implementation need not be safe for concurrent use by one Diff.
type Peer interface {
	Call(ctx context.Context, req []byte) (resp []byte, err error)
}

// PeerFunc adapts a function to the [Peer] interface; it is as safe for
// concurrent use as the function.
type PeerFunc func(ctx context.Context, req []byte) ([]byte, error)

// Call returns f(ctx, req).
func (f PeerFunc) Call(ctx context.Context, req []byte) ([]byte, error) { return f(ctx, req) }

var _ Peer = PeerFunc(nil)

// Loopback returns a [Peer] that serves every request from t in process,
// through the full encoding: for tests, and to diff two local trees with
// byte counts. It returns ctx.Err() once ctx is done. The usual rule
// applies: t must not be written while a call runs.
func Loopback(t *Tree) Peer {
	return PeerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return Serve(t, req)
	})
}

// Serve answers the encoded [Request] req from t and returns the encoded
// [Response]: the whole serving side of an exchange. It returns an error
// wrapping [ErrMalformed] when req does not decode, and one wrapping
// [ErrBadRequest] when it names branches beyond t or asks for more than
// [MaxHashes] hashes. The cost is proportional to the answer. Serve reads
// t: it must not overlap writes to t.
func Serve(t *Tree, req []byte) ([]byte, error) {
	var q Request
	if err := q.UnmarshalMsgpack(req); err != nil {
		return nil, err
	}
	t = t.read()
	width, units := 1, t.cfg.Branches // hashes per span element; elements in the tree
	switch q.Kind {
	case KindSegments:
		width = t.cfg.SegmentsPerBranch
	case KindRanges:
		if q.Shift > int(t.segBits) {
			return nil, fmt.Errorf("%w: ranges of 2^%d segments in a tree of 2^%d", ErrBadRequest, q.Shift, t.segBits)
		}
		units = 1 << (t.segBits - uint(q.Shift))
	}
	total := 0
	for _, s := range q.Spans {
		if s.Start+s.Len > units {
			return nil, fmt.Errorf("%w: %v %+v of %d", ErrBadRequest, q.Kind, s, units)
		}
		total += s.Len * width
	}
	if total > MaxHashes {
		return nil, fmt.Errorf("%w: %d hashes exceed %d", ErrBadRequest, total, MaxHashes)
	}
	if q.Kind == KindRanges && total*t.rangeCost(q.Shift) > MaxCells {
		return nil, fmt.Errorf("%w: %d ranges of 2^%d segments read more than %d hashes", ErrBadRequest, total, q.Shift, MaxCells)
	}
	resp := Response{Kind: q.Kind, Config: t.cfg}
	switch q.Kind {
	case KindRoot:
		resp.Hashes = []uint64{t.root}
	case KindBranches:
		resp.Hashes = make([]uint64, 0, total)
		for _, s := range q.Spans {
			resp.Hashes = append(resp.Hashes, t.branches[s.Start:s.Start+s.Len]...)
		}
	case KindSegments:
		resp.Hashes = make([]uint64, 0, total)
		for _, s := range q.Spans {
			resp.Hashes = append(resp.Hashes, t.segments[s.Start*width:(s.Start+s.Len)*width]...)
		}
	case KindRanges:
		resp.Hashes = make([]uint64, 0, total)
		for _, s := range q.Spans {
			for r := s.Start; r < s.Start+s.Len; r++ {
				resp.Hashes = append(resp.Hashes, t.rangeHash(q.Shift, r))
			}
		}
	}
	return resp.MarshalMsgpack()
}

// MaxCells bounds the work of one [KindRanges] request: the stored hashes
// (segments, or branches for ranges of whole branches) [Serve] XORs to
// answer it. [Diff] splits its requests to stay within it.
const MaxCells = 1 << 20

// rangeCost is the number of stored hashes rangeHash reads for one range
// of 2^shift segments.
func (t *Tree) rangeCost(shift int) int {
	if s := uint(shift); s >= t.branchShift {
		return 1 << (s - t.branchShift)
	}
	return 1 << shift
}

// rangeHash returns the XOR of segments [r·2^shift, (r+1)·2^shift), from
// the branch hashes when the range covers whole branches.
func (t *Tree) rangeHash(shift, r int) uint64 {
	cells, width := t.segments, 1<<shift
	if s := uint(shift); s >= t.branchShift {
		cells, width = t.branches, 1<<(s-t.branchShift)
	}
	var h uint64
	for _, c := range cells[r*width : (r+1)*width] {
		h ^= c
	}
	return h
}

// DiffResult is the outcome of [Diff], [DiffPage] or [Confirm]. The zero
// DiffResult is an exchange that moved nothing and found nothing. It is a
// plain value.
type DiffResult struct {
	// Segments are the segments whose hashes differ, in increasing order:
	// every key present or valued differently on one side only lies in
	// one of them (for DiffPage, from its first segment on, up to its
	// limit).
	Segments []int
	// Next is, for [DiffPage], the segment to resume from: the one after
	// the last of Segments when the limit cut the search short, 0 when
	// every segment from the first asked for was searched.
	Next int
	// Bytes is the number of encoded bytes moved: the sum of the lengths
	// of every request sent and every response received.
	Bytes int
	// Calls is the number of round trips made.
	Calls int
}

// fanBits is log2 of the fan-out of [Diff]'s descent: each differing range
// is split into 16 ranges at the next level.
const fanBits = 4

// Diff compares local with the remote tree behind peer, top down, and
// returns the segments whose hashes differ. It fetches the remote root;
// if the roots differ, it descends by ranges of segments ([KindRanges]):
// the first level splits the tree into 16 to 128 ranges, and each next
// level splits every differing range into 16, down to single segments. A
// range's hash is the XOR of its segments, computed on each side from the
// branch or segment hashes, so the tree stores nothing more. With d
// differing segments the exchange costs about 128·d bytes per level and
// ceil(log16(segments)) + 1 round trips (5 for 131,072 segments): it grows
// with the number of differences, never with the number of keys, and
// where keys are inserted or deleted no position shifts, unlike the leaf
// indices of an RFC 6962 log.
//
// Two trees whose roots are equal are taken to be equal: for random
// divergences the chance of a wrong answer at any level is 2⁻⁶⁴.
//
// Diff has no cap: against an empty replica it returns every non-empty
// segment. Use [DiffPage] to bound each round.
//
// Diff returns an error wrapping [ErrConfigMismatch] if the remote tree has
// another config, [ErrMalformed] if a response does not decode,
// [ErrBadResponse] if it does not answer its request, and any error of
// peer.Call (such as ctx.Err()). The result carries the bytes moved so far
// even with an error. Diff reads local: it must not overlap writes to
// local.
func Diff(ctx context.Context, local *Tree, peer Peer) (DiffResult, error) {
	return DiffPage(ctx, local, peer, 0, math.MaxInt)
}

// DiffPage is [Diff] in rounds of bounded size, as Riak's TicTac AAE
// repairs at most 128 segments per exchange: it returns at most limit
// differing segments, the first ones from segment from on, and in Next
// the segment to resume from (0 when none is left). Each level of its
// descent expands at most limit differing ranges, the first ones, which
// hold the first limit differing segments; so a round costs at most about
// 128·limit bytes per level whatever the trees, and against an empty
// replica with a million segments a round of 128 moves about 50 KiB
// instead of Diff's 8 MiB and more. Ranges wholly before from count as
// equal; the one range per level that holds from is expanded besides the
// limit, since it may differ only before from.
//
// A limit below 1 or a from outside [0, segments) returns no segment and
// makes no call. Its errors are those of Diff.
func DiffPage(ctx context.Context, local *Tree, peer Peer, from, limit int) (DiffResult, error) {
	local = local.read()
	x := exchange{ctx: ctx, local: local, peer: peer}
	segBits := int(local.segBits)
	if limit < 1 || from < 0 || from >= 1<<segBits {
		return x.res, nil
	}
	root, err := x.call(Request{Kind: KindRoot}, 1)
	if err != nil || root[0] == local.root {
		return x.res, err
	}
	dirty, shift := []int{0}, segBits // ranges at shift that differ
	for shift > 0 {
		// The largest multiple of fanBits at least fanBits below shift:
		// fan-out 16 to 128 at the first level, 16 below.
		next := max(0, (shift-fanBits)/fanBits*fanBits)
		fan := 1 << (shift - next)
		var children []int // ranges at next, in increasing order
		for _, p := range dirty {
			for c := p * fan; c < (p+1)*fan; c++ {
				if (c+1)<<next > from {
					children = append(children, c)
				}
			}
		}
		if dirty, err = x.differing(next, children, from, limit); err != nil {
			return x.res, err
		}
		shift = next
	}
	x.res.Segments = dirty
	if len(dirty) == limit && dirty[limit-1]+1 < 1<<segBits {
		x.res.Next = dirty[limit-1] + 1
	}
	return x.res, nil
}

// Confirm re-checks segments, found by an earlier [Diff] or [DiffPage],
// against the remote tree and returns those that still differ: TicTac
// AAE's confirm step, which drops the segments that differed only because
// a write was still on its way to one replica when the first exchange ran.
// Repair only the confirmed segments. It costs one round trip of about 16
// bytes per segment. Segments outside the tree are an error wrapping
// [ErrBadRequest]; the other errors are those of Diff.
func Confirm(ctx context.Context, local *Tree, peer Peer, segments []int) (DiffResult, error) {
	local = local.read()
	x := exchange{ctx: ctx, local: local, peer: peer}
	sorted := slices.Compact(slices.Sorted(slices.Values(segments)))
	if len(sorted) > 0 && (sorted[0] < 0 || sorted[len(sorted)-1] >= 1<<local.segBits) {
		return x.res, fmt.Errorf("%w: segments %d to %d of %d", ErrBadRequest, sorted[0], sorted[len(sorted)-1], 1<<local.segBits)
	}
	var err error
	x.res.Segments, err = x.differing(0, sorted, 0, math.MaxInt)
	return x.res, err
}

// differing fetches the remote hashes of ranges (increasing) at shift, in
// requests within MaxHashes hashes and MaxCells cells, and returns the
// first of them whose hashes differ from local's: limit of those that
// start at segment from or later, and the one before that holds from, if
// it differs (it may differ only before from).
func (x *exchange) differing(shift int, ranges []int, from, limit int) ([]int, error) {
	var out []int
	counted := 0 // ranges of out that start at from or later
	batch := min(MaxHashes, MaxCells/x.local.rangeCost(shift))
	for i := 0; i < len(ranges) && counted < limit; i += batch {
		rs := ranges[i:min(i+batch, len(ranges))]
		hashes, err := x.call(Request{Kind: KindRanges, Spans: spansOf(rs), Shift: shift}, len(rs))
		if err != nil {
			return out, err
		}
		for j, r := range rs {
			if counted == limit {
				break
			}
			if hashes[j] != x.local.rangeHash(shift, r) {
				out = append(out, r)
				if r<<shift >= from {
					counted++
				}
			}
		}
	}
	return out, nil
}

// exchange is the state of one Diff.
type exchange struct {
	ctx   context.Context
	local *Tree
	peer  Peer
	res   DiffResult
}

// call sends req, counts the bytes, and returns the response's hashes,
// checked to be want hashes of the right kind from a tree like local.
func (x *exchange) call(req Request, want int) ([]uint64, error) {
	out, err := req.MarshalMsgpack()
	if err != nil {
		return nil, err
	}
	x.res.Calls++
	x.res.Bytes += len(out)
	in, err := x.peer.Call(x.ctx, out)
	x.res.Bytes += len(in)
	if err != nil {
		return nil, err
	}
	var resp Response
	if err := resp.UnmarshalMsgpack(in); err != nil {
		return nil, err
	}
	if resp.Config != x.local.cfg {
		return nil, fmt.Errorf("%w: local %+v, remote %+v", ErrConfigMismatch, x.local.cfg, resp.Config)
	}
	if resp.Kind != req.Kind || len(resp.Hashes) != want {
		return nil, fmt.Errorf("%w: %d %v hashes for %d %v", ErrBadResponse, len(resp.Hashes), resp.Kind, want, req.Kind)
	}
	return resp.Hashes, nil
}

// spansOf returns the spans covering the increasing indices idx.
func spansOf(idx []int) []Span {
	var spans []Span
	for _, i := range idx {
		if n := len(spans); n > 0 && spans[n-1].Start+spans[n-1].Len == i {
			spans[n-1].Len++
		} else {
			spans = append(spans, Span{Start: i, Len: 1})
		}
	}
	return spans
}
