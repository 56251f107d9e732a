package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
)

var bg = context.Background()

func newGuard(t *testing.T) (*idempotency.Guard, *idempotency.MemStore, *clocktest.Manual) {
	t.Helper()
	return newGuardVia(t, guardPaths[0])
}

// guardPath is one of the two ways a Guard can reach a MemStore on its
// own clock: directly, or through the Store interface alone, as it
// reaches every other store.
type guardPath struct {
	name string
	wrap func(*idempotency.MemStore) idempotency.Store
}

var guardPaths = []guardPath{
	{"direct", func(s *idempotency.MemStore) idempotency.Store { return s }},
	{"store-interface", func(s *idempotency.MemStore) idempotency.Store { return storeOnly{s} }},
}

// storeOnly hides what the Store is.
type storeOnly struct{ idempotency.Store }

func newGuardVia(t *testing.T, p guardPath) (*idempotency.Guard, *idempotency.MemStore, *clocktest.Manual) {
	t.Helper()
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk}
	return idempotency.New(p.wrap(s), idempotency.Config{Lock: time.Minute, Retain: time.Hour, Clock: clk}), s, clk
}

// counter returns an fn that counts its runs and returns out, err.
func counter(n *atomic.Int32, out string, err error) func(context.Context) ([]byte, error) {
	return func(context.Context) ([]byte, error) {
		n.Add(1)
		if err != nil {
			return nil, err
		}
		return []byte(out), nil
	}
}

func TestGuardRunsOnceAndReplays(t *testing.T) {
	for _, p := range guardPaths {
		t.Run(p.name, func(t *testing.T) { testGuardRunsOnceAndReplays(t, p) })
	}
}

func testGuardRunsOnceAndReplays(t *testing.T, p guardPath) {
	g, _, clk := newGuardVia(t, p)
	var runs atomic.Int32
	for range 3 {
		out, err := g.Do(bg, "k", []byte("fp"), counter(&runs, "result", nil))
		require.NoError(t, err)
		require.Equal(t, "result", string(out))
	}
	require.EqualValues(t, 1, runs.Load())
	// A nil result replays as nil.
	out, err := g.Do(bg, "nil", nil, func(context.Context) ([]byte, error) { return nil, nil })
	require.NoError(t, err)
	require.Nil(t, out)
	out, err = g.Do(bg, "nil", nil, counter(&runs, "x", nil))
	require.NoError(t, err)
	require.Nil(t, out)
	// The record is forgotten after Retain: the key runs again.
	clk.Advance(time.Hour)
	out, err = g.Do(bg, "k", []byte("fp"), counter(&runs, "second", nil))
	require.NoError(t, err)
	require.Equal(t, "second", string(out))
	require.EqualValues(t, 2, runs.Load())
}

func TestGuardErrors(t *testing.T) {
	g, _, _ := newGuard(t)
	var runs atomic.Int32
	_, err := g.Do(bg, "", nil, counter(&runs, "x", nil))
	require.ErrorIs(t, err, idempotency.ErrMissingKey)

	_, err = g.Do(bg, "k", []byte("fp1"), counter(&runs, "x", nil))
	require.NoError(t, err)
	_, err = g.Do(bg, "k", []byte("fp2"), counter(&runs, "y", nil))
	require.ErrorIs(t, err, idempotency.ErrMismatch)
	require.EqualValues(t, 1, runs.Load())
}

// TestGuardReplayAppend: a replayed result, read-only, is capped at its
// length, so a caller that appends to it changes neither the record nor
// the next replay.
func TestGuardReplayAppend(t *testing.T) {
	for _, p := range guardPaths {
		g, s, _ := newGuardVia(t, p)
		_, err := g.Do(bg, "k", []byte("fp"), func(context.Context) ([]byte, error) { return []byte("result"), nil })
		require.NoError(t, err)
		for range 2 {
			out, err := g.Do(bg, "k", []byte("fp"), nil)
			require.NoError(t, err)
			require.Equal(t, len(out), cap(out), p.name)
			_ = append(out, "XXXXXX"...)
			require.Equal(t, "result", string(out), p.name)
		}
		_, rec, err := s.Claim(bg, "k", []byte("fp"), time.Minute)
		require.NoError(t, err)
		require.Contains(t, string(rec.Response), "result", p.name)
		require.NotContains(t, string(rec.Response), "X", p.name)
	}
}

// TestGuardReplaysErrors: a plain error is recorded and replayed; the
// first caller sees fn's own error, later ones a *StoredError.
func TestGuardReplaysErrors(t *testing.T) {
	g, _, _ := newGuard(t)
	var runs atomic.Int32
	boom := errors.New("card declined")
	_, err := g.Do(bg, "k", nil, counter(&runs, "", boom))
	require.ErrorIs(t, err, boom)
	for range 2 {
		_, err = g.Do(bg, "k", nil, counter(&runs, "ok", nil))
		var stored *idempotency.StoredError
		require.ErrorAs(t, err, &stored)
		require.Equal(t, "card declined", stored.Message)
	}
	require.EqualValues(t, 1, runs.Load())
}

// TestGuardRetryable: a Retryable failure is not recorded, so the key
// runs again.
func TestGuardRetryable(t *testing.T) {
	g, s, _ := newGuard(t)
	var runs atomic.Int32
	flaky := errors.New("upstream timeout")
	_, err := g.Do(bg, "k", nil, counter(&runs, "", idempotency.Retryable(flaky)))
	require.ErrorIs(t, err, flaky)
	require.Equal(t, 0, s.Len(), "claim released")
	out, err := g.Do(bg, "k", nil, counter(&runs, "ok", nil))
	require.NoError(t, err)
	require.Equal(t, "ok", string(out))
	require.EqualValues(t, 2, runs.Load())
	require.NoError(t, idempotency.Retryable(nil))
}

// TestGuardReleasesOnCancel: fn failing after its context ended says
// nothing about the operation: the claim is released.
func TestGuardReleasesOnCancel(t *testing.T) {
	g, s, _ := newGuard(t)
	ctx, cancel := context.WithCancel(bg)
	_, err := g.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
		cancel()
		return nil, ctx.Err()
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 0, s.Len())
	// But a success despite the cancellation is recorded.
	ctx, cancel = context.WithCancel(bg)
	_, err = g.Do(ctx, "k", nil, func(ctx context.Context) ([]byte, error) {
		cancel()
		return []byte("done anyway"), nil
	})
	require.NoError(t, err)
	out, err := g.Do(bg, "k", nil, nil)
	require.NoError(t, err)
	require.Equal(t, "done anyway", string(out))
}

func TestGuardReleasesOnPanic(t *testing.T) {
	g, s, _ := newGuard(t)
	require.Panics(t, func() {
		_, _ = g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { panic("bug") })
	})
	require.Equal(t, 0, s.Len())
	out, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return []byte("ok"), nil })
	require.NoError(t, err)
	require.Equal(t, "ok", string(out))
}

// TestGuardCrashTakeover: an executor in another process claimed the key
// and died. Until its lock lapses the key is in progress; then the next
// caller takes it over and runs fn.
func TestGuardCrashTakeover(t *testing.T) {
	g, s, clk := newGuard(t)
	_, rec, err := s.Claim(bg, "k", []byte("fp"), time.Minute) // the crashed executor
	require.NoError(t, err)
	require.Nil(t, rec)
	var runs atomic.Int32
	_, err = g.Do(bg, "k", []byte("fp"), counter(&runs, "x", nil))
	require.ErrorIs(t, err, idempotency.ErrInProgress)
	clk.Advance(time.Minute - time.Nanosecond)
	_, err = g.Do(bg, "k", []byte("fp"), counter(&runs, "x", nil))
	require.ErrorIs(t, err, idempotency.ErrInProgress)
	require.EqualValues(t, 0, runs.Load())
	clk.Advance(time.Nanosecond)
	out, err := g.Do(bg, "k", []byte("fp"), counter(&runs, "taken over", nil))
	require.NoError(t, err)
	require.Equal(t, "taken over", string(out))
	require.EqualValues(t, 1, runs.Load())
}

// TestGuardLockLapsed: fn outlives its lock (a long GC pause, say) and
// another process takes the key over meanwhile. The first Guard must not
// touch the new owner's claim.
func TestGuardLockLapsed(t *testing.T) {
	for _, p := range guardPaths {
		t.Run(p.name, func(t *testing.T) { testGuardLockLapsed(t, p) })
	}
}

func testGuardLockLapsed(t *testing.T, p guardPath) {
	g1, s, clk := newGuardVia(t, p)
	g2 := idempotency.New(p.wrap(s), idempotency.Config{Lock: time.Minute, Retain: time.Hour, Clock: clk})
	g3 := idempotency.New(p.wrap(s), idempotency.Config{Lock: time.Minute, Retain: time.Hour, Clock: clk})
	out, err := g1.Do(bg, "k", nil, func(context.Context) ([]byte, error) {
		clk.Advance(time.Minute)
		// While g1's fn is paused, g2 takes the key over and is running.
		_, err := g2.Do(bg, "k", nil, func(context.Context) ([]byte, error) {
			_, err := g3.Do(bg, "k", nil, nil) // a third process meanwhile
			require.ErrorIs(t, err, idempotency.ErrInProgress)
			return []byte("second"), nil
		})
		require.NoError(t, err)
		return []byte("first"), nil
	})
	require.ErrorIs(t, err, idempotency.ErrLockExpired)
	require.Equal(t, "first", string(out), "the caller still learns what fn did")
	out, err = g1.Do(bg, "k", nil, nil)
	require.NoError(t, err)
	require.Equal(t, "second", string(out), "the new owner's record survives")
}

// TestGuardFencedBySkewedClock: the Guard's clock runs behind the
// store's, so the Guard believes its claim live after the store let it
// lapse and gave the key to another caller. The store's fencing refuses
// the late Complete and Release: the successor's claim survives, and the
// late caller learns that its result was not recorded.
func TestGuardFencedBySkewedClock(t *testing.T) {
	for _, fail := range []bool{false, true} {
		storeClock := clocktest.NewManual(t0)
		s := &idempotency.MemStore{Clock: storeClock}
		g := idempotency.New(s, idempotency.Config{Lock: time.Minute, Clock: clocktest.NewManual(t0)})
		var successor uint64
		out, err := g.Do(bg, "k", []byte("fp"), func(ctx context.Context) ([]byte, error) {
			storeClock.Advance(time.Minute) // a pause the Guard's clock did not see
			var rec *idempotency.Record
			var err error
			successor, rec, err = s.Claim(bg, "k", []byte("fp"), time.Minute)
			require.NoError(t, err)
			require.Nil(t, rec)
			if fail {
				return nil, idempotency.Retryable(errors.New("try again")) // would Release
			}
			return []byte("late"), nil
		})
		require.ErrorIs(t, err, idempotency.ErrNotClaimed, "fail=%v", fail)
		if !fail {
			require.ErrorIs(t, err, idempotency.ErrLockExpired)
			require.Equal(t, "late", string(out), "the caller still learns what fn did")
		}
		_, rec, err := s.Claim(bg, "k", nil, time.Minute)
		require.NoError(t, err)
		require.NotNil(t, rec, "fail=%v: the successor's claim was released", fail)
		require.Equal(t, idempotency.InProgress, rec.State, "fail=%v: the successor's claim was completed", fail)
		require.Equal(t, successor, rec.Token)
	}
}

// TestGuardFencingToken: fn's context carries its claim's token, which
// increases from one claim to the next.
func TestGuardFencingToken(t *testing.T) {
	g, s, _ := newGuard(t)
	_, ok := idempotency.FencingToken(bg)
	require.False(t, ok)
	var tokens []uint64
	for _, key := range []string{"a", "b", "c"} {
		_, err := g.Do(bg, key, nil, func(ctx context.Context) ([]byte, error) {
			token, ok := idempotency.FencingToken(ctx)
			require.True(t, ok)
			tokens = append(tokens, token)
			return nil, nil
		})
		require.NoError(t, err)
		_, rec, err := s.Claim(bg, key, nil, time.Minute)
		require.NoError(t, err)
		require.Equal(t, tokens[len(tokens)-1], rec.Token, "the record keeps its claim's token")
	}
	require.IsIncreasing(t, tokens)
}

// TestGuardPanicAfterLockLapsed: fn outlives its lock, another caller
// takes the key over, then fn panics. The first Guard must leave the new
// owner's claim alone, as it does when fn returns; releasing it would let a
// third caller run alongside the second.
func TestGuardPanicAfterLockLapsed(t *testing.T) {
	g1, s, clk := newGuard(t)
	require.Panics(t, func() {
		_, _ = g1.Do(bg, "k", []byte("first"), func(context.Context) ([]byte, error) {
			clk.Advance(time.Minute)
			_, rec, err := s.Claim(bg, "k", []byte("second"), time.Minute) // the takeover
			require.NoError(t, err)
			require.Nil(t, rec)
			panic("bug")
		})
	})
	_, rec, err := s.Claim(bg, "k", []byte("third"), time.Minute)
	require.NoError(t, err)
	require.NotNil(t, rec, "the second owner's claim was released")
	require.Equal(t, "second", string(rec.Fingerprint))
	require.Equal(t, idempotency.InProgress, rec.State)
}

// TestGuardLockEndsFn: fn's context ends when the lock lapses (virtual
// time), and the key is free again.
func TestGuardLockEndsFn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &idempotency.MemStore{}
		g := idempotency.New(s, idempotency.Config{Lock: 30 * time.Second})
		start := time.Now()
		_, err := g.Do(bg, "k", nil, func(ctx context.Context) ([]byte, error) {
			<-ctx.Done()
			return nil, ctx.Err()
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 30*time.Second, time.Since(start))
		out, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return []byte("again"), nil })
		require.NoError(t, err)
		require.Equal(t, "again", string(out))
	})
}

// TestGuardSharesExecution: concurrent duplicates in one process share
// one execution and its result.
// TestGuardConflictsByDefault: concurrent calls with one key through one
// Guard get ErrInProgress, as they would from another process.
func TestGuardConflictsByDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
		var runs, conflicts atomic.Int32
		release := make(chan struct{})
		fn := func(context.Context) ([]byte, error) {
			runs.Add(1)
			<-release
			return []byte("first"), nil
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			out, err := g.Do(bg, "k", []byte("fp"), fn)
			require.NoError(t, err)
			require.Equal(t, "first", string(out))
		})
		synctest.Wait() // the first is in fn
		for range 9 {
			wg.Go(func() {
				_, err := g.Do(bg, "k", []byte("fp"), fn)
				require.ErrorIs(t, err, idempotency.ErrInProgress)
				conflicts.Add(1)
			})
		}
		synctest.Wait()
		require.EqualValues(t, 9, conflicts.Load(), "the duplicates returned at once")
		close(release)
		wg.Wait()
		require.EqualValues(t, 1, runs.Load())
	})
}

// TestGuardSharesExecution: with Wait, concurrent calls through one
// Guard wait for the first and get its result.
func TestGuardSharesExecution(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Wait: true})
		var runs atomic.Int32
		release := make(chan struct{})
		fn := func(context.Context) ([]byte, error) {
			runs.Add(1)
			<-release
			return []byte("shared"), nil
		}
		const n = 10
		results := make([]string, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				out, err := g.Do(bg, "k", []byte("fp"), fn)
				require.NoError(t, err)
				results[i] = string(out)
			})
		}
		synctest.Wait() // all ten are inside Do, one in fn
		close(release)
		wg.Wait()
		require.EqualValues(t, 1, runs.Load())
		for _, r := range results {
			require.Equal(t, "shared", r)
		}
	})
}

// TestGuardWaitersOutliveLeader: the first caller leaves while fn runs;
// the callers waiting on it run fn themselves instead of inheriting its
// cancellation.
// TestGuardWaiterLeaves: with Wait, a waiting call returns when its own
// context ends, not when the execution it waits for does; the execution
// goes on and is recorded.
func TestGuardWaiterLeaves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Wait: true})
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			out, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) {
				<-release
				return []byte("first"), nil
			})
			require.NoError(t, err)
			require.Equal(t, "first", string(out))
		})
		synctest.Wait()
		ctx, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		start := time.Now()
		_, err := g.Do(ctx, "k", nil, nil)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, time.Second, time.Since(start), "the waiter left when its context ended")
		close(release)
		wg.Wait()
		out, err := g.Do(bg, "k", nil, nil)
		require.NoError(t, err)
		require.Equal(t, "first", string(out))
	})
}

// TestGuardWaitersOutliveLeader: with Wait, when the first caller leaves
// and its execution is abandoned, one waiter runs fn and the others get
// its result.
func TestGuardWaitersOutliveLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Wait: true})
		var runs atomic.Int32
		fn := func(ctx context.Context) ([]byte, error) {
			if runs.Add(1) == 1 {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			return []byte("second run"), nil
		}
		ctx, cancel := context.WithCancel(bg)
		var wg sync.WaitGroup
		wg.Go(func() {
			_, err := g.Do(ctx, "k", nil, fn)
			require.ErrorIs(t, err, context.Canceled)
		})
		synctest.Wait()
		const waiters = 5
		for range waiters {
			wg.Go(func() {
				out, err := g.Do(bg, "k", nil, fn)
				require.NoError(t, err)
				require.Equal(t, "second run", string(out))
			})
		}
		synctest.Wait()
		cancel()
		wg.Wait()
		require.EqualValues(t, 2, runs.Load())
	})
}

// TestGuardWaiterOtherPayload: a concurrent duplicate with another
// fingerprint does not get the first payload's result.
func TestGuardWaiterOtherPayload(t *testing.T) {
	for _, wait := range []bool{false, true} {
		t.Run(fmt.Sprint("wait=", wait), func(t *testing.T) { testGuardWaiterOtherPayload(t, wait) })
	}
}

func testGuardWaiterOtherPayload(t *testing.T, wait bool) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Wait: wait})
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			out, err := g.Do(bg, "k", []byte("a"), func(context.Context) ([]byte, error) {
				<-release
				return []byte("a's"), nil
			})
			require.NoError(t, err)
			require.Equal(t, "a's", string(out))
		})
		synctest.Wait()
		wg.Go(func() {
			_, err := g.Do(bg, "k", []byte("b"), nil)
			require.ErrorIs(t, err, idempotency.ErrMismatch)
		})
		synctest.Wait()
		close(release)
		wg.Wait()
	})
}

// failingStore fails Complete.
type failingStore struct{ idempotency.MemStore }

var errDisk = errors.New("disk on fire")

func (*failingStore) Complete(context.Context, string, uint64, []byte, time.Duration) error {
	return errDisk
}

func TestGuardCompleteFails(t *testing.T) {
	g := idempotency.New(&failingStore{}, idempotency.Config{})
	out, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return []byte("did it"), nil })
	require.ErrorIs(t, err, errDisk)
	require.Equal(t, "did it", string(out))
}

func TestGuardCorruptRecord(t *testing.T) {
	g, s, _ := newGuard(t)
	token, _, err := s.Claim(bg, "k", nil, time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(bg, "k", token, []byte("not msgpack"), time.Hour))
	_, err = g.Do(bg, "k", nil, nil)
	require.ErrorIs(t, err, idempotency.ErrCorrupt)
}

func TestNewPanics(t *testing.T) {
	require.PanicsWithValue(t, "idempotency: New with a nil Store", func() { idempotency.New(nil, idempotency.Config{}) })
	require.Panics(t, func() { idempotency.New(&idempotency.MemStore{}, idempotency.Config{Lock: -1}) })
	g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	require.Equal(t, idempotency.DefaultRetain, g.Retain())
}

// TestGuardModel checks Do against a reference model over random seeded
// histories of calls, outcomes and clock moves.
func TestGuardModel(t *testing.T) {
	type rec struct {
		fp      byte
		out     string
		failed  bool
		expires time.Time
	}
	for seed := range uint64(60) {
		r := rand.New(rand.NewPCG(seed, 7))
		g, _, clk := newGuardVia(t, guardPaths[seed%2])
		model := map[string]rec{}
		for step := range 400 {
			key := fmt.Sprint(r.IntN(5))
			fp := byte(r.IntN(2))
			kind := r.IntN(3) // 0 ok, 1 error, 2 retryable error
			result := fmt.Sprint("r", step)
			ran := false
			out, err := g.Do(bg, key, []byte{fp}, func(context.Context) ([]byte, error) {
				ran = true
				switch kind {
				case 1:
					return nil, errors.New(result)
				case 2:
					return nil, idempotency.Retryable(errors.New(result))
				}
				return []byte(result), nil
			})
			where := fmt.Sprintf("seed %d step %d", seed, step)
			m, live := model[key]
			live = live && clk.Now().Before(m.expires)
			switch {
			case !live:
				require.True(t, ran, where)
				if kind != 2 {
					model[key] = rec{fp: fp, out: result, failed: kind == 1, expires: clk.Now().Add(time.Hour)}
				} else {
					delete(model, key)
				}
				if kind == 0 {
					require.NoError(t, err, where)
					require.Equal(t, result, string(out), where)
				} else {
					require.EqualError(t, err, result, where)
				}
			case m.fp != fp:
				require.False(t, ran, where)
				require.ErrorIs(t, err, idempotency.ErrMismatch, where)
			case m.failed:
				require.False(t, ran, where)
				var stored *idempotency.StoredError
				require.ErrorAs(t, err, &stored, where)
				require.Equal(t, m.out, stored.Message, where)
			default:
				require.False(t, ran, where)
				require.NoError(t, err, where)
				require.Equal(t, m.out, string(out), where)
			}
			if r.IntN(4) == 0 {
				clk.Advance(time.Duration(r.IntN(40)) * time.Minute)
			}
		}
	}
}

type ctxKey struct{}

// TestGuardContext: fn's context is its caller's, bounded by the lock,
// with the token; children made from it end when the lock lapses; and
// one kept past fn's return is cancelled, even if first used then.
func TestGuardContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Lock: 30 * time.Second})
		parent := context.WithValue(bg, ctxKey{}, "request value")
		start := time.Now()
		_, err := g.Do(parent, "lapses", nil, func(ctx context.Context) ([]byte, error) {
			child, cancel := context.WithCancel(context.WithValue(ctx, ctxKey{}, "shadowed"))
			defer cancel()
			token, ok := idempotency.FencingToken(child)
			require.True(t, ok)
			require.NotZero(t, token)
			require.Equal(t, "request value", ctx.Value(ctxKey{}))
			deadline, ok := ctx.Deadline()
			require.True(t, ok)
			require.Equal(t, start.Add(30*time.Second), deadline)
			<-child.Done()
			require.Equal(t, 30*time.Second, time.Since(start))
			require.ErrorIs(t, context.Cause(ctx), context.DeadlineExceeded)
			return nil, child.Err()
		})
		require.ErrorIs(t, err, context.DeadlineExceeded, "the lock ended the child")

		var kept context.Context
		_, err = g.Do(bg, "kept", nil, func(ctx context.Context) ([]byte, error) {
			kept = ctx // not looked at before fn returns
			return []byte("ok"), nil
		})
		require.NoError(t, err)
		select {
		case <-kept.Done():
		default:
			t.Fatal("a context kept past fn's return is not done")
		}
		require.ErrorIs(t, kept.Err(), context.Canceled)

		// With a parent that has an earlier deadline, that one holds.
		early, cancel := context.WithTimeout(bg, time.Second)
		defer cancel()
		_, err = g.Do(early, "early", nil, func(ctx context.Context) ([]byte, error) {
			deadline, _ := ctx.Deadline()
			require.Equal(t, time.Now().Add(time.Second), deadline)
			return nil, nil
		})
		require.NoError(t, err)
	})
}

var errDeclined = errors.New("card declined")

// apiError is an error that carries its code.
type apiError struct{ code, msg string }

func (e *apiError) Error() string { return e.msg }
func (e *apiError) Code() string  { return e.code }

// TestGuardTypedReplays: a replayed failure matches the registered error
// it matched the first time, or any Coder with its code, also through
// another Guard (another process) with the same registrations; the
// message and code survive, and nothing else is claimed.
func TestGuardTypedReplays(t *testing.T) {
	s := &idempotency.MemStore{}
	errOther := errors.New("other")
	cfg := idempotency.Config{Errors: map[string]error{"card_declined": errDeclined, "other": errOther}}
	g := idempotency.New(s, cfg)
	first := func(err error) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return nil, err }
	}
	_, err := g.Do(bg, "registered", nil, first(fmt.Errorf("charging: %w", errDeclined)))
	require.ErrorIs(t, err, errDeclined)
	_, err = g.Do(bg, "coded", nil, first(fmt.Errorf("charging: %w", &apiError{"insufficient_funds", "no money"})))
	require.Error(t, err)
	_, err = g.Do(bg, "plain", nil, first(errors.New("plain")))
	require.Error(t, err)

	for _, replayer := range []*idempotency.Guard{g, idempotency.New(s, cfg)} {
		_, err = replayer.Do(bg, "registered", nil, nil)
		require.ErrorIs(t, err, errDeclined)
		require.NotErrorIs(t, err, errOther)
		stored, ok := errors.AsType[*idempotency.StoredError](err)
		require.True(t, ok)
		require.Equal(t, idempotency.StoredError{Code: "card_declined", Message: "charging: card declined"},
			idempotency.StoredError{Code: stored.Code, Message: stored.Message})

		_, err = replayer.Do(bg, "coded", nil, nil)
		require.ErrorIs(t, err, &apiError{code: "insufficient_funds"})
		require.NotErrorIs(t, err, &apiError{code: "card_declined"})
		require.EqualError(t, err, "charging: no money")

		_, err = replayer.Do(bg, "plain", nil, nil)
		stored, ok = errors.AsType[*idempotency.StoredError](err)
		require.True(t, ok)
		require.Empty(t, stored.Code)
		require.Nil(t, errors.Unwrap(err))
	}

	// A Guard without the registration still sees the code.
	_, err = idempotency.New(s, idempotency.Config{}).Do(bg, "registered", nil, nil)
	require.NotErrorIs(t, err, errDeclined)
	stored, _ := errors.AsType[*idempotency.StoredError](err)
	require.Equal(t, "card_declined", stored.Code)

	require.Panics(t, func() { idempotency.New(s, idempotency.Config{Errors: map[string]error{"": errDeclined}}) })
	require.Panics(t, func() { idempotency.New(s, idempotency.Config{Errors: map[string]error{"x": nil}}) })
}

// TestGuardBadKeys: keys over MaxKeyBytes or with control characters are
// refused before the store sees them.
func TestGuardBadKeys(t *testing.T) {
	g, s, _ := newGuard(t)
	var runs atomic.Int32
	for _, key := range []string{
		strings.Repeat("k", idempotency.MaxKeyBytes+1),
		"line\nbreak", "nul\x00", "del\x7f", "\x1b[31m",
	} {
		_, err := g.Do(bg, key, nil, counter(&runs, "x", nil))
		require.ErrorIs(t, err, idempotency.ErrBadKey, "%q", key)
	}
	require.Zero(t, runs.Load())
	require.Zero(t, s.Len())
	_, err := g.Do(bg, strings.Repeat("k", idempotency.MaxKeyBytes), nil, counter(&runs, "x", nil))
	require.NoError(t, err)
	_, err = g.Do(bg, "ünïcödé and spaces", nil, counter(&runs, "x", nil))
	require.NoError(t, err)
}

// lyingStore returns, for a live key, a record altered by lie.
type lyingStore struct {
	idempotency.MemStore
	lie func(*idempotency.Record)
}

func (s *lyingStore) Claim(ctx context.Context, key string, fp []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	token, rec, err := s.MemStore.Claim(ctx, key, fp, lock)
	if rec != nil {
		s.lie(rec)
	}
	return token, rec, err
}

// zeroTokenStore grants claims under token 0.
type zeroTokenStore struct{ idempotency.MemStore }

func (s *zeroTokenStore) Claim(ctx context.Context, key string, fp []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	_, rec, err := s.MemStore.Claim(ctx, key, fp, lock)
	return 0, rec, err
}

// TestGuardUntrustedRecords: a store that breaks its contract gets
// ErrCorrupt naming the fault, never a replay or a run of fn.
func TestGuardUntrustedRecords(t *testing.T) {
	fp := []byte("0123456789abcdef0123456789abcdef")
	for name, c := range map[string]struct {
		lie  func(*idempotency.Record)
		want string
	}{
		"other key":         {func(r *idempotency.Record) { r.Key = "someone-else" }, `record of "someone-else"`},
		"short fingerprint": {func(r *idempotency.Record) { r.Fingerprint = r.Fingerprint[:16] }, "fingerprint of 16 bytes"},
		"long fingerprint":  {func(r *idempotency.Record) { r.Fingerprint = append(r.Fingerprint, 0) }, "fingerprint of 33 bytes"},
		"unknown state":     {func(r *idempotency.Record) { r.State = 7 }, "state State(7)"},
		"garbage response":  {func(r *idempotency.Record) { r.Response = []byte{0x92, 0x05, 0xc0} }, "outcome kind 5"},
	} {
		s := &lyingStore{lie: c.lie}
		g := idempotency.New(s, idempotency.Config{})
		_, err := g.Do(bg, "k", fp, func(context.Context) ([]byte, error) { return []byte("ok"), nil })
		require.NoError(t, err, name)
		var runs atomic.Int32
		_, err = g.Do(bg, "k", fp, counter(&runs, "again", nil))
		require.ErrorIs(t, err, idempotency.ErrCorrupt, name)
		require.ErrorContains(t, err, c.want, name)
		require.Zero(t, runs.Load(), name)
	}
	var runs atomic.Int32
	_, err := idempotency.New(&zeroTokenStore{}, idempotency.Config{}).Do(bg, "k", fp, counter(&runs, "x", nil))
	require.ErrorIs(t, err, idempotency.ErrCorrupt)
	require.ErrorContains(t, err, "token 0")
	require.Zero(t, runs.Load())
}

// TestGuardWaitersOutlivePanic: with Wait, when the first caller's fn
// panics, the panic stays with that caller and a waiter runs fn itself.
func TestGuardWaitersOutlivePanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Wait: true})
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			require.PanicsWithValue(t, "bug", func() {
				_, _ = g.Do(bg, "k", nil, func(context.Context) ([]byte, error) {
					<-release
					panic("bug")
				})
			})
		})
		synctest.Wait()
		wg.Go(func() {
			out, err := g.Do(bg, "k", nil, func(context.Context) ([]byte, error) { return []byte("second"), nil })
			require.NoError(t, err)
			require.Equal(t, "second", string(out))
		})
		synctest.Wait()
		close(release)
		wg.Wait()
	})
}

// TestGuardHugeLock: a Lock of centuries gives fn a context whose
// deadline is centuries away, not one wrapped into the past, on the
// system clock and on a manual one set anywhere in the range a Unix
// nanosecond count covers, or set back while fn runs, over both paths to
// a MemStore.
func TestGuardHugeLock(t *testing.T) {
	forever := time.Duration(math.MaxInt64)
	for _, p := range guardPaths {
		for _, start := range []time.Time{{}, time.Unix(0, math.MinInt64/2), t0, time.Unix(0, math.MaxInt64/2)} {
			var clk clock.Clock = clock.System{}
			var s *idempotency.MemStore
			if start.IsZero() {
				s = &idempotency.MemStore{}
			} else {
				clk = clocktest.NewManual(start)
				s = &idempotency.MemStore{Clock: clk}
			}
			g := idempotency.New(p.wrap(s), idempotency.Config{Lock: forever, Clock: clk})
			_, err := g.Do(bg, "k", nil, func(ctx context.Context) ([]byte, error) {
				deadline, ok := ctx.Deadline()
				require.True(t, ok)
				require.True(t, deadline.After(time.Now().Add(100*365*24*time.Hour)), "%s from %v: deadline %v", p.name, start, deadline)
				return nil, ctx.Err()
			})
			require.NoError(t, err, "%s from %v", p.name, start)
		}
		// A deadline at the end of the timeline, and a clock set back
		// before 1970 while fn runs: the time left does not wrap either.
		clk := clocktest.NewManual(t0)
		g := idempotency.New(p.wrap(&idempotency.MemStore{Clock: clk}), idempotency.Config{Lock: forever, Clock: clk})
		_, err := g.Do(bg, "k", nil, func(ctx context.Context) ([]byte, error) {
			clk.Set(time.Unix(0, math.MinInt64/2))
			deadline, _ := ctx.Deadline()
			require.True(t, deadline.After(time.Now().Add(100*365*24*time.Hour)), "%s: deadline %v", p.name, deadline)
			return nil, ctx.Err()
		})
		require.NoError(t, err, "%s: the claim is still live", p.name)
	}
}
