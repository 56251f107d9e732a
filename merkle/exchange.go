package merkle

import (
	"context"
	"errors"
	"fmt"
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
	width := 1 // hashes per requested branch
	if q.Kind == KindSegments {
		width = t.cfg.SegmentsPerBranch
	}
	total := 0
	for _, s := range q.Spans {
		if s.Start+s.Len > t.cfg.Branches {
			return nil, fmt.Errorf("%w: branches %+v of %d", ErrBadRequest, s, t.cfg.Branches)
		}
		total += s.Len * width
	}
	if total > MaxHashes {
		return nil, fmt.Errorf("%w: %d hashes exceed %d", ErrBadRequest, total, MaxHashes)
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
	}
	return resp.MarshalMsgpack()
}

// DiffResult is the outcome of [Diff]. The zero DiffResult is an exchange
// that moved nothing and found nothing. It is a plain value.
type DiffResult struct {
	// Segments are the segments whose hashes differ, in increasing order:
	// every key present or valued differently on one side only lies in
	// one of them.
	Segments []int
	// Bytes is the number of encoded bytes moved: the sum of the lengths
	// of every request sent and every response received.
	Bytes int
	// Calls is the number of round trips made.
	Calls int
}

// Diff compares local with the remote tree behind peer, level by level,
// and returns the segments whose hashes differ. It fetches the remote root;
// if the roots differ, every branch hash (in requests of at most
// [MaxHashes] hashes); then the segment hashes of the differing branches
// only. The bytes moved are thus constant (about 8 × Branches) plus
// 8 × SegmentsPerBranch per differing branch: they grow with the number of
// differences, never with the number of keys.
//
// Two trees whose roots are equal are taken to be equal: for random
// divergences the chance of a wrong answer at any level is 2⁻⁶⁴.
//
// Diff returns an error wrapping [ErrConfigMismatch] if the remote tree has
// another config, [ErrMalformed] if a response does not decode,
// [ErrBadResponse] if it does not answer its request, and any error of
// peer.Call (such as ctx.Err()). The result carries the bytes moved so far
// even with an error. Diff reads local: it must not overlap writes to
// local.
func Diff(ctx context.Context, local *Tree, peer Peer) (DiffResult, error) {
	x := exchange{ctx: ctx, local: local, peer: peer}
	root, err := x.call(Request{Kind: KindRoot}, 1)
	if err != nil || root[0] == local.root {
		return x.res, err
	}
	var dirty []int // branches
	for start := 0; start < local.cfg.Branches; start += MaxHashes {
		span := Span{Start: start, Len: min(MaxHashes, local.cfg.Branches-start)}
		hashes, err := x.call(Request{Kind: KindBranches, Spans: []Span{span}}, span.Len)
		if err != nil {
			return x.res, err
		}
		dirty = differing(dirty, start, local.branches[start:start+span.Len], hashes)
	}
	width := local.cfg.SegmentsPerBranch
	batch := MaxHashes / width
	for i := 0; i < len(dirty); i += batch {
		branches := dirty[i:min(i+batch, len(dirty))]
		hashes, err := x.call(Request{Kind: KindSegments, Spans: spansOf(branches)}, len(branches)*width)
		if err != nil {
			return x.res, err
		}
		for j, b := range branches {
			lo := b * width
			x.res.Segments = differing(x.res.Segments, lo, local.segments[lo:lo+width], hashes[j*width:(j+1)*width])
		}
	}
	return x.res, nil
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
