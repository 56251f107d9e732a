package saga_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/saga"
)

// result is what a scripted call returns.
type result int

const (
	ok result = iota
	transient
	permanent
)

// script is a random saga: its steps, their attempts, which have Undo,
// and what every call returns.
type script struct {
	steps, maxAttempts, undoLimit int
	noUndo                        map[int]bool
	results                       map[string]result // "do 2 1" -> result; absent: ok
}

func randomScript(r *rand.Rand) script {
	s := script{steps: 1 + r.IntN(5), maxAttempts: 1 + r.IntN(3), undoLimit: 1 + r.IntN(3),
		noUndo: map[int]bool{}, results: map[string]result{}}
	for i := range s.steps {
		s.noUndo[i] = r.IntN(4) == 0
		for a := 1; a <= 3; a++ {
			if r.IntN(4) == 0 {
				s.results[fmt.Sprintf("do %d %d", i, a)] = result(1 + r.IntN(2))
			}
			if r.IntN(3) == 0 {
				s.results[fmt.Sprintf("undo %d %d", i, a)] = result(1 + r.IntN(2))
			}
		}
	}
	return s
}

// model is the reference: the calls a saga makes and its outcome, by the
// rules of the package documentation, written as plainly as possible.
func (s script) model() ([]string, saga.Outcome) {
	var calls []string
	call := func(what string, step, attempt int) result {
		c := fmt.Sprintf("%s %d %d", what, step, attempt)
		calls = append(calls, c)
		return s.results[c]
	}
	gaveUp, from := false, 0 // from: the first step to undo
forward:
	for i := range s.steps {
		for a := 1; a <= s.maxAttempts; a++ {
			switch call("do", i, a) {
			case ok:
				continue forward
			case permanent:
				// A permanent failure is not undone, unless an earlier
				// attempt's effect is unknown.
				gaveUp, from = true, i-1
				if a > 1 {
					from = i
				}
				break forward
			}
		}
		gaveUp, from = true, i // exhausted: undo the failed step too
		break
	}
	if !gaveUp {
		return calls, saga.Committed
	}
	for j := from; j >= 0; j-- {
		if s.noUndo[j] {
			continue
		}
		for a := 1; ; a++ {
			res := call("undo", j, a)
			if res == ok {
				break
			}
			if res == permanent || a == s.undoLimit {
				return calls, saga.Stuck
			}
		}
	}
	return calls, saga.Compensated
}

// TestModel runs random sagas and compares their calls and outcome with
// the reference model.
func TestModel(t *testing.T) {
	for seed := range uint64(500) {
		s := randomScript(rand.New(rand.NewPCG(seed, 4)))
		wantCalls, wantOut := s.model()
		synctest.Test(t, func(t *testing.T) {
			var calls []string
			fn := func(what string) func(context.Context, *saga.Exec) error {
				return func(_ context.Context, x *saga.Exec) error {
					c := fmt.Sprintf("%s %d %d", what, x.Index, x.Attempt)
					calls = append(calls, c)
					switch s.results[c] {
					case transient:
						return errors.New(c)
					case permanent:
						return saga.Permanent(errors.New(c))
					}
					return nil
				}
			}
			d := saga.Definition{Name: "d"}
			for i := range s.steps {
				st := saga.Step{Name: fmt.Sprint(i), Do: fn("do"), Retry: saga.RetryPolicy{MaxAttempts: s.maxAttempts}}
				if !s.noUndo[i] {
					st.Undo = fn("undo")
				}
				d.Steps = append(d.Steps, st)
			}
			log := &saga.MemLog{}
			o := saga.New(log, saga.Config{UndoRetry: saga.RetryPolicy{MaxAttempts: s.undoLimit}})
			require.NoError(t, o.Register(d))
			out, err := o.Run(context.Background(), "d", "s", nil)
			require.Equal(t, wantOut, out, "seed %d", seed)
			require.Equal(t, wantCalls, calls, "seed %d", seed)
			require.Equal(t, wantOut == saga.Committed, err == nil, "seed %d: %v", seed, err)

			// Replaying the finished log on a new orchestrator changes nothing.
			o2 := saga.New(log, saga.Config{})
			require.NoError(t, o2.Register(d))
			require.NoError(t, o2.Recover(context.Background()))
			out, err = o2.Run(context.Background(), "d", "s", nil)
			require.Equal(t, wantOut, out)
			require.ErrorIs(t, err, saga.ErrDuplicate)
		})
	}
}
