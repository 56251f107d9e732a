// Package postgres keeps distkit's idempotency records, saga log and saga
// barrier in PostgreSQL, through pgx v5: an [idempotency.Store] with
// fencing tokens, a [Guard] that runs functions in atomic phases (the
// function's writes and its recorded result commit in one transaction,
// as brandur describes for Stripe-style APIs), a [saga.Log] with group
// commit, and dtm's sub-transaction barrier in the participant's own
// transaction.
//
// # Usage
//
//	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
//	err = postgres.Migrate(ctx, pool) // or run schema.sql with your migration tool
//
//	// Idempotent HTTP API whose handlers write in the same transaction
//	// as their recorded response:
//	store, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
//	g := postgres.NewGuard(store, idempotency.Config{})
//	mux.Handle("POST /payments", g.Middleware(idempotency.MiddlewareOptions{Scope: clientID})(
//		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//			tx, err := postgres.Tx(r.Context())
//			_, err = tx.Exec(r.Context(), "INSERT INTO payment ...")
//			w.WriteHeader(http.StatusCreated) // commits with the record
//		})))
//
//	// A durable saga log shared by the orchestrator's processes:
//	log, err := postgres.NewSagaLog(pool, postgres.SagaConfig{})
//	o := saga.New(log, saga.Config{MaxConcurrent: 64})
//
//	// A saga participant: the barrier commits with the step's SQL.
//	b, err := postgres.NewBarrier(pool, postgres.BarrierConfig{})
//	err = b.Action(ctx, key, func(ctx context.Context, tx pgx.Tx) error {
//		_, err := tx.Exec(ctx, "UPDATE stock SET n = n - 1 WHERE id = $1", id)
//		return err
//	})
//	err = b.Compensate(ctx, key, func(ctx context.Context, tx pgx.Tx) error { ... })
//
// The tables are named with a prefix, [DefaultPrefix] unless a Config
// says otherwise ([MigratePrefix] creates them under another), so several
// applications can share a database.
//
// # Guarantees
//
//   - [IdempotencyStore] passes idempotency/idempotencytest: every method
//     is one statement, atomic by itself; at most one caller owns a key
//     at a time; tokens come from a sequence and grow; Complete and
//     Release act only under the live claim's token. Time is the
//     database's, so processes with skewed clocks agree on deadlines.
//   - [Guard]: for one key while its record lives, the function's
//     transaction commits at most once, and exactly when the key turns
//     Done. A crash or a killed connection before the commit leaves
//     neither the writes nor the record; the key is claimable again at
//     once if the process lives on to release it, and when the lock lapses
//     otherwise. A function whose claim lapsed and was taken over never
//     commits.
//   - [SagaLog] passes saga/sagatest: Append returns after its record is
//     committed; concurrent Appends share one statement and one commit; a
//     failed batch is stored entirely or not at all.
//   - [Barrier]: for one key, the action's SQL commits at most once, and
//     only if no compensation came first; the compensation's SQL commits
//     at most once, and if and only if the action's did; a compensation
//     that finds the action's transaction open waits for its outcome, so
//     it is never null for an action that commits.
//
// Every statement is parameterised; table prefixes are checked to be
// plain identifiers ([ErrPrefix]), and no value from a caller is ever
// spliced into SQL.
package postgres
