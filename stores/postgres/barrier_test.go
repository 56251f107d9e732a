package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/stores/postgres"
)

// account is a participant: its action inserts a reservation, its
// compensation deletes it and notes the refund, both through the barrier.
type account struct {
	t    testing.TB
	pool *pgxpool.Pool
	b    *postgres.Barrier
}

func newAccount(t testing.TB) *account {
	pool := migrated(t)
	for _, q := range []string{
		"CREATE TABLE reservation (key text PRIMARY KEY)",
		"CREATE TABLE refund (key text PRIMARY KEY)", // a second refund of a key fails
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	b, err := postgres.NewBarrier(pool, postgres.BarrierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	return &account{t: t, pool: pool, b: b}
}

func reserve(ctx context.Context, tx pgx.Tx, key string) error {
	_, err := tx.Exec(ctx, "INSERT INTO reservation VALUES ($1)", key)
	return err
}

func refund(ctx context.Context, tx pgx.Tx, key string) error {
	if _, err := tx.Exec(ctx, "DELETE FROM reservation WHERE key = $1", key); err != nil {
		return err
	}
	_, err := tx.Exec(ctx, "INSERT INTO refund VALUES ($1)", key)
	return err
}

func (a *account) action(key string, calls *int) error {
	return a.b.Action(ctx, key, func(ctx context.Context, tx pgx.Tx) error {
		*calls++
		return reserve(ctx, tx, key)
	})
}

func (a *account) compensate(key string, calls *int) error {
	return a.b.Compensate(ctx, key, func(ctx context.Context, tx pgx.Tx) error {
		*calls++
		return refund(ctx, tx, key)
	})
}

func (a *account) count(table, key string) int {
	var n int
	if err := a.pool.QueryRow(ctx, "SELECT count(*) FROM "+table+" WHERE key = $1", key).Scan(&n); err != nil {
		a.t.Fatal(err)
	}
	return n
}

func TestBarrierActionThenCompensate(t *testing.T) {
	a := newAccount(t)
	var acts, comps int
	for range 2 { // the second call is a duplicate
		if err := a.action("k", &acts); err != nil {
			t.Fatal(err)
		}
	}
	if acts != 1 || a.count("reservation", "k") != 1 {
		t.Fatalf("action ran %d times, %d reservations; want 1, 1", acts, a.count("reservation", "k"))
	}
	for range 2 {
		if err := a.compensate("k", &comps); err != nil {
			t.Fatal(err)
		}
	}
	if comps != 1 || a.count("reservation", "k") != 0 || a.count("refund", "k") != 1 {
		t.Fatalf("compensation ran %d times; want 1, the reservation gone and one refund", comps)
	}
	// A duplicate of the action after its compensation still does
	// nothing: the action ran, once.
	if err := a.action("k", &acts); err != nil || acts != 1 || a.count("reservation", "k") != 0 {
		t.Fatalf("duplicate action after the compensation: %v, ran %d times", err, acts)
	}
}

func TestBarrierNullCompensation(t *testing.T) {
	a := newAccount(t)
	var acts, comps int
	if err := a.compensate("k", &comps); err != nil {
		t.Fatal(err)
	}
	if comps != 0 {
		t.Fatalf("a compensation before its action called its body %d times", comps)
	}
	var origin int
	if err := a.pool.QueryRow(ctx, "SELECT origin FROM distkit_saga_barrier WHERE key = 'k' AND op = 1").Scan(&origin); err != nil || origin != 2 {
		t.Fatalf("the null compensation is not recorded: origin %d, %v", origin, err)
	}
	for range 3 { // the hanging action is blocked for good
		if err := a.action("k", &acts); !errors.Is(err, saga.ErrHanging) {
			t.Fatalf("hanging action: %v, want ErrHanging", err)
		}
		if err := a.compensate("k", &comps); err != nil {
			t.Fatal(err)
		}
	}
	if acts != 0 || comps != 0 || a.count("reservation", "k") != 0 {
		t.Fatalf("bodies ran: action %d, compensation %d", acts, comps)
	}
}

func TestBarrierFailedAction(t *testing.T) {
	a := newAccount(t)
	failed := errors.New("out of stock")
	err := a.b.Action(ctx, "k", func(ctx context.Context, tx pgx.Tx) error {
		if err := reserve(ctx, tx, "k"); err != nil {
			return err
		}
		return failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Action = %v, want fn's error", err)
	}
	if a.count("reservation", "k") != 0 {
		t.Fatal("a failed action's write committed")
	}
	var comps, acts int
	if err := a.compensate("k", &comps); err != nil || comps != 0 {
		t.Fatalf("compensation of a failed action: %v, body ran %d times; want a null compensation", err, comps)
	}
	if err := a.action("k", &acts); !errors.Is(err, saga.ErrHanging) || acts != 0 {
		t.Fatalf("retry of the action after the compensation: %v, ran %d", err, acts)
	}
}

// waitForLockWait returns once some session waits for a row lock.
func waitForLockWait(t *testing.T, pool *pgxpool.Pool) {
	t.Helper()
	for n := 0; n == 0; {
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
}

// TestBarrierCompensationWaitsForAction: a compensation that arrives while
// its action's transaction is open waits for it, however long it takes —
// no lease lapses — and then undoes the action if it committed, or is null
// if it rolled back. The compensation can never be recorded as null for
// an action that commits.
func TestBarrierCompensationWaitsForAction(t *testing.T) {
	for _, commit := range []bool{true, false} {
		t.Run(fmt.Sprint("commit=", commit), func(t *testing.T) {
			a := newAccount(t)
			inAction, finish := make(chan struct{}), make(chan struct{})
			actionDone := make(chan error)
			go func() {
				actionDone <- a.b.Action(ctx, "k", func(ctx context.Context, tx pgx.Tx) error {
					if err := reserve(ctx, tx, "k"); err != nil {
						return err
					}
					close(inAction)
					<-finish
					if !commit {
						return errors.New("the action fails late")
					}
					return nil
				})
			}()
			<-inAction
			var comps int
			compDone := make(chan error)
			go func() { compDone <- a.compensate("k", &comps) }()
			waitForLockWait(t, a.pool) // the compensation is blocked on the action's row
			close(finish)
			if err := <-actionDone; (err == nil) != commit {
				t.Fatalf("Action = %v", err)
			}
			if err := <-compDone; err != nil {
				t.Fatalf("Compensate = %v", err)
			}
			if want := map[bool]int{true: 1, false: 0}[commit]; comps != want {
				t.Fatalf("the compensation's body ran %d times, want %d", comps, want)
			}
			if a.count("reservation", "k") != 0 {
				t.Fatal("a reservation is left after the compensation")
			}
			// A late duplicate of the action does nothing: refused if the
			// action never committed, a duplicate if it did.
			var acts int
			if err := a.action("k", &acts); errors.Is(err, saga.ErrHanging) == commit || acts != 0 {
				t.Fatalf("a late action: %v, ran %d", err, acts)
			}
			if a.count("reservation", "k") != 0 {
				t.Fatal("a late action reserved again")
			}
		})
	}
}

// TestBarrierRandomInterleavings races actions (some failing, some
// repeated) against one compensation per key, on many
// keys, and checks dtm's invariant: every committed action is undone
// exactly once, and nothing else is.
func TestBarrierRandomInterleavings(t *testing.T) {
	a := newAccount(t)
	const keys, seed = 40, 7
	t.Logf("seed %d", seed)
	var mu sync.Mutex
	committed := map[string]bool{}
	var wg sync.WaitGroup
	for k := range keys {
		key := fmt.Sprint("k", k)
		r := rand.New(rand.NewPCG(seed, uint64(k)))
		attempts, failAt := 1+r.IntN(3), r.IntN(4)
		wg.Go(func() {
			for i := range attempts {
				err := a.b.Action(ctx, key, func(ctx context.Context, tx pgx.Tx) error {
					if err := reserve(ctx, tx, key); err != nil {
						return err
					}
					if i == failAt {
						return errors.New("injected failure")
					}
					mu.Lock()
					committed[key] = true // the commit follows; a failed commit fails the test below
					mu.Unlock()
					return nil
				})
				if err != nil && !errors.Is(err, saga.ErrHanging) && err.Error() != "injected failure" {
					t.Errorf("Action(%s): %v", key, err)
				}
			}
		})
		wg.Go(func() {
			err := a.b.Compensate(ctx, key, func(ctx context.Context, tx pgx.Tx) error { return refund(ctx, tx, key) })
			if err != nil {
				t.Errorf("Compensate(%s): %v", key, err)
			}
		})
	}
	wg.Wait()
	for k := range keys {
		key := fmt.Sprint("k", k)
		if n := a.count("reservation", key); n != 0 {
			t.Errorf("%s: a reservation outlived the compensation", key)
		}
		if got, want := a.count("refund", key), map[bool]int{true: 1}[committed[key]]; got != want {
			t.Errorf("%s: %d refunds, want %d (action committed: %v)", key, got, want, committed[key])
		}
	}
}

func TestBarrierHostileKeys(t *testing.T) {
	a := newAccount(t)
	var acts, comps int
	for _, key := range []string{"a\x00b", "\xff"} {
		if err := a.compensate(key, &comps); err != nil {
			t.Fatal(err)
		}
		if err := a.action(key, &acts); !errors.Is(err, saga.ErrHanging) {
			t.Fatalf("action(%q) after its compensation: %v", key, err)
		}
	}
	long := strings.Repeat("k", postgres.MaxKeyLen+1)
	if err := a.action(long, &acts); !errors.Is(err, postgres.ErrKeyTooLong) || acts != 0 {
		t.Fatalf("action of an oversized key: %v, ran %d", err, acts)
	}
}
