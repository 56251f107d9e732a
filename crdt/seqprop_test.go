package crdt

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/distkit/distkit/vclock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// TestTextCompactionKeepsConvergence: replicas edit, reach a quiescent
// point, compact with their common version and edit on, while an observer
// never compacts; everyone converges to the text of the reference, merging
// deltas or full states, and the compacted states hold fewer elements.
func TestTextCompactionKeepsConvergence(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 0xc0)) // #nosec
		n := 3 + r.IntN(3)
		reps, log := history(r, n, 150)
		var observer Text
		for i := range reps {
			for _, d := range log {
				reps[i].Merge(d)
			}
		}
		for _, d := range log {
			observer.Merge(d)
		}
		stable := reps[0].Version()
		tombstones := 0
		reps[0].s.each(func(sp *span[rune]) bool {
			if sp.dead {
				tombstones += sp.n
			}
			return true
		})
		for i := range reps {
			if got := reps[i].Compact(stable); got != tombstones {
				t.Fatalf("seed %d: replica %d discarded %d tombstones, want %d", seed, i, got, tombstones)
			}
			checkTree(t, &reps[i].s)
			roundTripText(t, seed, reps[i])
		}
		if again := reps[0].Compact(stable); again != 0 {
			t.Fatalf("seed %d: compacting twice discarded %d", seed, again)
		}
		// Edit on, with deltas delivered late, duplicated, out of order.
		var log2 []Text
		for range 150 {
			i := r.IntN(n)
			x := &reps[i]
			switch k := r.IntN(10); {
			case k < 4 || x.Len() == 0:
				log2 = append(log2, x.Insert(fmt.Sprint("r", i), r.IntN(x.Len()+1), "xy"[:1+r.IntN(2)]))
			case k < 6:
				log2 = append(log2, x.Delete(r.IntN(x.Len()), 1))
			default:
				if len(log2) > 0 {
					x.Merge(log2[r.IntN(len(log2))])
				}
			}
		}
		var ref refDoc
		for _, d := range append(slices.Clone(log), log2...) {
			refOf(&ref, d)
		}
		for _, j := range r.Perm(len(log2)) {
			observer.Merge(log2[j])
		}
		want := ref.String()
		if observer.String() != want {
			t.Fatalf("seed %d: observer %q, want %q", seed, observer.String(), want)
		}
		for i := range reps {
			for _, j := range r.Perm(len(log2)) {
				reps[i].Merge(log2[j])
			}
			if reps[i].String() != want || reps[i].Pending() != 0 {
				t.Fatalf("seed %d: compacted replica %d: %q (%d pending), want %q", seed, i, reps[i].String(), reps[i].Pending(), want)
			}
		}
		// Full states: the observer's into a compacted replica brings no
		// tombstone back; a compacted state into the observer changes no
		// text. Compacting everyone at the next quiescent point gives equal
		// states.
		before := encode(t, reps[0])
		reps[0].Merge(observer.Clone())
		if encode(t, reps[0]) != before {
			t.Fatalf("seed %d: merging the uncompacted state changed a compacted replica", seed)
		}
		observer.Merge(reps[1])
		if observer.String() != want || observer.Pending() != 0 {
			t.Fatalf("seed %d: the observer changed on merging a compacted state", seed)
		}
		stable = observer.Version()
		observer.Compact(stable)
		for i := range reps {
			reps[i].Compact(stable)
			if encode(t, reps[i]) != encode(t, observer) {
				t.Fatalf("seed %d: replica %d and the observer differ after compacting alike", seed, i)
			}
		}
	}
}

// TestTextConcurrentInsertsDoNotInterleave: runs typed concurrently at one
// place, forwards or backwards, stay whole, in the same order everywhere.
func TestTextConcurrentInsertsDoNotInterleave(t *testing.T) {
	for _, backwards := range []bool{false, true} {
		var base Text
		base.Insert("o", 0, "[]")
		var a, b, c Text
		var deltas []Text
		for i, x := range []*Text{&a, &b, &c} {
			x.Merge(base)
			word := []string{"alpha", "bravo", "charlie"}[i]
			for k, ch := range word {
				pos := 1 + k
				if backwards {
					pos = 1
					ch = []rune(word)[len(word)-1-k]
				}
				deltas = append(deltas, x.Insert(fmt.Sprint("r", i), pos, string(ch)))
			}
		}
		var want string
		for p, perm := range [][]int{{0, 1, 2}, {2, 1, 0}, {1, 2, 0}} {
			var x Text
			x.Merge(base)
			for _, i := range perm {
				for j := range deltas {
					if j/len("alpha") == i || i == 2 && j >= 10 {
						x.Merge(deltas[j])
					}
				}
			}
			for _, d := range deltas {
				x.Merge(d)
			}
			if p == 0 {
				want = x.String()
			}
			if x.String() != want {
				t.Fatalf("backwards %v: %q in one order, %q in another", backwards, want, x.String())
			}
		}
		for _, w := range []string{"alpha", "bravo", "charlie"} {
			if !bytes.Contains([]byte(want), []byte(w)) {
				t.Fatalf("backwards %v: %q interleaves %q", backwards, want, w)
			}
		}
		if want[0] != '[' || want[len(want)-1] != ']' {
			t.Fatalf("backwards %v: %q left the brackets", backwards, want)
		}
	}
}

// TestListAgainstSlice: local inserts and deletes on a List[int] match
// the same splices on a slice, and the list round-trips through msgpack.
func TestListAgainstSlice(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 0x11))
		var l List[int]
		var model []int
		for step := range 300 {
			if len(model) == 0 || r.IntN(3) > 0 {
				pos := r.IntN(len(model) + 1)
				xs := []int{step, -step, step * 7}[:1+r.IntN(3)]
				l.Insert("a", pos, xs...)
				model = slices.Insert(model, pos, xs...)
			} else {
				pos := r.IntN(len(model))
				k := 1 + r.IntN(min(4, len(model)-pos))
				l.Delete(pos, k)
				model = slices.Delete(model, pos, pos+k)
			}
			if l.Len() != len(model) {
				t.Fatalf("seed %d: Len %d, want %d", seed, l.Len(), len(model))
			}
		}
		if !slices.Equal(l.Items(), model) {
			t.Fatalf("seed %d: %v, want %v", seed, l.Items(), model)
		}
		for i, x := range model {
			if l.Get(i) != x {
				t.Fatalf("seed %d: Get(%d) = %d, want %d", seed, i, l.Get(i), x)
			}
		}
		checkTree(t, &l.s)
		b, err := msgpack.Marshal(l)
		if err != nil {
			t.Fatal(err)
		}
		var back List[int]
		if err := msgpack.Unmarshal(b, &back); err != nil {
			t.Fatalf("seed %d: %v", seed, err)
		}
		if !slices.Equal(back.Items(), model) || encode(t, back) != string(b) {
			t.Fatalf("seed %d: round trip", seed)
		}
		before := encode(t, l)
		l.Merge(l)
		if encode(t, l) != before {
			t.Fatalf("seed %d: merging a list into itself changed it", seed)
		}
		c := l.Clone()
		c.Insert("b", 0, 1)
		if slices.Equal(c.Items(), l.Items()) {
			t.Fatalf("seed %d: Clone shares storage", seed)
		}
	}
}

// TestSeqHostile: forged encodings are refused with ErrMalformed, without
// panicking or allocating for the lengths they claim.
func TestSeqHostile(t *testing.T) {
	run := func(ints ...any) []any { return ints }
	state := func(names []string, spans []any, content string, pending []any, dead []any, stable []any) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		_ = enc.EncodeArrayLen(7)
		_ = enc.Encode(names)
		for i, part := range [][]any{spans, nil, pending, nil, dead, stable} {
			if i == 1 || i == 3 {
				c := content
				if i == 3 {
					c = ""
				}
				_ = enc.EncodeString(c)
				continue
			}
			_ = enc.EncodeArrayLen(len(part))
			for _, v := range part {
				_ = enc.Encode(v)
			}
		}
		return buf.Bytes()
	}
	const two63 = uint64(1 << 63)
	good := state([]string{"a"}, run(flagID+16*2, 0, 0), "hi", nil, nil, nil)
	var ok Text
	if err := msgpack.Unmarshal(good, &ok); err != nil || ok.String() != "hi" {
		t.Fatalf("the well-formed state: %v %q", err, ok.String())
	}
	cases := map[string][]byte{
		"counter 2^63":             state([]string{"a"}, run(flagID+16, 0, two63-1), "h", nil, nil, nil),
		"counter delta 2^64-1":     state([]string{"a"}, run(flagID+16, 0, uint64(1<<64-1)), "h", nil, nil, nil),
		"counter delta 2^63":       state([]string{"a"}, run(flagID+16, 0, two63), "h", nil, nil, nil),
		"run past 2^63":            state([]string{"a"}, run(flagID+16*4, 0, uint64(maxCounter-2)), "hhhh", nil, nil, nil),
		"run of 2^50":              state([]string{"a"}, run(uint64(flagID+flagDead)+uint64(1)<<(50+flagBits), 0, 0), "", nil, nil, nil),
		"unknown replica":          state([]string{"a"}, run(flagID+16, 1, 0), "h", nil, nil, nil),
		"unused replica":           state([]string{"a", "b"}, run(flagID+16, 0, 0), "h", nil, nil, nil),
		"replicas unsorted":        state([]string{"b", "a"}, run(flagID+16, 0, 0, flagID+16, 1, 0), "hh", nil, nil, nil),
		"content short":            state([]string{"a"}, run(flagID+16*3, 0, 0), "hi", nil, nil, nil),
		"element twice":            state([]string{"a"}, run(flagID+16, 0, 0, flagID+flagLeft+16, 0, -1, 1, 0), "hh", nil, nil, nil),
		"runs not joined":          state([]string{"a"}, run(flagID+flagRight+16, 0, 0, 0, 16|flagRight, 0), "hh", nil, nil, nil),
		"missing origin":           state([]string{"a"}, run(flagID+flagLeft+16, 0, 5, 1, 3), "h", nil, nil, nil),
		"dead range past 2^63":     state([]string{"a"}, nil, "", nil, run(0, 5, two63-4), nil),
		"dead range of live":       state([]string{"a"}, run(flagID+16, 0, 0), "h", nil, run(0, 1, 1), nil),
		"frontier counter 2^63":    state([]string{"a"}, nil, "", nil, nil, run(0, two63)),
		"pending with its origins": state([]string{"a"}, nil, "", run(0, 1, 1, 0, 0, 0), nil, nil),
		"deletion under frontier":  state([]string{"a"}, nil, "", nil, run(0, 1, 1), run(0, 1)),
		"array32 of 2^32-1 runs":   mustHex("97" + "91a161" + "ddffffffff"),
		"array32 of 2^32-1 names":  mustHex("97" + "ddffffffff"),
		"not an array":             mustHex("a161"),
		"header below one element": state([]string{"a"}, run(flagID, 0, 0), "", nil, nil, nil),
	}
	for name, b := range cases {
		var x Text
		err := msgpack.Unmarshal(b, &x)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		}
		if x.Len() != 0 || !x.s.empty() {
			t.Errorf("%s: the target changed", name)
		}
	}
	// A delete of a huge range is cheap and deletes what it names.
	var x Text
	x.Insert("a", 0, "hello")
	x.Merge(Text{s: seq[rune]{dead: idRanges{"a": {{1, maxCounter}}}}})
	if x.String() != "" {
		t.Fatalf("huge delete left %q", x.String())
	}
}

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestTextCounterFromTheWire: a state naming this replica's counter at
// 2^63-1, the largest a decoder accepts, makes this replica's next insert
// fail with ErrExhausted and change nothing (no panic from TryInsert, and
// no counter past the bound that other replicas would refuse), while other
// replicas go on inserting.
func TestTextCounterFromTheWire(t *testing.T) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	_ = enc.EncodeArrayLen(7)
	_ = enc.Encode([]string{"a"})
	_ = enc.Encode([]any{flagID + 16, 0, uint64(maxCounter - 1)})
	_ = enc.EncodeString("x")
	_ = enc.Encode([]int{})
	_ = enc.EncodeString("")
	_ = enc.Encode([]int{})
	_ = enc.Encode([]int{})
	var x Text
	if err := msgpack.Unmarshal(buf.Bytes(), &x); err != nil {
		t.Fatal(err)
	}
	if v := x.Version().Get("a"); v != maxCounter {
		t.Fatalf("version %d, want 2^63-1", v)
	}
	before, _ := msgpack.Marshal(x)
	if _, err := x.TryInsert("a", 1, "yz"); !errors.Is(err, vclock.ErrExhausted) {
		t.Fatalf("TryInsert at the bound: %v, want ErrExhausted", err)
	}
	if after, _ := msgpack.Marshal(x); !bytes.Equal(before, after) {
		t.Fatal("a refused insert changed the state")
	}
	d := x.Insert("b", 1, "yz")
	if x.String() != "xyz" || d.Version().Get("b") != 2 {
		t.Fatalf("%q, delta version %d", x.String(), d.Version().Get("b"))
	}
	enc2, err := msgpack.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	var y Text
	if err := msgpack.Unmarshal(enc2, &y); err != nil || y.String() != "xyz" {
		t.Fatalf("decoded %q, %v", y.String(), err)
	}
}

// TestSeqForgedOrderConverges: an element whose origins no replica could
// have given it (its right origin at or before its left) waits for good,
// invisible, on every replica, whatever order the merges come in; before,
// it was placed differently by replicas that merged it before or after a
// concurrent insert. A state that holds one decodes only when the decoder
// cannot tell (origins in other states): one element as both origins, or
// a held element outside its origins, is refused.
func TestSeqForgedOrderConverges(t *testing.T) {
	var base Text
	base.Insert("x", 0, "AB")
	q := base.Clone()
	dq := q.Insert("z", 1, "Q")
	for _, o := range [][2]elemID{{{"x", 1}, {"x", 1}}, {{"x", 2}, {"x", 1}}} {
		var forged Text
		forged.s.pending = []*span[rune]{{id: elemID{"y", 1}, n: 1, left: o[0], right: o[1], items: []rune{'Z'}}}
		var back Text
		if err := msgpack.Unmarshal(mustMarshal(forged), &back); o[0] == o[1] {
			require.ErrorIs(t, err, ErrMalformed)
		} else {
			require.NoError(t, err)
			require.Equal(t, encode(t, forged), encode(t, back))
		}
		one, two := base.Clone(), base.Clone()
		one.Merge(forged.Clone())
		one.Merge(dq.Clone())
		two.Merge(dq.Clone())
		two.Merge(forged.Clone())
		assert.Equal(t, "AQB", one.String(), "origins %v", o)
		assert.Equal(t, encode(t, one), encode(t, two), "origins %v", o)
		// A later insert after the forged element's place does not bring it in.
		one.Insert("x", 3, "C")
		assert.Equal(t, "AQBC", one.String())
	}
	var held Text
	held.Insert("x", 0, "AB")
	held.Insert("y", 0, "Z")
	require.NoError(t, msgpack.Unmarshal(mustMarshal(held), new(Text)))
	held.s.firstSpan().left = elemID{"x", 2} // Z before its left origin B
	require.ErrorIs(t, msgpack.Unmarshal(mustMarshal(held), new(Text)), ErrMalformed)
}
