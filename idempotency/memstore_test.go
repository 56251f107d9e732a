package idempotency_test

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/idempotencytest"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func newMemStore(maxKeys int) func(t *testing.T) (idempotency.Store, func(time.Duration)) {
	return func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		clk := clocktest.NewManual(t0)
		return &idempotency.MemStore{Clock: clk, MaxKeys: maxKeys}, clk.Advance
	}
}

func TestMemStoreConformance(t *testing.T) {
	t.Run("Unbounded", func(t *testing.T) { idempotencytest.TestStore(t, newMemStore(0)) })
	t.Run("Bounded", func(t *testing.T) { idempotencytest.TestStore(t, newMemStore(1000)) })
}

func TestMemStoreZeroValue(t *testing.T) {
	var s idempotency.MemStore // system clock, no bound
	ctx := context.Background()
	token, rec, err := s.Claim(ctx, "k", []byte("fp"), time.Minute)
	require.NoError(t, err)
	require.Nil(t, rec)
	require.Equal(t, uint64(1), token, "tokens count from 1")
	require.NoError(t, s.Complete(ctx, "k", token, []byte("r"), time.Hour))
	_, rec, err = s.Claim(ctx, "k", nil, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.Done, rec.State)
	require.Equal(t, "r", string(rec.Response))
	require.Equal(t, 1, s.Len())
}

func TestMemStoreBadDurations(t *testing.T) {
	var s idempotency.MemStore
	ctx := context.Background()
	_, _, err := s.Claim(ctx, "k", nil, 0)
	require.Error(t, err)
	token, _, err := s.Claim(ctx, "k", nil, time.Minute)
	require.NoError(t, err)
	require.Error(t, s.Complete(ctx, "k", token, nil, -time.Second))
	_, rec, err := s.Claim(ctx, "k", nil, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, rec.State, "a rejected Complete changes nothing")
}

// TestMemStoreHugeDurations: a lock or a retention too long for a
// deadline in Unix nanoseconds (beyond the year 2262) keeps the record
// for as long as the store can count, on the system clock and on a
// manual one; it does not wrap into the past and expire at once.
func TestMemStoreHugeDurations(t *testing.T) {
	ctx := context.Background()
	forever := time.Duration(math.MaxInt64)
	for _, s := range []*idempotency.MemStore{{}, {Clock: clocktest.NewManual(t0)}} {
		token, _, err := s.Claim(ctx, "k", []byte("fp"), forever)
		require.NoError(t, err)
		_, rec, err := s.Claim(ctx, "k", []byte("fp"), time.Minute)
		require.NoError(t, err)
		require.NotNil(t, rec, "a claim locked for ever is live")
		require.Equal(t, idempotency.InProgress, rec.State)
		require.NoError(t, s.Complete(ctx, "k", token, []byte("r"), forever))
		_, rec, err = s.Claim(ctx, "k", []byte("fp"), time.Minute)
		require.NoError(t, err)
		require.NotNil(t, rec, "a record retained for ever is live")
		require.Equal(t, idempotency.Done, rec.State)
		require.Equal(t, 1, s.Len())
	}
}

// TestMemStoreFull: at MaxKeys a new key gets ErrFull; live records, in
// progress or done, are never evicted for it; expired ones are, in any
// shard.
func TestMemStoreFull(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk, MaxKeys: 64}
	for i := range 64 {
		key := fmt.Sprint("k", i)
		token, rec, err := s.Claim(ctx, key, nil, time.Minute)
		require.NoError(t, err)
		require.Nil(t, rec)
		if i%2 == 0 { // half done with a long retention, half in progress
			require.NoError(t, s.Complete(ctx, key, token, []byte("r"), time.Hour))
		}
	}
	_, _, err := s.Claim(ctx, "new", nil, time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFull)
	require.Equal(t, 64, s.Len())
	// An existing live key is still answered when full.
	_, rec, err := s.Claim(ctx, "k1", nil, time.Minute)
	require.NoError(t, err)
	require.Equal(t, idempotency.InProgress, rec.State)

	// The claims lapse; the done records live on. 32 new keys fit, not 33.
	clk.Advance(time.Minute)
	var new0 uint64
	for i := range 32 {
		token, rec, err := s.Claim(ctx, fmt.Sprint("new", i), nil, time.Minute)
		require.NoError(t, err, "new key %d", i)
		require.Nil(t, rec)
		if i == 0 {
			new0 = token
		}
	}
	_, _, err = s.Claim(ctx, "one-more", nil, time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFull)
	for i := 0; i < 64; i += 2 {
		_, rec, err := s.Claim(ctx, fmt.Sprint("k", i), nil, time.Minute)
		require.NoError(t, err)
		require.Equal(t, idempotency.Done, rec.State, "done record k%d was evicted", i)
	}
	// Releasing one claim makes room for exactly one.
	require.NoError(t, s.Release(ctx, "new0", new0))
	_, _, err = s.Claim(ctx, "one-more", nil, time.Minute)
	require.NoError(t, err)
	_, _, err = s.Claim(ctx, "two-more", nil, time.Minute)
	require.ErrorIs(t, err, idempotency.ErrFull)
}

// TestMemStoreSweeps: expired records are removed as the store is used,
// so memory follows the live records.
func TestMemStoreSweeps(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk}
	for i := range 1000 {
		_, _, err := s.Claim(ctx, fmt.Sprint("a", i), nil, time.Second)
		require.NoError(t, err)
	}
	require.Equal(t, 1000, s.Len())
	clk.Advance(time.Second)
	for i := range 1000 {
		_, _, err := s.Claim(ctx, fmt.Sprint("b", i), nil, time.Second)
		require.NoError(t, err)
	}
	// Every shard was touched by the second wave and dropped the first.
	require.Equal(t, 1000, s.Len())
}

func TestMemStoreConcurrentLifecycle(t *testing.T) {
	ctx := context.Background()
	s := &idempotency.MemStore{MaxKeys: 10_000}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				key := fmt.Sprint("k", (g*31+i)%200)
				token, rec, err := s.Claim(ctx, key, nil, time.Minute)
				if err != nil {
					t.Error(err)
					return
				}
				if rec != nil {
					continue
				}
				if i%3 == 0 {
					err = s.Release(ctx, key, token)
				} else {
					err = s.Complete(ctx, key, token, []byte(key), time.Hour)
				}
				if err != nil { // nothing expires: the owner's call must succeed
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, s.Len(), 200)
}

// TestMemStoreRecordSizes: fingerprints held in the entry and too long
// for it, and records copied in each of their allocation sizes, are all
// kept and returned as copies.
func TestMemStoreRecordSizes(t *testing.T) {
	ctx := context.Background()
	var s idempotency.MemStore
	pattern := func(n int, seed byte) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = seed + byte(i)
		}
		return b
	}
	for _, n := range []int{0, 1, 32, 64, 65, 96, 97, 100, 300, 1000} {
		key := fmt.Sprint("size-", n)
		fp, resp := pattern(n, 1), pattern(n, 7)
		token, _, err := s.Claim(ctx, key, fp, time.Minute)
		require.NoError(t, err)
		require.NoError(t, s.Complete(ctx, key, token, resp, time.Hour))
		clear(fp)
		clear(resp)
		_, rec, err := s.Claim(ctx, key, nil, time.Minute)
		require.NoError(t, err)
		require.Equal(t, pattern(n, 1), []byte(rec.Fingerprint), "%d bytes", n)
		require.Equal(t, pattern(n, 7), []byte(rec.Response), "%d bytes", n)
		require.Equal(t, len(rec.Response), cap(rec.Response), "appending to a copy cannot reach past it")
		clear(rec.Fingerprint)
		clear(rec.Response)
		_, rec, err = s.Claim(ctx, key, nil, time.Minute)
		require.NoError(t, err)
		require.Equal(t, pattern(n, 1), []byte(rec.Fingerprint), "%d bytes", n)
		require.Equal(t, pattern(n, 7), []byte(rec.Response), "%d bytes", n)
	}
}
