package saga_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/saga"
)

// recorder builds steps that note their calls.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, fmt.Sprintf(format, args...))
}

// step returns a step whose Do returns doErr(attempt) and whose Undo
// returns undoErr(attempt); nil functions succeed.
func (r *recorder) step(name string, doErr, undoErr func(attempt int) error) saga.Step {
	return saga.Step{
		Name:  name,
		Retry: saga.RetryPolicy{MaxAttempts: 3, Initial: time.Second, Max: 3 * time.Second},
		Do: func(ctx context.Context, x *saga.Exec) error {
			r.note("do %s %d", name, x.Attempt)
			if doErr != nil {
				return doErr(x.Attempt)
			}
			return nil
		},
		Undo: func(ctx context.Context, x *saga.Exec) error {
			r.note("undo %s %d", name, x.Attempt)
			if undoErr != nil {
				return undoErr(x.Attempt)
			}
			return nil
		},
	}
}

func always(err error) func(int) error { return func(int) error { return err } }

func kinds(t *testing.T, l saga.Log, id string) string {
	t.Helper()
	recs, err := l.Records(context.Background(), id)
	require.NoError(t, err)
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s/%d", r.Kind, r.Step))
	}
	return strings.Join(out, " ")
}

// full jitter off: wait exactly the ceiling, so virtual time is exact.
var noJitter = saga.Config{Jitter: func(c time.Duration) time.Duration { return c }}

func TestCommit(t *testing.T) {
	var r recorder
	log := &saga.MemLog{}
	o := saga.New(log, noJitter)
	d := saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", nil, nil), r.step("b", nil, nil)}}
	d.Steps[0].Do = func(ctx context.Context, x *saga.Exec) error {
		require.Equal(t, []byte("in"), x.Input)
		x.Put("a", []byte("from a"))
		return nil
	}
	d.Steps[1].Do = func(ctx context.Context, x *saga.Exec) error {
		v, ok := x.Get("a")
		require.True(t, ok)
		require.Equal(t, "from a", string(v))
		_, ok = x.Get("b")
		require.False(t, ok)
		return nil
	}
	require.NoError(t, o.Register(d))
	out, err := o.Run(context.Background(), "d", "s1", []byte("in"))
	require.NoError(t, err)
	require.Equal(t, saga.Committed, out)
	require.Equal(t, "Started/0 StepStarted/0 StepDone/0 StepStarted/1 StepDone/1 Committed/0", kinds(t, log, "s1"))

	// A saga ID runs once.
	out, err = o.Run(context.Background(), "d", "s1", nil)
	require.ErrorIs(t, err, saga.ErrDuplicate)
	require.Equal(t, saga.Committed, out)
	_, err = o.Run(context.Background(), "nope", "s2", nil)
	require.ErrorIs(t, err, saga.ErrUnknownDefinition)
	_, err = o.Run(context.Background(), "d", "", nil)
	require.ErrorIs(t, err, saga.ErrEmptyID)
}

// TestBackoff checks the waits between attempts in virtual time:
// ceilings of 1s, 2s (then capped at 3s), with jitter off, and within
// [0, ceiling) with the default full jitter.
func TestBackoff(t *testing.T) {
	p := saga.RetryPolicy{Initial: time.Second, Max: 3 * time.Second}
	var got []time.Duration
	for n := 1; n <= 5; n++ {
		got = append(got, p.Ceiling(n))
	}
	require.Equal(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second, 3 * time.Second}, got)
	require.Equal(t, saga.DefaultInitial, saga.RetryPolicy{}.Ceiling(1))
	require.Equal(t, saga.DefaultMax, saga.RetryPolicy{}.Ceiling(100))
	require.Equal(t, saga.DefaultMaxAttempts, saga.RetryPolicy{}.Attempts())
	huge := saga.RetryPolicy{Initial: 1 << 62, Max: math.MaxInt64}
	require.Equal(t, time.Duration(math.MaxInt64), huge.Ceiling(1000), "no overflow")
	require.Equal(t, 50*time.Millisecond, saga.RetryPolicy{Initial: time.Second, Max: 50 * time.Millisecond}.Ceiling(1))

	for _, cfg := range []saga.Config{noJitter, {}} {
		synctest.Test(t, func(t *testing.T) {
			var r recorder
			var at []time.Duration
			start := time.Now()
			d := saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", func(n int) error {
				at = append(at, time.Since(start))
				if n < 3 {
					return errors.New("flaky")
				}
				return nil
			}, nil)}}
			o := saga.New(&saga.MemLog{}, cfg)
			require.NoError(t, o.Register(d))
			out, err := o.Run(context.Background(), "d", "s", nil)
			require.NoError(t, err)
			require.Equal(t, saga.Committed, out)
			require.Len(t, at, 3)
			if cfg.Jitter != nil {
				require.Equal(t, []time.Duration{0, time.Second, 3 * time.Second}, at)
			} else {
				require.LessOrEqual(t, at[1], time.Second)
				require.LessOrEqual(t, at[2]-at[1], 2*time.Second)
			}
		})
	}
}

// TestCompensation: a retryable failure that exhausts its attempts
// compensates the failed step and the earlier ones, in reverse order; a
// Permanent one does not compensate the failed step.
func TestCompensation(t *testing.T) {
	for _, permanent := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			var r recorder
			boom := errors.New("boom")
			fail := boom
			if permanent {
				fail = saga.Permanent(boom)
			}
			d := saga.Definition{Name: "d", Steps: []saga.Step{
				r.step("a", nil, nil), r.step("b", nil, nil), r.step("c", always(fail), nil), r.step("d", nil, nil),
			}}
			d.Steps[1].Undo = nil // nothing to undo
			log := &saga.MemLog{}
			o := saga.New(log, noJitter)
			require.NoError(t, o.Register(d))
			start := time.Now()
			out, err := o.Run(context.Background(), "d", "s", nil)
			require.Equal(t, saga.Compensated, out)
			var se *saga.StepError
			require.ErrorAs(t, err, &se)
			require.Equal(t, saga.StepError{Saga: "s", Step: "c", Err: se.Err}, *se)
			require.ErrorIs(t, err, boom)
			if permanent {
				require.Equal(t, []string{"do a 1", "do b 1", "do c 1", "undo a 1"}, r.calls)
				require.Equal(t, time.Duration(0), time.Since(start))
				require.Equal(t, "Started/0 StepStarted/0 StepDone/0 StepStarted/1 StepDone/1 StepStarted/2 "+
					"Compensating/2 UndoStarted/0 UndoDone/0 Compensated/0", kinds(t, log, "s"))
			} else {
				require.Equal(t, []string{"do a 1", "do b 1", "do c 1", "do c 2", "do c 3", "undo c 1", "undo a 1"}, r.calls)
				require.Equal(t, 3*time.Second, time.Since(start))
			}
		})
	}
}

// TestTimeout: an attempt that outlives Step.Timeout fails and is retried.
func TestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		d := saga.Definition{Name: "d", Steps: []saga.Step{{
			Name:    "slow",
			Timeout: 5 * time.Second,
			Retry:   saga.RetryPolicy{MaxAttempts: 2, Initial: time.Second},
			Do: func(ctx context.Context, x *saga.Exec) error {
				if x.Attempt == 1 {
					<-ctx.Done()
					return ctx.Err()
				}
				return nil
			},
		}}}
		o := saga.New(&saga.MemLog{}, noJitter)
		require.NoError(t, o.Register(d))
		start := time.Now()
		out, err := o.Run(context.Background(), "d", "s", nil)
		require.NoError(t, err)
		require.Equal(t, saga.Committed, out)
		require.Equal(t, 6*time.Second, time.Since(start))
	})
}

// TestStuck: an Undo that keeps failing makes the saga Stuck after
// UndoRetry.MaxAttempts attempts, logged at Error level; a Permanent one
// at once.
func TestStuck(t *testing.T) {
	for _, permanent := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			var r recorder
			var logs bytes.Buffer
			undoErr := errors.New("refund service down")
			if permanent {
				undoErr = saga.Permanent(undoErr)
			}
			d := saga.Definition{Name: "d", Steps: []saga.Step{
				r.step("a", nil, always(undoErr)), r.step("b", always(saga.Permanent(errors.New("no"))), nil),
			}}
			log := &saga.MemLog{}
			o := saga.New(log, saga.Config{
				UndoRetry: saga.RetryPolicy{MaxAttempts: 4},
				Jitter:    noJitter.Jitter,
				Logger:    slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelError})),
			})
			require.NoError(t, o.Register(d))
			out, err := o.Run(context.Background(), "d", "s", nil)
			require.Equal(t, saga.Stuck, out)
			require.ErrorIs(t, err, saga.ErrStuck)
			require.ErrorIs(t, err, undoErr)
			var se *saga.StuckError
			require.ErrorAs(t, err, &se)
			attempts := 4
			if permanent {
				attempts = 1
			}
			require.Equal(t, saga.StuckError{Saga: "s", Step: "a", Attempts: attempts, Err: se.Err, Cause: "no"}, *se)
			require.Equal(t, fmt.Sprintf(`saga "s" stuck: undo of step "a" gave up after attempt %d: refund service down (compensating because: no)`, attempts), err.Error())
			require.Contains(t, logs.String(), `level=ERROR msg="saga: stuck, compensation needs an operator" saga=s`)
			require.Contains(t, logs.String(), fmt.Sprintf("attempts=%d", attempts))
			open, _ := log.Unfinished(context.Background())
			require.Empty(t, open, "a stuck saga is terminal")
			// Recovery does not retry it, and Run reports it.
			require.NoError(t, saga.New(log, saga.Config{}).Recover(context.Background()))
			out, err = o.Run(context.Background(), "d", "s", nil)
			require.Equal(t, saga.Stuck, out)
			require.ErrorIs(t, err, saga.ErrDuplicate)
		})
	}
}

// TestRecoverAfterAbandon: cancelling Run's ctx during a step leaves the
// saga open; Recover on a new orchestrator re-runs the step and commits.
func TestRecoverAfterAbandon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		ctx, cancel := context.WithCancel(context.Background())
		d := saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", nil, nil), r.step("b", nil, nil)}}
		d.Steps[1].Do = func(c context.Context, x *saga.Exec) error {
			r.note("do b %d", x.Attempt)
			if x.Attempt == 1 {
				cancel()
				<-c.Done()
				return c.Err()
			}
			return nil
		}
		log := &saga.MemLog{}
		o := saga.New(log, noJitter)
		require.NoError(t, o.Register(d))
		out, err := o.Run(ctx, "d", "s", nil)
		require.ErrorIs(t, err, saga.ErrAbandoned)
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, saga.Outcome(0), out)
		open, _ := log.Unfinished(context.Background())
		require.Equal(t, []string{"s"}, open)

		o2 := saga.New(log, noJitter)
		require.ErrorIs(t, o2.Recover(context.Background()), saga.ErrUnknownDefinition)
		require.NoError(t, o2.Register(d))
		require.NoError(t, o2.Recover(context.Background()))
		require.Equal(t, []string{"do a 1", "do b 1", "do b 2"}, r.calls)
		require.True(t, strings.HasSuffix(kinds(t, log, "s"), "StepStarted/1 StepStarted/1 StepDone/1 Committed/0"))
	})
}

// TestRecoverChangedDefinition: a saga whose definition changed is not
// resumed.
func TestRecoverChangedDefinition(t *testing.T) {
	var r recorder
	log := &saga.MemLog{}
	require.NoError(t, log.Append(context.Background(), saga.Record{
		Kind: saga.KindStarted, Saga: "s", Def: "d", Steps: []string{"a", "old"}}))
	o := saga.New(log, saga.Config{})
	require.NoError(t, o.Register(saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", nil, nil), r.step("b", nil, nil)}}))
	require.ErrorIs(t, o.Recover(context.Background()), saga.ErrHistory)
	require.Empty(t, r.calls)
}

// TestClose: Close waits for running sagas; when its ctx ends first it
// cancels them, and they stay open for Recover.
func TestClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		d := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: func(ctx context.Context, x *saga.Exec) error {
			select {
			case <-release:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}}}}
		log := &saga.MemLog{}
		o := saga.New(log, saga.Config{})
		require.NoError(t, o.Register(d))
		results := make(chan error, 2)
		for _, id := range []string{"s1", "s2"} {
			go func() {
				_, err := o.Run(context.Background(), "d", id, nil)
				results <- err
			}()
		}
		synctest.Wait()
		_, err := o.Run(context.Background(), "d", "s1", nil)
		require.ErrorIs(t, err, saga.ErrDuplicate, "s1 is running")

		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		go func() {
			time.Sleep(time.Second) // virtual time: Close is waiting
			_, err := o.Run(context.Background(), "d", "s3", nil)
			results <- err
		}()
		start := time.Now()
		require.ErrorIs(t, o.Close(ctx), context.DeadlineExceeded)
		require.Equal(t, time.Minute, time.Since(start))
		for range 3 {
			err := <-results
			if !errors.Is(err, saga.ErrClosed) {
				require.ErrorIs(t, err, saga.ErrAbandoned)
			}
		}
		require.ErrorIs(t, o.Close(ctx), saga.ErrClosed)
		open, _ := log.Unfinished(context.Background())
		require.ElementsMatch(t, []string{"s1", "s2"}, open)

		close(release)
		o2 := saga.New(log, saga.Config{})
		require.NoError(t, o2.Register(d))
		require.NoError(t, o2.Recover(context.Background()))
		open, _ = log.Unfinished(context.Background())
		require.Empty(t, open)
		require.NoError(t, o2.Close(context.Background()), "nothing running: returns at once")
	})
}

// TestMaxConcurrent: at most MaxConcurrent sagas run at once.
func TestMaxConcurrent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		running, peak := 0, 0
		d := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: func(ctx context.Context, x *saga.Exec) error {
			mu.Lock()
			running++
			peak = max(peak, running)
			mu.Unlock()
			time.Sleep(time.Second) // virtual time (synctest): the step takes 1s
			mu.Lock()
			running--
			mu.Unlock()
			return nil
		}}}}
		o := saga.New(&saga.MemLog{}, saga.Config{MaxConcurrent: 3})
		require.NoError(t, o.Register(d))
		start := time.Now()
		var wg sync.WaitGroup
		for i := range 10 {
			wg.Go(func() {
				out, err := o.Run(context.Background(), "d", fmt.Sprint(i), nil)
				require.NoError(t, err)
				require.Equal(t, saga.Committed, out)
			})
		}
		wg.Wait()
		require.Equal(t, 3, peak)
		require.Equal(t, 4*time.Second, time.Since(start), "10 sagas of 1s, 3 at a time")
	})
}

// TestSlotWaitCancelled: a Run whose ctx ends while it waits for a
// MaxConcurrent slot returns ctx's error, not ErrAbandoned, and leaves
// nothing open: no record in the log, and the ID free for a later Run.
// A Run whose ctx ends after its saga is in the log is abandoned.
func TestSlotWaitCancelled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		d := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: func(ctx context.Context, x *saga.Exec) error {
			if x.SagaID == "holder" {
				<-release
			}
			return nil
		}}}}
		log := &saga.MemLog{}
		o := saga.New(log, saga.Config{MaxConcurrent: 1})
		require.NoError(t, o.Register(d))
		held := make(chan error)
		go func() {
			_, err := o.Run(context.Background(), "d", "holder", nil)
			held <- err
		}()
		synctest.Wait() // holder has the only slot
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		out, err := o.Run(ctx, "d", "waiter", nil)
		require.Equal(t, saga.Outcome(0), out)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NotErrorIs(t, err, saga.ErrAbandoned)
		recs, err := log.Records(context.Background(), "waiter")
		require.NoError(t, err)
		require.Empty(t, recs, "nothing logged")
		open, err := log.Unfinished(context.Background())
		require.NoError(t, err)
		require.Equal(t, []string{"holder"}, open)

		close(release)
		require.NoError(t, <-held)
		out, err = o.Run(context.Background(), "d", "waiter", nil)
		require.NoError(t, err, "the ID is free")
		require.Equal(t, saga.Committed, out)

		// A ctx that ended before Run: nothing logged either.
		done, cancelDone := context.WithCancel(context.Background())
		cancelDone()
		_, err = o.Run(done, "d", "late", nil)
		require.ErrorIs(t, err, context.Canceled)
		require.NotErrorIs(t, err, saga.ErrAbandoned)
		recs, _ = log.Records(context.Background(), "late")
		require.Empty(t, recs)
	})
}

func TestRegister(t *testing.T) {
	do := func(context.Context, *saga.Exec) error { return nil }
	o := saga.New(&saga.MemLog{}, saga.Config{})
	for name, d := range map[string]saga.Definition{
		"no name":      {Steps: []saga.Step{{Name: "a", Do: do}}},
		"no steps":     {Name: "d"},
		"unnamed step": {Name: "d", Steps: []saga.Step{{Do: do}}},
		"slash":        {Name: "d", Steps: []saga.Step{{Name: "a/b", Do: do}}},
		"duplicate":    {Name: "d", Steps: []saga.Step{{Name: "a", Do: do}, {Name: "a", Do: do}}},
		"no do":        {Name: "d", Steps: []saga.Step{{Name: "a"}}},
		"neg timeout":  {Name: "d", Steps: []saga.Step{{Name: "a", Do: do, Timeout: -1}}},
		"neg retry":    {Name: "d", Steps: []saga.Step{{Name: "a", Do: do, Retry: saga.RetryPolicy{MaxAttempts: -1}}}},
	} {
		require.ErrorIs(t, o.Register(d), saga.ErrInvalidDefinition, name)
	}
	good := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: do}}}
	require.NoError(t, o.Register(good))
	require.ErrorIs(t, o.Register(good), saga.ErrInvalidDefinition, "registered twice")
	require.Panics(t, func() { saga.New(nil, saga.Config{}) })
}

func TestPermanent(t *testing.T) {
	require.NoError(t, saga.Permanent(nil))
	base := errors.New("x")
	err := fmt.Errorf("wrapped: %w", saga.Permanent(base))
	require.True(t, saga.IsPermanent(err))
	require.ErrorIs(t, err, base)
	require.False(t, saga.IsPermanent(base))
	require.Equal(t, "x", saga.Permanent(base).Error())
}

// TestRecoverBoundsGoroutines: Recover with MaxConcurrent starts a
// bounded number of goroutines however many sagas the log holds open.
func TestRecoverBoundsGoroutines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const open, limit = 500, 2
		log := &saga.MemLog{}
		for i := range open {
			require.NoError(t, log.Append(context.Background(), saga.Record{
				Kind: saga.KindStarted, Saga: fmt.Sprint(i), Def: "d", Steps: []string{"a"}}))
		}
		release := make(chan struct{})
		d := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: func(ctx context.Context, x *saga.Exec) error {
			<-release
			return nil
		}}}}
		o := saga.New(log, saga.Config{MaxConcurrent: limit})
		require.NoError(t, o.Register(d))
		before := runtime.NumGoroutine()
		done := make(chan error)
		go func() { done <- o.Recover(context.Background()) }()
		synctest.Wait()
		require.LessOrEqual(t, runtime.NumGoroutine()-before, 2*limit+1, "goroutines while %d sagas wait to recover", open)
		close(release)
		require.NoError(t, <-done)
		unfinished, _ := log.Unfinished(context.Background())
		require.Empty(t, unfinished)
	})
}
