package crdt

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestDWFlag(t *testing.T) {
	var a, b DWFlag
	if !a.Value() {
		t.Fatal("the zero DWFlag is disabled")
	}
	d := a.Disable("a")
	b.Merge(d)
	if a.Value() || b.Value() {
		t.Fatal("Disable did not disable")
	}
	// Concurrently a enables (having seen the disable) and b disables
	// again: disable wins.
	en := a.Enable()
	dis := b.Disable("b")
	a.Merge(dis)
	b.Merge(en)
	if a.Value() || b.Value() {
		t.Fatalf("enable won over a concurrent disable: %v %v", a.Value(), b.Value())
	}
	// An enable that saw every disable enables.
	b.Merge(a.Enable())
	if !b.Value() {
		t.Fatal("an enable after every disable left the flag disabled")
	}
	buf, err := msgpack.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	var back DWFlag
	if err := msgpack.Unmarshal(buf, &back); err != nil || back.Value() != a.Value() || encode(t, back) != string(buf) {
		t.Fatalf("round trip: %v", err)
	}
	c := b.Clone()
	c.Disable("c")
	if !b.Value() {
		t.Fatal("Clone shares storage")
	}
}

// TestMaxRegisterLaws: merged in any order and grouping, any number of
// times, registers hold the largest value set anywhere.
func TestMaxRegisterLaws(t *testing.T) {
	for seed := range seeds() {
		r := rand.New(rand.NewPCG(seed, 0x3a))
		var reps [3]MaxRegister[float64]
		var deltas []MaxRegister[float64]
		want, seen := math.Inf(-1), false
		for range 30 {
			i := r.IntN(3)
			if r.IntN(3) == 0 {
				reps[i].Merge(reps[r.IntN(3)])
				continue
			}
			v := r.NormFloat64()
			if r.IntN(5) == 0 {
				v = math.Copysign(0, -1)
			}
			deltas = append(deltas, reps[i].Set(v))
			want, seen = math.Max(want, v), true
		}
		var x, y MaxRegister[float64]
		for _, j := range r.Perm(len(deltas)) {
			x.Merge(deltas[j])
			x.Merge(deltas[j])
		}
		for _, rep := range reps {
			y.Merge(rep)
		}
		for _, m := range []MaxRegister[float64]{x, y} {
			got, ok := m.Get()
			if ok != seen || seen && got != want {
				t.Fatalf("seed %d: got %v %v, want %v", seed, got, ok, want)
			}
			back := roundTripMax(t, m)
			if encode(t, back) != encode(t, m) {
				t.Fatalf("seed %d: round trip", seed)
			}
		}
	}
	var zero MaxRegister[int]
	if _, ok := zero.Get(); ok {
		t.Fatal("the zero register holds a value")
	}
}

func roundTripMax(t *testing.T, m MaxRegister[float64]) MaxRegister[float64] {
	t.Helper()
	var back MaxRegister[float64]
	if err := msgpack.Unmarshal([]byte(encode(t, m)), &back); err != nil {
		t.Fatal(err)
	}
	return back
}

func TestMaxRegisterHostile(t *testing.T) {
	nan, _ := msgpack.Marshal([]float64{math.NaN()})
	for name, b := range map[string][]byte{
		"NaN":          nan,
		"two values":   {0x92, 1, 2},
		"array32 2^32": mustHex("ddffffffff"),
		"not an array": {0x01},
		"truncated":    {0x91},
		"string for T": {0x91, 0xa1, 'x'},
	} {
		var r MaxRegister[float64]
		if err := msgpack.Unmarshal(b, &r); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: error %v, want ErrMalformed", name, err)
		}
		if _, ok := r.Get(); ok {
			t.Errorf("%s: the target changed", name)
		}
	}
}

func FuzzMaxRegisterDecode(f *testing.F) {
	for _, b := range [][]byte{{0x90}, {0x91, 0x05}, {0x91, 0xcb, 0x80, 0, 0, 0, 0, 0, 0, 0}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r MaxRegister[float64]
		if err := msgpack.Unmarshal(b, &r); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		back := roundTripMax(t, r)
		if encode(t, back) != encode(t, r) {
			t.Fatal("not canonical")
		}
		m := back
		m.Merge(r)
		if encode(t, m) != encode(t, r) {
			t.Fatal("merge with itself changed it")
		}
	})
}

func FuzzDWFlagDecode(f *testing.F) {
	var a DWFlag
	f.Add([]byte(encode(f, a.Disable("a"))))
	f.Add([]byte(encode(f, a)))
	f.Add([]byte(encode(f, a.Enable())))
	f.Fuzz(func(t *testing.T, b []byte) {
		var x DWFlag
		if err := msgpack.Unmarshal(b, &x); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		var back DWFlag
		if err := msgpack.Unmarshal([]byte(encode(t, x)), &back); err != nil || encode(t, back) != encode(t, x) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
