package crdt

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// fuzzDecode checks a decoder on arbitrary input: it returns an error
// wrapping ErrMalformed or a state whose encoding is canonical (decoding
// it gives the same bytes) and which obeys the merge laws with itself,
// the zero value and its clone. Seeds are the encodings of the states
// of a random history of mut, plus a few hostile headers.
func fuzzDecode[W any, P subject[W], S any, PS lattice[S]](f *testing.F, mut mutator[W]) {
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
	}
	for _, b := range [][]byte{nil, {0x90}, {0x92, 0x80, 0x92, 0x90, 0x90}, {0xdd, 0xff, 0xff, 0xff, 0xff}, {0x92, 0xdf, 0, 0, 0, 9}} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var s S
		if err := msgpack.Unmarshal(b, PS(&s)); err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		enc := encode(t, s)
		var back S
		if err := msgpack.Unmarshal([]byte(enc), PS(&back)); err != nil {
			t.Fatalf("re-decoding %x: %v", enc, err)
		}
		if encode(t, back) != enc {
			t.Fatalf("encoding of %x is not canonical", b)
		}
		self := PS(&s).Clone()
		PS(&self).Merge(PS(&s).Clone())
		var zero S
		PS(&zero).Merge(PS(&s).Clone())
		if encode(t, self) != enc || encode(t, zero) != enc {
			t.Fatalf("merge of %x with itself or with zero changes it", b)
		}
	})
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
	fuzzDecode[lwwW, *lwwW, LWWRegister[int]](f, mutLWW)
}

func FuzzDecodeORSet(f *testing.F) {
	fuzzDecode[orsetW, *orsetW, ORSet[int]](f, mutORSet)
}

func FuzzDecodeMVRegister(f *testing.F) {
	fuzzDecode[mvregW, *mvregW, MVRegister[int]](f, mutMVRegister)
}

func FuzzDecodeEWFlag(f *testing.F) {
	fuzzDecode[flagW, *flagW, EWFlag](f, mutEWFlag)
}

func FuzzDecodeORMap(f *testing.F) {
	fuzzDecode[nestedW, *nestedW, nestedMap](f, mutNested)
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
