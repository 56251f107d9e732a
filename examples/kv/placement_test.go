package kv

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/distkit/distkit/ring"
)

// TestPlacementGroup checks, over random rings, N and keys, that the
// group a placement finds without allocating is the one groupOf names,
// and compareGroup against the order of the names it compares.
func TestPlacementGroup(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 30 {
		var nodes []ring.Node
		for i := range 1 + rng.IntN(12) {
			// IDs of different lengths, some prefixes of others.
			nodes = append(nodes, ring.Node{ID: fmt.Sprint("n", i, "x"[:rng.IntN(2)]), Zone: fmt.Sprint("z", rng.IntN(3))})
		}
		r, err := ring.New(nodes, ring.Config{VNodes: 8})
		if err != nil {
			t.Fatal(err)
		}
		n := 1 + rng.IntN(min(len(nodes), 9)) // 9: past the buffer of 8
		p := newPlacement(r, n, 2)
		for range 200 {
			key := fmt.Appendf(nil, "k%d", rng.Uint64())
			if got, want := p.group(key), groupOf(p.home(key)); got != want {
				t.Fatalf("seed %d: group(%q) = %q, want %q", seed, key, got, want)
			}
		}
	}
	for _, tc := range []struct {
		g   string
		ids []string
	}{
		{"a", []string{"a"}}, {"a,b", []string{"a", "b"}}, {"a", []string{"a", "b"}}, {"a,b", []string{"a"}},
		{"ab", []string{"a", "b"}}, {"a,c", []string{"a", "b"}}, {"a+b", []string{"a", "b"}}, {"", []string{"a"}},
		{"a,b,c", []string{"a", "bc"}}, {"n1,n10", []string{"n1", "n1"}},
	} {
		want := 0
		switch name := groupOf(tc.ids); {
		case tc.g < name:
			want = -1
		case tc.g > name:
			want = 1
		}
		if got := compareGroup(tc.g, tc.ids); got != want {
			t.Errorf("compareGroup(%q, %q) = %d, want %d", tc.g, tc.ids, got, want)
		}
	}
}

// TestPlacementAllocs pins the allocations of a key's placement: one
// slice for its replicas, and none to find its group.
func TestPlacementAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	r, err := ring.New([]ring.Node{{ID: "n1"}, {ID: "n2"}, {ID: "n3"}, {ID: "n4"}}, ring.Config{VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	p := newPlacement(r, 3, 1)
	key := []byte("k")
	for _, tc := range []struct {
		name string
		f    func()
		want float64
	}{
		{"of", func() { p.of(key) }, 1},
		{"home", func() { p.home(key) }, 1},
		{"group", func() { p.group(key) }, 0},
	} {
		if got := testing.AllocsPerRun(100, tc.f); got != tc.want {
			t.Errorf("%s: %.0f allocations, want %.0f", tc.name, got, tc.want)
		}
	}
}
