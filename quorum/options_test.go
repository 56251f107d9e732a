package quorum_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/quorum"
)

// TestGatherKeepWinners: the contexts of the successes Gather returns stay
// alive after it returned, until ctx ends; the losers' end at once.
func TestGatherKeepWinners(t *testing.T) {
	for _, keep := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			c := newCluster(map[string]time.Duration{"a": ms, "b": 2 * ms, "c": time.Hour}, nil)
			call, ctxs := c.recording()
			ctx, cancel := context.WithCancel(t.Context())
			var opts []quorum.Option
			if keep {
				opts = append(opts, quorum.KeepWinners())
			}
			rs, err := quorum.Gather(ctx, []string{"a", "b", "c"}, 2, call, opts...)
			require.NoError(t, err)
			require.Equal(t, "a=a b=b", summary(rs))
			synctest.Wait()
			require.Equal(t, keep, ctxs("a").Err() == nil, "keep=%v: winner a", keep)
			require.Equal(t, keep, ctxs("b").Err() == nil, "keep=%v: winner b", keep)
			require.ErrorIs(t, ctxs("c").Err(), context.Canceled, "the loser is cancelled")
			require.Equal(t, context.Canceled, c.results()["c"])
			cancel()
			require.Error(t, ctxs("a").Err(), "the winners end with ctx")
			require.Error(t, ctxs("b").Err())
		})
	}
	// A failed Gather keeps the successes it returns alive too, and cancels
	// the rest.
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": ms, "b": 2 * ms, "c": 3 * ms, "d": time.Hour}, map[string]error{"b": boom, "c": boom})
		call, ctxs := c.recording()
		rs, err := quorum.Gather(t.Context(), []string{"a", "b", "c", "d"}, 3, call, quorum.KeepWinners())
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.Equal(t, "a=a b:boom c:boom", summary(rs))
		synctest.Wait()
		require.NoError(t, ctxs("a").Err())
		require.Error(t, ctxs("b").Err())
		require.Error(t, ctxs("d").Err())
	})
}

// TestGatherCleanup: successes that arrive after Gather returned go to the
// cleanup function, failures do not, and its goroutine ends with the last
// call (synctest.Test fails if it is left blocked).
func TestGatherCleanup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		var mu sync.Mutex
		var late []string
		// c and e ignore cancellation and succeed late; d fails late.
		call := func(ctx context.Context, r string) (string, error) {
			delay := map[string]time.Duration{"a": ms, "b": ms, "c": 5 * ms, "d": 6 * ms, "e": 7 * ms}[r]
			time.Sleep(delay)
			if r == "d" {
				return "", boom
			}
			return "v" + r, nil
		}
		rs, err := quorum.Gather(t.Context(), five, 2, call, quorum.Cleanup(func(r quorum.Reply[string]) {
			mu.Lock()
			late = append(late, r.Replica+"="+r.Value)
			mu.Unlock()
		}))
		require.NoError(t, err)
		require.Equal(t, "a=va b=vb", summary(rs))
		time.Sleep(10 * ms) // every late call returns
		synctest.Wait()
		mu.Lock()
		defer mu.Unlock()
		slices.Sort(late)
		require.Equal(t, []string{"c=vc", "e=ve"}, late)
	})
	_, err := quorum.Gather(context.Background(), five, 2, func(context.Context, string) (string, error) { return "", nil },
		quorum.Cleanup(func(quorum.Reply[int]) {}))
	require.ErrorIs(t, err, quorum.ErrInvalid, "a cleanup of another type")
	_, err = quorum.Gather(context.Background(), five, 2, func(context.Context, string) (string, error) { return "", nil },
		quorum.Cleanup[string](nil))
	require.NoError(t, err, "a nil cleanup is ignored")
}

// TestGatherPrefer: Shuffled spreads the first call over every replica and
// calls each at most once; LeastLoaded calls the idle, then the fast,
// replicas first.
func TestGatherPrefer(t *testing.T) {
	first := map[string]int{}
	for range 500 {
		var mu sync.Mutex
		var order []string
		call := func(_ context.Context, r string) (string, error) {
			mu.Lock()
			order = append(order, r)
			mu.Unlock()
			return r, errors.New("down")
		}
		// Failures make the hedge call every replica, one at a time.
		_, err := quorum.Gather(context.Background(), five, 1, call, quorum.Hedge(0), quorum.Prefer(quorum.Shuffled))
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.ElementsMatch(t, five, order)
		first[order[0]]++
	}
	for _, r := range five {
		require.Greater(t, first[r], 50, "replica %s first in %d of 500 shuffled gathers", r, first[r])
	}

	synctest.Test(t, func(t *testing.T) {
		var tr quorum.Tracker
		for _, r := range []string{"a", "b", "c", "d"} {
			for range quorum.MinSamples {
				tr.Observe(r, map[string]time.Duration{"a": 9 * ms, "b": 3 * ms, "c": 1 * ms, "d": 2 * ms}[r])
			}
		}
		// A call to c stays in flight: c is busy, so d and b go first, then
		// e (never measured, tried first among the idle), and a last.
		c := newCluster(map[string]time.Duration{"c": time.Hour, "a": ms, "b": ms, "d": ms, "e": ms}, nil)
		go quorum.Gather(t.Context(), []string{"c"}, 1, c.call, quorum.Track(&tr))
		synctest.Wait()
		require.Equal(t, 1, tr.InFlight("c"))
		var mu sync.Mutex
		var order []string
		call := func(ctx context.Context, r string) (string, error) {
			mu.Lock()
			order = append(order, r)
			mu.Unlock()
			return "", errors.New("down")
		}
		_, err := quorum.Gather(t.Context(), five, 1, call, quorum.Hedge(0), quorum.Prefer(quorum.LeastLoaded), quorum.Track(&tr))
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.Equal(t, []string{"e", "d", "b", "a", "c"}, order)
	})

	for _, opt := range []quorum.Option{quorum.Prefer(quorum.LeastLoaded), quorum.HedgeAt(0.99, 0.1), quorum.Prefer(7)} {
		_, err := quorum.Gather(context.Background(), five, 1, func(context.Context, string) (int, error) { return 0, nil }, opt)
		require.ErrorIs(t, err, quorum.ErrInvalid)
	}
	for _, opt := range []quorum.Option{quorum.HedgeAt(0, 0.1), quorum.HedgeAt(1.5, 0.1), quorum.HedgeAt(0.9, -1), quorum.HedgeAt(0.9, 2)} {
		_, err := quorum.Gather(context.Background(), five, 1, func(context.Context, string) (int, error) { return 0, nil }, opt, quorum.Track(new(quorum.Tracker)))
		require.ErrorIs(t, err, quorum.ErrInvalid)
	}
}

// TestTracker: quantiles by nearest rank over the latest 256 latencies,
// none before MinSamples; Gather records successes and cut-short calls,
// not failures, on the given clock, and counts calls in flight.
func TestTracker(t *testing.T) {
	var tr quorum.Tracker
	_, ok := tr.Quantile("a", 0.5)
	require.False(t, ok)
	for i := range quorum.MinSamples - 1 {
		tr.Observe("a", time.Duration(i+1))
	}
	_, ok = tr.Quantile("a", 0.5)
	require.False(t, ok, "fewer than MinSamples")
	tr.Observe("a", quorum.MinSamples)
	for q, want := range map[float64]time.Duration{0: 1, 0.5: 10, 0.95: 19, 1: 20} {
		got, ok := tr.Quantile("a", q)
		require.True(t, ok)
		require.Equal(t, want, got, "q=%v", q)
	}
	_, ok = tr.Quantile("a", 1.5)
	require.False(t, ok)
	for range 256 {
		tr.Observe("a", 1000)
	}
	got, _ := tr.Quantile("a", 0)
	require.Equal(t, time.Duration(1000), got, "only the latest 256 count")

	synctest.Test(t, func(t *testing.T) {
		var tr quorum.Tracker
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": ms, "b": 2 * ms, "c": ms / 2, "d": time.Hour}, map[string]error{"c": boom})
		_, err := quorum.Gather(t.Context(), []string{"a", "b", "c", "d"}, 2, c.call, quorum.Track(&tr))
		require.NoError(t, err)
		synctest.Wait()
		for _, r := range []string{"a", "b", "c", "d"} {
			require.Zero(t, tr.InFlight(r), r)
		}
		for range quorum.MinSamples - 1 {
			_, err := quorum.Gather(t.Context(), []string{"a", "b", "c", "d"}, 2, c.call, quorum.Track(&tr))
			require.NoError(t, err)
		}
		synctest.Wait()
		for r, want := range map[string]time.Duration{"a": ms, "b": 2 * ms, "d": 2 * ms} {
			got, ok := tr.Quantile(r, 1)
			require.True(t, ok, r)
			require.Equal(t, want, got, "%s: cut short at 2ms counts as 2ms", r)
		}
		_, ok := tr.Quantile("c", 1)
		require.False(t, ok, "failures record nothing")
	})
}

// manualTimers is a clock whose hedge timers fire only when told.
type manualTimers struct {
	mu    sync.Mutex
	now   time.Time
	fires []chan time.Time
	asked []time.Duration
}

func (m *manualTimers) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

func (m *manualTimers) After(d time.Duration) <-chan time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := make(chan time.Time, 1)
	m.fires, m.asked = append(m.fires, c), append(m.asked, d)
	return c
}

func (m *manualTimers) fire() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fires[len(m.fires)-1] <- m.now
}

// TestGatherClock: with a clock that implements Timers, hedges wait on it,
// not on the runtime's timers.
func TestGatherClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := &manualTimers{now: time.Unix(1, 0)}
		c := newCluster(map[string]time.Duration{"a": time.Hour, "b": time.Hour, "c": ms}, nil)
		done := make(chan error, 1)
		go func() {
			_, err := quorum.Gather(t.Context(), []string{"a", "b", "c"}, 1, c.call, quorum.Hedge(5*ms), quorum.Clock(clk))
			done <- err
		}()
		time.Sleep(10 * time.Minute) // far past 5ms on the runtime's clock
		synctest.Wait()
		require.Equal(t, map[string]time.Duration{"a": 0}, c.startedAt(), "no hedge until the clock says so")
		clk.fire()
		synctest.Wait()
		require.Len(t, c.startedAt(), 2)
		clk.fire()
		require.NoError(t, <-done)
		require.Equal(t, []time.Duration{5 * ms, 5 * ms}, clk.asked, "no timer once every replica is called")
	})
}

// TestGatherHedgeAtBudget: when every call is slow, timed hedges start at
// the tracked quantile and number at most budget times the Gathers, plus
// HedgeBurst.
func TestGatherHedgeAtBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var tr quorum.Tracker
		for _, r := range []string{"a", "b", "c"} {
			for i := range 100 {
				tr.Observe(r, time.Duration(i+1)*ms/10) // 0.1 to 10 ms
			}
		}
		slow := map[string]time.Duration{"a": 50 * ms, "b": 50 * ms, "c": 50 * ms}
		const gathers = 200
		calls := 0
		for g := range gathers {
			median, _ := tr.Quantile("a", 0.5)
			c := newCluster(slow, nil)
			_, err := quorum.Gather(t.Context(), []string{"a", "b", "c"}, 2, c.call,
				quorum.HedgeAt(0.5, 0.1), quorum.Track(&tr))
			require.NoError(t, err)
			synctest.Wait()
			calls += int(c.calls.Load())
			if g == 0 {
				// The allowance starts with HedgeBurst hedges; the first
				// starts at the median of the latencies.
				require.Equal(t, 3, int(c.calls.Load()))
				require.Equal(t, median, c.startedAt()["c"])
			}
		}
		hedges := calls - 2*gathers
		t.Logf("%d hedges in %d gathers", hedges, gathers)
		require.LessOrEqual(t, hedges, gathers/10+quorum.HedgeBurst)
		require.GreaterOrEqual(t, hedges, gathers/10+quorum.HedgeBurst-1, "the budget is spent when needed")
	})
}

// TestGatherForKeepWinners: over several zones too, the winners' contexts
// outlive GatherFor until ctx ends.
func TestGatherForKeepWinners(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		req, err := quorum.LevelEachQuorum.Requirement(quorum.Placement{
			Zones: map[string][]string{"eu": {"a", "b", "c"}, "us": {"d", "e", "f"}}, Local: "eu"})
		require.NoError(t, err)
		c := newCluster(map[string]time.Duration{"a": ms, "b": ms, "c": time.Hour, "d": ms, "e": ms, "f": time.Hour}, nil)
		call, ctxs := c.recording()
		ctx, cancel := context.WithCancel(t.Context())
		_, err = quorum.GatherFor(ctx, req, call, quorum.KeepWinners())
		require.NoError(t, err)
		synctest.Wait()
		for _, r := range []string{"a", "b", "d", "e"} {
			require.NoError(t, ctxs(r).Err(), r)
		}
		require.Error(t, ctxs("c").Err())
		cancel()
		require.Error(t, ctxs("a").Err())
	})
}
