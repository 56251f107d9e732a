package idempotency

import (
	"testing"
	"time"
	"unsafe"
)

// TestMemStoreHeapBounded: the heaps hold one item per record, whatever
// claims were released or completed, and the slots no more than the most
// records a shard held at once.
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
	items, slots := 0, 0
	for i := range s.shards {
		items += len(s.shards[i].q)
		slots += len(s.shards[i].slots)
	}
	if items != s.Len() || slots > 3 {
		t.Fatalf("%d heap items and %d slots for %d records", items, slots, s.Len())
	}
}

// TestMemStoreLayout: the counters every claim writes share no cache
// line with the fields every call reads, nor with a shard, and each shard
// has cache lines of its own in a MemStore that starts on one.
func TestMemStoreLayout(t *testing.T) {
	var s MemStore
	read := unsafe.Offsetof(s.base) + unsafe.Sizeof(s.base)
	if unsafe.Offsetof(s.tokens)/64 == (read-1)/64 {
		t.Errorf("tokens at %d shares a cache line with the fields read before %d", unsafe.Offsetof(s.tokens), read)
	}
	if unsafe.Offsetof(s.n)/64 == unsafe.Offsetof(s.shards)/64 {
		t.Errorf("n at %d shares a cache line with the shards at %d", unsafe.Offsetof(s.n), unsafe.Offsetof(s.shards))
	}
	if unsafe.Offsetof(s.shards)%64 != 0 || unsafe.Sizeof(s.shards[0])%64 != 0 {
		t.Errorf("shards at %d, %d bytes each: not whole cache lines each", unsafe.Offsetof(s.shards), unsafe.Sizeof(s.shards[0]))
	}
	if size := unsafe.Sizeof(s); size%64 != 0 {
		t.Errorf("a MemStore takes %d bytes, not a multiple of a cache line", size)
	}
}
