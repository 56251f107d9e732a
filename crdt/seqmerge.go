package crdt

import (
	"maps"
	"slices"

	"github.com/distkit/distkit/vclock"
)

// each calls f on every span of the tree in sequence order until f
// returns false.
func (s *seq[T]) each(f func(sp *span[T]) bool) {
	if s.root == nil {
		return
	}
	for l := s.edge(false); l != nil; l = l.next {
		for _, sp := range l.spans {
			if !f(sp) {
				return
			}
		}
	}
}

// empty reports whether s is the zero state.
func (s *seq[T]) empty() bool {
	return (s.root == nil || s.root.all == 0) && len(s.pending) == 0 && len(s.dead) == 0 && s.stable.Len() == 0
}

// clone returns a deep copy of s.
func (s *seq[T]) clone() seq[T] {
	var c seq[T]
	var spans []*span[T]
	s.each(func(sp *span[T]) bool {
		spans = append(spans, sp.cut(0, sp.n))
		return true
	})
	c.build(spans)
	for _, p := range s.pending {
		c.pending = append(c.pending, p.cut(0, p.n))
	}
	c.dead = s.dead.clone()
	c.stable = s.stable.Clone()
	c.names = maps.Clone(s.names)
	c.recount()
	return c
}

// build replaces the tree with spans, in order, and indexes them.
func (s *seq[T]) build(spans []*span[T]) {
	s.root, s.index = nil, nil
	const fill = leafMax * 3 / 4
	var level []*node[T]
	var prev *node[T]
	for i := 0; i < len(spans) || i == 0; i += fill {
		leaf := &node[T]{prev: prev, spans: slices.Clone(spans[i:min(i+fill, len(spans))])}
		if prev != nil {
			prev.next = leaf
		}
		for _, sp := range leaf.spans {
			sp.leaf = leaf
			leaf.vis += sp.visible()
			leaf.all += sp.n
			s.indexFor(sp.id.replica).insert(sp)
		}
		level = append(level, leaf)
		prev = leaf
	}
	const kids = innerMax * 3 / 4
	for len(level) > 1 {
		var up []*node[T]
		for i := 0; i < len(level); i += kids {
			n := &node[T]{kids: slices.Clone(level[i:min(i+kids, len(level))]), inner: true}
			for _, k := range n.kids {
				k.parent = n
				n.vis += k.vis
				n.all += k.all
			}
			up = append(up, n)
		}
		level = up
	}
	s.root = level[0]
}

// merge joins o into s. o is not changed and shares nothing with s
// afterwards.
func (s *seq[T]) merge(o *seq[T]) {
	if s == o || s.root != nil && s.root == o.root {
		return // a state merged into itself: the join changes nothing
	}
	if s.empty() {
		*s = o.clone()
		return
	}
	for r, c := range o.stable.All() {
		s.seen(s.intern(r), c)
	}
	var work []*span[T]
	var dels idRanges
	take := func(sp *span[T]) bool {
		work = s.missing(sp, work)
		if sp.dead {
			dels.add(sp.id.replica, sp.id.seq, sp.end())
		}
		return true
	}
	o.each(take)
	for _, p := range o.pending {
		take(p)
	}
	work = append(work, s.pending...)
	s.pending = nil
	for r, rs := range o.dead {
		for _, rg := range rs {
			dels.add(r, rg.lo, rg.hi)
		}
	}
	s.integrateAll(work)
	for r, rs := range dels {
		for _, rg := range rs {
			s.deleteIDs(s.intern(r), rg.lo, rg.hi)
		}
	}
	s.normalizePending()
	s.stable.Merge(o.stable)
}

// missing appends to work the parts of sp that s neither holds nor has
// discarded, as spans of their own with the names of s.
func (s *seq[T]) missing(sp *span[T], work []*span[T]) []*span[T] {
	r := s.intern(sp.id.replica)
	c := max(sp.id.seq, s.stable.Get(r)+1)
	cut := func(lo, hi uint64) {
		if lo < hi {
			p := sp.cut(int(lo-sp.id.seq), int(hi-sp.id.seq))
			p.id.replica = r
			p.left.replica = s.intern(p.left.replica)
			p.right.replica = s.intern(p.right.replica)
			work = append(work, p)
		}
	}
	for _, t := range s.index[r].overlapping(c, sp.end()) {
		cut(c, t.id.seq)
		c = max(c, t.end())
	}
	cut(c, sp.end())
	return work
}

// inverted reports whether p's right origin is not after its left origin
// in s, which holds both: no replica inserts such an element, and there
// is no place between its origins to put it. Since the elements s holds
// never change their order, every replica that holds p's origins finds
// the same, so p waits in pending everywhere, and replicas still converge.
func (s *seq[T]) inverted(p *span[T]) bool {
	if p.left.isZero() || p.right.isZero() {
		return false
	}
	return s.position(p.right, 0) <= s.position(p.left, 0)
}

// integrateAll puts the spans of work, which s does not hold, into the
// tree, each after its origins; those whose origins are missing wait in
// pending.
func (s *seq[T]) integrateAll(work []*span[T]) {
	if len(work) == 0 {
		return
	}
	slices.SortFunc(work, func(a, b *span[T]) int { return compareIDs(a.id, b.id) })
	out := work[:0]
	for _, p := range work {
		if k := len(out); k > 0 && out[k-1].id.replica == p.id.replica && out[k-1].end() > p.id.seq {
			if out[k-1].end() >= p.end() {
				continue
			}
			p = p.cut(int(out[k-1].end()-p.id.seq), p.n)
		}
		out = append(out, p)
	}
	work = out
	lookup := func(id elemID) int {
		i, found := slices.BinarySearchFunc(work, id, func(p *span[T], id elemID) int { return compareIDs(p.id, id) })
		if found {
			return i
		}
		if i > 0 && work[i-1].id.replica == id.replica && work[i-1].end() > id.seq {
			return i - 1
		}
		return -1
	}
	const (
		todo = iota
		active
		done
		stuck
	)
	state := make([]uint8, len(work))
	var stack []int
	for i := range work {
		if state[i] != todo {
			continue
		}
		state[i] = active
		stack = append(stack[:0], i)
		for len(stack) > 0 {
			j := stack[len(stack)-1]
			p := work[j]
			s.seen(p.id.replica, p.end()-1)
			dep, blocked := -1, false
			for _, o := range [2]elemID{p.left, p.right} {
				if o.isZero() || s.has(o) {
					continue
				}
				if k := lookup(o); k >= 0 && state[k] == todo {
					dep = k
				} else {
					blocked = true // missing, or a cycle from a forged input
				}
				break
			}
			if !blocked && dep < 0 && s.inverted(p) {
				blocked = true // a forged order: it waits for good, everywhere
			}
			switch {
			case blocked:
				state[j] = stuck
				s.pending = append(s.pending, p)
				stack = stack[:len(stack)-1]
			case dep >= 0:
				state[dep] = active
				stack = append(stack, dep)
			default:
				r, lo, hi := p.id.replica, p.id.seq, p.end()
				s.integrate(p)
				state[j] = done
				for _, rg := range s.dead.take(r, lo, hi) {
					s.deleteIDs(r, rg.lo, rg.hi)
				}
				stack = stack[:len(stack)-1]
			}
		}
	}
}

// deleteIDs deletes the elements [lo, hi) of replica: those held become
// tombstones, the others are remembered in dead unless discarded.
func (s *seq[T]) deleteIDs(replica string, lo, hi uint64) {
	hits := s.index[replica].overlapping(lo, hi)
	gone := s.stable.Get(replica) + 1 // below: held or discarded
	c := lo
	for _, t := range hits {
		s.dead.add(replica, max(c, gone), t.id.seq)
		c = max(c, t.end())
	}
	s.dead.add(replica, max(c, gone), hi)
	for _, t := range hits {
		if t.dead {
			continue
		}
		if t.id.seq < lo {
			t = s.splitAt(t, int(lo-t.id.seq))
		}
		if t.end() > hi {
			s.splitAt(t, int(hi-t.id.seq))
		}
		s.kill(t)
	}
}

// normalizePending puts pending into its canonical form: sorted, the
// elements that dead holds without values, runs joined. (Deletions of
// pending elements stay in dead, so that a copy of an element merged later
// cannot bring it back.)
func (s *seq[T]) normalizePending() {
	if len(s.pending) == 0 {
		return
	}
	slices.SortFunc(s.pending, func(a, b *span[T]) int { return compareIDs(a.id, b.id) })
	var out []*span[T]
	push := func(p *span[T]) {
		if k := len(out); k > 0 && p.follows(out[k-1]) {
			out[k-1].n += p.n
			out[k-1].items = append(out[k-1].items, p.items...)
			return
		}
		out = append(out, p)
	}
	for _, p := range s.pending {
		c := p.id.seq
		held, _, _ := s.dead.overlap(p.id.replica, p.id.seq, p.end())
		for _, rg := range held {
			if rg.lo > c {
				push(p.cut(int(c-p.id.seq), int(rg.lo-p.id.seq)))
			}
			d := p.cut(int(rg.lo-p.id.seq), int(rg.hi-p.id.seq))
			d.dead, d.items = true, nil
			push(d)
			c = rg.hi
		}
		if c < p.end() {
			push(p.cut(int(c-p.id.seq), p.n))
		}
	}
	s.pending = out
}

// compact records stable, limited to what s has seen, as causally stable
// and discards the tombstones it covers; it returns how many.
func (s *seq[T]) compact(stable vclock.VClock) int {
	var bound vclock.VClock
	for r, c := range stable.All() {
		bound.Add(vclock.Dot{ID: s.intern(r), Counter: min(c, s.max[r])})
	}
	if s.stable.Descends(bound) {
		return 0
	}
	s.stable.Merge(bound)
	return s.discard()
}

// discard drops the tombstones and the deletions of dead that stable
// covers and returns how many tombstones.
func (s *seq[T]) discard() int {
	gone := 0
	var keep []*span[T]
	s.each(func(sp *span[T]) bool {
		if !sp.dead {
			keep = append(keep, sp)
			return true
		}
		upto := s.stable.Get(sp.id.replica)
		switch {
		case upto < sp.id.seq:
			keep = append(keep, sp)
		case upto >= sp.end()-1:
			gone += sp.n
		default:
			k := int(upto + 1 - sp.id.seq)
			gone += k
			keep = append(keep, sp.cut(k, sp.n))
		}
		return true
	})
	for r := range s.dead {
		s.dead.take(r, 1, s.stable.Get(r)+1)
	}
	s.build(keep)
	return gone
}

// version returns the largest counter s has seen from each replica.
func (s *seq[T]) version() vclock.VClock {
	var v vclock.VClock
	s.highest(func(r string, c uint64) { v.Add(vclock.Dot{ID: r, Counter: c}) })
	return v
}

// deltaOf makes the empty s the delta of the local insert p: p waits in
// pending for its origins, unless it has none.
func (s *seq[T]) deltaOf(p span[T]) {
	// One allocation for the run and the slice that holds it.
	one := &struct {
		sp  span[T]
		ptr [1]*span[T]
	}{sp: p}
	one.ptr[0] = &one.sp
	if p.left.isZero() && p.right.isZero() {
		s.build(one.ptr[:])
	} else {
		s.pending = one.ptr[:]
	}
}

// recount sets max from the elements, pending elements and stable.
func (s *seq[T]) recount() {
	s.max = nil
	s.highest(s.seen)
}

// highest calls f with the largest counter of each replica among the
// elements, pending elements and stable (more than once for some).
func (s *seq[T]) highest(f func(replica string, c uint64)) {
	for r, x := range s.index {
		if n := len(x.blocks); n > 0 {
			blk := x.blocks[n-1]
			f(r, blk[len(blk)-1].end()-1)
		}
	}
	for _, p := range s.pending {
		f(p.id.replica, p.end()-1)
	}
	for r, c := range s.stable.All() {
		f(r, c)
	}
}

func (s *seq[T]) pendingLen() int {
	n := 0
	for _, p := range s.pending {
		n += p.n
	}
	return n
}
