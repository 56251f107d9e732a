package saga_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/saga"
)

var errCrash = errors.New("injected crash")

// errReplyLost is a failure of Do after its effect took place (a timeout
// while the reply was on its way).
var errReplyLost = errors.New("reply lost")

// crashLog wraps a Log and "kills the orchestrator" at its (budget+1)-th
// append: that append and every later one fail. With stored set, the
// fatal append reaches the log first (the process dies after the write,
// before acting on it). It adds every stored record to the world's trace.
type crashLog struct {
	saga.Log
	w      *world
	budget int // appends that succeed; negative: all
	stored bool
	dead   bool
}

func (c *crashLog) Append(ctx context.Context, r saga.Record) error {
	if c.dead || c.budget == 0 {
		if !c.dead && c.stored {
			c.store(ctx, r)
		}
		c.dead = true
		return errCrash
	}
	c.budget--
	return c.store(ctx, r)
}

func (c *crashLog) store(ctx context.Context, r saga.Record) error {
	err := c.Log.Append(ctx, r)
	if err == nil {
		c.w.trace = append(c.w.trace, event{"log " + r.Kind.String(), r.Step})
	}
	return err
}

type event struct {
	what string
	step int
}

// world is the participants of a saga of four steps: each step's Do
// applies an effect keyed by the step (idempotently, as a service
// deduplicating by Exec.IdempotencyKey would), and Undo removes it.
type world struct {
	trace   []event
	applied [4]bool
	calls   map[event]int
	// fail decides whether the n-th call (from 1) of Do or Undo of step
	// fails, and how.
	fail func(what string, step, n int) error
}

func (w *world) definition() saga.Definition {
	d := saga.Definition{Name: "four"}
	for i := range 4 {
		d.Steps = append(d.Steps, saga.Step{
			Name:  fmt.Sprint("step", i),
			Retry: saga.RetryPolicy{MaxAttempts: 2, Initial: time.Second},
			Do: func(ctx context.Context, x *saga.Exec) error {
				if err := w.call("do", i, x); err != nil {
					if errors.Is(err, errReplyLost) {
						w.applied[i] = true
					}
					return err
				}
				w.applied[i] = true
				x.Put(fmt.Sprint("did", i), []byte(x.IdempotencyKey()))
				return nil
			},
			Undo: func(ctx context.Context, x *saga.Exec) error {
				if err := w.call("undo", i, x); err != nil {
					return err
				}
				w.applied[i] = false
				return nil
			},
		})
	}
	return d
}

func (w *world) call(what string, step int, x *saga.Exec) error {
	e := event{what, step}
	w.trace = append(w.trace, e)
	w.calls[e]++
	if x.IdempotencyKey() != fmt.Sprintf("s/step%d", step) || x.Index != step {
		return fmt.Errorf("wrong Exec %+v", x)
	}
	// Every earlier step's Put is visible, across crashes.
	for j := range step {
		if v, ok := x.Get(fmt.Sprint("did", j)); !x.Compensating && (!ok || string(v) != fmt.Sprintf("s/step%d", j)) {
			return fmt.Errorf("step %d does not see step %d's bag entry", step, j)
		}
	}
	return w.fail(what, step, w.calls[e])
}

// scenarios script the participants' failures.
var scenarios = map[string]func(what string, step, n int) error{
	"commit": func(string, int, int) error { return nil },
	"retry": func(what string, step, n int) error {
		if what == "do" && step == 1 && n == 1 {
			return errors.New("transient")
		}
		return nil
	},
	"permanent": func(what string, step, n int) error {
		if what == "do" && step == 2 {
			return saga.Permanent(errors.New("refused"))
		}
		return nil
	},
	"exhausted": func(what string, step, n int) error {
		if what == "do" && step == 3 {
			return errors.New("down")
		}
		return nil
	},
	"lost reply, then refused": func(what string, step, n int) error {
		switch {
		case what == "do" && step == 2 && n == 1:
			return errReplyLost
		case what == "do" && step == 2:
			return saga.Permanent(errors.New("refused"))
		}
		return nil
	},
	"undo retry": func(what string, step, n int) error {
		switch {
		case what == "do" && step == 2:
			return saga.Permanent(errors.New("refused"))
		case what == "undo" && step == 0 && n == 1:
			return errors.New("transient")
		}
		return nil
	},
}

// runWithCrashes runs saga "s" with a crash after each budget in turn
// (the last budget should be negative: no crash), recovering after each
// crash on the log that restart returns, and returns the world and the
// log.
func runWithCrashes(t *testing.T, scenario string, stored bool, budgets []int, restart func() saga.Log) (*world, saga.Log) {
	w := &world{calls: map[event]int{}, fail: scenarios[scenario]}
	var log saga.Log
	cfg := saga.Config{Jitter: func(c time.Duration) time.Duration { return c }}
	for i, budget := range budgets {
		log = restart()
		o := saga.New(&crashLog{Log: log, w: w, budget: budget, stored: stored}, cfg)
		require.NoError(t, o.Register(w.definition()))
		var err error
		if i == 0 {
			_, err = o.Run(context.Background(), "four", "s", []byte("input"))
		} else {
			err = o.Recover(context.Background())
		}
		var stepErr *saga.StepError
		switch {
		case i > 0 && budget < 0:
			require.NoError(t, err, "a recovery without crash finishes every saga")
		case err != nil && !errors.Is(err, errCrash) && !errors.As(err, &stepErr):
			t.Fatalf("unexpected error: %v", err)
		}
		require.NoError(t, o.Close(context.Background()))
	}
	return w, log
}

// checkWorld checks the laws of a finished saga.
func checkWorld(t *testing.T, w *world, log saga.Log, desc string) {
	t.Helper()
	open, err := log.Unfinished(context.Background())
	require.NoError(t, err)
	require.Empty(t, open, "%s: saga left open", desc)
	// The trace holds every record stored (a compacted FileLog forgets
	// finished sagas).
	var last string
	for _, e := range w.trace {
		if strings.HasPrefix(e.what, "log ") {
			last = strings.TrimPrefix(e.what, "log ")
		}
	}
	if last == "" { // the crash hit the Started record: the saga never began
		require.Empty(t, w.trace, desc)
		return
	}
	switch last {
	case saga.KindCommitted.String():
		require.Equal(t, [4]bool{true, true, true, true}, w.applied, "%s: committed but not applied", desc)
		for _, e := range w.trace {
			require.NotEqual(t, "undo", e.what, "%s: undo in a committed saga", desc)
		}
	case saga.KindCompensated.String():
		require.Equal(t, [4]bool{}, w.applied, "%s: compensated but effects remain", desc)
	default:
		t.Fatalf("%s: saga ended %s", desc, last)
	}
	undone := map[int]bool{}     // an Undo of the step was called
	undoLogged := map[int]bool{} // its success is in the log
	for i, e := range w.trace {
		switch e.what {
		case "do":
			require.False(t, undone[e.step], "%s: event %d: Do of step %d after its Undo", desc, i, e.step)
		case "undo":
			require.False(t, undoLogged[e.step], "%s: event %d: Undo of step %d after its success was logged", desc, i, e.step)
			undone[e.step] = true
		case "log UndoDone":
			undoLogged[e.step] = true
		}
	}
}

// appendsWithoutCrash counts the appends of a crash-free run.
func appendsWithoutCrash(t *testing.T, scenario string) int {
	_, log := runWithCrashes(t, scenario, false, []int{-1}, memLog())
	recs, err := log.Records(context.Background(), "s")
	require.NoError(t, err)
	return len(recs)
}

// TestCrashAtEveryAppend kills the orchestrator at every append of a
// four-step saga, before and after the record is stored, in every
// scenario, then recovers with a fresh orchestrator on the same log.
func TestCrashAtEveryAppend(t *testing.T) {
	for scenario := range scenarios {
		n := appendsWithoutCrash(t, scenario)
		for k := range n {
			for _, stored := range []bool{false, true} {
				synctest.Test(t, func(t *testing.T) {
					w, log := runWithCrashes(t, scenario, stored, []int{k, -1}, memLog())
					checkWorld(t, w, log, fmt.Sprintf("%s, crash at append %d, stored %v", scenario, k, stored))
				})
			}
		}
	}
}

// memLog returns a restart function that keeps one MemLog.
func memLog() func() saga.Log {
	log := &saga.MemLog{}
	return func() saga.Log { return log }
}

// fileLog returns a restart function that closes and reopens a FileLog,
// as a new process would, and compacts it.
func fileLog(t *testing.T) func() saga.Log {
	path := filepath.Join(t.TempDir(), "log")
	var l *saga.FileLog
	t.Cleanup(func() { l.Close() })
	return func() saga.Log {
		if l != nil {
			require.NoError(t, l.Close())
		}
		var err error
		l, err = saga.OpenFileLog(path)
		require.NoError(t, err)
		_, err = l.Compact(context.Background()) // keeps the open saga
		require.NoError(t, err)
		return l
	}
}

// TestCrashRepeatedly crashes the recoveries too, at random points, until
// a recovery runs to the end, on a MemLog and, for fewer seeds, on a
// FileLog reopened after every crash.
func TestCrashRepeatedly(t *testing.T) {
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 3))
		names := []string{"commit", "retry", "permanent", "exhausted", "undo retry"}
		scenario := names[r.IntN(len(names))]
		var budgets []int
		for range r.IntN(6) {
			budgets = append(budgets, r.IntN(6))
		}
		budgets = append(budgets, -1)
		stored := r.IntN(2) == 0
		synctest.Test(t, func(t *testing.T) {
			restart := memLog()
			if seed%10 == 0 {
				restart = fileLog(t)
			}
			w, log := runWithCrashes(t, scenario, stored, budgets, restart)
			checkWorld(t, w, log, fmt.Sprintf("seed %d: %s, budgets %v, stored %v", seed, scenario, budgets, stored))
		})
	}
}
