package bench

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/distkit/distkit/internal/cputime"
	"github.com/distkit/distkit/saga"
)

// mapSagas is the saga runner most services start with, written plainly:
// run the steps in order, note each event in a map of saga ID to events
// behind a mutex, and on a failure undo the completed steps in reverse. It
// has no durable log, retries, timeouts, recovery or idempotency keys.
type mapSagas struct {
	mu     sync.Mutex
	events map[string][]string
}

type plainStep struct {
	name     string
	do, undo func(ctx context.Context) error
}

func (m *mapSagas) note(id, event string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.events == nil {
		m.events = map[string][]string{}
	}
	m.events[id] = append(m.events[id], event)
}

// Run runs steps for saga id and reports whether it committed.
func (m *mapSagas) Run(ctx context.Context, id string, steps []plainStep) (bool, error) {
	m.note(id, "started")
	for i, st := range steps {
		if err := st.do(ctx); err != nil {
			m.note(id, "failed "+st.name)
			for j := i - 1; j >= 0; j-- {
				if uerr := steps[j].undo(ctx); uerr != nil {
					m.note(id, "stuck")
					return false, errors.Join(err, uerr)
				}
				m.note(id, "undone "+steps[j].name)
			}
			m.note(id, "compensated")
			return false, err
		}
		m.note(id, "done "+st.name)
	}
	m.note(id, "committed")
	return true, nil
}

var errDeclined = errors.New("card declined")

// sagaImpl runs sagas of three steps that do nothing, the last failing
// permanently when fail is set, and reports whether each committed.
type sagaImpl struct {
	name string
	run  func(ctx context.Context, id string, fail bool) (bool, error)
}

func nopSagaStep(context.Context, *saga.Exec) error { return nil }

// newSagaImpls returns distkit's Orchestrator over log and the map runner.
func newSagaImpls(tb testing.TB, log saga.Log) []sagaImpl {
	o := saga.New(log, saga.Config{})
	for _, fail := range []bool{false, true} {
		d := saga.Definition{Name: "order"}
		for _, name := range []string{"reserve", "charge", "ship"} {
			d.Steps = append(d.Steps, saga.Step{Name: name, Do: nopSagaStep, Undo: nopSagaStep})
		}
		if fail {
			d.Name = "order-declined"
			d.Steps[2].Do = func(context.Context, *saga.Exec) error { return saga.Permanent(errDeclined) }
		}
		if err := o.Register(d); err != nil {
			tb.Fatal(err)
		}
	}
	var m mapSagas
	nop := func(context.Context) error { return nil }
	ok := []plainStep{{"reserve", nop, nop}, {"charge", nop, nop}, {"ship", nop, nop}}
	declined := []plainStep{ok[0], ok[1], {"ship", func(context.Context) error { return errDeclined }, nop}}
	return []sagaImpl{
		{"distkit", func(ctx context.Context, id string, fail bool) (bool, error) {
			def := "order"
			if fail {
				def = "order-declined"
			}
			out, err := o.Run(ctx, def, id, nil)
			if out == saga.Compensated && errors.Is(err, errDeclined) {
				err = nil
			}
			return out == saga.Committed, err
		}},
		{"mutex-map", func(ctx context.Context, id string, fail bool) (bool, error) {
			steps := ok
			if fail {
				steps = declined
			}
			committed, err := m.Run(ctx, id, steps)
			if errors.Is(err, errDeclined) {
				err = nil
			}
			return committed, err
		}},
	}
}

// TestSagaImpls checks that both runners commit and compensate as the
// benchmarks expect.
func TestSagaImpls(t *testing.T) {
	for _, impl := range newSagaImpls(t, &saga.MemLog{}) {
		for i, fail := range []bool{false, true} {
			committed, err := impl.run(t.Context(), "s"+strconv.Itoa(i), fail)
			if err != nil || committed == fail {
				t.Errorf("%s, failing %v: committed %v, %v", impl.name, fail, committed, err)
			}
		}
	}
}

// sagaIDs numbers sagas across all runs of the benchmarks, which -count
// repeats on the same orchestrators.
var sagaIDs atomic.Int64

// benchSagas runs sagas from workers goroutines (1: the benchmark's own)
// and reports sagas/s and, where the system tells, the CPU time the
// process spent per saga (cpu-ns/op, garbage collection included): on a
// shared machine wall time per saga also counts the time other processes
// held the cores, CPU time does not.
func benchSagas(b *testing.B, impl sagaImpl, workers int, fail bool) {
	first := sagaIDs.Load()
	cpu := cputime.Process()
	run := func() {
		id := strconv.FormatInt(sagaIDs.Add(1), 10)
		if committed, err := impl.run(context.Background(), id, fail); err != nil || committed == fail {
			b.Errorf("saga %s: committed %v, %v", id, committed, err)
		}
	}
	b.ReportAllocs()
	if workers == 1 {
		for b.Loop() {
			run()
		}
	} else {
		b.SetParallelism(max(1, workers/runtime.GOMAXPROCS(0))) // goroutines per P
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				run()
			}
		})
	}
	n := sagaIDs.Load() - first
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "sagas/s")
	if cpu := cputime.Process() - cpu; cpu > 0 {
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/op")
	}
}

// BenchmarkSaga is one saga of three steps that do nothing, in memory
// (distkit over MemLog), committed or compensated (the third step fails
// permanently, the first two are undone).
func BenchmarkSaga(b *testing.B) {
	for _, outcome := range []string{"commit", "compensate"} {
		for _, impl := range newSagaImpls(b, &saga.MemLog{}) {
			b.Run("outcome="+outcome+"/impl="+impl.name, func(b *testing.B) {
				benchSagas(b, impl, 1, outcome == "compensate")
			})
		}
	}
}

// BenchmarkSagaDurable is BenchmarkSaga's committed saga over distkit's
// FileLog (every append fsynced, group commit across sagas in flight)
// with 1 and 64 sagas in flight: the figure to set beside dtm's.
func BenchmarkSagaDurable(b *testing.B) {
	for _, workers := range []int{1, 64} {
		b.Run("inflight="+strconv.Itoa(workers)+"/impl=distkit", func(b *testing.B) {
			l, err := saga.OpenFileLog(filepath.Join(b.TempDir(), "saga.log"))
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			benchSagas(b, newSagaImpls(b, l)[0], workers, false)
		})
	}
}
