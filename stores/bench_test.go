package stores_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/stores/postgres"
	"github.com/distkit/distkit/stores/redis"
	"github.com/distkit/distkit/stores/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

var ctx = context.Background()

// concurrency is the numbers of concurrent clients (or sagas in flight)
// the benchmarks measure.
var concurrency = []int{1, 64}

// poolSize is the connections a benchmark's pool may open.
const poolSize = 32

func pool(b *testing.B) *pgxpool.Pool {
	p, err := pgxpool.New(ctx, fmt.Sprintf("%s pool_max_conns=%d", servertest.PostgresDSN(b), poolSize))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	if err := postgres.Migrate(ctx, p); err != nil {
		b.Fatal(err)
	}
	return p
}

// clients runs b.N operations from n goroutines and reports the
// throughput as unit/s and the 50th and 99th percentile latencies.
func clients(b *testing.B, n int, unit string, op func(i int) error) {
	var next atomic.Int64
	lat := make([][]time.Duration, n)
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	for c := range n {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.N {
					return
				}
				start := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					return
				}
				lat[c] = append(lat[c], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	all := slices.Sorted(slices.Values(slices.Concat(lat...)))
	if len(all) == 0 {
		return
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), unit+"/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkMiddleware measures idempotent requests, each with a new key,
// through idempotency.Middleware on each store: claim, handler, record.
// "postgres-atomic" is the Postgres Guard whose handler inserts a row in
// the transaction that records the response.
func BenchmarkMiddleware(b *testing.B) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":"pay_1","amount":1000}`))
	})
	opts := idempotency.MiddlewareOptions{GlobalScope: true}
	stores := []struct {
		name    string
		handler func(b *testing.B) http.Handler
	}{
		{"mem", func(b *testing.B) http.Handler {
			return idempotency.Middleware(idempotency.New(&idempotency.MemStore{}, idempotency.Config{}), opts)(ok)
		}},
		{"postgres", func(b *testing.B) http.Handler {
			s, err := postgres.NewIdempotencyStore(pool(b), postgres.IdempotencyConfig{})
			if err != nil {
				b.Fatal(err)
			}
			return idempotency.Middleware(idempotency.New(s, idempotency.Config{}), opts)(ok)
		}},
		{"postgres-atomic", func(b *testing.B) http.Handler {
			p := pool(b)
			if _, err := p.Exec(ctx, "CREATE TABLE payment (key text PRIMARY KEY, amount int)"); err != nil {
				b.Fatal(err)
			}
			s, err := postgres.NewIdempotencyStore(p, postgres.IdempotencyConfig{})
			if err != nil {
				b.Fatal(err)
			}
			return postgres.NewGuard(s, idempotency.Config{}).Middleware(opts)(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					tx, err := postgres.Tx(r.Context())
					if err == nil {
						_, err = tx.Exec(r.Context(), "INSERT INTO payment VALUES ($1, 1000)", r.Header.Get(idempotency.KeyHeader))
					}
					if err != nil {
						http.Error(w, err.Error(), http.StatusInternalServerError)
						return
					}
					ok(w, r)
				}))
		}},
		{"redis", func(b *testing.B) http.Handler {
			s := redis.New(servertest.Redis(b), redis.Config{})
			return idempotency.Middleware(idempotency.New(s, idempotency.Config{}), opts)(ok)
		}},
	}
	for _, st := range stores {
		h := st.handler(b) // shared by the runs, each with keys of its own
		for _, n := range concurrency {
			b.Run(fmt.Sprintf("%s/clients=%d", st.name, n), func(b *testing.B) {
				run := fmt.Sprint(time.Now().UnixNano()) // fresh keys for every run of b.N
				clients(b, n, "req", func(i int) error {
					r := httptest.NewRequest(http.MethodPost, "/payments", strings.NewReader(`{"amount":1000}`))
					r.Header.Set(idempotency.KeyHeader, fmt.Sprintf("%q", fmt.Sprint(run, "-", i)))
					w := httptest.NewRecorder()
					h.ServeHTTP(w, r)
					if w.Code != http.StatusCreated {
						return fmt.Errorf("status %d: %s", w.Code, w.Body)
					}
					return nil
				})
			})
		}
	}
}

// BenchmarkSaga measures sagas of three no-op steps run to Committed,
// with n in flight, on each durable log.
func BenchmarkSaga(b *testing.B) {
	noop := func(context.Context, *saga.Exec) error { return nil }
	def := saga.Definition{Name: "noop", Steps: []saga.Step{
		{Name: "a", Do: noop, Undo: noop}, {Name: "b", Do: noop, Undo: noop}, {Name: "c", Do: noop, Undo: noop},
	}}
	logs := []struct {
		name string
		open func(b *testing.B) saga.Log
	}{
		{"filelog", func(b *testing.B) saga.Log {
			l, err := saga.OpenFileLog(filepath.Join(b.TempDir(), "saga.log"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			return l
		}},
		{"postgres", func(b *testing.B) saga.Log {
			l, err := postgres.NewSagaLog(pool(b), postgres.SagaConfig{})
			if err != nil {
				b.Fatal(err)
			}
			return l
		}},
	}
	for _, lg := range logs {
		o := saga.New(lg.open(b), saga.Config{}) // shared by the runs, each with saga IDs of its own
		if err := o.Register(def); err != nil {
			b.Fatal(err)
		}
		for _, n := range concurrency {
			b.Run(fmt.Sprintf("%s/inflight=%d", lg.name, n), func(b *testing.B) {
				run := fmt.Sprint(time.Now().UnixNano())
				clients(b, n, "sagas", func(i int) error {
					out, err := o.Run(ctx, def.Name, fmt.Sprint(run, "-", i), nil)
					if err != nil || out != saga.Committed {
						return fmt.Errorf("saga: %v, %v", out, err)
					}
					return nil
				})
			})
		}
	}
}

// BenchmarkCommit measures the floor under every durable Postgres
// operation above: one autocommitted single-row INSERT (one WAL flush),
// at 1 and 64 concurrent clients.
func BenchmarkCommit(b *testing.B) {
	p := pool(b)
	if _, err := p.Exec(ctx, "CREATE TABLE floor (x bigint)"); err != nil {
		b.Fatal(err)
	}
	for _, n := range concurrency {
		b.Run(fmt.Sprintf("postgres/clients=%d", n), func(b *testing.B) {
			clients(b, n, "commits", func(i int) error {
				_, err := p.Exec(ctx, "INSERT INTO floor VALUES ($1)", i)
				return err
			})
		})
	}
}
