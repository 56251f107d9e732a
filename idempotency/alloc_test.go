package idempotency_test

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
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
	// The record's copy, with its bytes.
	if n := allocsPerRun(100, func() { _, _, _ = s.Claim(ctx, "k", nil, time.Minute) }); n != 1 {
		t.Errorf("MemStore.Claim of a live key: %v allocs, want 1", n)
	}

	fp := []byte("sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f0")
	out := []byte(`{"id":"ch_1","amount":1000,"currency":"eur"}`)
	fn := func(context.Context) ([]byte, error) { return out, nil }

	// A first call: fn's context, and the store's entry, which holds the
	// fingerprint and the recorded result when they fit in 96 bytes,
	// unless the entry of a record that expired unread is reused; a
	// result too long for the entry takes one allocation more. Keys are
	// made beforehand; the records expire between rounds so that the maps
	// and the heaps stay the same size.
	clk := clocktest.NewManual(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	first := idempotency.New(&idempotency.MemStore{Clock: clk}, idempotency.Config{Retain: time.Second, Clock: clk})
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("order-", i)
	}
	i := 0
	next := func() string {
		if i == len(keys) {
			i = 0
			clk.Advance(2 * time.Second)
		}
		i++
		return keys[i-1]
	}
	for range 2 * len(keys) { // grow the maps, the heaps and the slots
		if _, err := first.Do(ctx, next(), fp, fn); err != nil {
			t.Fatal(err)
		}
	}
	if n := allocsPerRun(500, func() { _, _ = first.Do(ctx, next(), fp, fn) }); n != 1 {
		t.Errorf("Guard.Do first call: %v allocs, want 1", n)
	}
	// A caller's context that can end (a request's) costs nothing more.
	cancellable, cancel := context.WithCancel(ctx)
	defer cancel()
	if n := allocsPerRun(500, func() { _, _ = first.Do(cancellable, next(), fp, fn) }); n != 1 {
		t.Errorf("Guard.Do first call with a cancellable context: %v allocs, want 1", n)
	}
	longOut := make([]byte, 58) // recorded in 65 bytes, after 39 of fingerprint
	long := func(context.Context) ([]byte, error) { return longOut, nil }
	if n := allocsPerRun(500, func() { _, _ = first.Do(ctx, next(), fp, long) }); n != 2 {
		t.Errorf("Guard.Do first call with a long result: %v allocs, want 2", n)
	}
	// A record that was replayed lends its bytes: its entry is not
	// reused, and the next first call in its slot takes a new one. Two
	// rounds of such records expire before the count, so that no entry
	// from an earlier round is left to reuse.
	firstAndReplay := func() {
		key := next()
		_, _ = first.Do(ctx, key, fp, fn)
		_, _ = first.Do(ctx, key, fp, fn)
	}
	for range 2 * len(keys) {
		firstAndReplay()
	}
	if n := allocsPerRun(500, firstAndReplay); n != 2 {
		t.Errorf("Guard.Do first call and replay: %v allocs, want 2", n)
	}

	// A replay: none, on the system clock and on the Guard's own; the
	// result is the record's bytes.
	g := idempotency.New(s, idempotency.Config{})
	if _, err := g.Do(ctx, "g", fp, fn); err != nil {
		t.Fatal(err)
	}
	if n := allocsPerRun(100, func() { _, _ = g.Do(ctx, "g", fp, fn) }); n != 0 {
		t.Errorf("Guard.Do replay: %v allocs, want 0", n)
	}
	if _, err := first.Do(ctx, "g", fp, fn); err != nil {
		t.Fatal(err)
	}
	if n := allocsPerRun(100, func() { _, _ = first.Do(ctx, "g", fp, fn) }); n != 0 {
		t.Errorf("Guard.Do replay on a manual clock: %v allocs, want 0", n)
	}
}

// allocsPerRun is testing.AllocsPerRun without its rounding down: the
// average number of allocations of f over runs calls, after one to warm
// up, so that an allocation in some of the calls only counts too. The
// process's allocation counter also counts what other goroutines
// allocate meanwhile: the least of three measurements is taken.
func allocsPerRun(runs int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	least := math.Inf(1)
	for range 3 {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		before := m.Mallocs
		for range runs {
			f()
		}
		runtime.ReadMemStats(&m)
		least = min(least, float64(m.Mallocs-before)/float64(runs))
	}
	return least
}
