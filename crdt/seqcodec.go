package crdt

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"unicode/utf8"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// The wire format of Text and List, all msgpack:
//
//	[replicas, spans, content, pending, pending content, dead, stable]
//
// replicas is the array of the replica IDs the state names, increasing; a
// replica is written as its index in it. spans is one flat array of
// integers describing the runs of the sequence in order, tombstones
// included, each run as long as it can be (a run that could continue the
// one before it is joined to it):
//
//	flags + 16*n  n >= 1 elements; flags: 1 dead, 2 ID given,
//	              4 left origin given, 8 right origin given
//	[r, c]        if ID given: replica r, counter c - e where e is the end
//	              (last counter + 1) of r's previous run in the array, or 1;
//	              otherwise the ID is the previous run's end, same replica
//	[r+1, c]      for each origin given: 0 alone for none, else replica r
//	              and counter c - (the run's first counter); an origin not
//	              given is, on the left, the previous run's last element
//	              (none for the first run) and, on the right, the next
//	              run's first element (none for the last run)
//
// content holds the values of the live runs in order: for Text the UTF-8
// string of their runes, for List an array of values. pending holds the
// runs that wait for an origin, sorted by ID, each as [r, c, n, dead,
// left origin, right origin] (an origin as 0 alone or r+1, c), with their
// values in pending content. dead is [r, lo, n]... ranges of deleted
// elements not held (of pending runs included), sorted, apart; stable is
// [r, c]... by replica, the compaction frontier.
//
// Counters are below 2^63 and a state has at most maxSeqElements elements,
// tombstones and pending ones included; a decoded state's replica table,
// runs and values are bounded by its bytes. Decoders accept only the
// canonical form, which every encoder writes.

const maxSeqElements = 1 << 48

const (
	flagDead = 1 << iota
	flagID
	flagLeft
	flagRight
	flagBits = 4
)

// seqWriter builds the replica table and the integer arrays.
type seqWriter struct {
	names  []string
	ids    map[string]int
	ints   []int64
	cursor map[string]uint64
}

func (s *seq[T]) encode(enc *encoder, content func(enc *encoder, runs [][]T) error) error {
	w := seqWriter{ids: map[string]int{}, cursor: map[string]uint64{}}
	// Collect the replica table first: every name the state mentions.
	seen := map[string]bool{}
	note := func(id elemID) {
		if !id.isZero() {
			seen[id.replica] = true
		}
	}
	spans := s.runs()
	for _, sp := range spans {
		note(sp.id)
		note(sp.left)
		note(sp.right)
	}
	for _, p := range s.pending {
		note(p.id)
		note(p.left)
		note(p.right)
	}
	for r := range s.dead {
		seen[r] = true
	}
	for r := range s.stable.All() {
		seen[r] = true
	}
	for r := range seen {
		w.names = append(w.names, r)
	}
	slices.Sort(w.names)
	for i, r := range w.names {
		w.ids[r] = i
	}

	var live [][]T
	for i, sp := range spans {
		flags := int64(0)
		if sp.dead {
			flags |= flagDead
		} else {
			live = append(live, sp.items)
		}
		var prev, next *span[T]
		if i > 0 {
			prev = spans[i-1]
		}
		if i+1 < len(spans) {
			next = spans[i+1]
		}
		if prev == nil || prev.id.replica != sp.id.replica || prev.end() != sp.id.seq {
			flags |= flagID
		}
		var impliedLeft, impliedRight elemID
		if prev != nil {
			impliedLeft = prev.lastID()
		}
		if next != nil {
			impliedRight = next.id
		}
		if sp.left != impliedLeft {
			flags |= flagLeft
		}
		if sp.right != impliedRight {
			flags |= flagRight
		}
		w.ints = append(w.ints, flags+int64(sp.n)<<flagBits)
		if flags&flagID != 0 {
			w.ints = append(w.ints, int64(w.ids[sp.id.replica]), int64(sp.id.seq-max(w.cursor[sp.id.replica], 1)))
		}
		if flags&flagLeft != 0 {
			w.origin(sp.left, sp.id.seq)
		}
		if flags&flagRight != 0 {
			w.origin(sp.right, sp.id.seq)
		}
		w.cursor[sp.id.replica] = sp.end()
	}
	if err := enc.EncodeArrayLen(7); err != nil {
		return err
	}
	if err := enc.EncodeArrayLen(len(w.names)); err != nil { // [], never nil, when empty
		return err
	}
	for _, name := range w.names {
		if err := enc.EncodeString(name); err != nil {
			return err
		}
	}
	if err := w.flush(enc); err != nil {
		return err
	}
	if err := content(enc, live); err != nil {
		return err
	}
	var pendingLive [][]T
	for _, p := range s.pending {
		dead := int64(0)
		if p.dead {
			dead = 1
		} else {
			pendingLive = append(pendingLive, p.items)
		}
		w.ints = append(w.ints, int64(w.ids[p.id.replica]), int64(p.id.seq), int64(p.n), dead)
		w.origin(p.left, 0)
		w.origin(p.right, 0)
	}
	if err := w.flush(enc); err != nil {
		return err
	}
	if err := content(enc, pendingLive); err != nil {
		return err
	}
	for _, r := range w.names {
		for _, rg := range s.dead[r] {
			w.ints = append(w.ints, int64(w.ids[r]), int64(rg.lo), int64(rg.hi-rg.lo))
		}
	}
	if err := w.flush(enc); err != nil {
		return err
	}
	for r, c := range s.stable.All() {
		w.ints = append(w.ints, int64(w.ids[r]), int64(c))
	}
	return w.flush(enc)
}

// origin writes an origin of the run starting at counter at.
func (w *seqWriter) origin(o elemID, at uint64) {
	if o.isZero() {
		w.ints = append(w.ints, 0)
		return
	}
	w.ints = append(w.ints, int64(w.ids[o.replica])+1, int64(o.seq-at))
}

// flush writes the integers as an array and empties them.
func (w *seqWriter) flush(enc *encoder) error {
	if err := enc.EncodeArrayLen(len(w.ints)); err != nil {
		return err
	}
	for _, v := range w.ints {
		if err := enc.EncodeInt(v); err != nil {
			return err
		}
	}
	w.ints = w.ints[:0]
	return nil
}

// runs returns the spans of the tree as maximal runs: spans that continue
// the one before are joined, in copies.
func (s *seq[T]) runs() []*span[T] {
	var out []*span[T]
	s.each(func(sp *span[T]) bool {
		if k := len(out); k > 0 && sp.follows(out[k-1]) {
			last := out[k-1]
			if last.leaf != nil { // still the tree's: copy before growing
				c := *last
				c.leaf = nil
				c.items = slices.Clip(c.items)
				out[k-1], last = &c, &c
			}
			last.n += sp.n
			last.items = append(last.items, sp.items...)
			return true
		}
		out = append(out, sp)
		return true
	})
	return out
}

// seqReader reads the integer arrays.
type seqReader struct {
	d     *decoder
	names []string
	ints  []int64
}

var errSeqShort = errors.New("run truncated")

// ints reads an array of integers; its length is bounded by the input.
func (d *decoder) ints() ([]int64, error) {
	n, prealloc, err := d.arrayLen(1)
	if err != nil {
		return nil, err
	}
	out := make([]int64, 0, prealloc)
	for range n {
		c, err := d.PeekCode()
		if err != nil {
			return nil, err
		}
		if c == msgpcode.Uint64 {
			if u, err := d.DecodeUint64(); err != nil || u > math.MaxInt64 {
				return nil, fmt.Errorf("integer %d out of range", u)
			} else {
				out = append(out, int64(u))
			}
			continue
		}
		v, err := d.DecodeInt64()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func (r *seqReader) next() (int64, error) {
	if len(r.ints) == 0 {
		return 0, errSeqShort
	}
	v := r.ints[0]
	r.ints = r.ints[1:]
	return v, nil
}

// replica reads a replica index.
func (r *seqReader) replica(plusOne bool) (string, bool, error) {
	v, err := r.next()
	if err != nil {
		return "", false, err
	}
	if plusOne {
		if v == 0 {
			return "", false, nil
		}
		v--
	}
	if v < 0 || v >= int64(len(r.names)) {
		return "", false, fmt.Errorf("replica %d not in the table", v)
	}
	return r.names[v], true, nil
}

// counter reads a counter as base + a delta and checks it is in [1, 2^63).
func (r *seqReader) counter(base uint64) (uint64, error) {
	v, err := r.next()
	if err != nil {
		return 0, err
	}
	c := base + uint64(v) // two's complement: a negative delta subtracts
	if v < 0 && uint64(-v) >= base || v > 0 && uint64(v) > maxCounter-base || c == 0 {
		return 0, fmt.Errorf("counter out of range")
	}
	return c, nil
}

// originAt reads an origin of the run starting at counter at.
func (r *seqReader) originAt(at uint64) (elemID, error) {
	rep, ok, err := r.replica(true)
	if err != nil || !ok {
		return elemID{}, err
	}
	c, err := r.counter(at)
	return elemID{rep, c}, err
}

func (s *seq[T]) decode(dec *msgpack.Decoder, content func(d *decoder, n int) ([]T, error)) error {
	return decode(dec, "sequence", func(d *decoder) error {
		var t seq[T]
		if err := t.decodeFrom(d, content); err != nil {
			return err
		}
		if err := t.checkOrigins(); err != nil {
			return err
		}
		*s = t
		return nil
	})
}

// checkOrigins refuses orders no replica makes: an element held between
// its origins' places on the wrong side of one of them (FugueMax puts
// every element between its origins), and a waiting element whose two
// origins are one element. It takes O(log n) per run.
func (s *seq[T]) checkOrigins() error {
	for sp := s.firstSpan(); sp != nil; sp = s.next(sp) {
		at := s.offset(sp)
		if s.position(sp.left, -1) >= at || s.position(sp.right, math.MaxInt) < at+sp.n {
			return fmt.Errorf("run %v not between its origins %v and %v", sp.id, sp.left, sp.right)
		}
	}
	for _, p := range s.pending {
		if !p.left.isZero() && p.left == p.right {
			return fmt.Errorf("run %v with %v as both origins", p.id, p.left)
		}
	}
	return nil
}

func (s *seq[T]) decodeFrom(d *decoder, content func(d *decoder, n int) ([]T, error)) error {
	if err := d.tuple(7); err != nil {
		return err
	}
	n, prealloc, err := d.arrayLen(1)
	if err != nil {
		return err
	}
	r := seqReader{d: d, names: make([]string, 0, prealloc)}
	for range n {
		name, err := d.id()
		if err != nil {
			return err
		}
		if k := len(r.names); k > 0 && r.names[k-1] >= name {
			return fmt.Errorf("replica %q after %q: not sorted or repeated", name, r.names[k-1])
		}
		r.names = append(r.names, name)
	}
	used := make([]bool, len(r.names))
	use := func(id elemID) {
		if !id.isZero() {
			i, _ := slices.BinarySearch(r.names, id.replica)
			used[i] = true
		}
	}
	if r.ints, err = d.ints(); err != nil {
		return err
	}
	total, live := 0, 0
	var spans []*span[T]
	type given struct{ left, right bool }
	var gave []given
	cursor := map[string]uint64{}
	for len(r.ints) > 0 {
		h, _ := r.next()
		if h < 1<<flagBits || h>>flagBits > maxSeqElements {
			return fmt.Errorf("run header %d", h)
		}
		sp := &span[T]{n: int(h >> flagBits), dead: h&flagDead != 0}
		if total += sp.n; total > maxSeqElements {
			return fmt.Errorf("more than %d elements", maxSeqElements)
		}
		var prev *span[T]
		if k := len(spans); k > 0 {
			prev = spans[k-1]
		}
		if h&flagID != 0 {
			rep, _, err := r.replica(false)
			if err != nil {
				return err
			}
			if sp.id.seq, err = r.counter(max(cursor[rep], 1)); err != nil {
				return err
			}
			sp.id.replica = rep
			if prev != nil && prev.id.replica == rep && prev.end() == sp.id.seq {
				return fmt.Errorf("run ID given where implied")
			}
		} else if prev == nil {
			return fmt.Errorf("first run without an ID")
		} else {
			sp.id = elemID{prev.id.replica, prev.end()}
		}
		if uint64(sp.n) > maxCounter-sp.id.seq+1 {
			return fmt.Errorf("run %v of %d elements: counter out of range", sp.id, sp.n)
		}
		var g given
		if h&flagLeft != 0 {
			if sp.left, err = r.originAt(sp.id.seq); err != nil {
				return err
			}
			g.left = true
		} else if prev != nil {
			sp.left = prev.lastID()
		}
		if h&flagRight != 0 {
			if sp.right, err = r.originAt(sp.id.seq); err != nil {
				return err
			}
			g.right = true
		}
		if prev != nil {
			if !gave[len(gave)-1].right {
				prev.right = sp.id
			}
		}
		if !sp.dead {
			live += sp.n
		}
		cursor[sp.id.replica] = sp.end()
		spans = append(spans, sp)
		gave = append(gave, g)
	}
	for i, sp := range spans {
		if i > 0 && sp.follows(spans[i-1]) {
			return fmt.Errorf("run %v continues the one before", sp.id)
		}
		if g := gave[i]; g.left && i > 0 && sp.left == spans[i-1].lastID() ||
			g.left && i == 0 && sp.left.isZero() ||
			g.right && i+1 < len(spans) && sp.right == spans[i+1].id ||
			g.right && i+1 == len(spans) && sp.right.isZero() {
			return fmt.Errorf("run %v: origin given where implied", sp.id)
		}
		use(sp.id)
		use(sp.left)
		use(sp.right)
	}
	values, err := content(d, live)
	if err != nil {
		return err
	}
	for _, sp := range spans {
		if !sp.dead {
			sp.items, values = values[:sp.n:sp.n], values[sp.n:]
		}
	}
	// Index the runs, rejecting repeated elements.
	for _, sp := range spans {
		if len(s.indexFor(sp.id.replica).overlapping(sp.id.seq, sp.end())) > 0 {
			return fmt.Errorf("element %v held twice", sp.id)
		}
		s.index[sp.id.replica].insert(sp)
	}
	// Pending runs.
	if r.ints, err = d.ints(); err != nil {
		return err
	}
	live = 0
	for len(r.ints) > 0 {
		rep, _, err := r.replica(false)
		if err != nil {
			return err
		}
		p := &span[T]{id: elemID{replica: rep}}
		if p.id.seq, err = r.counter(0); err != nil {
			return err
		}
		n, err := r.next()
		if err != nil {
			return err
		}
		if n < 1 || n > maxSeqElements || uint64(n) > maxCounter-p.id.seq+1 {
			return fmt.Errorf("pending run of %d elements", n)
		}
		p.n = int(n)
		if total += p.n; total > maxSeqElements {
			return fmt.Errorf("more than %d elements", maxSeqElements)
		}
		dead, err := r.next()
		if err != nil || dead < 0 || dead > 1 {
			return fmt.Errorf("pending run dead flag %d %v", dead, err)
		}
		p.dead = dead == 1
		if !p.dead {
			live += p.n
		}
		for _, o := range []*elemID{&p.left, &p.right} {
			if *o, err = r.originAt(0); err != nil {
				return err
			}
		}
		if k := len(s.pending); k > 0 && (compareIDs(s.pending[k-1].lastID(), p.id) >= 0 || p.follows(s.pending[k-1])) {
			return fmt.Errorf("pending run %v: not sorted, overlapping or continuing the one before", p.id)
		}
		if s.has(p.id) || len(s.index[rep].overlapping(p.id.seq, p.end())) > 0 {
			return fmt.Errorf("pending element %v held", p.id)
		}
		if (p.left.isZero() || s.has(p.left)) && (p.right.isZero() || s.has(p.right)) {
			return fmt.Errorf("pending run %v has its origins", p.id)
		}
		use(p.id)
		use(p.left)
		use(p.right)
		s.pending = append(s.pending, p)
	}
	if values, err = content(d, live); err != nil {
		return err
	}
	for _, p := range s.pending {
		if !p.dead {
			p.items, values = values[:p.n:p.n], values[p.n:]
		}
	}
	// Deletions of elements not held.
	if r.ints, err = d.ints(); err != nil {
		return err
	}
	var lastRep string
	var lastHi uint64
	for len(r.ints) > 0 {
		rep, _, err := r.replica(false)
		if err != nil {
			return err
		}
		lo, err := r.counter(0)
		if err != nil {
			return err
		}
		n, err := r.next()
		if err != nil || n < 1 || uint64(n) > maxCounter-lo+1 {
			return fmt.Errorf("deleted range of %d elements", n)
		}
		hi := lo + uint64(n)
		if len(s.dead) > 0 && (rep < lastRep || rep == lastRep && lo <= lastHi) {
			return fmt.Errorf("deleted range %s %d: not sorted or not apart", rep, lo)
		}
		lastRep, lastHi = rep, hi
		if len(s.index[rep].overlapping(lo, hi)) > 0 {
			return fmt.Errorf("deleted range %s %d holds a live element", rep, lo)
		}
		s.dead.add(rep, lo, hi)
		use(elemID{rep, lo})
	}
	for _, p := range s.pending {
		held, _, _ := s.dead.overlap(p.id.replica, p.id.seq, p.end())
		if p.dead != (len(held) > 0) || p.dead && (held[0].lo != p.id.seq || held[0].hi != p.end()) {
			return fmt.Errorf("pending run %v: dead flag disagrees with the deletions", p.id)
		}
	}
	// The compaction frontier.
	if r.ints, err = d.ints(); err != nil {
		return err
	}
	lastRep = ""
	for len(r.ints) > 0 {
		rep, _, err := r.replica(false)
		if err != nil {
			return err
		}
		c, err := r.counter(0)
		if err != nil {
			return err
		}
		if s.stable.Len() > 0 && lastRep >= rep {
			return fmt.Errorf("frontier entry %s: not sorted or repeated", rep)
		}
		lastRep = rep
		s.stable.Add(vclock.Dot{ID: rep, Counter: c})
		use(elemID{rep, c})
		if rs := s.dead[rep]; len(rs) > 0 && rs[0].lo <= c {
			return fmt.Errorf("deleted range %s %d covered by the frontier", rep, rs[0].lo)
		}
	}
	for _, sp := range spans {
		// Origins are held, or discarded by compaction.
		for _, o := range [2]elemID{sp.left, sp.right} {
			if !o.isZero() && !s.has(o) && s.stable.Get(o.replica) < o.seq {
				return fmt.Errorf("run %v: origin %v missing", sp.id, o)
			}
		}
	}
	for i, u := range used {
		if !u {
			return fmt.Errorf("replica %q named but unused", r.names[i])
		}
	}
	s.build(spans)
	s.names = make(map[string]string, len(r.names))
	for _, name := range r.names {
		s.names[name] = name
	}
	s.recount()
	return nil
}

// decodeRunes reads a string of exactly n runes.
func decodeRunes(d *decoder, n int) ([]rune, error) {
	str, err := d.DecodeString()
	if err != nil {
		return nil, err
	}
	if !utf8.ValidString(str) {
		return nil, fmt.Errorf("text is not UTF-8")
	}
	if utf8.RuneCountInString(str) != n {
		return nil, fmt.Errorf("text of %d runes, want %d", utf8.RuneCountInString(str), n)
	}
	return []rune(str), nil
}

func encodeRunes(enc *encoder, runs [][]rune) error {
	var b []byte
	for _, run := range runs {
		for _, r := range run {
			b = utf8.AppendRune(b, r)
		}
	}
	return enc.EncodeString(string(b))
}

// decodeValues reads an array of exactly n values.
func decodeValues[T any](d *decoder, n int) ([]T, error) {
	k, prealloc, err := d.arrayLen(1)
	if err != nil {
		return nil, err
	}
	if k != n {
		return nil, fmt.Errorf("%d values, want %d", k, n)
	}
	out := make([]T, 0, prealloc)
	for range k {
		v, err := wire.DecodeValue[T](d.Decoder)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

func encodeValues[T any](enc *encoder, runs [][]T) error {
	n := 0
	for _, run := range runs {
		n += len(run)
	}
	if err := enc.EncodeArrayLen(n); err != nil {
		return err
	}
	for _, run := range runs {
		for _, v := range run {
			if err := enc.Encode(v); err != nil {
				return err
			}
		}
	}
	return nil
}
