package postgres_test

import (
	"context"
	"log"
	"net/http"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/stores/postgres"
)

// The examples need a PostgreSQL server, so they are compiled but not
// run; the package's tests run the same code on a throwaway server.

func ExampleGuard_Middleware() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		log.Fatal(err)
	}
	store, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
	if err != nil {
		log.Fatal(err)
	}
	g := postgres.NewGuard(store, idempotency.Config{})
	pay := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tx, err := postgres.Tx(r.Context())
		if err == nil {
			_, err = tx.Exec(r.Context(), "UPDATE account SET balance = balance - 100 WHERE id = 'alice'")
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError) // rolls back
			return
		}
		w.WriteHeader(http.StatusCreated) // commits with the recorded response
	})
	http.Handle("POST /payments", g.Middleware(idempotency.MiddlewareOptions{
		Scope: func(r *http.Request) string { return r.Header.Get("X-Client-Id") }, // the authenticated client
	})(pay))
}

func ExampleBarrier() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	b, err := postgres.NewBarrier(pool, postgres.BarrierConfig{})
	if err != nil {
		log.Fatal(err)
	}
	// In the participant's handler for a saga step's action, keyed by the
	// step's Exec.IdempotencyKey():
	err = b.Action(ctx, "order-17/reserve", func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "UPDATE stock SET n = n - 1 WHERE item = 'book' AND n > 0")
		return err
	})
	if err != nil {
		log.Fatal(err) // saga.ErrHanging: the compensation came first
	}
}

func ExampleSagaLog() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	l, err := postgres.NewSagaLog(pool, postgres.SagaConfig{})
	if err != nil {
		log.Fatal(err)
	}
	o := saga.New(l, saga.Config{MaxConcurrent: 64})
	// Register the definitions, then finish what a crash left open.
	if err := o.Recover(ctx); err != nil {
		log.Fatal(err)
	}
}
