package idempotency

import (
	"bytes"
	"errors"
	"net/http"
	"reflect"
	"testing"
)

// TestResponseGolden pins the stored format, derived by hand from the
// msgpack specification: [200, {"A": ["b"]}, bin "x"].
func TestResponseGolden(t *testing.T) {
	resp := &response{status: 200, header: http.Header{"A": {"b"}}, body: []byte("x")}
	want := []byte{0x93, 0xcc, 0xc8, 0x81, 0xa1, 'A', 0x91, 0xa1, 'b', 0xc4, 0x01, 'x'}
	if got := resp.encode(); !bytes.Equal(got, want) {
		t.Fatalf("encode = % x, want % x", got, want)
	}
	// [0, bin "ok"] and [1, "no"]
	if got := encodeOutcome([]byte("ok"), nil); !bytes.Equal(got, []byte{0x92, 0x00, 0xc4, 0x02, 'o', 'k'}) {
		t.Fatalf("encodeOutcome ok = % x", got)
	}
	if got := encodeOutcome(nil, errors.New("no")); !bytes.Equal(got, []byte{0x92, 0x01, 0xa2, 'n', 'o'}) {
		t.Fatalf("encodeOutcome err = % x", got)
	}
}

// TestResponseDeterministic: header insertion order does not change the
// bytes.
func TestResponseDeterministic(t *testing.T) {
	a := &response{status: 201, header: http.Header{}, body: []byte("b")}
	b := &response{status: 201, header: http.Header{}, body: []byte("b")}
	for _, k := range []string{"Zeta", "Alpha", "Location", "Content-Type", "X-A", "X-B"} {
		a.header[k] = []string{k + "1", k + "2"}
	}
	for _, k := range []string{"X-B", "Location", "Alpha", "X-A", "Zeta", "Content-Type"} {
		b.header[k] = []string{k + "1", k + "2"}
	}
	if !bytes.Equal(a.encode(), b.encode()) {
		t.Fatal("encodings differ")
	}
}

func TestDecodeResponseRejects(t *testing.T) {
	valid := (&response{status: 200, header: http.Header{"A": {"b"}, "C": {"d"}}, body: []byte("x")}).encode()
	cases := map[string][]byte{
		"empty":         {},
		"nil":           {0xc0},
		"short array":   {0x92, 0xcc, 0xc8, 0x80},
		"status 99":     {0x93, 0x63, 0x80, 0xc4, 0x00},
		"status 1000":   {0x93, 0xcd, 0x03, 0xe8, 0x80, 0xc4, 0x00},
		"negative":      {0x93, 0xff, 0x80, 0xc4, 0x00},
		"float status":  {0x93, 0xca, 0, 0, 0, 0, 0x80, 0xc4, 0x00},
		"str body":      {0x93, 0xcc, 0xc8, 0x80, 0xa1, 'x'},
		"nil body":      {0x93, 0xcc, 0xc8, 0x80, 0xc0},
		"huge map":      {0x93, 0xcc, 0xc8, 0xdf, 0xff, 0xff, 0xff, 0xff},
		"huge values":   {0x93, 0xcc, 0xc8, 0x81, 0xa1, 'A', 0xdd, 0xff, 0xff, 0xff, 0xff},
		"huge body":     {0x93, 0xcc, 0xc8, 0x80, 0xc6, 0xff, 0xff, 0xff, 0xff},
		"trailing":      append(bytes.Clone(valid), 0),
		"truncated":     valid[:len(valid)-1],
		"unsorted":      {0x93, 0xcc, 0xc8, 0x82, 0xa1, 'C', 0x90, 0xa1, 'A', 0x90, 0xc4, 0x00},
		"duplicate":     {0x93, 0xcc, 0xc8, 0x82, 0xa1, 'A', 0x90, 0xa1, 'A', 0x90, 0xc4, 0x00},
		"bad name":      {0x93, 0xcc, 0xc8, 0x81, 0xa2, 'A', ':', 0x90, 0xc4, 0x00},
		"empty name":    {0x93, 0xcc, 0xc8, 0x81, 0xa0, 0x90, 0xc4, 0x00},
		"CRLF in value": {0x93, 0xcc, 0xc8, 0x81, 0xa1, 'A', 0x91, 0xa3, 'a', '\r', '\n', 0xc4, 0x00},
	}
	for name, b := range cases {
		if _, err := decodeResponse(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
	}
	if _, err := decodeResponse(valid); err != nil {
		t.Fatal(err)
	}
}

func FuzzDecodeResponse(f *testing.F) {
	f.Add((&response{status: 201, header: http.Header{"Location": {"/a"}, "Set-Cookie": {"a=1", "b=2"}}, body: []byte("hi")}).encode())
	f.Add((&response{status: 204}).encode())
	f.Add([]byte{0x93, 0xcc, 0xc8, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		resp, err := decodeResponse(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		again, err := decodeResponse(resp.encode())
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if again.status != resp.status || !bytes.Equal(again.body, resp.body) || !reflect.DeepEqual(again.header, resp.header) {
			t.Fatalf("round trip changed %+v into %+v", resp, again)
		}
	})
}

func FuzzDecodeOutcome(f *testing.F) {
	f.Add(encodeOutcome([]byte("result"), nil))
	f.Add(encodeOutcome(nil, nil))
	f.Add(encodeOutcome(nil, errors.New("declined")))
	f.Add([]byte{0x92, 0x02, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, err := decodeOutcome(b)
		var stored *StoredError
		switch {
		case errors.As(err, &stored):
			if !bytes.Equal(encodeOutcome(nil, stored), b) {
				t.Fatalf("stored error %q does not re-encode to the input", stored.Message)
			}
		case err != nil:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
		default:
			again, err := decodeOutcome(encodeOutcome(out, nil))
			if err != nil || !bytes.Equal(again, out) || (again == nil) != (out == nil) {
				t.Fatalf("round trip of %q gave %q, %v", out, again, err)
			}
		}
	})
}
