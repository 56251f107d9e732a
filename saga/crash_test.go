package saga_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/saga"
)

// errCrash is the error of an append that "kills" the orchestrator, and
// the value of the panics that do.
var errCrash = errors.New("injected crash")

// errReplyLost is a failure of Do after its effect took place (a timeout
// while the reply was on its way).
var errReplyLost = errors.New("reply lost")

// crashMode is how the orchestrator dies at a log boundary.
type crashMode int

const (
	lostAppend  crashMode = iota // the append returns an error; the record is not stored
	afterAppend                  // the record is stored, then the append returns an error
	panicBefore                  // the process dies (a panic) before the record is stored
	panicAfter                   // the process dies after the record is stored
	inCall                       // the process dies inside a call of Do or Undo, after its effect
	noCrash
)

var modeNames = [...]string{"lost append", "after append", "panic before append", "panic after append", "panic in call", "no crash"}

func (m crashMode) String() string { return modeNames[m] }

// crash says where one process dies: at its at-th append (from 0), or in
// its at-th call of Do or Undo.
type crash struct {
	mode crashMode
	at   int
}

// crashLog wraps a Log and kills the orchestrator at the append the
// crash names; after an error, every later append fails too. It adds
// every stored record to the world's trace.
type crashLog struct {
	saga.Log
	w       *world
	crash   crash
	appends int
	dead    bool
}

func (c *crashLog) Append(ctx context.Context, r saga.Record) error {
	n := c.appends
	c.appends++
	if c.dead {
		return errCrash
	}
	if c.crash.mode == noCrash || c.crash.mode == inCall || n != c.crash.at {
		return c.store(ctx, r)
	}
	if c.crash.mode == afterAppend || c.crash.mode == panicAfter {
		c.store(ctx, r)
	}
	c.dead = true
	if c.crash.mode == panicBefore || c.crash.mode == panicAfter {
		panic(errCrash)
	}
	return errCrash
}

func (c *crashLog) store(ctx context.Context, r saga.Record) error {
	err := c.Log.Append(ctx, r)
	if err == nil {
		c.w.mu.Lock()
		c.w.trace = append(c.w.trace, event{"log " + r.Kind.String(), r.Step})
		c.w.mu.Unlock()
	}
	return err
}

type event struct {
	what string
	step int
}

// The world's steps have two attempts of Do and three of Undo each.
const (
	worldAttempts = 2
	worldUndos    = 3
)

// layout is the shape of the world's saga: its stages, each a list of
// step numbers; a stage of more than one step is a group.
type layout [][]int

var (
	threeSteps = layout{{0}, {1}, {2}}
	// grouped is a step, a group of three, and a step.
	grouped = layout{{0}, {1, 2, 3}, {4}}
)

func (l layout) steps() (n int) {
	for _, st := range l {
		n += len(st)
	}
	return n
}

// stageOf returns the stage of step i.
func (l layout) stageOf(i int) int {
	for k, st := range l {
		if slices.Contains(st, i) {
			return k
		}
	}
	return -1
}

// world is the participants of a saga: each step's Do applies an effect
// keyed by the step (idempotently, as a service deduplicating by
// Exec.IdempotencyKey would), and Undo removes it. Steps of a group call
// it concurrently.
type world struct {
	layout layout
	mu     sync.Mutex
	trace  []event
	// applied is the steps whose effect is in place.
	applied []bool
	calls   map[event]int
	// fail decides whether the n-th call (from 1) of Do or Undo of step
	// fails, and how.
	fail func(what string, step, n int) error
	// crashCall, when not negative, is the call of Do or Undo (counted
	// from 0 in the current process) that panics after taking effect.
	crashCall, callsHere int
}

func newWorld(l layout, fail func(what string, step, n int) error) *world {
	return &world{layout: l, applied: make([]bool, l.steps()), calls: map[event]int{}, fail: fail, crashCall: -1}
}

func (w *world) name() string { return fmt.Sprint("saga", len(w.layout), w.layout.steps()) }

func (w *world) definition() saga.Definition {
	d := saga.Definition{Name: w.name()}
	step := func(i int) saga.Step {
		return saga.Step{
			Name:      fmt.Sprint("step", i),
			Retry:     saga.RetryPolicy{MaxAttempts: worldAttempts, Initial: time.Second},
			UndoRetry: saga.RetryPolicy{MaxAttempts: worldUndos, Initial: time.Second},
			Do: func(ctx context.Context, x *saga.Exec) error {
				if err := w.call("do", i, x); err != nil {
					if errors.Is(err, errReplyLost) {
						w.set(i, true)
					}
					return err
				}
				w.set(i, true)
				w.maybeCrash()
				x.Put(fmt.Sprint("did", i), []byte(x.IdempotencyKey()))
				return nil
			},
			Undo: func(ctx context.Context, x *saga.Exec) error {
				if err := w.call("undo", i, x); err != nil {
					return err
				}
				w.set(i, false)
				w.maybeCrash()
				return nil
			},
		}
	}
	for k, st := range w.layout {
		if len(st) == 1 {
			d.Steps = append(d.Steps, step(st[0]))
			continue
		}
		g := saga.Step{Name: fmt.Sprint("group", k)}
		for _, i := range st {
			g.Parallel = append(g.Parallel, step(i))
		}
		d.Steps = append(d.Steps, g)
	}
	return d
}

func (w *world) set(i int, applied bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.applied[i] = applied
}

// maybeCrash kills the process in the call crashCall names.
func (w *world) maybeCrash() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.callsHere++
	if w.callsHere-1 == w.crashCall {
		panic(errCrash)
	}
}

func (w *world) call(what string, step int, x *saga.Exec) error {
	w.mu.Lock()
	e := event{what, step}
	w.trace = append(w.trace, e)
	w.calls[e]++
	n := w.calls[e]
	w.mu.Unlock()
	if x.IdempotencyKey() != fmt.Sprintf("s/step%d", step) || x.Index != step {
		return fmt.Errorf("wrong Exec %+v", x)
	}
	// Every step of an earlier stage Put its entry, visible across
	// crashes.
	for j := range step {
		if w.layout.stageOf(j) == w.layout.stageOf(step) {
			continue
		}
		if v, ok := x.Get(fmt.Sprint("did", j)); !x.Compensating && (!ok || string(v) != fmt.Sprintf("s/step%d", j)) {
			return fmt.Errorf("step %d does not see step %d's bag entry", step, j)
		}
	}
	return w.fail(what, step, n)
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
		if what == "do" && step == 2 {
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
	"undo exhausted": func(what string, step, n int) error {
		switch {
		case what == "do" && step == 2:
			return saga.Permanent(errors.New("refused"))
		case what == "undo" && step == 0:
			return errors.New("refund service down")
		}
		return nil
	},
}

// survive runs one process's call of Run or Recover and reports whether
// it died of an injected panic.
func survive(f func() error) (err error, died bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != errCrash {
				panic(v)
			}
			died = true
		}
	}()
	return f(), false
}

// runWithCrashes runs saga "s", one process per crash in turn (the last
// should be noCrash), recovering in every process after the first on the
// log that restart returns, and returns the world and the log.
func runWithCrashes(t *testing.T, l layout, scenario string, crashes []crash, restart func() saga.Log) (*world, saga.Log) {
	w := newWorld(l, scenarios[scenario])
	var log saga.Log
	cfg := saga.Config{Jitter: func(c time.Duration) time.Duration { return c }}
	for i, c := range crashes {
		log = restart()
		w.crashCall, w.callsHere = -1, 0
		if c.mode == inCall {
			w.crashCall = c.at
		}
		o := saga.New(&crashLog{Log: log, w: w, crash: c}, cfg)
		require.NoError(t, o.Register(w.definition()))
		err, died := survive(func() error {
			if i == 0 {
				_, err := o.Run(context.Background(), w.name(), "s", []byte("input"))
				return err
			}
			return o.Recover(context.Background())
		})
		var stepErr *saga.StepError
		switch {
		case died:
		case i > 0 && c.mode == noCrash && !errors.Is(err, saga.ErrStuck):
			require.NoError(t, err, "a recovery without crash finishes every saga")
		case err != nil && !errors.Is(err, errCrash) && !errors.As(err, &stepErr) && !errors.Is(err, saga.ErrStuck):
			t.Fatalf("unexpected error: %v", err)
		}
		require.NoError(t, o.Close(context.Background()))
	}
	return w, log
}

// checkWorld checks the laws of a finished saga and returns how it
// ended ("" if it never started).
func checkWorld(t *testing.T, w *world, log saga.Log, desc string) string {
	t.Helper()
	open, err := log.Unfinished(context.Background())
	require.NoError(t, err)
	require.Empty(t, open, "%s: saga left open", desc)
	// The trace holds every record stored (a compacted FileLog forgets
	// finished sagas).
	var last string
	stuck := -1
	for _, e := range w.trace {
		if strings.HasPrefix(e.what, "log ") {
			last = strings.TrimPrefix(e.what, "log ")
			if last == saga.KindStuck.String() {
				stuck = e.step
			}
		}
	}
	if last == "" { // the crash hit the Started record: the saga never began
		require.Empty(t, w.trace, desc)
		return last
	}
	// Attempts are bounded across crashes: every call was logged as an
	// attempt before it ran.
	for i := range w.applied {
		require.LessOrEqual(t, w.calls[event{"do", i}], worldAttempts, "%s: calls of Do of step %d", desc, i)
		require.LessOrEqual(t, w.calls[event{"undo", i}], worldUndos, "%s: calls of Undo of step %d", desc, i)
	}
	switch last {
	case saga.KindCommitted.String():
		for i, applied := range w.applied {
			require.True(t, applied, "%s: committed but step %d not applied", desc, i)
		}
		for _, e := range w.trace {
			require.NotEqual(t, "undo", e.what, "%s: undo in a committed saga", desc)
		}
	case saga.KindCompensated.String():
		for i, applied := range w.applied {
			require.False(t, applied, "%s: compensated but step %d's effect remains", desc, i)
		}
	case saga.KindStuck.String():
		for i, applied := range w.applied {
			later := w.layout.stageOf(i) > w.layout.stageOf(stuck)
			require.False(t, later && applied, "%s: stuck at step %d, but step %d's effect remains", desc, stuck, i)
		}
	default:
		t.Fatalf("%s: saga ended %s", desc, last)
	}
	undone := map[int]bool{}     // an Undo of the step was called
	undoLogged := map[int]bool{} // its success is in the log
	doLogged := map[int]bool{}   // the success of its Do is in the log
	for i, e := range w.trace {
		switch e.what {
		case "log StepDone":
			doLogged[e.step] = true
		case "do":
			require.False(t, undone[e.step], "%s: event %d: Do of step %d after its Undo", desc, i, e.step)
			require.False(t, doLogged[e.step], "%s: event %d: Do of step %d after its success was logged", desc, i, e.step)
		case "undo":
			require.False(t, undoLogged[e.step], "%s: event %d: Undo of step %d after its success was logged", desc, i, e.step)
			undone[e.step] = true
		case "log UndoDone":
			undoLogged[e.step] = true
		}
	}
	return last
}

// boundaries counts the appends and the calls of a crash-free run.
func boundaries(t *testing.T, l layout, scenario string) (appends, calls int) {
	w, log := runWithCrashes(t, l, scenario, []crash{{mode: noCrash}}, memLog())
	recs, err := log.Records(context.Background(), "s")
	require.NoError(t, err)
	for _, n := range w.calls {
		calls += n
	}
	return len(recs), calls
}

// TestCrashAtEveryBoundary kills the orchestrator at every log boundary
// of a three-step saga, in every scenario: at every append, the append
// fails or the process panics, before or after the record is stored;
// and in every call of Do and Undo, the process panics after the call
// took effect. A fresh orchestrator on the same log then recovers.
func TestCrashAtEveryBoundary(t *testing.T) { crashAtEveryBoundary(t, threeSteps) }

// TestCrashAtEveryBoundaryGrouped is TestCrashAtEveryBoundary for a saga
// whose second stage is a group of three steps.
func TestCrashAtEveryBoundaryGrouped(t *testing.T) { crashAtEveryBoundary(t, grouped) }

func crashAtEveryBoundary(t *testing.T, l layout) {
	tried := 0
	outcomes := map[string]int{}
	for _, scenario := range slices.Sorted(maps.Keys(scenarios)) {
		appends, calls := boundaries(t, l, scenario)
		var crashes []crash
		for k := range appends {
			for _, m := range []crashMode{lostAppend, afterAppend, panicBefore, panicAfter} {
				crashes = append(crashes, crash{m, k})
			}
		}
		for k := range calls {
			crashes = append(crashes, crash{inCall, k})
		}
		for _, c := range crashes {
			synctest.Test(t, func(t *testing.T) {
				w, log := runWithCrashes(t, l, scenario, []crash{c, {mode: noCrash}}, memLog())
				end := checkWorld(t, w, log, fmt.Sprintf("%s, %s at %d", scenario, c.mode, c.at))
				outcomes[cmp.Or(end, "never started")]++
			})
			tried++
		}
	}
	t.Logf("%d crash points tried; outcomes %v", tried, outcomes)
}

// TestCrashEveryTime: a Do or an Undo that kills the process on every
// attempt still ends the saga, after its configured attempts: Do's make
// it Compensated, Undo's make it Stuck, and no call runs beyond them.
func TestCrashEveryTime(t *testing.T) {
	for _, what := range []string{"do", "undo"} {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(threeSteps, scenarios["commit"])
			if what == "undo" {
				w.fail = scenarios["permanent"]
			}
			log := &saga.MemLog{}
			def := w.definition()
			doomed := &def.Steps[1].Do
			if what == "undo" {
				doomed = &def.Steps[0].Undo
			}
			inner := *doomed
			*doomed = func(ctx context.Context, x *saga.Exec) error {
				inner(ctx, x)
				panic(errCrash)
			}
			processes := 0
			for {
				processes++
				require.Less(t, processes, 50, "the saga never ends")
				o := saga.New(&crashLog{Log: log, w: w, crash: crash{mode: noCrash}}, saga.Config{})
				require.NoError(t, o.Register(def))
				err, died := survive(func() error {
					if processes == 1 {
						_, err := o.Run(context.Background(), w.name(), "s", nil)
						return err
					}
					return o.Recover(context.Background())
				})
				if !died {
					if what == "undo" {
						require.ErrorIs(t, err, saga.ErrStuck)
					} else {
						require.NoError(t, err)
					}
					break
				}
			}
			recs, err := log.Records(context.Background(), "s")
			require.NoError(t, err)
			last := recs[len(recs)-1]
			if what == "do" {
				require.Equal(t, saga.KindCompensated, last.Kind)
				require.Equal(t, worldAttempts, w.calls[event{"do", 1}])
				require.Equal(t, worldAttempts+1, processes, "one process per attempt, one to compensate")
			} else {
				require.Equal(t, saga.KindStuck, last.Kind)
				require.Equal(t, worldUndos, w.calls[event{"undo", 0}])
				require.Equal(t, worldUndos+1, processes, "one process per attempt, one to give up")
			}
			t.Logf("%s panicking on every attempt: %d processes, %d calls, saga %s", what, processes,
				w.calls[event{what, map[string]int{"do": 1, "undo": 0}[what]}], last.Kind)
		})
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

// TestCrashRepeatedly crashes the recoveries too, at random boundaries,
// until a recovery runs to the end, on a MemLog and, for fewer seeds, on
// a FileLog reopened after every crash.
func TestCrashRepeatedly(t *testing.T) {
	names := slices.Sorted(maps.Keys(scenarios))
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 3))
		scenario := names[r.IntN(len(names))]
		var crashes []crash
		for range r.IntN(6) {
			crashes = append(crashes, crash{crashMode(r.IntN(int(noCrash))), r.IntN(6)})
		}
		crashes = append(crashes, crash{mode: noCrash})
		synctest.Test(t, func(t *testing.T) {
			restart := memLog()
			if seed%10 == 0 {
				restart = fileLog(t)
			}
			l := threeSteps
			if seed%2 == 1 {
				l = grouped
			}
			w, log := runWithCrashes(t, l, scenario, crashes, restart)
			checkWorld(t, w, log, fmt.Sprintf("seed %d: %s, crashes %v", seed, scenario, crashes))
		})
	}
}
