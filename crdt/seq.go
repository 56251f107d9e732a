package crdt

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/distkit/distkit/vclock"
)

// seq is the replicated sequence behind [Text] and [List]. The zero value
// is the empty sequence.
//
// Every element has an ID, (replica, counter), minted by the replica that
// inserted it from a counter that starts at 1 and counts the elements that
// replica ever inserted, and two origins: the elements that were its left
// and right neighbours (tombstones included) when it was inserted; the zero
// ID stands for the start (left) or the end (right) of the sequence. The
// order of the elements is the one FugueMax (Weidner and Kleppmann, "The
// Art of the Fugue", 2023) gives them: an element goes between its origins,
// after every element concurrently inserted there whose left origin comes
// later, and concurrent elements with the same two origins are ordered by
// replica ID. It is a function of the set of elements only, so every
// replica that holds the same elements holds them in the same order,
// whatever order they arrived in; and text typed concurrently at one place
// is never interleaved, forwards or backwards.
//
// Elements live in spans: runs of elements that one replica inserted with
// consecutive counters, each the right neighbour of the one before (so the
// left origin of each but the first is the element before it) and all with
// the same right origin: what typing produces. The spans of the sequence,
// tombstones included, are the leaves of a B+ tree that counts visible and
// all elements per subtree, so a position is found in O(log n); an index
// per replica maps a counter to its span in O(log n).
//
// Removal keeps a tombstone (a span without values) until [seq.compact]
// discards it. An element whose origins have not arrived waits, invisible,
// in pending; deletions of elements not held wait in dead.
type seq[T any] struct {
	root    *node[T]
	index   map[string]*spanIndex[T] // by replica: the spans of the tree
	max     map[string]uint64        // by replica: the largest counter seen
	pending []*span[T]               // elements waiting for an origin, by ID
	dead    idRanges                 // deleted elements not held
	stable  vclock.VClock            // compacted: every element it covers is held or was deleted
	names   map[string]string        // interned replica IDs
}

// elemID identifies an element; the zero elemID is no element.
type elemID struct {
	replica string
	seq     uint64
}

func (a elemID) isZero() bool { return a.seq == 0 }

func compareIDs(a, b elemID) int {
	if c := cmp.Compare(a.replica, b.replica); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}

// span is a run of n elements: id.seq, id.seq+1, ... of one replica, in
// order, the first with left origin left, every other with the element
// before it, all with right origin right. A dead span is a run of
// tombstones and holds no items.
type span[T any] struct {
	id          elemID
	n           int
	left, right elemID
	items       []T // len n when live, nil when dead
	dead        bool
	leaf        *node[T] // the leaf holding the span, nil outside the tree
}

// end is the counter after the span's last.
func (sp *span[T]) end() uint64 { return sp.id.seq + uint64(sp.n) }

func (sp *span[T]) lastID() elemID { return elemID{sp.id.replica, sp.end() - 1} }

func (sp *span[T]) visible() int {
	if sp.dead {
		return 0
	}
	return sp.n
}

// follows reports whether b continues a: together they are one span.
func (b *span[T]) follows(a *span[T]) bool {
	return a.id.replica == b.id.replica && a.end() == b.id.seq && a.dead == b.dead &&
		b.left == a.lastID() && b.right == a.right
}

// cut returns the elements [i, j) of sp as a new span outside the tree;
// the items are copied.
func (sp *span[T]) cut(i, j int) *span[T] {
	c := &span[T]{id: elemID{sp.id.replica, sp.id.seq + uint64(i)}, n: j - i, left: sp.left, right: sp.right, dead: sp.dead}
	if i > 0 {
		c.left = elemID{sp.id.replica, c.id.seq - 1}
	}
	if !sp.dead {
		c.items = slices.Clone(sp.items[i:j])
	}
	return c
}

// The B+ tree: leaves hold spans in sequence order, inner nodes hold
// children; every node counts the visible and all elements below it.
const (
	leafMax  = 32 // spans per leaf
	innerMax = 32 // children per inner node
)

type node[T any] struct {
	parent     *node[T]
	kids       []*node[T] // inner nodes
	spans      []*span[T] // leaves
	vis, all   int
	prev, next *node[T] // leaves: the neighbouring leaves
	inner      bool
}

// addCounts adds to the counts of n and its ancestors.
func addCounts[T any](n *node[T], vis, all int) {
	for ; n != nil; n = n.parent {
		n.vis += vis
		n.all += all
	}
}

// Len returns the number of visible elements.
func (s *seq[T]) Len() int {
	if s.root == nil {
		return 0
	}
	return s.root.vis
}

func (s *seq[T]) intern(id string) string {
	if i, ok := s.names[id]; ok {
		return i
	}
	if s.names == nil {
		s.names = make(map[string]string)
	}
	s.names[id] = id
	return id
}

// seen records that replica has counters up to last.
func (s *seq[T]) seen(replica string, last uint64) {
	if s.max == nil {
		s.max = make(map[string]uint64)
	}
	if last > s.max[replica] {
		s.max[replica] = last
	}
}

// locate returns the span holding the visible element at pos, 0 <= pos <
// Len(), and the element's offset in it.
func (s *seq[T]) locate(pos int) (*span[T], int) {
	n := s.root
	for n.inner {
		for _, k := range n.kids {
			if pos < k.vis {
				n = k
				break
			}
			pos -= k.vis
		}
	}
	for _, sp := range n.spans {
		if sp.dead {
			continue
		}
		if pos < sp.n {
			return sp, pos
		}
		pos -= sp.n
	}
	panic("crdt: sequence counts corrupted")
}

// at returns the position of sp in its leaf.
func (sp *span[T]) at() int {
	for i, x := range sp.leaf.spans {
		if x == sp {
			return i
		}
	}
	panic("crdt: span missing from its leaf")
}

// offset returns the number of elements, tombstones included, before sp.
func (s *seq[T]) offset(sp *span[T]) int {
	off := 0
	for _, x := range sp.leaf.spans {
		if x == sp {
			break
		}
		off += x.n
	}
	for c := sp.leaf; c.parent != nil; c = c.parent {
		for _, k := range c.parent.kids {
			if k == c {
				break
			}
			off += k.all
		}
	}
	return off
}

// next returns the span after sp in sequence order, or nil.
func (s *seq[T]) next(sp *span[T]) *span[T] {
	if i := sp.at(); i+1 < len(sp.leaf.spans) {
		return sp.leaf.spans[i+1]
	}
	for l := sp.leaf.next; l != nil; l = l.next {
		if len(l.spans) > 0 {
			return l.spans[0]
		}
	}
	return nil
}

// prev returns the span before sp in sequence order, or nil.
func (s *seq[T]) prev(sp *span[T]) *span[T] {
	if i := sp.at(); i > 0 {
		return sp.leaf.spans[i-1]
	}
	for l := sp.leaf.prev; l != nil; l = l.prev {
		if len(l.spans) > 0 {
			return l.spans[len(l.spans)-1]
		}
	}
	return nil
}

// edge returns the first (last) leaf of the tree, creating the tree.
func (s *seq[T]) edge(last bool) *node[T] {
	if s.root == nil {
		s.root = &node[T]{}
	}
	n := s.root
	for n.inner {
		if last {
			n = n.kids[len(n.kids)-1]
		} else {
			n = n.kids[0]
		}
	}
	return n
}

// firstSpan and lastSpan return the ends of the sequence, or nil.
func (s *seq[T]) firstSpan() *span[T] {
	for l := s.edge(false); l != nil; l = l.next {
		if len(l.spans) > 0 {
			return l.spans[0]
		}
	}
	return nil
}

func (s *seq[T]) lastSpan() *span[T] {
	for l := s.edge(true); l != nil; l = l.prev {
		if len(l.spans) > 0 {
			return l.spans[len(l.spans)-1]
		}
	}
	return nil
}

// place puts sp, which is outside the tree, into leaf at i and indexes it.
func (s *seq[T]) place(leaf *node[T], i int, sp *span[T]) {
	leaf.spans = slices.Insert(leaf.spans, i, sp)
	sp.leaf = leaf
	addCounts(leaf, sp.visible(), sp.n)
	s.indexFor(sp.id.replica).insert(sp)
	if len(leaf.spans) > leafMax {
		s.split(leaf)
	}
}

// insertAfter puts sp after prev (at the start when prev is nil), or
// appends it to prev when it continues prev.
func (s *seq[T]) insertAfter(prev, sp *span[T]) {
	if prev == nil {
		s.place(s.edge(false), 0, sp)
		return
	}
	if sp.follows(prev) {
		prev.n += sp.n
		prev.items = append(prev.items, sp.items...)
		addCounts(prev.leaf, sp.visible(), sp.n)
		return
	}
	s.place(prev.leaf, prev.at()+1, sp)
}

// unplace takes sp out of the tree and the index.
func (s *seq[T]) unplace(sp *span[T]) {
	leaf := sp.leaf
	leaf.spans = slices.Delete(leaf.spans, sp.at(), sp.at()+1)
	addCounts(leaf, -sp.visible(), -sp.n)
	s.index[sp.id.replica].remove(sp)
	sp.leaf = nil
}

// split halves a node that has grown too big.
func (s *seq[T]) split(n *node[T]) {
	m := &node[T]{parent: n.parent, inner: n.inner}
	if n.inner {
		m.kids = upperHalf(&n.kids)
		for _, k := range m.kids {
			k.parent = m
			m.vis += k.vis
			m.all += k.all
		}
	} else {
		m.spans = upperHalf(&n.spans)
		for _, sp := range m.spans {
			sp.leaf = m
			m.vis += sp.visible()
			m.all += sp.n
		}
		m.prev, m.next = n, n.next
		if n.next != nil {
			n.next.prev = m
		}
		n.next = m
	}
	n.vis -= m.vis
	n.all -= m.all
	p := n.parent
	if p == nil {
		s.root = &node[T]{kids: []*node[T]{n, m}, vis: n.vis + m.vis, all: n.all + m.all, inner: true}
		n.parent, m.parent = s.root, s.root
		return
	}
	i := slices.Index(p.kids, n)
	p.kids = slices.Insert(p.kids, i+1, m)
	if len(p.kids) > innerMax {
		s.split(p)
	}
}

// upperHalf moves the upper half of *xs to a new slice and returns it.
func upperHalf[E any](xs *[]E) []E {
	h := len(*xs) / 2
	up := slices.Clone((*xs)[h:])
	clear((*xs)[h:])
	*xs = (*xs)[:h]
	return up
}

// splitAt splits sp before its element k, 0 < k < sp.n, and returns the
// second part, placed after sp.
func (s *seq[T]) splitAt(sp *span[T], k int) *span[T] {
	t := &span[T]{id: elemID{sp.id.replica, sp.id.seq + uint64(k)}, n: sp.n - k, right: sp.right, dead: sp.dead, leaf: sp.leaf}
	t.left = elemID{sp.id.replica, t.id.seq - 1}
	if !sp.dead {
		t.items = sp.items[k:]
		sp.items = sp.items[:k:k]
	}
	sp.n = k
	leaf := sp.leaf
	leaf.spans = slices.Insert(leaf.spans, sp.at()+1, t)
	s.index[sp.id.replica].insert(t)
	if len(leaf.spans) > leafMax {
		s.split(leaf)
	}
	return t
}

// kill turns the live span sp into tombstones and joins it with dead
// neighbours in its leaf that it continues or that continue it.
func (s *seq[T]) kill(sp *span[T]) {
	sp.dead = true
	sp.items = nil
	addCounts(sp.leaf, -sp.n, 0)
	leaf := sp.leaf
	i := sp.at()
	if i+1 < len(leaf.spans) && leaf.spans[i+1].follows(sp) {
		t := leaf.spans[i+1]
		s.unplace(t)
		sp.n += t.n
		addCounts(leaf, 0, t.n)
	}
	if i > 0 && sp.follows(leaf.spans[i-1]) {
		p := leaf.spans[i-1]
		s.unplace(sp)
		p.n += sp.n
		addCounts(leaf, 0, sp.n)
	}
}

// find returns the span holding the element id and its offset, or nil.
func (s *seq[T]) find(id elemID) (*span[T], int) {
	x := s.index[id.replica]
	if x == nil {
		return nil, 0
	}
	sp := x.find(id.seq)
	if sp == nil {
		return nil, 0
	}
	return sp, int(id.seq - sp.id.seq)
}

func (s *seq[T]) has(id elemID) bool {
	sp, _ := s.find(id)
	return sp != nil
}

func (s *seq[T]) indexFor(replica string) *spanIndex[T] {
	x := s.index[replica]
	if x == nil {
		if s.index == nil {
			s.index = make(map[string]*spanIndex[T])
		}
		x = &spanIndex[T]{}
		s.index[replica] = x
	}
	return x
}

// insert inserts xs at pos as replica id and returns the new span, a copy
// outside the tree: the delta. The tree keeps xs, which it only appends to
// beyond the delta's items. It returns an error wrapping
// [vclock.ErrExhausted], changing nothing, when id's counters would pass
// [vclock.MaxCounter].
func (s *seq[T]) insert(id string, pos int, xs []T) (span[T], error) {
	if pos < 0 || pos > s.Len() {
		panic("crdt: insert position out of range")
	}
	if _, err := vclock.AddCounter(s.max[id], uint64(len(xs))); err != nil {
		return span[T]{}, fmt.Errorf("crdt: insert by %q: %w", id, err)
	}
	r := s.intern(id)
	first := s.max[r] + 1
	s.seen(r, first+uint64(len(xs))-1)
	var prev, next *span[T]
	if pos == s.Len() {
		prev = s.lastSpan()
	} else {
		sp, off := s.locate(pos)
		if off > 0 {
			prev, next = sp, s.splitAt(sp, off)
		} else {
			prev, next = s.prev(sp), sp
		}
	}
	delta := span[T]{id: elemID{r, first}, n: len(xs), items: xs[:len(xs):len(xs)]}
	if prev != nil {
		delta.left = prev.lastID()
	}
	if next != nil {
		delta.right = next.id
	}
	if prev != nil && (&delta).follows(prev) {
		prev.n += delta.n
		prev.items = append(prev.items, xs...)
		addCounts(prev.leaf, delta.n, delta.n)
	} else {
		sp := delta
		sp.items = xs
		s.insertAfter(prev, &sp)
	}
	return delta, nil
}

// remove deletes the n visible elements from pos and returns their IDs.
func (s *seq[T]) remove(pos, n int) idRanges {
	if pos < 0 || n < 0 || n > s.Len()-pos {
		panic("crdt: delete range out of range")
	}
	var gone idRanges
	for n > 0 {
		sp, off := s.locate(pos)
		if off > 0 {
			sp = s.splitAt(sp, off)
		}
		if sp.n > n {
			s.splitAt(sp, n)
		}
		n -= sp.n
		gone.add(sp.id.replica, sp.id.seq, sp.end())
		s.kill(sp)
	}
	return gone
}

// integrate puts the span p, which is outside the tree and whose origins
// are in it (or zero), the left before the right (see seq.inverted), at
// its place. It scans the elements between the
// origins, which are the ones inserted concurrently with p, span by span:
// FugueMax's rule, in the form of Gentle's YjsMod.
func (s *seq[T]) integrate(p *span[T]) {
	if s.root == nil {
		s.root = &node[T]{}
	}
	total := s.root.all
	left, right := -1, total
	var cur *span[T]
	off := 0
	if !p.left.isZero() {
		lsp, loff := s.find(p.left)
		left = s.offset(lsp) + loff
		cur, off = lsp, loff+1
		if off == cur.n {
			cur, off = s.next(cur), 0
		}
	} else {
		cur = s.firstSpan()
	}
	if !p.right.isZero() {
		rsp, roff := s.find(p.right)
		right = s.offset(rsp) + roff
	}
	dest, destOff := cur, off
	scanning := false
scan:
	for i := left + 1; cur != nil && i < right; {
		oleft := i - 1
		if off == 0 {
			oleft = s.position(cur.left, -1)
		}
		oright := s.position(cur.right, total)
		if oleft < left {
			break
		}
		if oleft == left {
			switch {
			case oright < right:
				scanning = true
			case oright == right && p.id.replica < cur.id.replica:
				break scan
			default:
				scanning = false
			}
		}
		// The rest of the span has left origins after left: skipped, up
		// to right.
		if step := cur.n - off; i+step > right {
			if !scanning {
				dest, destOff = cur, off+right-i
			}
			break
		} else {
			i += step
		}
		cur, off = s.next(cur), 0
		if !scanning {
			dest, destOff = cur, off
		}
	}
	switch {
	case dest == nil:
		s.insertAfter(s.lastSpan(), p)
	case destOff > 0:
		s.splitAt(dest, destOff)
		s.insertAfter(dest, p)
	default:
		s.insertAfter(s.prev(dest), p)
	}
}

// position returns the number of elements before id, or missing for the
// zero ID or an element not held.
func (s *seq[T]) position(id elemID, missing int) int {
	if id.isZero() {
		return missing
	}
	sp, off := s.find(id)
	if sp == nil {
		return missing
	}
	return s.offset(sp) + off
}
