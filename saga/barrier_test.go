package saga_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/saga"
)

// account is a participant: Action reserves one unit, Compensate
// releases it, both behind a Barrier.
type account struct {
	b        saga.Barrier
	reserved int
	actions  int // calls of the action's body
	undos    int // calls of the compensation's body
}

func (a *account) reserve(ctx context.Context, key string) error {
	return a.b.Action(ctx, key, func(context.Context) error {
		a.actions++
		a.reserved++
		return nil
	})
}

func (a *account) release(ctx context.Context, key string) error {
	return a.b.Compensate(ctx, key, func(context.Context) error {
		a.undos++
		a.reserved--
		return nil
	})
}

func newAccount() *account { return &account{b: saga.Barrier{Store: &idempotency.MemStore{}}} }

// The cases of dtm's barrier documentation.
func TestBarrierDuplicate(t *testing.T) {
	ctx := context.Background()
	a := newAccount()
	require.NoError(t, a.reserve(ctx, "s/k"))
	require.NoError(t, a.reserve(ctx, "s/k"), "a duplicate action succeeds")
	require.Equal(t, 1, a.actions)
	require.NoError(t, a.release(ctx, "s/k"))
	require.NoError(t, a.release(ctx, "s/k"), "a duplicate compensation succeeds")
	require.Equal(t, 1, a.undos)
	require.Equal(t, 0, a.reserved)
	require.NoError(t, a.reserve(ctx, "s/k"), "a duplicate of the action after its compensation does nothing")
	require.Equal(t, 1, a.actions)
	require.Equal(t, 0, a.reserved)
	require.NoError(t, a.reserve(ctx, "s/other"), "keys are independent")
	require.Equal(t, 1, a.reserved)
}

func TestBarrierNullCompensationAndHanging(t *testing.T) {
	ctx := context.Background()
	a := newAccount()
	require.NoError(t, a.release(ctx, "s/k"), "null compensation succeeds")
	require.NoError(t, a.release(ctx, "s/k"), "and so does its duplicate")
	require.Equal(t, 0, a.undos, "without calling the compensation")
	require.ErrorIs(t, a.reserve(ctx, "s/k"), saga.ErrHanging, "the late action is refused")
	require.Equal(t, 0, a.actions)
	require.Equal(t, 0, a.reserved, "no hanging reservation")
}

func TestBarrierFailureAndBusy(t *testing.T) {
	ctx := context.Background()
	b := saga.Barrier{Store: &idempotency.MemStore{}}
	boom := errors.New("boom")
	calls := 0
	fail := func(context.Context) error { calls++; return boom }
	require.ErrorIs(t, b.Action(ctx, "k", fail), boom)
	require.ErrorIs(t, b.Action(ctx, "k", fail), boom, "a failed action runs again")
	require.Equal(t, 2, calls)

	// While the action runs, its compensation and a duplicate are busy.
	require.NoError(t, b.Action(ctx, "k", func(ctx context.Context) error {
		require.ErrorIs(t, b.Compensate(ctx, "k", fail), saga.ErrBusy)
		require.ErrorIs(t, b.Action(ctx, "k", fail), saga.ErrBusy)
		return nil
	}))
	require.ErrorIs(t, b.Compensate(ctx, "k", fail), boom)
	require.ErrorIs(t, b.Compensate(ctx, "k", fail), boom, "a failed compensation runs again")
	require.Equal(t, 4, calls)
	require.NoError(t, b.Compensate(ctx, "k", func(ctx context.Context) error {
		require.ErrorIs(t, b.Compensate(ctx, "k", fail), saga.ErrBusy)
		return nil
	}))
	require.NoError(t, b.Compensate(ctx, "k", fail))
	require.Equal(t, 4, calls)
}

// TestBarrierLock: a call that outlives Lock has its context ended, and
// its key is released for the next call.
func TestBarrierLock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := saga.Barrier{Store: &idempotency.MemStore{}, Lock: time.Second}
		err := b.Action(context.Background(), "k", func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NoError(t, b.Action(context.Background(), "k", func(context.Context) error { return nil }))
	})
}

// TestBarrierInSaga: a step's request to the participant is delayed past
// the step's timeout, so the saga compensates; the compensation arrives
// first (a null compensation) and the delayed request is then refused:
// nothing stays reserved.
func TestBarrierInSaga(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newAccount()
		late := make(chan error, 1)
		d := saga.Definition{Name: "d", Steps: []saga.Step{{
			Name:    "reserve",
			Timeout: time.Second,
			Retry:   saga.RetryPolicy{MaxAttempts: 1},
			Do: func(ctx context.Context, x *saga.Exec) error {
				key := x.IdempotencyKey()
				go func() { // the request spends 5s in the network
					time.Sleep(5 * time.Second) // virtual time (synctest)
					late <- a.reserve(context.Background(), key)
				}()
				<-ctx.Done()
				return ctx.Err()
			},
			Undo: func(ctx context.Context, x *saga.Exec) error { return a.release(ctx, x.IdempotencyKey()) },
		}}}
		o := saga.New(&saga.MemLog{}, saga.Config{})
		require.NoError(t, o.Register(d))
		out, err := o.Run(context.Background(), "d", "s", nil)
		require.Equal(t, saga.Compensated, out)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, <-late, saga.ErrHanging)
		require.Equal(t, 0, a.reserved)
		require.Equal(t, 0, a.actions)
		require.Equal(t, 0, a.undos)
	})
}

// TestBarrierRace races each key's action against its compensation (each
// retried while busy): whatever the order, nothing stays reserved, and
// the action's body ran exactly when the action succeeded.
func TestBarrierRace(t *testing.T) {
	b := saga.Barrier{Store: &idempotency.MemStore{}}
	const keys = 200
	var reserved [keys]atomic.Int32
	var actionErr [keys]error
	retry := func(f func() error) error {
		for {
			if err := f(); !errors.Is(err, saga.ErrBusy) {
				return err
			}
			runtime.Gosched()
		}
	}
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprint("s/", k)
		wg.Go(func() {
			actionErr[k] = retry(func() error {
				return b.Action(context.Background(), key, func(context.Context) error { reserved[k].Add(1); return nil })
			})
		})
		wg.Go(func() {
			require.NoError(t, retry(func() error {
				return b.Compensate(context.Background(), key, func(context.Context) error { reserved[k].Add(-1); return nil })
			}))
		})
	}
	wg.Wait()
	hanging := 0
	for k := range keys {
		require.Equal(t, int32(0), reserved[k].Load(), "key %d", k)
		if actionErr[k] != nil {
			require.ErrorIs(t, actionErr[k], saga.ErrHanging)
			hanging++
		}
	}
	t.Logf("%d of %d actions arrived after their compensation", hanging, keys)
}

// errDied is a participant's process dying inside the action's body.
var errDied = errors.New("participant died")

// died runs f and reports whether it panicked with errDied.
func died(f func()) (dead bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != errDied {
				panic(v)
			}
			dead = true
		}
	}()
	f()
	return false
}

// TestBarrierLapsedAction: the action's body takes effect and its
// process dies before the outcome is recorded, so its claim lapses. The
// compensation that comes after the lapse must undo the effect, not
// record a null compensation; a late retry of the action is refused.
func TestBarrierLapsedAction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		a := newAccount()
		a.b.Lock = time.Second
		require.True(t, died(func() {
			a.b.Action(ctx, "s/k", func(context.Context) error {
				a.actions++
				a.reserved++
				panic(errDied)
			})
		}))
		require.ErrorIs(t, a.release(ctx, "s/k"), saga.ErrBusy, "the claim is live")
		time.Sleep(time.Second) // virtual: the claim lapses
		require.NoError(t, a.release(ctx, "s/k"))
		require.Equal(t, 1, a.undos, "the compensation ran")
		require.Equal(t, 0, a.reserved, "nothing stays reserved")
		require.NoError(t, a.release(ctx, "s/k"))
		require.Equal(t, 1, a.undos, "once")
		require.ErrorIs(t, a.reserve(ctx, "s/k"), saga.ErrHanging, "a late retry of the action is refused")
		require.Equal(t, 1, a.actions)
	})
}

// TestBarrierOverrun: the action's body takes effect, then outlives
// Lock (a slow reply from its database), and the compensation arrives
// after the lapse. The compensation undoes the effect, and the late body
// learns that it was compensated.
func TestBarrierOverrun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		a := newAccount()
		a.b.Lock = time.Second
		done := make(chan error)
		applied := make(chan struct{})
		go func() {
			done <- a.b.Action(ctx, "s/k", func(context.Context) error {
				a.actions++
				a.reserved++
				close(applied)
				time.Sleep(3 * time.Second) // ignores its context
				return nil
			})
		}()
		<-applied
		time.Sleep(2 * time.Second)
		require.NoError(t, a.release(ctx, "s/k"))
		require.Equal(t, 1, a.undos)
		require.Equal(t, 0, a.reserved)
		require.ErrorIs(t, <-done, saga.ErrLapsed)
		require.ErrorIs(t, a.reserve(ctx, "s/k"), saga.ErrHanging)
		require.Equal(t, 1, a.actions)
		require.Equal(t, 0, a.reserved)
	})
}

// TestBarrierRetryAfterLapse: after a lapsed call of the action, a retry
// runs the body again (it may not have taken effect) and succeeds; the
// compensation then undoes it. A retry that fails keeps the lapsed call
// visible, so the compensation still runs.
func TestBarrierRetryAfterLapse(t *testing.T) {
	for _, retryFails := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			ctx := context.Background()
			a := newAccount()
			a.b.Lock = time.Second
			require.True(t, died(func() {
				a.b.Action(ctx, "s/k", func(context.Context) error { a.actions++; a.reserved = 1; panic(errDied) })
			}))
			time.Sleep(time.Second)
			boom := errors.New("boom")
			err := a.b.Action(ctx, "s/k", func(context.Context) error {
				a.actions++
				if retryFails {
					return boom
				}
				a.reserved = 1 // idempotent: a repeat changes nothing
				return nil
			})
			if retryFails {
				require.ErrorIs(t, err, boom)
			} else {
				require.NoError(t, err)
				require.NoError(t, a.reserve(ctx, "s/k"), "a duplicate")
			}
			require.Equal(t, 2, a.actions)
			require.NoError(t, a.release(ctx, "s/k"))
			require.Equal(t, 1, a.undos, "the compensation ran")
			require.Equal(t, 0, a.reserved)
		})
	}
}

// TestBarrierCleanFailure: an action whose body failed cleanly took no
// effect: the compensation is a null one, and the body of the
// compensation does not run.
func TestBarrierCleanFailure(t *testing.T) {
	ctx := context.Background()
	a := newAccount()
	require.Error(t, a.b.Action(ctx, "s/k", func(context.Context) error { return errors.New("declined") }))
	require.NoError(t, a.release(ctx, "s/k"))
	require.Equal(t, 0, a.undos)
	require.ErrorIs(t, a.reserve(ctx, "s/k"), saga.ErrHanging)
}
