package saga_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/saga"
)

// TestCancelRunning cancels a saga during an attempt of its second
// step's Do and during a backoff: the attempt's context ends with cause
// ErrCancelled, no later step runs, and the steps that may have taken
// effect are undone in reverse order.
func TestCancelRunning(t *testing.T) {
	for _, during := range []string{"do", "backoff"} {
		synctest.Test(t, func(t *testing.T) {
			var r recorder
			entered := make(chan struct{})
			d := saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", nil, nil), r.step("b", nil, nil), r.step("c", nil, nil)}}
			d.Steps[1].Do = func(ctx context.Context, x *saga.Exec) error {
				r.note("do b %d", x.Attempt)
				if during == "backoff" {
					if x.Attempt == 1 {
						close(entered)
					}
					return errors.New("flaky") // then waits 1s before attempt 2
				}
				close(entered)
				<-ctx.Done()
				require.ErrorIs(t, context.Cause(ctx), saga.ErrCancelled)
				return ctx.Err()
			}
			log := &saga.MemLog{}
			o := saga.New(log, noJitter)
			require.NoError(t, o.Register(d))
			type result struct {
				out saga.Outcome
				err error
			}
			done := make(chan result)
			go func() {
				out, err := o.Run(context.Background(), "d", "s", nil)
				done <- result{out, err}
			}()
			<-entered
			synctest.Wait()
			start := time.Now()
			require.NoError(t, o.Cancel(context.Background(), "s"))
			require.Equal(t, time.Duration(0), time.Since(start), "Cancel does not wait for the step")
			res := <-done
			require.Equal(t, saga.Compensated, res.out)
			require.ErrorIs(t, res.err, saga.ErrCancelled)
			require.Equal(t, []string{"do a 1", "do b 1", "undo b 1", "undo a 1"}, r.calls)
			k := kinds(t, log, "s")
			require.Contains(t, k, "Cancelled/1 UndoStarted/1 UndoDone/1 UndoStarted/0 UndoDone/0 Compensated/0")

			require.ErrorIs(t, o.Cancel(context.Background(), "s"), saga.ErrEnded)
			require.ErrorIs(t, o.Cancel(context.Background(), "nope"), saga.ErrUnknownSaga)
		})
	}
}

// cancelCrashLog fails every append after the Cancelled record: the
// process dies right after Cancel returned.
type cancelCrashLog struct {
	saga.Log
	cancelled bool
}

func (l *cancelCrashLog) Append(ctx context.Context, r saga.Record) error {
	if l.cancelled {
		return errCrash
	}
	l.cancelled = r.Kind == saga.KindCancelled
	return l.Log.Append(ctx, r)
}

// TestCancelThenCrash: the process dies right after the cancellation is
// logged; Recover compensates the saga.
func TestCancelThenCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		entered := make(chan struct{})
		d := saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", nil, nil), r.step("b", nil, nil)}}
		d.Steps[1].Do = func(ctx context.Context, x *saga.Exec) error {
			r.note("do b %d", x.Attempt)
			close(entered)
			<-ctx.Done()
			return ctx.Err()
		}
		log := &saga.MemLog{}
		o := saga.New(&cancelCrashLog{Log: log}, noJitter)
		require.NoError(t, o.Register(d))
		done := make(chan error)
		go func() {
			_, err := o.Run(context.Background(), "d", "s", nil)
			done <- err
		}()
		<-entered
		require.NoError(t, o.Cancel(context.Background(), "s"))
		require.ErrorIs(t, <-done, errCrash)
		require.True(t, strings.HasSuffix(kinds(t, log, "s"), "StepStarted/1 Cancelled/1"))

		o2 := saga.New(log, noJitter)
		require.NoError(t, o2.Register(d))
		require.NoError(t, o2.Recover(context.Background()))
		require.Equal(t, []string{"do a 1", "do b 1", "undo b 1", "undo a 1"}, r.calls)
		require.True(t, strings.HasSuffix(kinds(t, log, "s"), "Cancelled/1 UndoStarted/1 UndoDone/1 UndoStarted/0 UndoDone/0 Compensated/0"))
	})
}

// TestCancelIdle cancels sagas a crash left open, which nobody runs:
// Cancel logs the cancellation and compensates them itself. A saga that
// was compensating already goes on compensating.
func TestCancelIdle(t *testing.T) {
	for _, stage := range []string{"forward", "compensating"} {
		synctest.Test(t, func(t *testing.T) {
			var r recorder
			d := saga.Definition{Name: "d", Steps: []saga.Step{r.step("a", nil, nil), r.step("b", nil, nil)}}
			if stage == "compensating" {
				d.Steps[1].Do = func(ctx context.Context, x *saga.Exec) error {
					r.note("do b %d", x.Attempt)
					return saga.Permanent(errors.New("no"))
				}
			}
			log := &saga.MemLog{}
			crashAt := 3 // the StepStarted of b (forward), the UndoDone of a (compensating)
			if stage == "compensating" {
				crashAt = 6
			}
			w := newWorld(threeSteps, nil)
			o := saga.New(&crashLog{Log: log, w: w, crash: crash{lostAppend, crashAt}}, noJitter)
			require.NoError(t, o.Register(d))
			_, err := o.Run(context.Background(), "d", "s", nil)
			require.ErrorIs(t, err, errCrash)

			o2 := saga.New(log, noJitter)
			require.NoError(t, o2.Register(d))
			require.NoError(t, o2.Cancel(context.Background(), "s"))
			recs, err := log.Records(context.Background(), "s")
			require.NoError(t, err)
			require.Equal(t, saga.KindCompensated, recs[len(recs)-1].Kind)
			if stage == "forward" {
				require.Equal(t, []string{"do a 1", "undo a 1"}, r.calls)
				require.Contains(t, kinds(t, log, "s"), "Cancelled/1")
			} else {
				require.Equal(t, []string{"do a 1", "do b 1", "undo a 1", "undo a 2"}, r.calls)
				require.NotContains(t, kinds(t, log, "s"), "Cancelled")
			}
			require.ErrorIs(t, o2.Cancel(context.Background(), "s"), saga.ErrEnded)
		})
	}
}

// TestCancelRace cancels sagas at random moments while they run, from
// another goroutine: a Cancel that returns nil ends its saga
// Compensated, one that returns ErrEnded finds it Committed, and no
// Undo runs in a committed saga.
func TestCancelRace(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	var undos atomic.Int64
	yield := func(ctx context.Context, x *saga.Exec) error { runtime.Gosched(); return nil }
	step := func(name string) saga.Step {
		return saga.Step{Name: name, Do: yield, Undo: func(ctx context.Context, x *saga.Exec) error {
			undos.Add(1)
			return nil
		}}
	}
	d := saga.Definition{Name: "d", Steps: []saga.Step{step("a"), {Name: "g", Parallel: []saga.Step{step("b"), step("c")}}, step("d")}}
	o := saga.New(&saga.MemLog{}, saga.Config{})
	require.NoError(t, o.Register(d))
	counts := map[string]int{}
	for i := range 300 {
		id := fmt.Sprint("s", i)
		delay := rng.IntN(20)
		undos.Store(0)
		done := make(chan saga.Outcome)
		go func() {
			out, err := o.Run(context.Background(), "d", id, nil)
			if out == saga.Committed {
				assert.NoError(t, err)
			} else {
				assert.ErrorIs(t, err, saga.ErrCancelled) // Compensated, or 0: stopped before it was logged
			}
			done <- out
		}()
		for range delay {
			runtime.Gosched()
		}
		err := o.Cancel(context.Background(), id)
		out := <-done
		switch {
		case err == nil:
			require.NotEqual(t, saga.Committed, out, "saga %s", id)
			counts[fmt.Sprint("cancelled, ", out)]++
		case errors.Is(err, saga.ErrEnded):
			require.Equal(t, saga.Committed, out, "saga %s", id)
			require.Zero(t, undos.Load(), "saga %s", id)
			counts["committed first"]++
		case errors.Is(err, saga.ErrUnknownSaga): // Cancel came before Run began
			require.Equal(t, saga.Committed, out, "saga %s", id)
			counts["not begun"]++
		default:
			t.Fatalf("saga %s: Cancel: %v", id, err)
		}
	}
	t.Logf("%v", counts)
}
