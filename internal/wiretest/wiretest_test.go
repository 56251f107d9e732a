package wiretest_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/internal/wiretest"
)

var sink []byte

func TestAllocated(t *testing.T) {
	n := wiretest.Allocated(func() { sink = make([]byte, 1<<20) })
	require.GreaterOrEqual(t, n, uint64(1<<20))
	require.Less(t, wiretest.Allocated(func() {}), uint64(1<<10))
}

func TestDecoders(t *testing.T) {
	for path, dec := range wiretest.Decoders([]byte{0x92, 0x01, 0x02}) {
		var v []int
		require.NoError(t, dec.Decode(&v), path)
		require.Equal(t, []int{1, 2}, v, path)
	}
}
