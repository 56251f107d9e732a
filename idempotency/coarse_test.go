package idempotency

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// TestCoarseClockBound: whenever it is read, from several goroutines at
// random times, the coarse clock is behind the system clock by at most
// coarsePeriod and never ahead; after a period without reads its timer
// stops, and the next read is the clock's own.
func TestCoarseClockBound(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	synctest.Test(t, func(t *testing.T) {
		s := &MemStore{}
		s.now() // sets the store up
		var wg sync.WaitGroup
		for g := range 4 {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			wg.Go(func() {
				for range 500 {
					// Gaps up to three periods: the timer stops and
					// restarts many times.
					time.Sleep(time.Duration(rng.Int64N(int64(3 * coarsePeriod))))
					got, now := s.coarseNow(), s.now().ns
					if got > now || now-got > int64(coarsePeriod) {
						t.Errorf("coarse reading %d at %d: behind by %v", got, now, time.Duration(now-got))
						return
					}
				}
			})
		}
		wg.Wait()
		time.Sleep(2*coarsePeriod + 1)
		if st := s.coarse.state.Load(); st != coarseIdle {
			t.Fatalf("two periods without reads: state %d, want idle", st)
		}
		time.Sleep(time.Hour)
		if got, now := s.coarseNow(), s.now().ns; got != now {
			t.Fatalf("first read after idle: %d, want the clock's %d", got, now)
		}
	})
}

// TestCoarseReplayExpiry: on the system clock, a Guard replays a finished
// record from its MemStore until its deadline and for at most
// coarsePeriod after, and runs the call again from then on; a Claim
// through the Store interface sees the record gone at its deadline.
func TestCoarseReplayExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		const retain = 10 * time.Millisecond
		s := &MemStore{}
		g := New(s, Config{Lock: time.Minute, Retain: retain})
		runs := 0
		fn := func(context.Context) ([]byte, error) { runs++; return []byte("result"), nil }
		start := time.Now()
		if _, err := g.Do(ctx, "k", []byte("fp"), fn); err != nil {
			t.Fatal(err)
		}
		for runs == 1 {
			time.Sleep(100 * time.Microsecond)
			elapsed := time.Since(start)
			out, err := g.Do(ctx, "k", []byte("fp"), fn)
			if err != nil || string(out) != "result" {
				t.Fatalf("at %v: %q, %v", elapsed, out, err)
			}
			switch {
			case runs == 1 && elapsed > retain+coarsePeriod:
				t.Fatalf("replayed at %v, more than %v after the deadline", elapsed, coarsePeriod)
			case runs == 2 && elapsed < retain:
				t.Fatalf("ran again at %v, before the deadline", elapsed)
			}
		}

		// The Store interface is exact: the new record, replayed by the
		// Guard until now, is gone for Claim at its deadline.
		time.Sleep(retain)
		token, rec, err := s.Claim(ctx, "k", []byte("fp"), time.Minute)
		if err != nil || rec != nil || token == 0 {
			t.Fatalf("Claim at the deadline: %d, %+v, %v; want a new claim", token, rec, err)
		}
	})
}
