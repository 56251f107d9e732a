package kv

import (
	"bytes"
	"errors"
	"testing"

	"github.com/distkit/distkit/vclock"
)

func sampleMessages() (request, response) {
	var o Object
	o.Update(vclock.VClock{}, "n1.0", Version{Value: []byte("v")})
	var ctx vclock.VClock
	ctx.Tick("n2.0")
	q := request{Op: opCoordinate, Key: []byte("k"), Object: o, Hint: "n3", Context: ctx,
		Value: Version{Value: []byte("x"), IdempotencyKey: "K"}, W: 2, Group: "n1,n2,n3", Tree: []byte{1, 2}, Segments: []int{0, 7, 255},
		After: []byte("a"), Limit: 1 << 20, Entries: []Entry{{Key: []byte("k"), Object: o}}}
	p := response{Found: true, Object: o, Context: ctx, Dot: vclock.Dot{ID: "n1.0", Counter: 1},
		Tree: []byte{3}, Entries: []Entry{{Key: []byte("k"), Object: o}}, More: true}
	return q, p
}

func TestRPCRoundTrip(t *testing.T) {
	q, p := sampleMessages()
	qb, err := q.marshal()
	if err != nil {
		t.Fatal(err)
	}
	var q2 request
	if err := q2.unmarshal(qb); err != nil {
		t.Fatal(err)
	}
	if again, _ := q2.marshal(); !bytes.Equal(qb, again) {
		t.Fatalf("request re-encodes differently")
	}
	pb, err := p.marshal()
	if err != nil {
		t.Fatal(err)
	}
	var p2 response
	if err := p2.unmarshal(pb); err != nil {
		t.Fatal(err)
	}
	if again, _ := p2.marshal(); !bytes.Equal(pb, again) {
		t.Fatalf("response re-encodes differently")
	}
	if p2.Dot != p.Dot || !p2.Found || len(p2.Entries) != 1 || !p2.More || q2.W != 2 || q2.Op != opCoordinate || q2.Value.IdempotencyKey != "K" ||
		string(q2.After) != "a" || q2.Limit != 1<<20 || len(q2.Entries) != 1 {
		t.Fatalf("decoded %+v / %+v", q2, p2)
	}
	for name, b := range map[string][]byte{
		"truncated": qb[:len(qb)-1], "trailing": append(qb[:len(qb):len(qb)], 0), "op 0": append([]byte{0x9a, 0x00}, qb[2:]...),
		// The array of segments claims 2^31-1 elements, more than the bytes left.
		"huge segments": bytes.Replace(qb, []byte{0x93, 0x00, 0x07, 0xcc, 0xff}, []byte{0xdd, 0x7f, 0xff, 0xff, 0xff}, 1),
	} {
		if err := new(request).unmarshal(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

func FuzzRequest(f *testing.F) {
	q, _ := sampleMessages()
	b, _ := q.marshal()
	f.Add(b)
	b, _ = (&request{Op: opRead, Key: []byte("k")}).marshal()
	f.Add(b)
	b, _ = (&request{Op: opCoordinate, Key: []byte("k"), Value: Version{Deleted: true, IdempotencyKey: `"a"`}, W: 1}).marshal()
	f.Add(b)
	b, _ = (&request{Op: opScan, Group: "a,b", Segments: []int{1, 2}, After: []byte("x"), Limit: 10}).marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var q request
		if q.unmarshal(b) != nil {
			return
		}
		enc, err := q.marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := new(request).unmarshal(enc); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

func FuzzResponse(f *testing.F) {
	_, p := sampleMessages()
	b, _ := p.marshal()
	f.Add(b)
	b, _ = (&response{}).marshal()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var p response
		if p.unmarshal(b) != nil {
			return
		}
		enc, err := p.marshal()
		if err != nil {
			t.Fatal(err)
		}
		if err := new(response).unmarshal(enc); err != nil {
			t.Fatalf("re-decoding: %v", err)
		}
	})
}

// opOf reads the op of every encoded request, and no op from bytes that
// do not begin as one.
func TestOpOf(t *testing.T) {
	for o := opRead; o < opMax; o++ {
		b, err := (&request{Op: o, Key: []byte("k")}).marshal()
		if err != nil {
			t.Fatal(err)
		}
		if got := opOf(b); got != o {
			t.Errorf("opOf of a %v request: %v", o, got)
		}
	}
	for _, b := range [][]byte{nil, {0x9d}, {0x9d, 0x01, 0x01}, {0x9c, 0xcc, 0x01}} {
		if got := opOf(b); got != 0 {
			t.Errorf("opOf(% x) = %v, want 0", b, got)
		}
	}
}
