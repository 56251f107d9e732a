package ring_test

import (
	"bufio"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/ring"
)

// TestJumpPublished checks the vectors published with dgryski/go-jump,
// generated there from the paper's reference C++ code: Jump(key, b) for
// b = 1, 2, ...
func TestJumpPublished(t *testing.T) {
	for _, tc := range []struct {
		key  uint64
		want []int
	}{
		{0, []int{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{1, []int{0, 0, 0, 0, 0, 0, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 17, 17}},
		{0xdeadbeef, []int{0, 1, 2, 3, 3, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 16, 16, 16}},
		{0x0ddc0ffeebadf00d, []int{0, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 15, 15, 15, 15}},
	} {
		for i, want := range tc.want {
			require.Equal(t, want, ring.Jump(tc.key, i+1), "Jump(%#x, %d)", tc.key, i+1)
		}
	}
}

// TestJumpReference checks 1152 outputs of the paper's reference function
// (Figure 1), compiled with gcc and run once over 64 keys (seven edge
// cases, then SplitMix64 from seed 42) and 18 bucket counts up to 2^31-1;
// testdata/jump.txt holds "key buckets bucket" per line.
func TestJumpReference(t *testing.T) {
	f, err := os.Open("testdata/jump.txt")
	require.NoError(t, err)
	defer f.Close()
	s := bufio.NewScanner(f)
	lines := 0
	for s.Scan() {
		fields := strings.Fields(s.Text())
		require.Len(t, fields, 3)
		key, err := strconv.ParseUint(fields[0], 10, 64)
		require.NoError(t, err)
		buckets, err := strconv.Atoi(fields[1])
		require.NoError(t, err)
		want, err := strconv.Atoi(fields[2])
		require.NoError(t, err)
		require.Equal(t, want, ring.Jump(key, buckets), "Jump(%d, %d)", key, buckets)
		lines++
	}
	require.NoError(t, s.Err())
	require.Equal(t, 1152, lines)
}

// TestJumpLaws: results lie in [0, b); going from b to b+1 buckets a key
// either stays or moves to the new bucket b; about 1/(b+1) move.
func TestJumpLaws(t *testing.T) {
	for _, b := range []int{0, -1, -1 << 40} {
		require.Equal(t, -1, ring.Jump(42, b))
	}
	rnd := rand.New(rand.NewPCG(1, 1))
	const keys = 20000
	for _, b := range []int{1, 2, 9, 99} {
		moved := 0
		for range keys {
			k := rnd.Uint64()
			before, after := ring.Jump(k, b), ring.Jump(k, b+1)
			require.True(t, before >= 0 && before < b)
			if after != before {
				require.Equal(t, b, after, "key %d moved between old buckets", k)
				moved++
			}
		}
		require.InDelta(t, 1/float64(b+1), float64(moved)/keys, 0.2/float64(b+1), "b=%d", b)
	}
}

// TestJumpHugeBucketCounts: bucket counts near math.MaxInt, where a jump
// can exceed 2^63, return a bucket in range instead of looping forever
// (converting such a jump to int64 gave a negative bucket on amd64, from
// which the walk never left), and growing by one bucket still moves a key
// only to the new bucket.
func TestJumpHugeBucketCounts(t *testing.T) {
	rnd := rand.New(rand.NewPCG(6, 6))
	for _, b := range []int{math.MaxInt, math.MaxInt - 1, 1 << 62, 1<<53 + 1} {
		for range 200 {
			k := rnd.Uint64()
			got := ring.Jump(k, b)
			require.True(t, got >= 0 && got < b, "Jump(%d, %d) = %d", k, b, got)
			if before := ring.Jump(k, b-1); before != got {
				require.Equal(t, b-1, got, "Jump(%d, %d) moved between old buckets", k, b)
			}
		}
	}
}
