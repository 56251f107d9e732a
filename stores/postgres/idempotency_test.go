package postgres_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/idempotencytest"
	"github.com/distkit/distkit/stores/postgres"
)

func TestIdempotencyStoreConformance(t *testing.T) {
	idempotencytest.TestStore(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		clk := clocktest.NewManual(time.Unix(1e9, 0))
		s, err := postgres.NewIdempotencyStore(migrated(t), postgres.IdempotencyConfig{Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		return s, clk.Advance
	})
}

// On the database's clock, a claim lapses by the server's time.
func TestIdempotencyStoreDatabaseClock(t *testing.T) {
	pool := migrated(t)
	s, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var before time.Time
	if err := pool.QueryRow(ctx, "SELECT now()").Scan(&before); err != nil {
		t.Fatal(err)
	}
	if _, rec, err := s.Claim(ctx, "k", nil, time.Hour); rec != nil || err != nil {
		t.Fatalf("Claim = %v, %v", rec, err)
	}
	_, rec, err := s.Claim(ctx, "k", nil, time.Hour)
	if err != nil || rec == nil {
		t.Fatalf("second Claim = %v, %v", rec, err)
	}
	if d := rec.LockedUntil.Sub(before); d < time.Hour || d > time.Hour+time.Minute {
		t.Fatalf("LockedUntil is %v after the server's now, want an hour", d)
	}
	// A lock of one nanosecond is rounded up to the database's microsecond.
	tok, _, err := s.Claim(ctx, "short", nil, time.Nanosecond)
	if err != nil {
		t.Fatal(err)
	}
	var deadline time.Time
	if err := pool.QueryRow(ctx, "SELECT deadline FROM distkit_idempotency WHERE key = 'short'").Scan(&deadline); err != nil {
		t.Fatal(err)
	}
	for passed := false; !passed; { // wait for the server's clock to pass it
		if err := pool.QueryRow(ctx, "SELECT clock_timestamp() > $1", deadline).Scan(&passed); err != nil {
			t.Fatal(err)
		}
	}
	if _, rec, err := s.Claim(ctx, "short", nil, time.Hour); rec != nil || err != nil {
		t.Fatalf("Claim of a lapsed key = %v, %v; want ownership", rec, err)
	}
	if err := s.Release(ctx, "short", tok); !errors.Is(err, idempotency.ErrNotClaimed) {
		t.Fatalf("Release under the lapsed token: %v", err)
	}
}

func TestIdempotencyStorePurge(t *testing.T) {
	clk := clocktest.NewManual(time.Unix(1e9, 0))
	s, err := postgres.NewIdempotencyStore(migrated(t), postgres.IdempotencyConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if _, _, err := s.Claim(ctx, k, nil, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(time.Minute)
	if _, _, err := s.Claim(ctx, "live", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Purge(ctx, 2); err != nil || n != 2 {
		t.Fatalf("Purge(2) = %d, %v; want 2", n, err)
	}
	if n, err := s.Purge(ctx, 100); err != nil || n != 1 {
		t.Fatalf("Purge(100) = %d, %v; want the last lapsed record", n, err)
	}
	if _, rec, err := s.Claim(ctx, "live", nil, time.Minute); err != nil || rec == nil {
		t.Fatalf("the live record was purged: %v, %v", rec, err)
	}
}

// payments is a business table that atomic phases write to.
func payments(t *testing.T, pool *pgxpool.Pool) func() int {
	t.Helper()
	if _, err := pool.Exec(ctx, "CREATE TABLE payment (key text PRIMARY KEY, amount int)"); err != nil {
		t.Fatal(err)
	}
	return func() int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM payment").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

func pay(ctx context.Context, tx pgx.Tx) ([]byte, error) {
	key := "p"
	if _, err := tx.Exec(ctx, "INSERT INTO payment VALUES ($1, 100)", key); err != nil {
		return nil, err
	}
	return []byte("paid"), nil
}

func TestGuardCommitsWithTheRecord(t *testing.T) {
	pool := migrated(t)
	count := payments(t, pool)
	s, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	g := postgres.NewGuard(s, idempotency.Config{})
	for range 3 {
		out, err := g.Do(ctx, "k", []byte("fp"), pay)
		if err != nil || string(out) != "paid" {
			t.Fatalf("Do = %q, %v", out, err)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("%d payments, want 1", n)
	}
	// A failing function leaves no writes, and its error is recorded.
	failed := errors.New("card declined")
	_, err = g.Do(ctx, "declined", nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		if _, err := tx.Exec(ctx, "INSERT INTO payment VALUES ('declined', 1)"); err != nil {
			return nil, err
		}
		return nil, failed
	})
	if !errors.Is(err, failed) {
		t.Fatalf("Do of a failing function: %v", err)
	}
	if n := count(); n != 1 {
		t.Fatalf("a failed function's write was kept: %d payments", n)
	}
	var stored *idempotency.StoredError
	if _, err := g.Do(ctx, "declined", nil, pay); !errors.As(err, &stored) {
		t.Fatalf("replay of the failure: %v, want the stored error", err)
	}
	// Tx outside a phase.
	if _, err := postgres.Tx(ctx); !errors.Is(err, postgres.ErrNoTx) {
		t.Fatalf("Tx outside a phase: %v", err)
	}
}

// TestGuardConnectionKilledBeforeCommit kills the phase's connection after
// the function's writes and the Complete statement, before the commit:
// the writes are gone and the key can be claimed again at once.
func TestGuardConnectionKilledBeforeCommit(t *testing.T) {
	pool := migrated(t)
	count := payments(t, pool)
	s, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	killed := 0
	postgres.SetBeforeCommit(s, func(ctx context.Context, tx pgx.Tx) {
		if killed > 0 {
			return
		}
		killed++
		pid := tx.Conn().PgConn().PID()
		var ok bool
		if err := pool.QueryRow(ctx, "SELECT pg_terminate_backend($1, 10000)", pid).Scan(&ok); err != nil || !ok {
			t.Errorf("pg_terminate_backend: %v, %v", ok, err)
		}
	})
	g := postgres.NewGuard(s, idempotency.Config{})
	if _, err := g.Do(ctx, "k", nil, pay); err == nil {
		t.Fatal("Do succeeded though its connection was killed before the commit")
	}
	if n := count(); n != 0 {
		t.Fatalf("%d payments after the killed commit, want 0", n)
	}
	// The key is free: the next call runs the function and commits.
	out, err := g.Do(ctx, "k", nil, pay)
	if err != nil || string(out) != "paid" {
		t.Fatalf("Do after the killed commit = %q, %v", out, err)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d payments, want 1", n)
	}
}

// A phase whose claim lapsed and was taken over never commits: the late
// function's Complete finds another token and its writes roll back.
func TestGuardLateOwnerRollsBack(t *testing.T) {
	pool := migrated(t)
	count := payments(t, pool)
	clk := clocktest.NewManual(time.Unix(1e9, 0))
	s, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	// The Guard's clock never moves, so only the store sees the lapse.
	g := postgres.NewGuard(s, idempotency.Config{Lock: time.Minute, Clock: clocktest.NewManual(time.Unix(1e9, 0))})
	_, err = g.Do(ctx, "k", nil, func(ctx context.Context, tx pgx.Tx) ([]byte, error) {
		clk.Advance(time.Minute)
		if tok, rec, err := s.Claim(ctx, "k", nil, time.Minute); err != nil || rec != nil || tok == 0 {
			t.Errorf("takeover Claim = %d, %v, %v", tok, rec, err)
		}
		return pay(ctx, tx)
	})
	if !errors.Is(err, idempotency.ErrLockExpired) || !errors.Is(err, idempotency.ErrNotClaimed) {
		t.Fatalf("Do whose claim was taken over: %v, want ErrLockExpired", err)
	}
	if n := count(); n != 0 {
		t.Fatalf("the late owner's write committed: %d payments", n)
	}
}

// Keys are bytes: NUL and invalid UTF-8 work; an oversized key or a
// forged token is refused with a clear error and writes nothing.
func TestIdempotencyStoreHostileInput(t *testing.T) {
	pool := migrated(t)
	s, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"a\x00b", "\xff\xfe", strings.Repeat("k", postgres.MaxKeyLen)} {
		tok, _, err := s.Claim(ctx, key, []byte{0}, time.Minute)
		if err != nil || tok == 0 {
			t.Fatalf("Claim(%q): %d, %v", key, tok, err)
		}
		if err := s.Complete(ctx, key, tok, []byte{0, 1}, time.Minute); err != nil {
			t.Fatalf("Complete(%q): %v", key, err)
		}
		_, rec, err := s.Claim(ctx, key, nil, time.Minute)
		if err != nil || rec == nil || rec.Key != key || rec.Token != tok || string(rec.Response) != "\x00\x01" {
			t.Fatalf("Claim(%q) of a done key = %+v, %v", key, rec, err)
		}
	}
	long := strings.Repeat("k", postgres.MaxKeyLen+1)
	if _, _, err := s.Claim(ctx, long, nil, time.Minute); !errors.Is(err, postgres.ErrKeyTooLong) {
		t.Fatalf("Claim of an oversized key: %v, want ErrKeyTooLong", err)
	}
	if err := s.Release(ctx, long, 1); !errors.Is(err, postgres.ErrKeyTooLong) {
		t.Fatalf("Release of an oversized key: %v, want ErrKeyTooLong", err)
	}
	tok, _, err := s.Claim(ctx, "k", nil, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, forged := range []uint64{0, tok + 1, 1 << 63, math.MaxUint64} {
		if err := s.Complete(ctx, "k", forged, nil, time.Minute); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Complete under forged token %d: %v, want ErrNotClaimed", forged, err)
		}
		if err := s.Release(ctx, "k", forged); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Release under forged token %d: %v, want ErrNotClaimed", forged, err)
		}
	}
	if err := s.Release(ctx, "k", tok); err != nil {
		t.Fatalf("the claim did not survive the forged tokens: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM distkit_idempotency").Scan(&n); err != nil || n != 3 {
		t.Fatalf("%d rows, %v; want the 3 done keys", n, err)
	}
}
