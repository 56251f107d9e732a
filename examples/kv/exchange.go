package kv

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/distkit/distkit/merkle"
)

// antiEntropy is [Node.AntiEntropy].
func (m *maintainer) antiEntropy(ctx context.Context, peer string) (repaired, moved int, err error) {
	defer m.metrics.exchanged(peer, time.Now(), &repaired, &moved, &err)
	var groups []string
	for _, g := range m.place().groups {
		if inGroup(g, peer) && inGroup(g, m.self) {
			groups = append(groups, g)
		}
	}
	t := &m.progress.antiEntropy
	t.begin(int64(len(groups)*m.segments()), "peer", peer)
	var errs []error
	for _, g := range groups {
		k, b, err := m.exchange(ctx, peer, g)
		repaired, moved = repaired+k, moved+b
		if err != nil {
			// The other groups go on: one failing (a peer's page refused,
			// a timeout) must not keep every other from being repaired.
			errs = append(errs, fmt.Errorf("group %s: %w", g, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	m.stats.keysRepaired.Add(int64(repaired))
	if err = errors.Join(errs...); err != nil {
		err = fmt.Errorf("kv: anti-entropy with %s: %w", peer, err)
	} else {
		m.progress.exchanged(peer, time.Now())
	}
	t.end(err, "peer", peer)
	return repaired, moved, err
}

// segments returns the number of segments of every tree.
func (m *maintainer) segments() int {
	c := m.store.tree.Config()
	return c.Branches * c.SegmentsPerBranch
}

// exchange repairs group g with peer in rounds: each finds the next at
// most PageSegments differing segments ([merkle.DiffPage]) and repairs
// them page by page ([maintainer.repair]). It holds a copy of the tree
// (taken when it starts) and a few pages in memory, whatever the data.
func (m *maintainer) exchange(ctx context.Context, peer, g string) (repaired, moved int, err error) {
	tree := m.store.Trees().Tree(g)
	remote := merkle.PeerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		resp, err := m.callPage(ctx, peer, &request{Op: opTree, Group: g, Tree: req})
		return resp.Tree, err
	})
	t := &m.progress.antiEntropy
	for from := 0; ; {
		res, err := merkle.DiffPage(ctx, tree, remote, from, m.cfg.PageSegments)
		moved += res.Bytes
		if err == nil {
			err = m.aeRate.wait(ctx, res.Bytes)
		}
		if err != nil {
			return repaired, moved, err
		}
		if len(res.Segments) > 0 {
			k, b, err := m.repair(ctx, peer, g, res.Segments)
			repaired, moved = repaired+k, moved+b
			if err != nil {
				return repaired, moved, err
			}
		}
		// Next is computed here, past the last segment found: the rounds
		// advance whatever the peer answers.
		next := cmp.Or(res.Next, m.segments())
		t.advance(int64(next-from), 0, int64(res.Bytes), "peer", peer)
		if res.Next == 0 {
			return repaired, moved, nil
		}
		from = res.Next
	}
}

// callPage makes one call of an exchange, within the page timeout.
func (m *maintainer) callPage(ctx context.Context, peer string, req *request) (response, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.PageTimeout)
	defer cancel()
	return m.peers.call(ctx, peer, req)
}

// repair repairs the keys of group g in segments (increasing) with peer:
// it walks this node's keys and the peer's in those segments side by side,
// in segment and key order, a page of each at a time, sends the peer in
// batches the objects it lacks or holds differently, and merges in
// batches those this node lacks or holds differently. It returns how
// many keys differed and the bytes of the pages fetched and sent, and
// counts them in the progress of anti-entropy as it goes. Its memory is
// four pages: one of each side, one batch of each direction.
func (m *maintainer) repair(ctx context.Context, peer, g string, segments []int) (repaired, moved int, err error) {
	limit := m.cfg.PageBytes
	counted := 0 // repaired keys counted in the progress
	count := func(bytes int) {
		moved += bytes
		m.progress.antiEntropy.advance(0, int64(repaired-counted), int64(bytes), "peer", peer)
		counted = repaired
	}
	defer count(0)
	mine := pager{next: func(after []byte) (page, error) { return m.store.scanPage(g, segments, after, limit) }}
	theirs := pager{next: func(after []byte) (page, error) {
		p, err := m.fetch(ctx, peer, g, segments, after, limit)
		count(p.size)
		if err == nil {
			err = m.aeRate.wait(ctx, p.size)
		}
		return p, err
	}}
	push, pull := page{limit: limit}, page{limit: limit}
	flush := func(force bool) error {
		if len(push.items) > 0 && (force || push.full) {
			es := entries(push.items)
			if err := m.aeRate.wait(ctx, push.size); err != nil {
				return err
			}
			if _, err := m.callPage(ctx, peer, &request{Op: opMerge, Group: g, Entries: es}); err != nil {
				return err
			}
			count(push.size)
			push = page{limit: limit}
		}
		if len(pull.items) > 0 && (force || pull.full) {
			if _, err := m.store.MergeAll(entries(pull.items)); err != nil {
				return err
			}
			pull = page{limit: limit}
		}
		return nil
	}
	for {
		a, aok, err := mine.peek()
		if err != nil {
			return repaired, moved, err
		}
		b, bok, err := theirs.peek()
		if err != nil {
			return repaired, moved, err
		}
		if !aok && !bok {
			break
		}
		c := 0
		switch {
		case !aok:
			c = 1
		case !bok:
			c = -1
		default:
			c = bytes.Compare(m.store.dataKey(a.Key), m.store.dataKey(b.Key))
		}
		switch {
		case c < 0: // the peer lacks it
			push.addItem(a)
			mine.pop()
		case c > 0: // this node lacks it
			pull.addItem(b)
			theirs.pop()
		default:
			mine.pop()
			theirs.pop()
			if bytes.Equal(a.enc, b.enc) {
				continue
			}
			push.addItem(a)
			pull.addItem(b)
		}
		repaired++
		if err := flush(false); err != nil {
			return repaired, moved, err
		}
	}
	err = flush(true) // before moved is read: the last batch counts
	return repaired, moved, err
}

// fetch asks peer for the page of group g's entries in segments after the
// key after, of at most limit bytes, and checks the answer: every key
// valid, of group g here, in one of segments, and after the one before
// it (the first after after), so that the walk always advances; the page
// within its limit (all its entries but the last below it); and not
// empty if it says more follows. A page failing a check is refused whole
// with an error wrapping [ErrMalformed].
func (m *maintainer) fetch(ctx context.Context, peer, g string, segments []int, after []byte, limit int) (page, error) {
	resp, err := m.callPage(ctx, peer, &request{Op: opScan, Group: g, Segments: segments, After: after, Limit: limit})
	if err != nil {
		return page{}, err
	}
	bad := func(format string, args ...any) (page, error) {
		return page{}, fmt.Errorf("%w: %s's page: %s", ErrMalformed, peer, fmt.Sprintf(format, args...))
	}
	group := m.store.index.grouping()
	p := page{limit: limit, full: resp.More}
	var prev []byte
	if len(after) > 0 {
		prev = m.store.dataKey(after)
	}
	for _, e := range resp.Entries {
		if err := checkKey(e.Key); err != nil {
			return bad("%v", err)
		}
		if _, ok := slices.BinarySearch(segments, m.store.tree.Segment(e.Key)); !ok || group(e.Key) != g {
			return bad("key %q is outside the segments and group asked for", e.Key)
		}
		dk := m.store.dataKey(e.Key)
		if prev != nil && bytes.Compare(dk, prev) <= 0 {
			return bad("key %q does not come after the one before", e.Key)
		}
		if p.size >= limit {
			return bad("more than %d bytes", limit)
		}
		enc, err := EncodeObject(e.Object)
		if err != nil {
			return page{}, err
		}
		p.addItem(item{e, enc})
		prev = dk
	}
	if resp.More && len(p.items) == 0 {
		return bad("empty, yet more is to follow")
	}
	p.full = resp.More
	return p, nil
}

// serveScan answers a page request of another node's exchange from this
// node's store, cut at the smaller of the limit asked for and this node's
// PageBytes. It refuses, with an error wrapping [ErrMalformed], segments
// not increasing, outside the tree or more than [MaxScanSegments], a
// limit below 1 and an invalid key to start after.
func (m *maintainer) serveScan(q *request) (response, error) {
	segs := m.segments()
	switch {
	case len(q.Segments) > MaxScanSegments:
		return response{}, fmt.Errorf("%w: a page of %d segments, at most %d", ErrMalformed, len(q.Segments), MaxScanSegments)
	case slices.ContainsFunc(q.Segments, func(s int) bool { return s < 0 || s >= segs }):
		return response{}, fmt.Errorf("%w: a segment outside [0, %d)", ErrMalformed, segs)
	case !slices.IsSortedFunc(q.Segments, func(a, b int) int { return cmp.Compare(a, b) }) || len(slices.Compact(slices.Clone(q.Segments))) != len(q.Segments):
		return response{}, fmt.Errorf("%w: segments not increasing", ErrMalformed)
	case q.Limit < 1:
		return response{}, fmt.Errorf("%w: a page limit of %d bytes", ErrMalformed, q.Limit)
	}
	var after []byte
	if len(q.After) > 0 {
		if err := checkKey(q.After); err != nil {
			return response{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		after = q.After
	}
	p, err := m.store.scanPage(q.Group, q.Segments, after, min(q.Limit, m.cfg.PageBytes))
	return response{Entries: entries(p.items), More: p.full}, err
}

// serveMerge merges a batch another node's exchange sent: only into
// group q.Group, which this node must replicate, and only keys this node
// groups there too; a batch with any other key is refused whole.
func (m *maintainer) serveMerge(q *request) error {
	if !inGroup(q.Group, m.self) {
		return fmt.Errorf("%w: a merge into group %s, which %s does not replicate", ErrMalformed, q.Group, m.self)
	}
	group := m.store.index.grouping()
	for _, e := range q.Entries {
		if err := checkKey(e.Key); err != nil {
			return fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		if group(e.Key) != q.Group {
			return fmt.Errorf("kv: merge into group %s: key %q is in group %s on %s", q.Group, e.Key, group(e.Key), m.self)
		}
	}
	_, err := m.store.MergeAll(q.Entries)
	return err
}

// pager walks one side of an exchange page by page.
type pager struct {
	next  func(after []byte) (page, error)
	items []item
	after []byte // the key of the last item fetched
	done  bool   // no page follows
}

// peek returns the next item, fetching a page when needed, and false
// when none is left.
func (p *pager) peek() (item, bool, error) {
	for len(p.items) == 0 && !p.done {
		pg, err := p.next(p.after)
		if err != nil {
			return item{}, false, err
		}
		p.items, p.done = pg.items, !pg.full || len(pg.items) == 0
		if n := len(pg.items); n > 0 {
			p.after = pg.items[n-1].Key
		}
	}
	if len(p.items) == 0 {
		return item{}, false, nil
	}
	return p.items[0], true, nil
}

// pop drops the item peek returned.
func (p *pager) pop() { p.items = p.items[1:] }

// addItem adds it to p.
func (p *page) addItem(it item) {
	p.items = append(p.items, it)
	p.size += it.size()
	p.full = p.size >= p.limit
}

// entries returns the entries of items.
func entries(items []item) []Entry {
	out := make([]Entry, len(items))
	for i, it := range items {
		out[i] = it.Entry
	}
	return out
}
