package ring

// Jump is the jump consistent hash of Lamping and Veach ("A Fast, Minimal
// Memory, Consistent Hash Algorithm", 2014): it maps key to a bucket in
// [0, buckets) so that growing buckets from b to b+1 moves only 1/(b+1) of
// the keys, all of them to the new bucket. Its output is exactly that of the
// paper's reference code, including its 64-bit linear congruential
// generator and double-precision arithmetic.
//
// Buckets are numbered, not named: only the last bucket can be removed.
// Jump returns -1 when buckets <= 0 (no bucket can hold the key). It
// accepts any bucket count up to math.MaxInt: a jump beyond 2^63, which the
// reference code's conversion would overflow, ends the walk as any jump
// past the last bucket does. It does not allocate and is safe for
// concurrent use.
func Jump(key uint64, buckets int) int {
	if buckets <= 0 {
		return -1
	}
	b, j := int64(-1), int64(0)
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		f := float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1))
		if f >= 1<<63 { // beyond every int64, so beyond buckets
			break
		}
		j = int64(f)
	}
	return int(b)
}
