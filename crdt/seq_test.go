package crdt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/distkit/distkit/internal/editingtrace"
	"github.com/vmihailenco/msgpack/v5"
)

// refItem is one element of the reference sequence.
type refItem struct {
	id, left, right elemID
	r               rune
	dead            bool
}

// refDoc is the reference model: a plain slice of elements, integrated one
// at a time by Gentle's YjsMod rule written out element by element (as in
// the reference-crdts collection), with linear searches. Elements must
// arrive after their origins.
type refDoc struct{ items []refItem }

func (d *refDoc) index(id elemID, missing int) int {
	if id.isZero() {
		return missing
	}
	for i, it := range d.items {
		if it.id == id {
			return i
		}
	}
	panic(fmt.Sprintf("reference: element %v missing", id))
}

func (d *refDoc) integrate(x refItem) {
	left := d.index(x.left, -1)
	right := d.index(x.right, len(d.items))
	dest, scanning := left+1, false
	for i := left + 1; ; i++ {
		if !scanning {
			dest = i
		}
		if i == len(d.items) || i == right {
			break
		}
		o := d.items[i]
		oleft, oright := d.index(o.left, -1), d.index(o.right, len(d.items))
		if oleft < left {
			break
		}
		if oleft == left {
			if oright < right {
				scanning = true
				continue
			}
			if oright == right && x.id.replica < o.id.replica {
				break
			}
			scanning = false
		}
	}
	d.items = slices.Insert(d.items, dest, x)
}

func (d *refDoc) delete(id elemID) { d.items[d.index(id, 0)].dead = true }

func (d *refDoc) String() string {
	var b strings.Builder
	for _, it := range d.items {
		if !it.dead {
			b.WriteRune(it.r)
		}
	}
	return b.String()
}

// refOf adds the elements of the delta of an insert to d, and applies the
// deletions of the delta of a delete.
func refOf(d *refDoc, delta Text) {
	spans := delta.s.pending
	delta.s.each(func(sp *span[rune]) bool { spans = append(spans, sp); return true })
	for _, p := range spans {
		for k := range p.n {
			it := refItem{id: elemID{p.id.replica, p.id.seq + uint64(k)}, left: p.left, right: p.right, r: p.items[k]}
			if k > 0 {
				it.left = elemID{p.id.replica, it.id.seq - 1}
			}
			d.integrate(it)
		}
	}
	for r, rs := range delta.s.dead {
		for _, rg := range rs {
			for c := rg.lo; c < rg.hi; c++ {
				d.delete(elemID{r, c})
			}
		}
	}
}

// history runs a random editing history over n replicas: each step a
// replica inserts or deletes at a random place, or merges a random delta
// made so far (so deltas arrive late, duplicated and out of order). It
// returns the replicas and the deltas in the order they were made.
func history(r *rand.Rand, n, steps int) ([]Text, []Text) {
	reps := make([]Text, n)
	var log []Text
	for range steps {
		i := r.IntN(n)
		t := &reps[i]
		switch k := r.IntN(10); {
		case k < 4 || t.Len() == 0:
			pos := r.IntN(t.Len() + 1)
			s := strings.Repeat(string(rune('a'+i)), 1+r.IntN(4))
			if r.IntN(4) == 0 {
				s = "é" + s // a multi-byte rune
			}
			log = append(log, t.Insert(replicaIDs[i%len(replicaIDs)]+fmt.Sprint(i), pos, s))
		case k < 6:
			pos := r.IntN(t.Len())
			log = append(log, t.Delete(pos, 1+r.IntN(min(3, t.Len()-pos))))
		default:
			if len(log) > 0 {
				t.Merge(log[r.IntN(len(log))])
			}
		}
	}
	return reps, log
}

func TestTextConvergesOnRandomHistories(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 0x7e47))
		n := 3 + r.IntN(3)
		reps, log := history(r, n, 200)
		var ref refDoc
		for _, d := range log {
			refOf(&ref, d)
		}
		want := ref.String()
		for i := range reps {
			for _, j := range r.Perm(len(log)) {
				reps[i].Merge(log[j])
			}
			if got := reps[i].String(); got != want {
				t.Fatalf("seed %d: replica %d: %q, want %q", seed, i, got, want)
			}
			if reps[i].Pending() != 0 || len(reps[i].s.dead) != 0 {
				t.Fatalf("seed %d: replica %d: %d pending, dead %v after every delta", seed, i, reps[i].Pending(), reps[i].s.dead)
			}
			checkTree(t, &reps[i].s)
			if i > 0 && encode(t, reps[i]) != encode(t, reps[0]) {
				t.Fatalf("seed %d: replicas 0 and %d converged to different encodings", seed, i)
			}
		}
		roundTripText(t, seed, reps[0])
		// Deltas joined in random groups, in random orders, into a fresh
		// replica, also give the text.
		var fresh Text
		perm := r.Perm(len(log))
		for len(perm) > 0 {
			k := 1 + r.IntN(len(perm))
			var group Text
			for _, j := range perm[:k] {
				group.Merge(log[j])
			}
			checkTree(t, &group.s)
			roundTripText(t, seed, group)
			fresh.Merge(group)
			perm = perm[k:]
		}
		if got := fresh.String(); got != want {
			t.Fatalf("seed %d: grouped deltas: %q, want %q", seed, got, want)
		}
	}
}

// roundTripText checks that x decodes from its encoding to a state with the
// same encoding and text.
func roundTripText(t *testing.T, seed uint64, x Text) {
	t.Helper()
	b := encode(t, x)
	var back Text
	if err := msgpack.Unmarshal([]byte(b), &back); err != nil {
		t.Fatalf("seed %d: decode: %v", seed, err)
	}
	if encode(t, back) != b || back.String() != x.String() || back.Pending() != x.Pending() {
		t.Fatalf("seed %d: encoding does not round-trip", seed)
	}
	checkTree(t, &back.s)
}

// checkTree checks the invariants of the tree and the index.
func checkTree[T any](t *testing.T, s *seq[T]) {
	t.Helper()
	if s.root == nil {
		return
	}
	var walk func(n *node[T]) (int, int)
	walk = func(n *node[T]) (vis, all int) {
		if n.inner {
			for _, k := range n.kids {
				if k.parent != n {
					t.Fatal("bad parent")
				}
				v, a := walk(k)
				vis, all = vis+v, all+a
			}
		} else {
			for _, sp := range n.spans {
				if sp.leaf != n {
					t.Fatal("bad leaf")
				}
				if !sp.dead && len(sp.items) != sp.n {
					t.Fatalf("span %v: %d items, n %d", sp.id, len(sp.items), sp.n)
				}
				if s.index[sp.id.replica].find(sp.id.seq) != sp {
					t.Fatalf("span %v not indexed", sp.id)
				}
				vis, all = vis+sp.visible(), all+sp.n
			}
		}
		if vis != n.vis || all != n.all {
			t.Fatalf("counts %d/%d, want %d/%d", n.vis, n.all, vis, all)
		}
		return vis, all
	}
	walk(s.root)
}

// loadTrace reads the first limit edits (all when limit is 0) of a trace
// and its endContent; see testdata/editing-traces/README.md.
func loadTrace(tb testing.TB, name string, limit int) ([]editingtrace.Patch, string) {
	tb.Helper()
	ps, end, err := editingtrace.Load("testdata/editing-traces/"+name+".json.gz", limit)
	if err != nil {
		tb.Fatal(err)
	}
	return ps, end
}

func replay(ps []editingtrace.Patch) *Text {
	var t Text
	editingtrace.Apply(ps, func(pos, n int) { t.Delete(pos, n) }, func(pos int, s string) { t.Insert("a", pos, s) })
	return &t
}

// TestTextTraces replays the editing traces: by default their first
// 20,000 edits, checked against the same splices on a slice of runes; with
// -long all of them, checked against the traces' endContent.
func TestTextTraces(t *testing.T) {
	for _, name := range []string{"automerge-paper", "seph-blog1"} {
		limit := 20_000
		if *long {
			limit = 0
		}
		ps, end := loadTrace(t, name, limit)
		if !*long {
			var model []rune
			for _, p := range ps {
				model = slices.Replace(model, p.Pos, p.Pos+p.Del, []rune(p.Ins)...)
			}
			end = string(model)
		}
		got := replay(ps)
		if got.String() != end {
			t.Fatalf("%s: replay of %d edits differs from the expected text", name, len(ps))
		}
		checkTree(t, &got.s)
		roundTripText(t, 0, *got)
	}
}

func BenchmarkTextTrace(b *testing.B) {
	for _, name := range []string{"automerge-paper", "seph-blog1"} {
		ps, _ := loadTrace(b, name, 0)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				replay(ps)
			}
		})
	}
}

func BenchmarkTextTraceLoad(b *testing.B) {
	for _, name := range []string{"automerge-paper", "seph-blog1"} {
		ps, end := loadTrace(b, name, 0)
		buf, err := msgpack.Marshal(replay(ps))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var t Text
				if err := msgpack.Unmarshal(buf, &t); err != nil || t.Len() != len([]rune(end)) {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "bytes")
		})
	}
}
