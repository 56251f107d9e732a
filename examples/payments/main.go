// Command payments is a small payment API on PostgreSQL whose
// POST /payments is idempotent in the strongest sense: the debit, the
// payment row and the recorded response commit in one transaction
// (brandur's atomic phases), behind the IETF Idempotency-Key middleware.
// A client may retry a payment as often as it likes, concurrently, across
// a crash of the server or of the database connection: the account is
// debited once, and every retry gets the first response back.
//
//	go run ./examples/payments -dsn "$DATABASE_URL" -listen 127.0.0.1:8080
//	curl -X PUT -d '{"balance":1000}' http://127.0.0.1:8080/accounts/alice
//	curl -X POST -H 'Idempotency-Key: "k1"' -d '{"account":"alice","amount":100}' http://127.0.0.1:8080/payments
//	curl http://127.0.0.1:8080/accounts/alice
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/stores/postgres"
)

func main() {
	dsn := flag.String("dsn", os.Getenv("DATABASE_URL"), "PostgreSQL connection string")
	listen := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	flag.Parse()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, *dsn)
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	h, err := newService(ctx, pool)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("payments: serving on %s", *listen)
	srv := &http.Server{Addr: *listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}

const schema = `
CREATE TABLE IF NOT EXISTS account (
	id      text   PRIMARY KEY,
	balance bigint NOT NULL CHECK (balance >= 0)
);
CREATE TABLE IF NOT EXISTS payment (
	id      bigserial PRIMARY KEY,
	account text      NOT NULL REFERENCES account,
	amount  bigint    NOT NULL CHECK (amount > 0)
)`

// maxAmount bounds a payment, so no sum can overflow.
const maxAmount = 1 << 40

type service struct{ pool *pgxpool.Pool }

// newService creates the schema and returns the API's handler.
func newService(ctx context.Context, pool *pgxpool.Pool) (http.Handler, error) {
	if err := postgres.Migrate(ctx, pool); err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		return nil, fmt.Errorf("payments: schema: %w", err)
	}
	store, err := postgres.NewIdempotencyStore(pool, postgres.IdempotencyConfig{})
	if err != nil {
		return nil, err
	}
	g := postgres.NewGuard(store, idempotency.Config{Lock: 30 * time.Second})
	s := &service{pool: pool}
	mux := http.NewServeMux()
	mux.Handle("POST /payments", g.Middleware(idempotency.MiddlewareOptions{
		MaxBody: 4 << 10,
		// One tenant: every client may replay any key. An API with
		// several clients scopes keys by the authenticated client.
		GlobalScope: true,
	})(http.HandlerFunc(s.pay)))
	mux.HandleFunc("PUT /accounts/{id}", s.open)
	mux.HandleFunc("GET /accounts/{id}", s.account)
	return mux, nil
}

type payment struct {
	ID      int64  `json:"id,omitempty"`
	Account string `json:"account"`
	Amount  int64  `json:"amount"`
	Balance int64  `json:"balance"` // the account's balance after the payment
}

// pay debits the account and records the payment, in the transaction of
// the request's atomic phase: they commit with the recorded response.
func (s *service) pay(w http.ResponseWriter, r *http.Request) {
	var p payment
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil || p.Account == "" || p.Amount <= 0 || p.Amount > maxAmount {
		http.Error(w, "want {account, amount} with 0 < amount <= 2^40", http.StatusBadRequest)
		return
	}
	tx, err := postgres.Tx(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	err = tx.QueryRow(r.Context(),
		"UPDATE account SET balance = balance - $2 WHERE id = $1 AND balance >= $2 RETURNING balance",
		p.Account, p.Amount).Scan(&p.Balance)
	if errors.Is(err, pgx.ErrNoRows) {
		// Recorded and replayed like any 4xx; nothing was written.
		http.Error(w, "no such account, or insufficient funds", http.StatusPaymentRequired)
		return
	}
	if err == nil {
		err = tx.QueryRow(r.Context(), "INSERT INTO payment (account, amount) VALUES ($1, $2) RETURNING id",
			p.Account, p.Amount).Scan(&p.ID)
	}
	if err != nil { // a 5xx is not recorded: the transaction rolls back and a retry runs again
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(p)
}

// open creates or resets an account (for the demo: no idempotency needed,
// a PUT is idempotent by itself).
func (s *service) open(w http.ResponseWriter, r *http.Request) {
	var a struct{ Balance int64 }
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&a); err != nil || a.Balance < 0 || a.Balance > maxAmount {
		http.Error(w, "want {balance} with 0 <= balance <= 2^40", http.StatusBadRequest)
		return
	}
	_, err := s.pool.Exec(r.Context(),
		"INSERT INTO account VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET balance = excluded.balance", r.PathValue("id"), a.Balance)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *service) account(w http.ResponseWriter, r *http.Request) {
	var a struct {
		Balance  int64 `json:"balance"`
		Payments int64 `json:"payments"`
	}
	err := s.pool.QueryRow(r.Context(),
		"SELECT balance, (SELECT count(*) FROM payment WHERE account = $1) FROM account WHERE id = $1",
		r.PathValue("id")).Scan(&a.Balance, &a.Payments)
	if errors.Is(err, pgx.ErrNoRows) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(a)
}
