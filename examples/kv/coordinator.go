package kv

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

// coordinator owns the coordination of clients' reads and writes on a
// node: where a write is coordinated (forwarded to the key's first live
// home replica, or applied here), the local apply, and the rounds of the
// coordinator core ([readRound], [writeRound]) that the replicator
// drives. It is safe for concurrent use.
type coordinator struct {
	self, actor string
	store       *Store
	peers       peers
	place       func() *placement
	rep         *replicator
	leaver      *leaver
	timeout     time.Duration
	hedge       time.Duration
}

// write is [Node.Write] of a validated request.
func (c *coordinator) write(ctx context.Context, key []byte, cctx vclock.VClock, v Version, w int) (Written, error) {
	for {
		p := c.place()
		home, fallbacks := p.of(key)
		if len(home) < w {
			// A ring of fewer nodes than w cannot hold w copies: refused
			// before anything is written, as a read of more is.
			return Written{}, fmt.Errorf("%w: w = %d but the ring has %d replicas of %q", quorum.ErrNoQuorum, w, len(home), key)
		}
		self, leaving := slices.Contains(home, c.self), c.leaver.leaving()
		if !self || leaving || v.IdempotencyKey != "" {
			res, forwarded, err := c.forward(ctx, home, leaving, &request{Op: opCoordinate, Key: key, Context: cctx, Value: v, W: w})
			if forwarded || !self || leaving {
				return res, err
			}
		}
		res, err := c.coordinate(ctx, key, cctx, v, w, home, fallbacks)
		if refusedBy(err, c.self) {
			// Leave began since the check above; the write, which it did
			// not apply, is forwarded as a leaving node's are.
			continue
		}
		return res, err
	}
}

// forward sends the coordination req to the first live home replica of
// its key before this node (all of them when this node is leaving), the
// next one at once when a replica refuses it as a leaving node or the
// request never reached it ([ErrNotDelivered]), and reports
// whether one took it; when none did and this node may not coordinate
// (it is not a home replica, or leaving), the error wraps
// [ErrUnavailable].
func (c *coordinator) forward(ctx context.Context, home []string, leaving bool, req *request) (Written, bool, error) {
	for _, h := range home {
		if h == c.self && !leaving {
			return Written{}, false, nil // this node is the first live home replica
		}
		if h == c.self || !c.peers.Alive(h) {
			continue
		}
		resp, err := c.peers.call(ctx, h, req)
		if refusedBy(err, h) || errors.Is(err, ErrNotDelivered) {
			continue // it applied nothing: the next home replica coordinates
		}
		if err != nil {
			return Written{}, true, fmt.Errorf("%w %s: %w", errCoordinator, h, err)
		}
		return Written{Context: resp.Context, Dot: resp.Dot}, true, nil
	}
	return Written{}, false, fmt.Errorf("%w: home replicas %v", ErrUnavailable, home)
}

// coordinate applies a client's write on this home replica, unless it is
// a retry of one it holds (see [Node.Write]), and has the replicator send
// the key's object to the other home replicas, with hints on fallbacks
// for those that cannot take it, until w replicas (this one included)
// hold it.
//
// The copies leave while this replica's own is being synced, so that a
// write waits for one disk sync rather than two in a row. A crash before
// the sync can lose the write here while another replica holds it; the
// store then reopens under a new incarnation ([Store.Epoch]), whose
// actor numbers its dots afresh, so the lost dot is never handed out
// again. A write with an idempotency key is sent only once it is on disk
// here: its retry must find it here to apply once.
func (c *coordinator) coordinate(ctx context.Context, key []byte, cctx vclock.VClock, v Version, w int, home, fallbacks []string) (Written, error) {
	var (
		o      Object
		dot    vclock.Dot
		copies *fanOut // nil until the copies left
	)
	c.catchUp(ctx, key, cctx, home)
	others := without(home, c.self)
	replicate := func(o Object) {
		copies = c.rep.replicate(ctx, key, o, others, without(fallbacks, c.self), w-1)
	}
	var staged func(Object)
	if len(others) > 0 && v.IdempotencyKey == "" {
		staged = replicate
	}
	err := c.leaver.unlessLeaving(func() (err error) {
		o, dot, _, err = c.store.updateOnce(key, cctx, c.actor, v, staged)
		return err
	})
	if err != nil {
		if copies != nil {
			copies.detach() // they left before the local write failed: they go on
		}
		return Written{}, err
	}
	res := Written{Context: writeContext(o, cctx, dot), Dot: dot}
	if len(others) == 0 {
		return res, nil
	}
	if copies == nil {
		replicate(o)
	}
	if w == 1 {
		copies.detach()
		return res, nil
	}
	if err := copies.wait(ctx); err != nil {
		return res, fmt.Errorf("kv: write of %q: %w", key, err)
	}
	return res, nil
}

// catchUp brings this replica's copy of key up to the client's context
// cctx before a write applies it: when the copy has not seen all of cctx
// (the client read replicas ahead of this one), it merges the copies of
// the other live home replicas, one at a time, each call bounded by the
// node's timeout, until the copy has. A write's context counts only as
// far as the copy has seen it ([Store.Update]), so this keeps a write
// from leaving what its client read as a sibling; a context no replica
// vouches for (forged) costs one read of each home replica and is pruned.
func (c *coordinator) catchUp(ctx context.Context, key []byte, cctx vclock.VClock, home []string) {
	if cctx.Len() == 0 {
		return // a blind write: every copy has seen the empty context
	}
	cur, _, err := c.store.get(key)
	for _, h := range home {
		if err != nil || cur.Context().Descends(cctx) {
			return
		}
		if h == c.self || !c.peers.Alive(h) {
			continue
		}
		callCtx, cancel := context.WithTimeout(ctx, c.timeout)
		resp, cerr := c.peers.call(callCtx, h, &request{Op: opRead, Key: key})
		cancel()
		if cerr == nil && resp.Found {
			cur, err = c.store.mergeOwned(key, resp.Object) // decoded for this call alone
		}
	}
}

// writeContext returns the context a write with the client's context
// cctx and the dot dot answers with, given the key's object o after it:
// what cctx covered of o's history plus dot, as Riak answers a write, so
// that a later write with it replaces the write and what its client
// read, and nothing else. A clock cannot cover dot without covering the
// same writer's lower dots, so when o holds a sibling that would be
// covered that way (another client's concurrent write through the same
// coordinator), the context leaves dot out: the next write keeps this
// one as a sibling instead of dropping a value its client never saw.
func writeContext(o Object, cctx vclock.VClock, dot vclock.Dot) vclock.VClock {
	read := seen(o, cctx)
	with := read.Clone()
	with.Add(dot)
	for d := range o.Dotted() {
		if d != dot && with.Contains(d) {
			return read
		}
	}
	return with
}

// read is [Node.Get] of a validated request.
func (c *coordinator) read(ctx context.Context, key []byte, r int) (Result, error) {
	p := c.place()
	home, _ := p.of(key)
	rd, first := newReadRound(time.Now(), readTargets(p, key, c.self, c.peers.Alive), r, c.timeout, c.hedge)
	c.rep.drive(ctx, rd, first, func(call) *request { return &request{Op: opRead, Key: key} })
	merged, stale, err := rd.Result(home)
	if err != nil {
		return Result{}, fmt.Errorf("kv: read of %q: %w", key, err)
	}
	c.rep.repair(ctx, key, merged, stale)
	return Result{Values: Live(merged), Context: merged.Context()}, nil
}
