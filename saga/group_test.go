package saga_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/saga"
)

// groupSaga is a step, a group of three, and a step; every Do and Undo
// takes a second of virtual time, and stops early if its context ends.
func groupSaga(r *recorder, doErr map[string]error) saga.Definition {
	step := func(name string) saga.Step {
		return saga.Step{
			Name:  name,
			Retry: saga.RetryPolicy{MaxAttempts: 1},
			Do: func(ctx context.Context, x *saga.Exec) error {
				r.note("do %s", name)
				if err := doErr[name]; err != nil {
					time.Sleep(time.Second / 2)
					return err
				}
				select {
				case <-time.After(time.Second):
					return nil
				case <-ctx.Done():
					r.note("stopped %s", name)
					return ctx.Err()
				}
			},
			Undo: func(ctx context.Context, x *saga.Exec) error {
				time.Sleep(time.Second)
				r.note("undo %s", name)
				return nil
			},
		}
	}
	return saga.Definition{Name: "trip", Steps: []saga.Step{
		step("pay"),
		{Name: "book", Parallel: []saga.Step{step("flight"), step("hotel"), step("car")}},
		step("notify"),
	}}
}

// TestGroupCommit: the members of a group run at once; the log names
// them as "group/member".
func TestGroupCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		log := &saga.MemLog{}
		o := saga.New(log, noJitter)
		require.NoError(t, o.Register(groupSaga(&r, nil)))
		start := time.Now()
		out, err := o.Run(context.Background(), "trip", "s", nil)
		require.NoError(t, err)
		require.Equal(t, saga.Committed, out)
		require.Equal(t, 3*time.Second, time.Since(start), "pay, the three bookings at once, notify")
		recs, err := log.Records(context.Background(), "s")
		require.NoError(t, err)
		require.Equal(t, []string{"pay", "book/flight", "book/hotel", "book/car", "notify"}, recs[0].Steps)
		require.Len(t, recs, 1+2*5+1)
	})
}

// TestGroupFailure: a member fails for good; the members still running
// are stopped, and every member that may have taken effect is undone,
// concurrently, before the earlier step. The failed member, whose only
// attempt failed Permanent, is not.
func TestGroupFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		declined := saga.Permanent(errors.New("no rooms"))
		log := &saga.MemLog{}
		o := saga.New(log, noJitter)
		require.NoError(t, o.Register(groupSaga(&r, map[string]error{"hotel": declined})))
		start := time.Now()
		out, err := o.Run(context.Background(), "trip", "s", nil)
		require.Equal(t, saga.Compensated, out)
		var se *saga.StepError
		require.ErrorAs(t, err, &se)
		require.Equal(t, "hotel", se.Step)
		require.ErrorIs(t, err, declined)
		// pay 1s; hotel fails at 0.5s and stops the others; the two undos
		// together 1s; pay's undo 1s.
		require.Equal(t, 3*time.Second+time.Second/2, time.Since(start))
		calls := map[string]bool{}
		for _, c := range r.calls {
			calls[c] = true
		}
		require.Equal(t, map[string]bool{
			"do pay": true, "do flight": true, "do hotel": true, "do car": true,
			"stopped flight": true, "stopped car": true,
			"undo flight": true, "undo car": true, "undo pay": true,
		}, calls)
		require.Equal(t, "undo pay", r.calls[len(r.calls)-1], "the earlier step is undone last")
	})
}

// TestGroupCancel cancels a saga while its group runs.
func TestGroupCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		o := saga.New(&saga.MemLog{}, noJitter)
		require.NoError(t, o.Register(groupSaga(&r, nil)))
		var wg sync.WaitGroup
		wg.Go(func() {
			out, err := o.Run(context.Background(), "trip", "s", nil)
			require.Equal(t, saga.Compensated, out)
			require.ErrorIs(t, err, saga.ErrCancelled)
		})
		time.Sleep(time.Second + time.Second/2) // pay is done; the bookings run
		require.NoError(t, o.Cancel(context.Background(), "s"))
		wg.Wait()
		require.Len(t, r.calls, 1+3+3+3+1, "pay, 3 bookings, 3 stopped, 3 undone, pay undone: %q", r.calls)
		require.Equal(t, "undo pay", r.calls[len(r.calls)-1])
		require.NotContains(t, r.calls, "do notify")
	})
}

func TestGroupValidate(t *testing.T) {
	nop := func(context.Context, *saga.Exec) error { return nil }
	member := saga.Step{Name: "m", Do: nop}
	for name, g := range map[string]saga.Step{
		"empty":           {Name: "g", Parallel: []saga.Step{}},
		"with Do":         {Name: "g", Do: nop, Parallel: []saga.Step{member}},
		"with Timeout":    {Name: "g", Timeout: time.Second, Parallel: []saga.Step{member}},
		"nested":          {Name: "g", Parallel: []saga.Step{{Name: "h", Parallel: []saga.Step{member}}}},
		"same names":      {Name: "g", Parallel: []saga.Step{member, member}},
		"named as a step": {Name: "g", Parallel: []saga.Step{{Name: "a", Do: nop}}},
		"member no Do":    {Name: "g", Parallel: []saga.Step{{Name: "m"}}},
	} {
		d := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: nop}, g}}
		require.ErrorIs(t, d.Validate(), saga.ErrInvalidDefinition, name)
	}
	d := saga.Definition{Name: "d", Steps: []saga.Step{{Name: "a", Do: nop}, {Name: "g", Parallel: []saga.Step{member}}}}
	require.NoError(t, d.Validate())
}
