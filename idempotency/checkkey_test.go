package idempotency

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// controlAt is the byte-by-byte definition of a key checkKey refuses for
// a control character: the index of the first byte below 0x20 or equal
// to 0x7f, or -1.
func controlAt(key string) int {
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < ' ' || c == 0x7f {
			return i
		}
	}
	return -1
}

// TestCheckKeyControl: checkKey, which tests eight bytes a step, refuses
// exactly the keys with a control character and names the first one;
// every byte value at every position of keys of two words, of a word and
// a tail, and of less than a word, among fillers that sit next to the
// boundaries (0x1f, 0x20, 0x7e, 0x7f, 0x80, 0xff), and
// random keys of every length up to 40 bytes with random bytes in them.
func TestCheckKeyControl(t *testing.T) {
	check := func(key string) {
		t.Helper()
		err := checkKey(key)
		switch at := controlAt(key); {
		case at < 0 && err != nil:
			t.Fatalf("%q: %v, want nil", key, err)
		case at >= 0 && (err == nil || err.Error() != fmt.Sprintf("%v: control character %#x at byte %d", ErrBadKey, key[at], at)):
			t.Fatalf("%q: %v, want byte %d", key, err, at)
		}
	}
	for _, fill := range []byte{'k', 0x1f, 0x20, 0x21, 0x7e, 0x7f, 0x80, 0xff} {
		for _, size := range []int{16, 14, 9, 7} { // whole words, a tail in the last eight, no word
			for pos := range size {
				for b := range 256 {
					key := []byte("0123456789abcdef"[:size])
					for i := range key {
						if i != 3 { // one ordinary byte, so that the fill is not all
							key[i] = fill
						}
					}
					key[pos] = byte(b)
					check(string(key))
				}
			}
		}
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	alphabet := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, 'a', 0x7e, 0x7f, 0x80, 0x9f, 0xc3, 0xff}
	for range 20000 {
		key := make([]byte, rng.IntN(41))
		for i := range key {
			if rng.IntN(8) == 0 {
				key[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				key[i] = byte(0x20 + rng.IntN(0x5f))
			}
		}
		if len(key) > 0 {
			check(string(key))
		}
	}
}
