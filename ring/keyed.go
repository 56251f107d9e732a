package ring

import (
	"encoding/binary"
	"math/bits"
)

// KeyedHash is a secret-keyed position for key: SipHash-2-4 (Aumasson and
// Bernstein 2012) of its bytes under the 128-bit key secret. Use it in place
// of [KeyHash] with [Ring.LookupHash], [Ring.ReplicasHash],
// [Rendezvous.LookupHash] and [Rendezvous.ReplicasHash] when clients choose
// keys and must not be able to aim them at one node: [KeyHash] is public
// and unkeyed, so anyone who knows the node IDs can compute where a key
// lands, while SipHash is a pseudorandom function, so without the secret
// the positions of chosen keys are unpredictable.
//
// Every process placing keys must use the same secret: it is part of the
// placement, like the node set. Changing it moves nearly every key.
func KeyedHash(secret [16]byte, key []byte) uint64 {
	k0 := binary.LittleEndian.Uint64(secret[:8])
	k1 := binary.LittleEndian.Uint64(secret[8:])
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13) ^ v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16) ^ v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21) ^ v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17) ^ v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(key)
	for ; len(key) >= 8; key = key[8:] {
		m := binary.LittleEndian.Uint64(key)
		v3 ^= m
		round()
		round()
		v0 ^= m
	}
	last := uint64(n) << 56
	for i, c := range key {
		last |= uint64(c) << (8 * i)
	}
	v3 ^= last
	round()
	round()
	v0 ^= last
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}
