package frame

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// frames returns the frames of payloads, one after another.
func frames(payloads ...[]byte) []byte {
	var b []byte
	for _, p := range payloads {
		var start int
		b, start = Begin(b)
		b = append(b, p...)
		End(b, start)
	}
	return b
}

// TestScan checks that every frame reads back, that a torn end of any
// length ends the scan at the last whole frame, and that a flipped bit in
// any frame but the last is damage.
func TestScan(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	var payloads [][]byte
	for range 5 {
		p := make([]byte, rng.IntN(40))
		for i := range p {
			p[i] = byte(rng.Uint32())
		}
		payloads = append(payloads, p)
	}
	b := frames(payloads...)
	var got [][]byte
	end, err := Scan(b, 1<<10, func(_ int, p []byte) error { got = append(got, p); return nil })
	if err != nil || end != len(b) || len(got) != len(payloads) {
		t.Fatalf("Scan = %d frames to %d, %v; want %d to %d", len(got), end, err, len(payloads), len(b))
	}
	for i := range got {
		if !bytes.Equal(got[i], payloads[i]) {
			t.Fatalf("frame %d = %x, want %x", i, got[i], payloads[i])
		}
	}
	lastStart := len(frames(payloads[:4]...))
	for cut := lastStart; cut < len(b); cut++ {
		if end, err := Scan(b[:cut], 1<<10, func(int, []byte) error { return nil }); end != lastStart || err != nil {
			t.Fatalf("cut at %d: end %d, %v; want %d", cut, end, err, lastStart)
		}
	}
	for i := range lastStart {
		d := bytes.Clone(b)
		d[i] ^= 1 << rng.IntN(8)
		if _, err := Scan(d, 1<<10, func(int, []byte) error { return nil }); !errors.Is(err, ErrDamaged) {
			t.Fatalf("bit flipped at %d: %v, want ErrDamaged", i, err)
		}
	}
	if end, err := Scan(append(bytes.Clone(b), make([]byte, 100)...), 1<<10, func(int, []byte) error { return nil }); end != len(b) || err != nil {
		t.Fatalf("zeros after the frames: end %d, %v", end, err)
	}
	if _, ok := Intact(b, len(payloads[0])-1); ok && len(payloads[0]) > 0 {
		t.Fatal("a frame above max is intact")
	}
}

// FuzzScan scans arbitrary bytes: it never panics, and the intact frames
// it reports scan again alone, whole.
func FuzzScan(f *testing.F) {
	b := frames([]byte("a"), []byte("bc"))
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		end, err := Scan(b, 1<<16, func(int, []byte) error { n++; return nil })
		if err != nil && !errors.Is(err, ErrDamaged) {
			t.Fatal(err)
		}
		m := 0
		end2, err := Scan(b[:end], 1<<16, func(int, []byte) error { m++; return nil })
		if err != nil || end2 != end || m != n {
			t.Fatalf("the intact prefix scans as %d frames to %d, %v; want %d to %d", m, end2, err, n, end)
		}
	})
}
