package kv

import (
	"bytes"
	"errors"
	"runtime"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/vclock"
)

func TestObjectRoundTrip(t *testing.T) {
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a")})
	o.Update(vclock.VClock{}, "n2", Version{Value: []byte{}})
	o.Update(o.Context(), "n1", Version{Deleted: true})
	o.Update(vclock.VClock{}, "n3", Version{Value: []byte("c")})
	enc, err := EncodeObject(o)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeObject(enc)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := EncodeObject(got)
	if !bytes.Equal(enc, again) {
		t.Fatalf("re-encoding differs:\n%x\n%x", enc, again)
	}
	if l := Live(got); len(l) != 1 || string(l[0]) != "c" {
		t.Fatalf("Live = %q, want [c]", l)
	}
}

func TestDecodeObjectHostile(t *testing.T) {
	tomb, _ := msgpack.Marshal([]any{[]any{[]any{"n1", 1, []any{[]any{[]byte("x"), true}}}}, []any{}})
	huge := []byte{0x92, 0x91, 0x93, 0xa2, 'n', '1', 0x01, 0x91, 0x92, 0xc6, 0x7f, 0xff, 0xff, 0xff, 0xc2, 0x90}
	valid, _ := EncodeObject(Object{})
	for name, in := range map[string][]byte{
		"empty":         nil,
		"tombstone+val": tomb,
		"huge bin":      huge,
		"trailing":      append(valid, 0xc0),
		"not an array":  {0xc3},
	} {
		if _, err := DecodeObject(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeObject = %v, want ErrMalformed", name, err)
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, _ = DecodeObject(huge)
	runtime.ReadMemStats(&after)
	// vclock decodes each value through internal/wire, whose msgpack Skip
	// reads a bin through a buffer of up to msgpack's 1 MiB read chunk:
	// bounded, though not by the input (and counted twice under -race).
	if n := after.TotalAlloc - before.TotalAlloc; n > 16<<20 { // far below the 2 GiB claimed
		t.Errorf("decoding a 2 GiB length from %d bytes allocated %d bytes", len(huge), n)
	}
}

// FuzzDecodeObject: decoding never panics, and whatever decodes re-encodes
// to bytes that decode to the same object.
func FuzzDecodeObject(f *testing.F) {
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a")})
	o.Update(vclock.VClock{}, "n2", Version{Deleted: true})
	enc, _ := EncodeObject(o)
	f.Add(enc)
	f.Add([]byte{0x92, 0x90, 0x90})
	f.Add([]byte{0x92, 0x90, 0x91, 0x92, 0xc4, 0x01, 'x', 0xc2})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := DecodeObject(b)
		if err != nil {
			return
		}
		enc, err := EncodeObject(o)
		if err != nil {
			t.Fatal(err)
		}
		o2, err := DecodeObject(enc)
		if err != nil {
			t.Fatalf("re-decoding %x: %v", enc, err)
		}
		if enc2, _ := EncodeObject(o2); !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable encoding %x vs %x", enc, enc2)
		}
	})
}
