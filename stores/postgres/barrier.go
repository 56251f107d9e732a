package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/distkit/distkit/saga"
)

// BarrierConfig configures a [Barrier]. The zero value is ready to use.
type BarrierConfig struct {
	// Prefix starts the name of the barrier's table; "": DefaultPrefix.
	// It must match the prefix given to MigratePrefix.
	Prefix string
}

// The op and origin values of the barrier table.
const (
	opAction     = 1
	opCompensate = 2
)

// Barrier is dtm's sub-transaction barrier, kept in the participant's own
// database: the barrier's rows and the step's business SQL commit in one
// transaction, so the barrier knows exactly whether the action took
// effect. It is the in-database counterpart of [saga.Barrier], keyed by
// the key a step sends ([saga.Exec.IdempotencyKey]):
//
//   - duplicate: an action or compensation that committed does nothing
//     and succeeds again;
//   - null compensation: a compensation whose action never committed
//     calls nothing, commits a row that records it, and succeeds;
//   - hanging action: an action that arrives after its compensation is
//     refused with [saga.ErrHanging], for good;
//   - a compensation that arrives while its action's transaction is open
//     waits for that transaction (the row lock of the action's barrier
//     row): if it commits, the compensation undoes it; if it rolls back,
//     the compensation is null. No lease can lapse in between, so a
//     compensation can never be recorded as null for an action that
//     commits afterwards.
//
// Keys are at most [MaxKeyLen] bytes ([ErrKeyTooLong] otherwise). Each
// call is one transaction at READ COMMITTED: the barrier's insert,
// then fn's statements on the same pgx.Tx, then the commit. If fn returns
// an error the transaction rolls back, nothing is recorded, and a later
// call runs fn again.
//
// A Barrier is safe for concurrent use. Create it with [NewBarrier] over
// a schema made by [Migrate]. Its rows are kept until the operator
// deletes them; deleting the rows of a key whose action may still arrive
// lets that late action run.
type Barrier struct {
	db      DB
	action  string
	origin  string
	compens string
}

// NewBarrier returns a barrier on db's table with cfg.Prefix. It returns
// an error wrapping [ErrPrefix] for an invalid prefix.
func NewBarrier(db DB, cfg BarrierConfig) (*Barrier, error) {
	p, err := prefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	return &Barrier{
		db:     db,
		action: named(p, `INSERT INTO distkit_saga_barrier (key, op, origin) VALUES ($1, 1, 1) ON CONFLICT DO NOTHING`),
		origin: named(p, `SELECT origin FROM distkit_saga_barrier WHERE key = $1 AND op = 1`),
		// The action's row first, as in Action, so the two never deadlock.
		compens: named(p, `INSERT INTO distkit_saga_barrier (key, op, origin) VALUES ($1, 1, 2), ($1, 2, 2) ON CONFLICT DO NOTHING RETURNING op`),
	}, nil
}

// Action runs fn once for key, in one transaction with the barrier's row:
// a call after the action committed returns nil without calling fn; a
// call after the key's compensation returns an error wrapping
// [saga.ErrHanging]. If fn fails, its error is returned, the transaction
// rolls back, and a later call runs fn again. Database errors are
// returned wrapped; after one the action may or may not have committed,
// and a retry tells which.
func (b *Barrier) Action(ctx context.Context, key string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return b.inTx(ctx, key, func(tx pgx.Tx) (bool, error) {
		tag, err := tx.Exec(ctx, b.action, []byte(key))
		if err != nil {
			return false, fmt.Errorf("postgres: barrier: %w", err)
		}
		if tag.RowsAffected() == 0 {
			// The row was there, or committed while we waited for it.
			var origin int
			if err := tx.QueryRow(ctx, b.origin, []byte(key)).Scan(&origin); err != nil {
				return false, fmt.Errorf("postgres: barrier: %w", err)
			}
			if origin == opCompensate {
				return false, fmt.Errorf("%w: %q", saga.ErrHanging, key)
			}
			return false, nil // a duplicate
		}
		return true, fn(ctx, tx)
	})
}

// Compensate runs fn once for key, in one transaction with the barrier's
// rows, if the action of key committed: a call after the compensation
// committed returns nil without calling fn. If the action never
// committed, Compensate calls nothing, commits the null compensation that
// makes every later Action of key fail with [saga.ErrHanging], and
// returns nil. If the action's transaction is open, Compensate waits for
// it. If fn fails, its error is returned, the transaction rolls back, and
// a later call runs fn again.
func (b *Barrier) Compensate(ctx context.Context, key string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return b.inTx(ctx, key, func(tx pgx.Tx) (bool, error) {
		rows, err := tx.Query(ctx, b.compens, []byte(key))
		if err != nil {
			return false, fmt.Errorf("postgres: barrier: %w", err)
		}
		ops, err := pgx.CollectRows(rows, pgx.RowTo[int16])
		if err != nil {
			return false, fmt.Errorf("postgres: barrier: %w", err)
		}
		switch {
		case len(ops) == 2:
			return true, nil // null compensation: keep the rows, call nothing
		case len(ops) == 0:
			return false, nil // a duplicate
		}
		return true, fn(ctx, tx)
	})
}

// inTx runs body in a transaction, and commits it if body returns
// (true, nil); otherwise it rolls back.
func (b *Barrier) inTx(ctx context.Context, key string, body func(tx pgx.Tx) (bool, error)) error {
	if err := checkKey(key); err != nil {
		return err
	}
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: barrier: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	commit, err := body(tx)
	if err != nil || !commit {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: barrier: commit: %w", err)
	}
	return nil
}
