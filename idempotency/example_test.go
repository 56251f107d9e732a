package idempotency_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
)

// A payment runs once however often the client retries it.
func ExampleGuard_Do() {
	guard := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	charges := 0
	charge := func(context.Context) ([]byte, error) {
		charges++
		return []byte(fmt.Sprintf("charge #%d", charges)), nil
	}
	ctx := context.Background()
	for range 3 {
		out, err := guard.Do(ctx, "order-42", []byte("EUR 10"), charge)
		fmt.Println(string(out), err)
	}
	_, err := guard.Do(ctx, "order-42", []byte("EUR 99"), charge)
	fmt.Println(err)
	// Output:
	// charge #1 <nil>
	// charge #1 <nil>
	// charge #1 <nil>
	// idempotency: key reused with a different payload
}

// A declined card is an outcome and is replayed; a timeout talking to the
// bank is not, so the retry runs again.
func ExampleRetryable() {
	guard := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	ctx := context.Background()
	attempts := 0
	pay := func(context.Context) ([]byte, error) {
		attempts++
		if attempts == 1 {
			return nil, idempotency.Retryable(errors.New("bank timeout"))
		}
		return nil, errors.New("card declined")
	}
	for range 3 {
		_, err := guard.Do(ctx, "order-7", nil, pay)
		var stored *idempotency.StoredError
		fmt.Printf("%v (replayed: %t)\n", err, errors.As(err, &stored))
	}
	fmt.Println("attempts:", attempts)
	// Output:
	// bank timeout (replayed: false)
	// card declined (replayed: false)
	// card declined (replayed: true)
	// attempts: 2
}

// An executor crashed holding the key; once its lock lapses the key is
// taken over.
func ExampleMemStore_takeover() {
	clk := clocktest.NewManual(time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC))
	store := &idempotency.MemStore{Clock: clk}
	ctx := context.Background()
	crashed, _, _ := store.Claim(ctx, "k", nil, time.Minute) // and then the process died

	_, rec, _ := store.Claim(ctx, "k", nil, time.Minute)
	fmt.Println(rec.State, rec.LockedUntil.Format(time.TimeOnly), rec.Token == crashed)
	clk.Advance(time.Minute)
	token, rec, _ := store.Claim(ctx, "k", nil, time.Minute)
	fmt.Println(rec == nil, token > crashed)
	// The crashed executor wakes up: its token no longer names the claim.
	err := store.Complete(ctx, "k", crashed, []byte("late"), time.Hour)
	fmt.Println(errors.Is(err, idempotency.ErrNotClaimed))
	// Output:
	// InProgress 12:01:00 true
	// true true
	// true
}

func ExampleMiddleware() {
	guard := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	created := 0
	api := idempotency.Middleware(guard, idempotency.MiddlewareOptions{
		// The authenticated principal; here a header stands in for it.
		Scope: func(r *http.Request) string { return r.Header.Get("X-Account") },
	})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		created++
		w.Header().Set("Location", fmt.Sprintf("/orders/%d", created))
		w.WriteHeader(http.StatusCreated)
	}))
	send := func(account, key, body string) {
		r := httptest.NewRequest("POST", "/orders", strings.NewReader(body))
		r.Header.Set("X-Account", account)
		if key != "" {
			r.Header.Set("Idempotency-Key", key)
		}
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		fmt.Printf("%d location=%q replayed=%q\n", w.Code, w.Header().Get("Location"), w.Header().Get("Idempotent-Replayed"))
	}
	send("acct_1", `"a1b2c3"`, `{"item":1}`)
	send("acct_1", `"a1b2c3"`, `{"item":1}`) // the retry
	send("acct_1", `"a1b2c3"`, `{"item":2}`) // the key reused for another order
	send("acct_2", `"a1b2c3"`, `{"item":1}`) // another account's key
	send("acct_1", "", `{"item":1}`)
	// Output:
	// 201 location="/orders/1" replayed=""
	// 201 location="/orders/1" replayed="true"
	// 422 location="" replayed=""
	// 201 location="/orders/2" replayed=""
	// 400 location="" replayed=""
}

// A failure registered under a code is still that failure when it is
// replayed, here by another Guard (another process) over the same store.
func ExampleConfig_errors() {
	var ErrDeclined = errors.New("card declined")
	store := &idempotency.MemStore{}
	cfg := idempotency.Config{Errors: map[string]error{"card_declined": ErrDeclined}}
	charge := func(context.Context) ([]byte, error) { return nil, fmt.Errorf("charge ch_1: %w", ErrDeclined) }

	_, err := idempotency.New(store, cfg).Do(context.Background(), "k", nil, charge)
	fmt.Println(err, errors.Is(err, ErrDeclined))
	_, err = idempotency.New(store, cfg).Do(context.Background(), "k", nil, charge)
	stored, _ := errors.AsType[*idempotency.StoredError](err)
	fmt.Println(err, errors.Is(err, ErrDeclined), stored.Code)
	// Output:
	// charge ch_1: card declined true
	// charge ch_1: card declined true card_declined
}
