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

// A Version without an idempotency key encodes as before keys existed;
// one with a key adds a third field; each has one encoding.
func TestVersionEncoding(t *testing.T) {
	for _, c := range []struct {
		v    Version
		want []byte
	}{
		{Version{Value: []byte("a")}, []byte{0x92, 0xc4, 0x01, 'a', 0xc2}},
		{Version{Deleted: true}, []byte{0x92, 0xc0, 0xc3}},
		{Version{Value: []byte("a"), IdempotencyKey: "K"}, []byte{0x93, 0xc4, 0x01, 'a', 0xc2, 0xa1, 'K'}},
		{Version{Deleted: true, IdempotencyKey: "K"}, []byte{0x93, 0xc0, 0xc3, 0xa1, 'K'}},
	} {
		enc, err := msgpack.Marshal(c.v)
		if err != nil || !bytes.Equal(enc, c.want) {
			t.Fatalf("%+v encodes to %x (%v), want %x", c.v, enc, err, c.want)
		}
		var got Version
		if err := msgpack.Unmarshal(enc, &got); err != nil || !got.Same(c.v) || got.IdempotencyKey != c.v.IdempotencyKey {
			t.Fatalf("%x decodes to %+v (%v), want %+v", enc, got, err, c.v)
		}
	}
	long := string(bytes.Repeat([]byte{'k'}, MaxIdempotencyKeyLen+1))
	for name, in := range map[string][]any{
		"empty key":      {[]byte("a"), false, ""},
		"long key":       {[]byte("a"), false, long},
		"bin key":        {[]byte("a"), false, []byte("K")},
		"nil key":        {[]byte("a"), false, nil},
		"four fields":    {[]byte("a"), false, "K", 1},
		"one field":      {[]byte("a")},
		"keyed tomb+val": {[]byte("a"), true, "K"},
	} {
		b, err := msgpack.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		if err := msgpack.Unmarshal(b, new(Version)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	huge := []byte{0x93, 0xc0, 0xc2, 0xda, 0x03, 0xff, 'K'} // a 1023-byte key in 7 bytes
	if err := msgpack.Unmarshal(huge, new(Version)); !errors.Is(err, ErrMalformed) {
		t.Errorf("key longer than the input: %v, want ErrMalformed", err)
	}
	// Averaged over many decodes, so that what other goroutines allocate
	// meanwhile does not count against it; a decode allocates about 360
	// bytes of its own.
	const runs = 1000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		_ = msgpack.Unmarshal(huge, new(Version))
	}
	runtime.ReadMemStats(&after)
	if n := (after.TotalAlloc - before.TotalAlloc) / runs; n >= 1023 {
		t.Errorf("decoding a 1023-byte key length from %d bytes allocated %d bytes", len(huge), n)
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
	o.Update(vclock.VClock{}, "n2", Version{Value: []byte("b"), IdempotencyKey: `"key-1"`})
	o.Update(vclock.VClock{}, "n3", Version{Deleted: true, IdempotencyKey: "k"})
	enc, _ = EncodeObject(o)
	f.Add(enc)
	f.Add([]byte{0x92, 0x90, 0x91, 0x93, 0xc4, 0x01, 'x', 0xc2, 0xa1, 'K'})
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
