package idempotency

import (
	"bytes"
	"errors"
	"math"
	"net/http"
	"reflect"
	"strings"
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
	// [0, bin "ok"], [0, nil], [1, "no"] and [1, "no", "c"]
	for _, c := range []struct {
		out  []byte
		err  error
		code string
		want []byte
	}{
		{[]byte("ok"), nil, "", []byte{0x92, 0x00, 0xc4, 0x02, 'o', 'k'}},
		{nil, nil, "", []byte{0x92, 0x00, 0xc0}},
		{nil, errors.New("no"), "", []byte{0x92, 0x01, 0xa2, 'n', 'o'}},
		{nil, errors.New("no"), "c", []byte{0x93, 0x01, 0xa2, 'n', 'o', 0xa1, 'c'}},
	} {
		if got := appendOutcome(nil, c.out, c.err, c.code); !bytes.Equal(got, c.want) {
			t.Errorf("appendOutcome(%q, %v, %q) = % x, want % x", c.out, c.err, c.code, got, c.want)
		}
	}
}

// TestWireLengths pins every width of the lengths and integers the
// writer chooses, and that the reader takes each back.
func TestWireLengths(t *testing.T) {
	for _, n := range []int{0, 15, 16, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("x", n)
		b := appendBin(appendStr(appendUint(appendLen(nil, n, 0x90, 16, arrayCodes), uint64(n)), s), []byte(s))
		r := wireReader{buf: append(b, make([]byte, n)...)} // room for n array elements
		if got, err := r.arrayLen(); err != nil || got != n {
			t.Fatalf("n=%d: arrayLen %d, %v", n, got, err)
		}
		if got, err := r.uint(); err != nil || got != uint64(n) {
			t.Fatalf("n=%d: uint %d, %v", n, got, err)
		}
		if got, err := r.str(); err != nil || string(got) != s {
			t.Fatalf("n=%d: str of %d bytes, %v", n, len(got), err)
		}
		if got, err := r.bin(false); err != nil || string(got) != s {
			t.Fatalf("n=%d: bin of %d bytes, %v", n, len(got), err)
		}
	}
	for _, v := range []uint64{0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 0x100000000, math.MaxUint64} {
		r := wireReader{buf: appendUint(nil, v)}
		if got, err := r.uint(); err != nil || got != v || r.end() != nil {
			t.Fatalf("uint %d: %d, %v", v, got, err)
		}
	}
}

func TestDecodeOutcomeRejects(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          {},
		"ok with 3":      {0x93, 0x00, 0xc0, 0xc0},
		"error with 4":   {0x94, 0x01, 0xa1, 'x', 0xa1, 'c', 0xc0},
		"empty code":     {0x93, 0x01, 0xa1, 'x', 0xa0},
		"bin code":       {0x93, 0x01, 0xa1, 'x', 0xc4, 0x01, 'c'},
		"unknown kind":   {0x92, 0x02, 0xc0},
		"str result":     {0x92, 0x00, 0xa1, 'x'},
		"huge result":    {0x92, 0x00, 0xc6, 0xff, 0xff, 0xff, 0xff},
		"truncated uint": {0x92, 0xcd, 0x00},
		"trailing":       {0x92, 0x00, 0xc0, 0x00},
	} {
		if _, _, err := decodeOutcome(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
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
	f.Add(appendOutcome(nil, []byte("result"), nil, ""))
	f.Add(appendOutcome(nil, nil, nil, ""))
	f.Add(appendOutcome(nil, nil, errors.New("declined"), ""))
	f.Add(appendOutcome(nil, nil, errors.New("declined"), "card_declined"))
	f.Add([]byte{0x92, 0x02, 0xc0})
	f.Fuzz(func(t *testing.T, b []byte) {
		out, stored, err := decodeOutcome(b)
		switch {
		case err != nil:
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
		case stored != nil:
			_, again, err := decodeOutcome(appendOutcome(nil, nil, stored, stored.Code))
			if err != nil || again == nil || *again != *stored {
				t.Fatalf("round trip of %+v gave %+v, %v", stored, again, err)
			}
		default:
			again, _, err := decodeOutcome(appendOutcome(nil, out, nil, ""))
			if err != nil || !bytes.Equal(again, out) || (again == nil) != (out == nil) {
				t.Fatalf("round trip of %q gave %q, %v", out, again, err)
			}
		}
	})
}
