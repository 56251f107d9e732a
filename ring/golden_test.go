package ring_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/ring"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.txt from the current code")

// goldenNodes is a fixed cluster: weights, zones, and a zero weight.
var goldenNodes = []ring.Node{
	{ID: "cassandra-1", Weight: 1, Zone: "eu-west-1a"},
	{ID: "cassandra-2", Weight: 1, Zone: "eu-west-1b"},
	{ID: "cassandra-3", Weight: 2, Zone: "eu-west-1c"},
	{ID: "cassandra-4", Weight: 0.5, Zone: "eu-west-1a"},
	{ID: "cassandra-5", Zone: "eu-west-1b"},
	{ID: "cassandra-6", Weight: 1.5, Zone: "eu-west-1c"},
	{ID: "riak@10.0.0.7", Weight: 1, Zone: "eu-west-1a"},
	{ID: "ünïcode-8", Weight: 1, Zone: "eu-west-1b"},
}

// golden renders the placement the package must keep forever: point
// hashes, and for each key its owner on the default ring and a 16-vnode
// ring, Replicas(3), rendezvous LookupN(3) and Jump over 10 buckets.
func golden(t *testing.T) string {
	var b strings.Builder
	fmt.Fprintln(&b, "# ring placement golden vectors; regenerate only for an intentional, announced placement change:")
	fmt.Fprintln(&b, "#   go test ./ring -run TestGolden -update")
	for _, n := range goldenNodes[:3] {
		for i := range uint32(3) {
			fmt.Fprintf(&b, "point\t%s\t%d\t%#016x\n", n.ID, i, ring.PointHash(n.ID, i))
		}
	}
	def := mustNew(t, goldenNodes, 0)
	small := mustNew(t, goldenNodes, 16)
	h, err := ring.NewRendezvous(goldenNodes)
	require.NoError(t, err)
	for k := range 200 {
		key := fmt.Appendf(nil, "user:%d", k*7919)
		fmt.Fprintf(&b, "key\t%s\t%#016x\t%s\t%s\t%s\t%s\t%d\n", key, ring.KeyHash(key),
			def.Lookup(key), small.Lookup(key),
			strings.Join(def.Replicas(key, 3, nil), ","),
			strings.Join(h.LookupN(key, 3, nil), ","),
			ring.Jump(ring.KeyHash(key), 10))
	}
	grown, err := small.With(ring.Node{ID: "cassandra-9", Zone: "eu-west-1c"})
	require.NoError(t, err)
	for _, m := range ring.Moves(small, grown) {
		fmt.Fprintf(&b, "move\t%#016x\t%#016x\t%s\t%s\n", m.Start, m.End, m.From, m.To)
	}
	return b.String()
}

// TestGolden compares today's placement with the committed vectors: a
// given ring must route given keys to the same nodes in every version.
func TestGolden(t *testing.T) {
	const path = "testdata/golden.txt"
	got := golden(t)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(want), got, "placement changed; see %s", path)
}

// TestPointHashDerivation recomputes the documented point derivation:
// SplitMix64 seeded with xxhash64(ID).
func TestPointHashDerivation(t *testing.T) {
	for _, id := range []string{"a", "cassandra-1", strings.Repeat("x", 300)} {
		state := xxhash.Sum64String(id)
		for i := range uint32(100) {
			state += 0x9e3779b97f4a7c15
			z := state
			z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
			z = (z ^ z>>27) * 0x94d049bb133111eb
			require.Equal(t, z^z>>31, ring.PointHash(id, i), "%s #%d", id, i)
		}
	}
}
