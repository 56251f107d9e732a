package crdt

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fuzzSeeds adds to f the encodings of the states and deltas of a random
// history of mut, one at a time and in pairs, plus a few hostile headers.
func fuzzSeeds[W any, P subject[W]](f *testing.F, mut mutator[W]) {
	r := rand.New(rand.NewPCG(1, 2))
	var reps [3]W
	for range 30 {
		i := r.IntN(3)
		if r.IntN(3) == 0 {
			o := P(&reps[r.IntN(3)]).copy()
			P(&reps[i]).join(&o)
		}
		d := mut(r, &reps[i], replicaIDs[i])
		f.Add([]byte(P(&d).key()))
		f.Add([]byte(P(&reps[i]).key()))
		f.Add([]byte(P(&reps[i]).key() + P(&reps[(i+1)%3]).key()))
	}
	for _, b := range [][]byte{nil, {0x90}, {0x92, 0x80, 0x92, 0x90, 0x90}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0x92, 0xdf, 0, 0, 0, 9},
		{0x93, 0x91, 0xdd, 1, 0, 0, 0}, {0x92, 0x91, 0x93, 0xa1, 'a', 1, 0x91, 0xdd, 1, 0, 0, 0},
		{0x92, 0x81, 0xa1, 'k', 0x91, 0x93, 0xa1, 'a', 1, 0x91, 0xdd, 1, 0, 0, 0},
		{0x91, 0x93, 0xa1, 'a', 0x01, 0x00}, {0x91, 0x92, 0xc4, 0x01, 'a', 0x01}, {0x91, 0x92, 0xa1, 'a', 0xcc, 0x01}} {
		f.Add(b)
	}
}

// decodeExact decodes an S from the front of b with its DecodeMsgpack
// method, as a decoder nested in another calls it. It fails t if the
// error does not wrap ErrMalformed, or if the decoded state does not
// encode back to exactly the bytes it was decoded from; it returns the
// state, the rest of b and whether decoding succeeded.
func decodeExact[S any, PS lattice[S]](t *testing.T, b []byte) (S, []byte, bool) {
	var s S
	r := bytes.NewReader(b)
	if err := PS(&s).DecodeMsgpack(msgpack.NewDecoder(r)); err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return s, nil, false
	}
	used := len(b) - r.Len()
	if enc := encode(t, s); enc != string(b[:used]) {
		t.Fatalf("decoded %x, encodes as %x", b[:used], enc)
	}
	return s, b[used:], true
}

// fuzzDecode checks a decoder on arbitrary input: it returns an error
// wrapping ErrMalformed or a state that encodes back to exactly the bytes
// it was decoded from, and which obeys the merge laws with itself, the
// zero value and its clone. The same bytes also go to the decoders of
// also (variants of S with values of type any; see decodeAny).
func fuzzDecode[W any, P subject[W], S any, PS lattice[S]](f *testing.F, mut mutator[W], also ...func([]byte) error) {
	fuzzSeeds[W, P](f, mut)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, dec := range also {
			if err := dec(b); err != nil {
				t.Fatal(err)
			}
		}
		s, _, ok := decodeExact[S, PS](t, b)
		if !ok {
			return
		}
		enc := encode(t, s)
		self := PS(&s).Clone()
		PS(&self).Merge(PS(&s).Clone())
		var zero S
		PS(&zero).Merge(PS(&s).Clone())
		if encode(t, self) != enc || encode(t, zero) != enc {
			t.Fatalf("merge of %x with itself or with zero changes it", b)
		}
	})
}

// fuzzMerge is the differential check of Merge: it decodes two states of
// S from the fuzzed bytes, one after the other, merges them in both
// orders, and requires identical encodings, whatever the states hold
// (also values that differ under the same dot, or nothing in common).
func fuzzMerge[W any, P subject[W], S any, PS lattice[S]](f *testing.F, mut mutator[W]) {
	fuzzSeeds[W, P](f, mut)
	f.Fuzz(func(t *testing.T, in []byte) {
		a, rest, ok := decodeExact[S, PS](t, in)
		if !ok {
			return
		}
		b, _, ok := decodeExact[S, PS](t, rest)
		if !ok {
			return
		}
		ab, ba := PS(&a).Clone(), PS(&b).Clone()
		PS(&ab).Merge(PS(&b).Clone())
		PS(&ba).Merge(PS(&a).Clone())
		if x, y := encode(t, ab), encode(t, ba); x != y {
			t.Fatalf("a.Merge(b) = %x, b.Merge(a) = %x", x, y)
		}
	})
}

// decodeAny decodes b into an S whose values are of type any, into which
// msgpack decodes whatever the input holds, and reports a broken contract:
// an error not wrapping ErrMalformed, or a state that does not encode to
// bytes it decodes again. (Maps inside values of type any do not encode
// deterministically, so the encoding is not compared.)
func decodeAny[S any, P lattice[S]](b []byte) error {
	var s S
	if err := msgpack.Unmarshal(b, P(&s)); err != nil {
		if !errors.Is(err, ErrMalformed) {
			return fmt.Errorf("%T: error %v does not wrap ErrMalformed", s, err)
		}
		return nil
	}
	enc, err := msgpack.Marshal(s)
	if err != nil {
		return fmt.Errorf("%T: encoding a decoded state: %v", s, err)
	}
	if err := msgpack.Unmarshal(enc, P(new(S))); err != nil {
		return fmt.Errorf("%T: re-decoding %x: %v", s, enc, err)
	}
	return nil
}

func FuzzDecodeGCounter(f *testing.F) {
	fuzzDecode[gcounterW, *gcounterW, GCounter](f, mutGCounter)
}

func FuzzDecodePNCounter(f *testing.F) {
	fuzzDecode[pncounterW, *pncounterW, PNCounter](f, mutPNCounter)
}

func FuzzDecodeGSet(f *testing.F) {
	fuzzDecode[gsetW, *gsetW, GSet[int]](f, mutGSet)
}

func FuzzDecodeLWWRegister(f *testing.F) {
	fuzzDecode[lwwW, *lwwW, LWWRegister[int]](f, mutLWW, decodeAny[LWWRegister[any]])
}

func FuzzDecodeORSet(f *testing.F) {
	fuzzDecode[orsetW, *orsetW, ORSet[int]](f, mutORSet)
}

func FuzzDecodeMVRegister(f *testing.F) {
	fuzzDecode[mvregW, *mvregW, MVRegister[int]](f, mutMVRegister, decodeAny[MVRegister[any]])
}

func FuzzDecodeEWFlag(f *testing.F) {
	fuzzDecode[flagW, *flagW, EWFlag](f, mutEWFlag)
}

func FuzzDecodeORMap(f *testing.F) {
	fuzzDecode[nestedW, *nestedW, nestedMap](f, mutNested, decodeAny[ORMap[string, MVRegister[any]]])
}

func FuzzMergeGCounter(f *testing.F) { fuzzMerge[gcounterW, *gcounterW, GCounter](f, mutGCounter) }

func FuzzMergePNCounter(f *testing.F) { fuzzMerge[pncounterW, *pncounterW, PNCounter](f, mutPNCounter) }

func FuzzMergeGSet(f *testing.F) { fuzzMerge[gsetW, *gsetW, GSet[int]](f, mutGSet) }

func FuzzMergeLWWRegister(f *testing.F) { fuzzMerge[lwwW, *lwwW, LWWRegister[int]](f, mutLWW) }

func FuzzMergeORSet(f *testing.F) { fuzzMerge[orsetW, *orsetW, ORSet[int]](f, mutORSet) }

func FuzzMergeMVRegister(f *testing.F) { fuzzMerge[mvregW, *mvregW, MVRegister[int]](f, mutMVRegister) }

func FuzzMergeEWFlag(f *testing.F) { fuzzMerge[flagW, *flagW, EWFlag](f, mutEWFlag) }

func FuzzMergeORMap(f *testing.F) { fuzzMerge[nestedW, *nestedW, nestedMap](f, mutNested) }

func FuzzMergeORMapRegisters(f *testing.F) {
	fuzzMerge[mapRegW, *mapRegW, ORMap[string, MVRegister[int]]](f, mutMapReg)
}

// FuzzMergeLaws runs the law checks of TestLaws on the history of one
// fuzzed seed, for the type the fuzzed kind selects.
func FuzzMergeLaws(f *testing.F) {
	for kind := range uint8(len(lawChecks)) {
		f.Add(uint64(kind)*7919, kind)
	}
	f.Fuzz(func(t *testing.T, seed uint64, kind uint8) {
		lawChecks[int(kind)%len(lawChecks)].run(t, seed)
	})
}
