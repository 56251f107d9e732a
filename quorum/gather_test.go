package quorum_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/quorum"
)

// cluster fakes replicas inside a synctest bubble. A replica answers after
// its delay, with its error or with its own name; a replica without a delay
// answers only when its context is cancelled. It records when each call
// started and what it returned.
type cluster struct {
	t0     time.Time
	delay  map[string]time.Duration
	errs   map[string]error
	calls  atomic.Int32
	active atomic.Int32
	peak   atomic.Int32

	mu       sync.Mutex
	started  map[string]time.Duration // since t0
	returned map[string]error
}

func newCluster(delay map[string]time.Duration, errs map[string]error) *cluster {
	return &cluster{t0: time.Now(), delay: delay, errs: errs,
		started: map[string]time.Duration{}, returned: map[string]error{}}
}

func (c *cluster) call(ctx context.Context, replica string) (string, error) {
	c.calls.Add(1)
	n := c.active.Add(1)
	defer c.active.Add(-1)
	for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
	}
	c.mu.Lock()
	c.started[replica] = time.Since(c.t0)
	c.mu.Unlock()
	var done <-chan time.Time
	if d, ok := c.delay[replica]; ok {
		done = time.After(d)
	}
	var v string
	var err error
	select {
	case <-done:
		v, err = replica, c.errs[replica]
	case <-ctx.Done():
		err = ctx.Err()
	}
	c.mu.Lock()
	c.returned[replica] = err
	c.mu.Unlock()
	return v, err
}

// startedAt returns when each call started, once the bubble is quiet.
// recording returns c's call, wrapped to keep the context each replica
// was called with, and a lookup of those contexts.
func (c *cluster) recording() (call func(context.Context, string) (string, error), ctxs func(replica string) context.Context) {
	var mu sync.Mutex
	seen := map[string]context.Context{}
	call = func(ctx context.Context, r string) (string, error) {
		mu.Lock()
		seen[r] = ctx
		mu.Unlock()
		return c.call(ctx, r)
	}
	ctxs = func(r string) context.Context {
		mu.Lock()
		defer mu.Unlock()
		return seen[r]
	}
	return call, ctxs
}

func (c *cluster) startedAt() map[string]time.Duration {
	synctest.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.started)
}

// results returns what each call returned, once the bubble is quiet.
func (c *cluster) results() map[string]error {
	synctest.Wait()
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.returned)
}

func (c *cluster) elapsed() time.Duration { return time.Since(c.t0) }

// summary renders replies as "a=a b:err" for compact assertions.
func summary(rs []quorum.Reply[string]) string {
	s := ""
	for i, r := range rs {
		if i > 0 {
			s += " "
		}
		if r.Err != nil {
			s += r.Replica + ":" + r.Err.Error()
		} else {
			s += r.Replica + "=" + r.Value
		}
	}
	return s
}

var five = []string{"a", "b", "c", "d", "e"}

func TestGatherEarlySuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// e never answers on its own; d would answer after the quorum.
		c := newCluster(map[string]time.Duration{"a": 3 * ms, "b": 1 * ms, "c": 2 * ms, "d": 10 * ms}, nil)
		rs, err := quorum.Gather(t.Context(), five, 3, c.call)
		require.NoError(t, err)
		require.Equal(t, 3*ms, c.elapsed(), "returns at the third success")
		require.Equal(t, "a=a b=b c=c", summary(rs), "replies in replica order")
		require.Equal(t, 3, cap(rs))
		synctest.Wait() // the cancelled calls return
		require.Equal(t, int32(5), c.calls.Load())
		require.Zero(t, c.active.Load())
		require.Equal(t, map[string]error{"a": nil, "b": nil, "c": nil, "d": context.Canceled, "e": context.Canceled}, c.results())
		require.Equal(t, 3*ms, c.elapsed(), "cancelled at once")
	})
}

func TestGatherFailFast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": 4 * ms, "c": 2 * ms, "d": 3 * ms},
			map[string]error{"a": boom, "c": boom, "d": boom})
		rs, err := quorum.Gather(t.Context(), five, 3, c.call)
		// After 3 failures of 5, 3 successes are impossible: at 3ms, not
		// when b succeeds or e never answers.
		require.Equal(t, 3*ms, c.elapsed())
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.ErrorIs(t, err, boom)
		require.Equal(t, "quorum: no quorum: 0 of 5 replicas succeeded, need 3\n"+
			`replica "a": boom`+"\n"+`replica "c": boom`+"\n"+`replica "d": boom`, err.Error())
		require.Equal(t, "a:boom c:boom d:boom", summary(rs))
		synctest.Wait()
		require.Equal(t, map[string]error{"a": boom, "b": context.Canceled, "c": boom, "d": boom, "e": context.Canceled}, c.results())
	})
}

func TestGatherHedgeDelay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// a is fast, b is stuck: at 10ms the hedge calls c, which answers
		// 5ms later.
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": time.Hour, "c": 5 * ms}, nil)
		rs, err := quorum.Gather(t.Context(), []string{"a", "b", "c"}, 2, c.call, quorum.Hedge(10*ms))
		require.NoError(t, err)
		require.Equal(t, 15*ms, c.elapsed())
		require.Equal(t, "a=a c=c", summary(rs))
		require.Equal(t, map[string]time.Duration{"a": 0, "b": 0, "c": 10 * ms}, c.startedAt())
		synctest.Wait()
		require.Equal(t, int32(3), c.calls.Load())
	})
}

func TestGatherHedgeRepeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		slow := map[string]time.Duration{}
		for _, r := range five {
			slow[r] = 100 * ms
		}
		c := newCluster(slow, nil)
		rs, err := quorum.Gather(t.Context(), five, 1, c.call, quorum.Hedge(10*ms))
		require.NoError(t, err)
		require.Equal(t, 100*ms, c.elapsed())
		require.Equal(t, "a=a", summary(rs))
		require.Equal(t, map[string]time.Duration{"a": 0, "b": 10 * ms, "c": 20 * ms, "d": 30 * ms, "e": 40 * ms}, c.startedAt())
	})
}

func TestGatherHedgeMinimizesCalls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(map[string]time.Duration{"a": ms, "b": 2 * ms, "c": ms, "d": ms, "e": ms}, nil)
		rs, err := quorum.Gather(t.Context(), five, 3, c.call, quorum.Hedge(10*ms))
		require.NoError(t, err)
		require.Equal(t, "a=a b=b c=c", summary(rs))
		synctest.Wait()
		require.Equal(t, int32(3), c.calls.Load(), "no call beyond need when all succeed in time")
	})
}

func TestGatherHedgeOnFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": 2 * ms, "c": 5 * ms, "d": 1 * ms, "e": 1 * ms},
			map[string]error{"a": boom, "c": boom})
		rs, err := quorum.Gather(t.Context(), five, 2, c.call, quorum.Hedge(0))
		require.NoError(t, err)
		// a fails at 1ms: c starts; c fails at 6ms: d starts, answers at 7ms.
		require.Equal(t, 7*ms, c.elapsed())
		require.Equal(t, map[string]time.Duration{"a": 0, "b": 0, "c": 1 * ms, "d": 6 * ms}, c.startedAt())
		require.Equal(t, "a:boom b=b c:boom d=d", summary(rs))
		require.Equal(t, int32(4), c.calls.Load())
	})
}

func TestGatherMaxInFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": 5 * ms, "b": 5 * ms, "c": 5 * ms, "d": 5 * ms, "e": 5 * ms},
			map[string]error{"b": boom})
		rs, err := quorum.Gather(t.Context(), five, 2, c.call, quorum.MaxInFlight(1))
		require.NoError(t, err)
		require.Equal(t, 15*ms, c.elapsed(), "one call at a time: a, b (fails), c")
		require.Equal(t, "a=a b:boom c=c", summary(rs))
		require.Equal(t, int32(1), c.peak.Load())
		require.Equal(t, int32(3), c.calls.Load())
	})
	synctest.Test(t, func(t *testing.T) {
		// With hedging, the limit holds owed hedges back until a slot frees.
		c := newCluster(map[string]time.Duration{"a": 30 * ms, "b": 30 * ms, "c": 30 * ms, "d": 1 * ms, "e": 1 * ms}, nil)
		rs, err := quorum.Gather(t.Context(), five, 2, c.call, quorum.Hedge(10*ms), quorum.MaxInFlight(3))
		require.NoError(t, err)
		require.Equal(t, map[string]time.Duration{"a": 0, "b": 0, "c": 10 * ms, "d": 30 * ms}, c.startedAt())
		require.Equal(t, 30*ms, c.elapsed())
		require.Equal(t, "a=a b=b", summary(rs))
		require.Equal(t, int32(3), c.peak.Load())
	})
}

func TestGatherTerminal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad, flaky := errors.New("bad request"), errors.New("flaky")
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": 2 * ms, "c": 3 * ms},
			map[string]error{"a": flaky, "b": bad})
		rs, err := quorum.Gather(t.Context(), five, 2, c.call, quorum.Hedge(0),
			quorum.Terminal(func(err error) bool { return errors.Is(err, bad) }))
		require.ErrorIs(t, err, bad)
		require.NotErrorIs(t, err, quorum.ErrNoQuorum)
		require.EqualError(t, err, `quorum: replica "b": bad request`)
		require.Equal(t, 2*ms, c.elapsed())
		require.Equal(t, "a:flaky b:bad request", summary(rs))
		synctest.Wait()
		require.Equal(t, int32(3), c.calls.Load(), "a's failure called c; b's stopped the hedging")
		require.Equal(t, context.Canceled, c.results()["c"])
	})
}

func TestGatherParentCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": 2 * ms}, map[string]error{"b": boom})
		ctx, cancel := context.WithTimeout(t.Context(), 5*ms)
		defer cancel()
		rs, err := quorum.Gather(ctx, five, 3, c.call)
		require.Equal(t, 5*ms, c.elapsed())
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, err, boom)
		require.Equal(t, "quorum: no quorum: context deadline exceeded after 1 of 3 needed successes\nreplica \"b\": boom", err.Error())
		require.Equal(t, "a=a b:boom", summary(rs))
	})
	synctest.Test(t, func(t *testing.T) {
		why := errors.New("shutting down")
		c := newCluster(nil, nil)
		ctx, cancel := context.WithCancelCause(t.Context())
		go func() {
			synctest.Wait() // every call started and blocks
			cancel(why)
		}()
		rs, err := quorum.Gather(ctx, five, 1, c.call)
		require.ErrorIs(t, err, why)
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.Empty(t, rs)
		require.Zero(t, c.elapsed())
		synctest.Wait()
		require.Equal(t, int32(5), c.calls.Load())
	})
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(nil, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		rs, err := quorum.Gather(ctx, five, 1, c.call)
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.Nil(t, rs)
		require.Zero(t, c.calls.Load(), "no call on a done context")
	})
}

// TestGatherDoesNotWait: Gather returns without waiting for a call that
// ignores cancellation; that call's goroutine ends when the call returns
// (synctest.Test would fail on a goroutine left blocked).
func TestGatherDoesNotWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var running atomic.Int32
		call := func(ctx context.Context, replica string) (string, error) {
			if replica == "a" {
				return "a", nil
			}
			running.Add(1)
			defer running.Add(-1)
			<-release // deaf to ctx
			return replica, nil
		}
		rs, err := quorum.Gather(t.Context(), []string{"a", "b", "c"}, 1, call)
		require.NoError(t, err)
		require.Equal(t, "a=a", summary(rs))
		synctest.Wait()
		require.Equal(t, int32(2), running.Load(), "Gather returned; b and c still run")
		close(release)
		synctest.Wait()
		require.Zero(t, running.Load())
	})
}

func TestGatherInvalid(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(nil, nil)
		for _, tc := range []struct {
			replicas []string
			need     int
			call     func(context.Context, string) (string, error)
			opts     []quorum.Option
			want     error
			msg      string
		}{
			{five, 0, c.call, nil, quorum.ErrInvalid, "need 0, want at least 1"},
			{five, -1, c.call, nil, quorum.ErrInvalid, "need -1"},
			{five, 1, nil, nil, quorum.ErrInvalid, "nil call"},
			{[]string{"a", "b", "a"}, 1, c.call, nil, quorum.ErrInvalid, `replica "a" listed twice`},
			{five, 1, c.call, []quorum.Option{quorum.Hedge(-1)}, quorum.ErrInvalid, "hedge delay -1ns is negative"},
			{five, 1, c.call, []quorum.Option{quorum.MaxInFlight(0)}, quorum.ErrInvalid, "max in flight 0"},
			{five, 6, c.call, nil, quorum.ErrNoQuorum, "need 6 replies from 5 replicas"},
			{nil, 1, c.call, nil, quorum.ErrNoQuorum, "need 1 replies from 0 replicas"},
		} {
			rs, err := quorum.Gather(t.Context(), tc.replicas, tc.need, tc.call, tc.opts...)
			require.ErrorIs(t, err, tc.want)
			require.ErrorContains(t, err, tc.msg)
			require.Nil(t, rs)
		}
		require.Zero(t, c.calls.Load())
		// nil options are ignored.
		_, err := quorum.Gather(t.Context(), []string{"a"}, 1, func(context.Context, string) (int, error) { return 1, nil }, nil)
		require.NoError(t, err)
	})
}

// TestGatherModel runs Gather over random replica behaviours and options
// and checks the outcome against a direct statement of the rules: success
// exactly when need calls succeed in time, at the moment of the need-th
// success; failure at the moment successes became impossible.
func TestGatherModel(t *testing.T) {
	for seed := uint64(0); seed < 200; seed++ {
		synctest.Test(t, func(t *testing.T) {
			r := newRand(seed)
			n := 1 + r.IntN(6)
			need := 1 + r.IntN(n)
			replicas := make([]string, n)
			delay := map[string]time.Duration{}
			errs := map[string]error{}
			for i := range replicas {
				replicas[i] = fmt.Sprint("r", i)
				delay[replicas[i]] = time.Duration(1+r.IntN(20)) * ms
				if r.IntN(3) == 0 {
					errs[replicas[i]] = errors.New("down")
				}
			}
			var opts []quorum.Option
			if r.IntN(2) == 0 {
				opts = append(opts, quorum.Hedge(time.Duration(r.IntN(3))*5*ms))
			}
			if r.IntN(2) == 0 {
				opts = append(opts, quorum.MaxInFlight(1+r.IntN(n)))
			}
			c := newCluster(delay, errs)
			rs, err := quorum.Gather(t.Context(), replicas, need, c.call, opts...)
			if opts == nil {
				// All calls start at once: the decision comes at the need-th
				// success or the (n-need+1)-th failure, whichever is first.
				var okAt, failAt []time.Duration
				for _, id := range replicas {
					if errs[id] == nil {
						okAt = append(okAt, delay[id])
					} else {
						failAt = append(failAt, delay[id])
					}
				}
				slices.Sort(okAt)
				slices.Sort(failAt)
				decide := time.Duration(math.MaxInt64)
				if len(okAt) >= need {
					decide = okAt[need-1]
				}
				if len(failAt) > n-need {
					decide = min(decide, failAt[n-need])
				}
				require.Equal(t, decide, c.elapsed(), "seed %d", seed)
			}
			ok, failed := 0, 0
			for _, rep := range rs {
				if rep.Err == nil {
					ok++
				} else {
					failed++
				}
			}
			if n-len(errs) >= need {
				require.NoError(t, err, "seed %d", seed)
				require.Equal(t, need, ok, "seed %d", seed)
			} else {
				require.ErrorIs(t, err, quorum.ErrNoQuorum, "seed %d", seed)
				require.Equal(t, n-need+1, failed, "seed %d: fails at the first impossible moment", seed)
			}
			// Replies are in replica order and came from distinct calls.
			last := -1
			for _, rep := range rs {
				var i int
				fmt.Sscanf(rep.Replica, "r%d", &i)
				require.Greater(t, i, last, "seed %d", seed)
				last = i
			}
			synctest.Wait()
			require.LessOrEqual(t, int(c.calls.Load()), n, "seed %d", seed)
			require.Zero(t, c.active.Load(), "seed %d: every call returned", seed)
		})
	}
}

func BenchmarkGather(b *testing.B) {
	call := func(_ context.Context, replica string) (int, error) { return len(replica), nil }
	for _, n := range []int{3, 5} {
		replicas := five[:n]
		need := quorum.Majority(n)
		b.Run(fmt.Sprintf("replicas=%d", n), func(b *testing.B) {
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := quorum.Gather(ctx, replicas, need, call); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGatherAllocs pins the allocations of a successful Gather without
// options: the cancellable context (2), the reply channel and its buffer
// (2), the replies (1), and one closure per call.
func TestGatherAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	call := func(_ context.Context, replica string) (int, error) { return len(replica), nil }
	for _, n := range []int{3, 5} {
		allocs := testing.AllocsPerRun(200, func() {
			if _, err := quorum.Gather(context.Background(), five[:n], quorum.Majority(n), call); err != nil {
				t.Fatal(err)
			}
		})
		require.Equal(t, float64(5+n), allocs, "%d replicas", n)
	}
}

// TestGatherRealScheduling runs Gather outside a bubble, with instant calls
// that fail at random, so that the race detector sees real interleavings;
// the invariants hold whatever order the replies arrive in.
func TestGatherRealScheduling(t *testing.T) {
	for seed := uint64(0); seed < 300; seed++ {
		r := newRand(seed)
		n := 1 + r.IntN(7)
		need := 1 + r.IntN(n)
		fails := make([]bool, n)
		good := 0
		for i := range fails {
			fails[i] = r.IntN(3) == 0
			if !fails[i] {
				good++
			}
		}
		var calls atomic.Int32
		call := func(_ context.Context, replica string) (int, error) {
			calls.Add(1)
			var i int
			fmt.Sscanf(replica, "r%d", &i)
			if fails[i] {
				return 0, errors.New("down")
			}
			return i, nil
		}
		replicas := make([]string, n)
		for i := range replicas {
			replicas[i] = fmt.Sprint("r", i)
		}
		var opts []quorum.Option
		if r.IntN(2) == 0 {
			opts = append(opts, quorum.Hedge(0))
		}
		rs, err := quorum.Gather(context.Background(), replicas, need, call, opts...)
		ok := 0
		for _, rep := range rs {
			if rep.Err == nil {
				ok++
				require.Equal(t, rep.Replica, fmt.Sprint("r", rep.Value), "seed %d", seed)
			}
		}
		if good >= need {
			require.NoError(t, err, "seed %d", seed)
			require.Equal(t, need, ok, "seed %d", seed)
		} else {
			require.ErrorIs(t, err, quorum.ErrNoQuorum, "seed %d", seed)
			require.Equal(t, n-need+1, len(rs)-ok, "seed %d", seed)
		}
		require.LessOrEqual(t, int(calls.Load()), n)
	}
}

func TestGatherForEachQuorum(t *testing.T) {
	req, err := quorum.LevelEachQuorum.Requirement(twoZones) // eu: a b c, us: d e
	require.NoError(t, err)
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": 2 * ms, "c": 9 * ms, "d": 5 * ms, "e": 7 * ms}, nil)
		rs, err := quorum.GatherFor(t.Context(), req, c.call)
		require.NoError(t, err)
		require.Equal(t, 7*ms, c.elapsed(), "waits for the slower zone")
		require.Equal(t, "a=a b=b d=d e=e", summary(rs))
		require.Equal(t, context.Canceled, c.results()["c"])
	})
	synctest.Test(t, func(t *testing.T) {
		// us needs both of its replicas; d failing decides at once.
		boom := errors.New("boom")
		c := newCluster(map[string]time.Duration{"a": 3 * ms, "b": 4 * ms, "c": 5 * ms, "d": 1 * ms}, map[string]error{"d": boom})
		rs, err := quorum.GatherFor(t.Context(), req, c.call)
		require.Equal(t, 1*ms, c.elapsed())
		require.ErrorIs(t, err, quorum.ErrNoQuorum)
		require.ErrorIs(t, err, boom)
		require.ErrorContains(t, err, `zone "us": quorum: no quorum: 0 of 2 replicas succeeded, need 2`)
		require.Equal(t, "d:boom", summary(rs))
		require.Equal(t, map[string]error{"a": context.Canceled, "b": context.Canceled, "c": context.Canceled, "d": boom, "e": context.Canceled}, c.results())
	})
	synctest.Test(t, func(t *testing.T) {
		// Hedging per zone: two calls in each zone's quorum first.
		c := newCluster(map[string]time.Duration{"a": 1 * ms, "b": 1 * ms, "c": 1 * ms, "d": 1 * ms, "e": 1 * ms}, nil)
		_, err := quorum.GatherFor(t.Context(), req, c.call, quorum.Hedge(0))
		require.NoError(t, err)
		require.Equal(t, map[string]time.Duration{"a": 0, "b": 0, "d": 0, "e": 0}, c.startedAt())
	})
}

func TestGatherForLocalAndGlobal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		req, err := quorum.LevelLocalQuorum.Requirement(twoZones)
		require.NoError(t, err)
		c := newCluster(map[string]time.Duration{"a": 3 * ms, "b": 1 * ms, "c": 2 * ms, "d": 0, "e": 0}, nil)
		rs, err := quorum.GatherFor(t.Context(), req, c.call)
		require.NoError(t, err)
		require.Equal(t, "b=b c=c", summary(rs))
		require.Equal(t, 2*ms, c.elapsed(), "the faster remote replicas do not count")
		require.NotContains(t, c.startedAt(), "d", "remote replicas are not called")
	})
	synctest.Test(t, func(t *testing.T) {
		req, err := quorum.LevelQuorum.Requirement(twoZones)
		require.NoError(t, err)
		c := newCluster(map[string]time.Duration{"a": 3 * ms, "b": 4 * ms, "c": 5 * ms, "d": 1 * ms, "e": 2 * ms}, nil)
		rs, err := quorum.GatherFor(t.Context(), req, c.call)
		require.NoError(t, err)
		require.Equal(t, "a=a d=d e=e", summary(rs))
		require.Equal(t, 3*ms, c.elapsed())
	})
	_, err := quorum.GatherFor(context.Background(), quorum.Requirement{}, func(context.Context, string) (int, error) { return 0, nil })
	require.ErrorIs(t, err, quorum.ErrInvalid)
}
