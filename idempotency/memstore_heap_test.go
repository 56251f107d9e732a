package idempotency

import (
	"testing"
	"time"
)

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
