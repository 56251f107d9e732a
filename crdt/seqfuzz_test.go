package crdt

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fuzzSeq checks a sequence decoder on arbitrary input: an error wraps
// ErrMalformed and leaves the target unchanged; a decoded state has a
// canonical encoding and sound tree, and merges with a replica of a random
// history in both orders without panicking, idempotently. (Merged in two
// orders, a forged state may give two sequences: a decoder cannot tell a
// forged order or frontier from a true one.)
func fuzzSeq[S any, P interface {
	*S
	Merge(S)
	Clone() S
	Len() int
	tree() *seq[E]
}, E any](f *testing.F, seeds func(add func(S))) {
	seeds(func(x S) {
		b, err := msgpack.Marshal(x)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	})
	for _, h := range []string{"97", "9790dc", "9791a161dd7fffffff", "97" + "91a161" + "93" + "12" + "00" + "00" + "a2" + "6869"} {
		f.Add(mustHex(h))
	}
	var other S
	seeds(func(x S) { P(&other).Merge(x) })
	f.Fuzz(func(t *testing.T, b []byte) {
		var s S
		if err := msgpack.Unmarshal(b, P(&s)); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			if P(&s).Len() != 0 || !P(&s).tree().empty() {
				t.Fatal("a failed decode changed the target")
			}
			return
		}
		checkTree(t, P(&s).tree())
		enc, err := msgpack.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back S
		if err := msgpack.Unmarshal(enc, P(&back)); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
		if again, _ := msgpack.Marshal(back); string(again) != string(enc) {
			t.Fatal("encoding is not canonical")
		}
		ab := P(&other).Clone()
		P(&ab).Merge(s)
		ba := P(&s).Clone()
		P(&ba).Merge(other)
		checkTree(t, P(&ab).tree())
		checkTree(t, P(&ba).tree())
		once, _ := msgpack.Marshal(ab)
		P(&ab).Merge(s)
		if twice, _ := msgpack.Marshal(ab); string(twice) != string(once) {
			t.Fatal("merging twice changed the state")
		}
	})
}

func (t *Text) tree() *seq[rune] { return &t.s }
func (l *List[T]) tree() *seq[T] { return &l.s }

func FuzzTextDecode(f *testing.F) {
	fuzzSeq[Text, *Text, rune](f, func(add func(Text)) {
		reps, log := history(rand.New(rand.NewPCG(5, 6)), 3, 60)
		for _, d := range log[:20] {
			add(d)
		}
		for _, x := range reps {
			add(x)
		}
		var x Text
		for _, r := range reps {
			x.Merge(r)
		}
		x.Compact(x.Version())
		add(x)
	})
}

func FuzzListDecode(f *testing.F) {
	fuzzSeq[List[int], *List[int], int](f, func(add func(List[int])) {
		r := rand.New(rand.NewPCG(7, 8))
		var a, b List[int]
		for i := range 40 {
			x, id := &a, "a"
			if i%3 == 0 {
				x, id = &b, "b"
			}
			if x.Len() > 0 && r.IntN(3) == 0 {
				add(x.Delete(r.IntN(x.Len()), 1))
			} else {
				add(x.Insert(id, r.IntN(x.Len()+1), i, -i))
			}
			if i%7 == 0 {
				a.Merge(b)
			}
		}
		add(a)
		add(b)
	})
}
