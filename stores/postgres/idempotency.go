package postgres

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/idempotency"
)

// IdempotencyConfig configures an [IdempotencyStore]. The zero value is
// ready to use.
type IdempotencyConfig struct {
	// Prefix starts the names of the store's table and sequence; "":
	// DefaultPrefix. It must match the prefix given to MigratePrefix.
	Prefix string
	// Clock, if not nil, replaces the database's clock: tests that move
	// time by hand use it. Leave it nil in production, so that every
	// process shares the database's clock.
	Clock clock.Clock
}

// IdempotencyStore is an [idempotency.Store] in PostgreSQL: one row per
// key, fencing tokens drawn from a sequence, and every method a single
// statement, atomic by itself, that reads the time from the database
// (statement_timestamp(), which is now() outside a transaction), so that
// the processes sharing the store agree on when a claim lapses whatever
// their own clocks say. Deadlines have the database's resolution, one
// microsecond; lock and retain are rounded up to it.
//
// A Claim of a live key returns its record without changing it, though it
// writes the row (the statement takes the row's lock to read it
// consistently). Rows whose deadline passed are reused by the next Claim
// of their key, and removed by [IdempotencyStore.Purge].
//
// With a [Guard] over the store, a function's writes and its recorded
// result commit in one transaction (brandur's atomic phases).
//
// An IdempotencyStore is safe for concurrent use, by any number of
// processes. Create it with [NewIdempotencyStore] over a schema made by
// [Migrate].
type IdempotencyStore struct {
	db       DB
	clock    clock.Clock
	claim    string
	complete string
	release  string
	finished string
	purge    string

	// beforeCommit, if not nil, runs between the Complete statement of
	// an atomic phase and its commit; tests kill the connection there.
	beforeCommit func(ctx context.Context, tx pgx.Tx)
}

var _ idempotency.Store = (*IdempotencyStore)(nil)

// NewIdempotencyStore returns a store on db's table with cfg.Prefix. It
// returns an error wrapping [ErrPrefix] for an invalid prefix.
func NewIdempotencyStore(db DB, cfg IdempotencyConfig) (*IdempotencyStore, error) {
	p, err := prefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	// $now is NULL for the database's clock.
	return &IdempotencyStore{
		db:    db,
		clock: cfg.Clock,
		// The token is drawn when the statement starts, so it is greater
		// than every token granted before. The upsert always returns the
		// row as the statement leaves it: a new or taken-over claim (the
		// row's token is ours) or the live record, unchanged.
		claim: named(p, `
WITH c AS (SELECT nextval('distkit_idempotency_token') AS token, coalesce($4::timestamptz, statement_timestamp()) AS now)
INSERT INTO distkit_idempotency AS r (key, fingerprint, done, token, deadline)
SELECT $1, $2, false, c.token, c.now + $3 * interval '1 microsecond' FROM c
ON CONFLICT (key) DO UPDATE SET
	fingerprint = CASE WHEN r.deadline > (SELECT now FROM c) THEN r.fingerprint ELSE excluded.fingerprint END,
	done        = CASE WHEN r.deadline > (SELECT now FROM c) THEN r.done ELSE false END,
	token       = CASE WHEN r.deadline > (SELECT now FROM c) THEN r.token ELSE excluded.token END,
	response    = CASE WHEN r.deadline > (SELECT now FROM c) THEN r.response END,
	deadline    = CASE WHEN r.deadline > (SELECT now FROM c) THEN r.deadline ELSE excluded.deadline END
RETURNING r.token = (SELECT token FROM c), r.fingerprint, r.done, r.token, r.deadline, r.response`),
		complete: named(p, `
UPDATE distkit_idempotency SET done = true, response = $3,
	deadline = coalesce($5::timestamptz, statement_timestamp()) + $4 * interval '1 microsecond'
WHERE key = $1 AND token = $2 AND NOT done AND deadline > coalesce($5::timestamptz, statement_timestamp())`),
		release: named(p, `
DELETE FROM distkit_idempotency
WHERE key = $1 AND token = $2 AND NOT done AND deadline > coalesce($3::timestamptz, statement_timestamp())`),
		finished: named(p, `SELECT EXISTS (SELECT 1 FROM distkit_idempotency WHERE key = $1 AND token = $2 AND done)`),
		purge: named(p, `
DELETE FROM distkit_idempotency WHERE key IN (
	SELECT key FROM distkit_idempotency WHERE deadline <= coalesce($2::timestamptz, statement_timestamp()) LIMIT $1)`),
	}, nil
}

// now returns the store's clock as a statement argument: nil for the
// database's.
func (s *IdempotencyStore) now() any {
	if s.clock == nil {
		return nil
	}
	return s.clock.Now()
}

// micros converts a positive duration to microseconds, rounding up.
func micros(d time.Duration) int64 {
	return int64((d + time.Microsecond - 1) / time.Microsecond)
}

// Claim implements [idempotency.Store.Claim] in one statement. It returns
// an error wrapping [ErrKeyTooLong] for a key beyond MaxKeyLen, an error
// if lock is not positive, ctx.Err() if ctx is done, and the
// database's errors wrapped.
func (s *IdempotencyStore) Claim(ctx context.Context, key string, fingerprint []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if lock <= 0 {
		return 0, nil, fmt.Errorf("postgres: Claim with non-positive lock %v", lock)
	}
	if err := checkKey(key); err != nil {
		return 0, nil, err
	}
	if fingerprint == nil {
		fingerprint = []byte{}
	}
	var (
		mine     bool
		token    int64
		deadline time.Time
		rec      = idempotency.Record{Key: key}
		done     bool
	)
	err := s.db.QueryRow(ctx, s.claim, []byte(key), fingerprint, micros(lock), s.now()).
		Scan(&mine, &rec.Fingerprint, &done, &token, &deadline, &rec.Response)
	if err != nil {
		return 0, nil, fmt.Errorf("postgres: claim %q: %w", key, err)
	}
	if mine {
		return uint64(token), nil, nil
	}
	rec.Token = uint64(token)
	if done {
		rec.State, rec.ExpiresAt = idempotency.Done, deadline
		if rec.Response == nil {
			rec.Response = []byte{}
		}
	} else {
		rec.State, rec.LockedUntil = idempotency.InProgress, deadline
	}
	return 0, &rec, nil
}

// Complete implements [idempotency.Store.Complete] in one statement. Under
// a [Guard], when the function ran in a transaction, the statement runs
// in that transaction, which then commits (see [Guard]). It returns an
// error wrapping [ErrKeyTooLong] for a key beyond MaxKeyLen, one wrapping
// [idempotency.ErrNotClaimed] if key has no live claim
// under token, an error if retain is not positive, ctx.Err() if ctx is
// done, and the database's errors wrapped.
func (s *IdempotencyStore) Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if retain <= 0 {
		return fmt.Errorf("postgres: Complete with non-positive retain %v", retain)
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if token > math.MaxInt64 { // never granted: tokens come from a bigint sequence
		return fmt.Errorf("%w: %q under token %d", idempotency.ErrNotClaimed, key, token)
	}
	if response == nil {
		response = []byte{}
	}
	if tx := phaseOf(ctx, s, token); tx != nil {
		return s.completeTx(ctx, tx, key, token, response, retain)
	}
	return s.completeIn(ctx, s.db, key, token, response, retain)
}

// execer runs a statement: the pool, or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

func (s *IdempotencyStore) completeIn(ctx context.Context, ex execer, key string, token uint64, response []byte, retain time.Duration) error {
	tag, err := ex.Exec(ctx, s.complete, []byte(key), int64(token), response, micros(retain), s.now())
	if err != nil {
		return fmt.Errorf("postgres: complete %q: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q under token %d", idempotency.ErrNotClaimed, key, token)
	}
	return nil
}

// Release implements [idempotency.Store.Release] in one statement. Under a
// [Guard], it first rolls back the function's transaction. It returns an
// error wrapping [ErrKeyTooLong] for a key beyond MaxKeyLen, one wrapping
// [idempotency.ErrNotClaimed] if key has no live claim
// under token, ctx.Err() if ctx is done, and the database's errors
// wrapped.
func (s *IdempotencyStore) Release(ctx context.Context, key string, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if tx := phaseOf(ctx, s, token); tx != nil {
		tx.Rollback(ctx)
	}
	if err := checkKey(key); err != nil {
		return err
	}
	if token > math.MaxInt64 {
		return fmt.Errorf("%w: %q under token %d", idempotency.ErrNotClaimed, key, token)
	}
	tag, err := s.db.Exec(ctx, s.release, []byte(key), int64(token), s.now())
	if err != nil {
		return fmt.Errorf("postgres: release %q: %w", key, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: %q under token %d", idempotency.ErrNotClaimed, key, token)
	}
	return nil
}

// Purge deletes up to limit records whose deadline has passed, which
// every method already treats as absent, and returns how many it
// deleted. Call it now and then to keep the table small.
func (s *IdempotencyStore) Purge(ctx context.Context, limit int) (int64, error) {
	tag, err := s.db.Exec(ctx, s.purge, limit, s.now())
	if err != nil {
		return 0, fmt.Errorf("postgres: purge: %w", err)
	}
	return tag.RowsAffected(), nil
}
