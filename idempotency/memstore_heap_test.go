package idempotency

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestExpiryHeap runs random pushes and pops against a sorted reference.
func TestExpiryHeap(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	var h expiryHeap
	var want []int64
	for step := range 10000 {
		if r.IntN(3) < 2 || len(want) == 0 {
			due := r.Int64N(100)
			h.push(expiryItem{due: due})
			want = append(want, due)
			continue
		}
		slices.Sort(want)
		if got := h.pop().due; got != want[0] {
			t.Fatalf("seed %d step %d: popped %d, want %d", seed, step, got, want[0])
		}
		want = want[1:]
		if len(h) != len(want) {
			t.Fatalf("seed %d step %d: %d items, want %d", seed, step, len(h), len(want))
		}
	}
}

// TestExpiryHeapInit: init orders any slice.
func TestExpiryHeapInit(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	h := make(expiryHeap, 1000)
	for i := range h {
		h[i].due = r.Int64N(100)
	}
	h.init()
	prev := int64(-1)
	for len(h) > 0 {
		due := h.pop().due
		if due < prev {
			t.Fatalf("popped %d after %d", due, prev)
		}
		prev = due
	}
}

// TestMemStoreHeapBounded: claims that are released or completed leave
// stale items behind, but the heap stays within about twice the records.
func TestMemStoreHeapBounded(t *testing.T) {
	ctx := t.Context()
	s := &MemStore{}
	for i := range 100_000 {
		key := []string{"a", "b", "c"}[i%3]
		token, _, err := s.Claim(ctx, key, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			err = s.Release(ctx, key, token)
		} else {
			err = s.Complete(ctx, key, token, nil, time.Nanosecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	items := 0
	for i := range s.shards {
		items += len(s.shards[i].q)
	}
	if items > 3*(32+1) {
		t.Fatalf("%d heap items for %d records", items, s.Len())
	}
}
