package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/stores/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

type client struct {
	t   *testing.T
	url string
}

func (c client) do(method, path, key, body string) (int, string, http.Header) {
	c.t.Helper()
	r, err := http.NewRequest(method, c.url+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if key != "" {
		r.Header.Set(idempotency.KeyHeader, fmt.Sprintf("%q", key))
	}
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func (c client) account(id string) (balance, payments int64) {
	c.t.Helper()
	code, body, _ := c.do("GET", "/accounts/"+id, "", "")
	var a struct{ Balance, Payments int64 }
	if err := json.Unmarshal([]byte(body), &a); code != 200 || err != nil {
		c.t.Fatalf("GET account: %d %s", code, body)
	}
	return a.Balance, a.Payments
}

func TestPayments(t *testing.T) {
	h, err := newService(context.Background(), servertest.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	c := client{t, srv.URL}
	if code, body, _ := c.do("PUT", "/accounts/alice", "", `{"balance":1000}`); code != http.StatusNoContent {
		t.Fatalf("PUT account: %d %s", code, body)
	}

	// Twenty clients retry one payment at once: one debit, and every
	// answer is the payment, or "in progress, retry" while it runs.
	const pay = `{"account":"alice","amount":100}`
	var wg sync.WaitGroup
	var mu sync.Mutex
	bodies := map[string]int{}
	for range 20 {
		wg.Go(func() {
			code, body, _ := c.do("POST", "/payments", "k1", pay)
			switch code {
			case http.StatusCreated:
				mu.Lock()
				bodies[body]++
				mu.Unlock()
			case http.StatusConflict:
			default:
				t.Errorf("concurrent retry: %d %s", code, body)
			}
		})
	}
	wg.Wait()
	if len(bodies) != 1 {
		t.Fatalf("the retries got %d different payments: %v", len(bodies), bodies)
	}
	if bal, n := c.account("alice"); bal != 900 || n != 1 {
		t.Fatalf("after 20 retries: balance %d, %d payments; want 900, 1", bal, n)
	}

	// A later retry replays the first response.
	code, body, hdr := c.do("POST", "/payments", "k1", pay)
	if _, ok := bodies[body]; code != http.StatusCreated || !ok || hdr.Get(idempotency.ReplayedHeader) != "true" {
		t.Fatalf("replay: %d %q replayed=%q", code, body, hdr.Get(idempotency.ReplayedHeader))
	}
	// The key reused for another payment is refused.
	if code, _, _ := c.do("POST", "/payments", "k1", `{"account":"alice","amount":999}`); code != http.StatusUnprocessableEntity {
		t.Fatalf("key reused with another amount: %d, want 422", code)
	}
	// A declined payment is recorded too, and writes nothing.
	for range 2 {
		if code, _, _ := c.do("POST", "/payments", "k2", `{"account":"alice","amount":5000}`); code != http.StatusPaymentRequired {
			t.Fatalf("payment beyond the balance: %d, want 402", code)
		}
	}
	// Without a key there is no payment.
	if code, _, _ := c.do("POST", "/payments", "", pay); code != http.StatusBadRequest {
		t.Fatalf("payment without a key: %d, want 400", code)
	}
	if code, _, _ := c.do("POST", "/payments", "k3", `{"account":"alice","amount":-5}`); code != http.StatusBadRequest {
		t.Fatalf("negative amount: %d, want 400", code)
	}
	if bal, n := c.account("alice"); bal != 900 || n != 1 {
		t.Fatalf("balance %d, %d payments; want 900, 1", bal, n)
	}
}
