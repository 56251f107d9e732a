package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/saga"
)

// A trip: book a flight, a hotel and a car. The car rental refuses, so
// the hotel and the flight are cancelled, in reverse order.
func Example() {
	step := func(name string, fail bool) saga.Step {
		return saga.Step{
			Name: name,
			Do: func(ctx context.Context, x *saga.Exec) error {
				if fail {
					return saga.Permanent(errors.New("no " + name + " available"))
				}
				fmt.Println("book", name, "key", x.IdempotencyKey())
				x.Put(name, []byte(name+"-ref-42"))
				return nil
			},
			Undo: func(ctx context.Context, x *saga.Exec) error {
				ref, _ := x.Get(name)
				fmt.Println("cancel", name, string(ref))
				return nil
			},
		}
	}
	o := saga.New(&saga.MemLog{}, saga.Config{})
	err := o.Register(saga.Definition{Name: "trip", Steps: []saga.Step{
		step("flight", false), step("hotel", false), step("car", true),
	}})
	if err != nil {
		panic(err)
	}
	out, err := o.Run(context.Background(), "trip", "trip-7", nil)
	fmt.Println(out, err)
	// Output:
	// book flight key trip-7/flight
	// book hotel key trip-7/hotel
	// cancel hotel hotel-ref-42
	// cancel flight flight-ref-42
	// Compensated saga "trip-7" compensated: step "car" failed: no car available
}

// A process crashes during a step; at the next start Recover finishes the
// saga from the log, re-running the interrupted step.
func ExampleOrchestrator_Recover() {
	log := &saga.MemLog{} // a FileLog in production
	crashed := false
	def := saga.Definition{Name: "transfer", Steps: []saga.Step{
		{Name: "debit", Do: func(ctx context.Context, x *saga.Exec) error {
			fmt.Println("debit attempt", x.Attempt)
			return nil
		}},
		{Name: "credit", Do: func(ctx context.Context, x *saga.Exec) error {
			fmt.Println("credit attempt", x.Attempt)
			if !crashed {
				crashed = true
				return errCrashed // stands in for the process dying here
			}
			return nil
		}},
	}}

	first := saga.New(abandonOn(log, errCrashed), saga.Config{})
	_ = first.Register(def)
	_, err := first.Run(context.Background(), "transfer", "t-1", nil)
	fmt.Println("first process:", errors.Is(err, errCrashed))

	second := saga.New(log, saga.Config{})
	_ = second.Register(def)
	fmt.Println("recover:", second.Recover(context.Background()))
	out, _ := second.Run(context.Background(), "transfer", "t-1", nil)
	fmt.Println("outcome:", out)
	// Output:
	// debit attempt 1
	// credit attempt 1
	// first process: true
	// credit attempt 2
	// recover: <nil>
	// outcome: Committed
}

var errCrashed = errors.New("crashed")

// abandoning is a Log that stops accepting appends after a StepFailed
// record carrying errCrashed would be written: the orchestrator stops
// there, as if its process had died.
type abandoning struct {
	saga.Log
	err error
}

func abandonOn(l saga.Log, err error) saga.Log { return &abandoning{l, err} }

func (a *abandoning) Append(ctx context.Context, r saga.Record) error {
	if r.Kind == saga.KindStepFailed && r.Err == a.err.Error() {
		return a.err
	}
	return a.Log.Append(ctx, r)
}

// A participant behind a Barrier: the compensation arrives before the
// action (which was slow on the network); the action, arriving late, is
// refused instead of reserving stock that nobody would release.
func ExampleBarrier() {
	b := saga.Barrier{Store: &idempotency.MemStore{}}
	ctx := context.Background()
	stock := 10
	reserve := func(context.Context) error { stock--; return nil }
	release := func(context.Context) error { stock++; return nil }

	fmt.Println("compensate:", b.Compensate(ctx, "order-1/reserve", release))
	fmt.Println("late action:", b.Action(ctx, "order-1/reserve", reserve))
	fmt.Println("stock:", stock)

	fmt.Println("action:", b.Action(ctx, "order-2/reserve", reserve))
	fmt.Println("duplicate:", b.Action(ctx, "order-2/reserve", reserve))
	fmt.Println("stock:", stock)
	// Output:
	// compensate: <nil>
	// late action: saga: action refused: its compensation already ran: "order-1/reserve"
	// stock: 10
	// action: <nil>
	// duplicate: <nil>
	// stock: 9
}

// A group books the flight and the hotel at once; the payment after it
// is declined, so both bookings are cancelled, concurrently, and then
// the reservation before the group.
func ExampleStep_parallel() {
	var mu sync.Mutex
	var undone []string
	step := func(name string) saga.Step {
		return saga.Step{
			Name: name,
			Do:   func(context.Context, *saga.Exec) error { return nil },
			Undo: func(context.Context, *saga.Exec) error {
				mu.Lock()
				defer mu.Unlock()
				undone = append(undone, name)
				return nil
			},
		}
	}
	pay := saga.Step{Name: "pay", Do: func(context.Context, *saga.Exec) error {
		return saga.Permanent(errors.New("card declined"))
	}}
	o := saga.New(&saga.MemLog{}, saga.Config{})
	err := o.Register(saga.Definition{Name: "trip", Steps: []saga.Step{
		step("reserve"),
		{Name: "book", Parallel: []saga.Step{step("flight"), step("hotel")}},
		pay,
	}})
	if err != nil {
		panic(err)
	}
	out, err := o.Run(context.Background(), "trip", "trip-8", nil)
	fmt.Println(out, err)
	slices.Sort(undone[:2]) // the group's undos ran concurrently
	fmt.Println(undone)
	// Output:
	// Compensated saga "trip-8" compensated: step "pay" failed: card declined
	// [flight hotel reserve]
}

// Cancel stops a running saga: the step in progress sees its context
// end, and what the saga did is undone.
func ExampleOrchestrator_Cancel() {
	started := make(chan struct{})
	o := saga.New(&saga.MemLog{}, saga.Config{})
	err := o.Register(saga.Definition{Name: "order", Steps: []saga.Step{
		{Name: "reserve", Do: func(context.Context, *saga.Exec) error { return nil },
			Undo: func(context.Context, *saga.Exec) error { fmt.Println("release"); return nil }},
		{Name: "wait for payment", Do: func(ctx context.Context, x *saga.Exec) error {
			close(started)
			<-ctx.Done()
			fmt.Println("payment wait stopped:", context.Cause(ctx))
			return ctx.Err()
		}},
	}})
	if err != nil {
		panic(err)
	}
	done := make(chan error)
	go func() {
		_, err := o.Run(context.Background(), "order", "order-9", nil)
		done <- err
	}()
	<-started
	if err := o.Cancel(context.Background(), "order-9"); err != nil {
		panic(err)
	}
	fmt.Println(<-done)
	// Output:
	// payment wait stopped: saga: cancelled
	// release
	// saga "order-9" compensated: saga: cancelled
}
