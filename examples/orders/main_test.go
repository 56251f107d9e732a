package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/stores/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

var ctx = context.Background()

func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(ctx, servertest.Postgres(t), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for i, want := range []string{": Committed", ": Compensated", ": Compensated", "stock of book: 8, balance of alice: 700"} {
		if i >= len(lines) || !strings.Contains(lines[i], want) {
			t.Fatalf("line %d of the output: want %q in\n%s", i, want, out.String())
		}
	}
}

// lossy delivers every request except the charges (the actions sent to
// host): it fails them as a lost connection would, and keeps the first
// one in flight, to be delivered later.
type lossy struct {
	host     string
	mu       sync.Mutex
	late     *http.Request
	lateBody []byte
}

func (l *lossy) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Host != l.host || r.URL.Path != "/do" {
		return http.DefaultTransport.RoundTrip(r)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.late == nil {
		body, _ := io.ReadAll(r.Body)
		l.late, l.lateBody = r.Clone(context.Background()), body
	}
	return nil, errors.New("connection reset by peer")
}

// TestLateAction: the charge request is lost on its way, the saga gives
// up and compensates, the refund reaches the payment service first and is
// a null compensation, and when the charge finally arrives it is refused:
// the account is never charged.
func TestLateAction(t *testing.T) {
	pool := servertest.Postgres(t)
	inv, pay, err := participants(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	invSrv, paySrv := httptest.NewServer(inv), httptest.NewServer(pay)
	defer invSrv.Close()
	defer paySrv.Close()
	net := &lossy{host: strings.TrimPrefix(paySrv.URL, "http://")}
	o, err := newOrchestrator(ctx, pool, &http.Client{Transport: net}, invSrv.URL, paySrv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(ctx)
	out, err := o.Run(ctx, "order", "late", order{Item: "book", Qty: 1, Account: "alice", Amount: 100}.encode())
	if out != saga.Compensated {
		t.Fatalf("Run = %v, %v; want Compensated", out, err)
	}
	if net.late == nil {
		t.Fatal("the charge was never sent")
	}
	assertStock(t, pool, 10, 1000)
	var origin int
	if err := pool.QueryRow(ctx, "SELECT origin FROM payments_saga_barrier WHERE key = 'late/charge' AND op = 1").Scan(&origin); err != nil || origin != 2 {
		t.Fatalf("the refund is not recorded as a null compensation: origin %d, %v", origin, err)
	}
	// The lost charge arrives now.
	late := net.late
	late.Body = io.NopCloser(bytes.NewReader(net.lateBody))
	late.RequestURI = ""
	resp, err := http.DefaultTransport.RoundTrip(late)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict {
		t.Fatalf("the late charge: %d, want 409 (refused: its compensation ran)", resp.StatusCode)
	}
	assertStock(t, pool, 10, 1000)
}

func assertStock(t *testing.T, pool *pgxpool.Pool, stock, balance int64) {
	t.Helper()
	var s, b int64
	if err := pool.QueryRow(ctx, "SELECT (SELECT n FROM stock WHERE item = 'book'), (SELECT balance FROM account WHERE id = 'alice')").Scan(&s, &b); err != nil {
		t.Fatal(err)
	}
	if s != stock || b != balance {
		t.Fatalf("stock %d, balance %d; want %d, %d", s, b, stock, balance)
	}
}
