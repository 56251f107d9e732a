package idempotency_test

import (
	"context"
	"testing"
	"time"

	"github.com/distkit/distkit/idempotency"
)

// TestAllocs pins the allocations of the hot paths.
func TestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts")
	}
	ctx := context.Background()
	s := &idempotency.MemStore{}
	token, _, err := s.Claim(ctx, "k", []byte("fp"), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Complete(ctx, "k", token, []byte("response"), time.Hour); err != nil {
		t.Fatal(err)
	}
	// The record and one buffer for both its byte slices.
	if n := testing.AllocsPerRun(100, func() { _, _, _ = s.Claim(ctx, "k", nil, time.Minute) }); n != 2 {
		t.Errorf("MemStore.Claim of a live key: %v allocs, want 2", n)
	}

	g := idempotency.New(s, idempotency.Config{})
	fn := func(context.Context) ([]byte, error) { return []byte("out"), nil }
	if _, err := g.Do(ctx, "g", nil, fn); err != nil {
		t.Fatal(err)
	}
	// singleflight's call, the shared result, the record's copy (two), the
	// decoder's reader.
	if n := testing.AllocsPerRun(100, func() { _, _ = g.Do(ctx, "g", nil, fn) }); n != 5 {
		t.Errorf("Guard.Do replay: %v allocs, want 5", n)
	}
}
