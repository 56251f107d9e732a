// Command orders runs an order saga — reserve stock, charge the account,
// ship — across two participant services, an inventory and a payment
// service, each guarding its handlers with the PostgreSQL saga barrier
// in its own transactions, with the orchestrator's log in PostgreSQL too.
//
// The barrier makes each participant exact under the network's three
// anomalies: a retried request does nothing twice, a compensation that
// overtakes its action does nothing and is recorded, and the action
// arriving after it is refused for good. The orchestrator survives a
// crash: at start it recovers every saga the log holds open.
//
//	go run ./examples/orders -dsn "$DATABASE_URL"
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/stores/postgres"
)

func main() {
	dsn := flag.String("dsn", os.Getenv("DATABASE_URL"), "PostgreSQL connection string")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	if err := run(ctx, pool, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// run starts the participants on loopback, runs a few orders and prints
// their outcomes and the final stock and balance.
func run(ctx context.Context, pool *pgxpool.Pool, out io.Writer) error {
	inv, pay, err := participants(ctx, pool)
	if err != nil {
		return err
	}
	var urls [2]string
	for i, h := range []http.Handler{inv, pay} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		urls[i] = "http://" + ln.Addr().String()
	}
	o, err := newOrchestrator(ctx, pool, http.DefaultClient, urls[0], urls[1])
	if err != nil {
		return err
	}
	defer o.Close(ctx)
	for i, ord := range []order{
		{Item: "book", Qty: 2, Account: "alice", Amount: 300},
		{Item: "book", Qty: 1, Account: "alice", Amount: 5000}, // declined: the stock is released
		{Item: "book", Qty: 50, Account: "alice", Amount: 10},  // out of stock
	} {
		outcome, err := o.Run(ctx, "order", fmt.Sprintf("order-%d-%d", time.Now().UnixNano(), i), ord.encode())
		fmt.Fprintf(out, "order %d (%d %s for %d): %v", i, ord.Qty, ord.Item, ord.Amount, outcome)
		if err != nil {
			fmt.Fprintf(out, " (%v)", err)
		}
		fmt.Fprintln(out)
	}
	var stock, balance int64
	if err := pool.QueryRow(ctx, "SELECT (SELECT n FROM stock WHERE item = 'book'), (SELECT balance FROM account WHERE id = 'alice')").Scan(&stock, &balance); err != nil {
		return err
	}
	fmt.Fprintf(out, "stock of book: %d, balance of alice: %d\n", stock, balance)
	return nil
}

const schema = `
CREATE TABLE IF NOT EXISTS stock (item text PRIMARY KEY, n bigint NOT NULL CHECK (n >= 0));
CREATE TABLE IF NOT EXISTS account (id text PRIMARY KEY, balance bigint NOT NULL CHECK (balance >= 0));
INSERT INTO stock VALUES ('book', 10) ON CONFLICT DO NOTHING;
INSERT INTO account VALUES ('alice', 1000) ON CONFLICT DO NOTHING`

// participants creates the schema, and returns the inventory and payment
// services. Each keeps its barrier under its own table prefix, as two
// services sharing a database would.
func participants(ctx context.Context, pool *pgxpool.Pool) (inventory, payments http.Handler, err error) {
	if _, err := pool.Exec(ctx, schema); err != nil {
		return nil, nil, fmt.Errorf("orders: schema: %w", err)
	}
	inv, err := newParticipant(ctx, pool, "inventory_",
		"UPDATE stock SET n = n - $2 WHERE item = $1 AND n >= $2",
		"UPDATE stock SET n = n + $2 WHERE item = $1")
	if err != nil {
		return nil, nil, err
	}
	pay, err := newParticipant(ctx, pool, "payments_",
		"UPDATE account SET balance = balance - $2 WHERE id = $1 AND balance >= $2",
		"UPDATE account SET balance = balance + $2 WHERE id = $1")
	if err != nil {
		return nil, nil, err
	}
	return inv, pay, nil
}

// request is what the orchestrator sends a participant.
type request struct {
	Key string `json:"key"` // the step's idempotency key
	ID  string `json:"id"`  // the item or the account
	N   int64  `json:"n"`   // the quantity or the amount
}

// participant serves POST /do, its action, and POST /undo, its
// compensation, each one SQL statement inside the barrier's transaction.
type participant struct {
	barrier  *postgres.Barrier
	do, undo string
}

// errDeclined: the action cannot take effect (no stock, no funds).
var errDeclined = errors.New("declined")

func newParticipant(ctx context.Context, pool *pgxpool.Pool, prefix, do, undo string) (http.Handler, error) {
	if err := postgres.MigratePrefix(ctx, pool, prefix); err != nil {
		return nil, err
	}
	b, err := postgres.NewBarrier(pool, postgres.BarrierConfig{Prefix: prefix})
	if err != nil {
		return nil, err
	}
	p := &participant{barrier: b, do: do, undo: undo}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /do", func(w http.ResponseWriter, r *http.Request) { p.serve(w, r, b.Action, p.do) })
	mux.HandleFunc("POST /undo", func(w http.ResponseWriter, r *http.Request) { p.serve(w, r, b.Compensate, p.undo) })
	return mux, nil
}

type barrierCall func(ctx context.Context, key string, fn func(ctx context.Context, tx pgx.Tx) error) error

func (p *participant) serve(w http.ResponseWriter, r *http.Request, call barrierCall, sql string) {
	var req request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&req); err != nil || req.Key == "" || req.N <= 0 || req.N > 1<<40 {
		http.Error(w, "want {key, id, n} with 0 < n <= 2^40", http.StatusBadRequest)
		return
	}
	err := call(r.Context(), req.Key, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, sql, req.ID, req.N)
		if err == nil && tag.RowsAffected() == 0 {
			return errDeclined
		}
		return err
	})
	switch {
	case err == nil:
		w.WriteHeader(http.StatusNoContent)
	case errors.Is(err, errDeclined):
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	case errors.Is(err, saga.ErrHanging):
		http.Error(w, err.Error(), http.StatusConflict)
	default:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// order is a saga's input.
type order struct {
	Item    string `json:"item"`
	Qty     int64  `json:"qty"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
}

func (o order) encode() []byte {
	b, _ := json.Marshal(o)
	return b
}

// newOrchestrator returns an orchestrator on a PostgreSQL log with the
// order saga registered, after recovering the sagas a crash left open.
func newOrchestrator(ctx context.Context, pool *pgxpool.Pool, client *http.Client, inventory, payments string) (*saga.Orchestrator, error) {
	if err := postgres.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	l, err := postgres.NewSagaLog(pool, postgres.SagaConfig{})
	if err != nil {
		return nil, err
	}
	o := saga.New(l, saga.Config{MaxConcurrent: 64})
	// call sends a step's request; a refusal is Permanent, anything else
	// that fails may be retried.
	call := func(url string, arg func(order) (string, int64)) func(ctx context.Context, x *saga.Exec) error {
		return func(ctx context.Context, x *saga.Exec) error {
			var ord order
			if err := json.Unmarshal(x.Input, &ord); err != nil {
				return saga.Permanent(err)
			}
			id, n := arg(ord)
			body, _ := json.Marshal(request{Key: x.IdempotencyKey(), ID: id, N: n})
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
			if err != nil {
				return saga.Permanent(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
			switch {
			case resp.StatusCode == http.StatusNoContent:
				return nil
			case resp.StatusCode < 500:
				return saga.Permanent(fmt.Errorf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(msg)))
			}
			return fmt.Errorf("%s: %d %s", url, resp.StatusCode, bytes.TrimSpace(msg))
		}
	}
	stock := func(o order) (string, int64) { return o.Item, o.Qty }
	money := func(o order) (string, int64) { return o.Account, o.Amount }
	retry := saga.RetryPolicy{MaxAttempts: 2, Initial: 10 * time.Millisecond}
	err = o.Register(saga.Definition{Name: "order", Steps: []saga.Step{
		{Name: "reserve", Do: call(inventory+"/do", stock), Undo: call(inventory+"/undo", stock), Retry: retry},
		{Name: "charge", Do: call(payments+"/do", money), Undo: call(payments+"/undo", money), Retry: retry},
		{Name: "ship", Do: func(context.Context, *saga.Exec) error { return nil }},
	}})
	if err != nil {
		return nil, err
	}
	if err := o.Recover(ctx); err != nil {
		return nil, err
	}
	return o, nil
}
