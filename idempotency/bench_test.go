package idempotency_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
)

var benchResult = []byte(`{"id":"ch_1","amount":1000,"currency":"eur"}`)

func benchFn(context.Context) ([]byte, error) { return benchResult, nil }

// keyPool holds distinct keys; cycling through it with a clock that jumps
// past the retention after each round keeps every key fresh.
type keyPool struct {
	keys  []string
	next  atomic.Int64
	clock *clocktest.Manual
}

func newKeyPool(n int, clk *clocktest.Manual) *keyPool {
	p := &keyPool{keys: make([]string, n), clock: clk}
	for i := range p.keys {
		p.keys[i] = fmt.Sprintf("key-%08d", i)
	}
	return p
}

func (p *keyPool) key() (int, string) {
	i := int(p.next.Add(1) - 1)
	if i%len(p.keys) == 0 {
		p.clock.Advance(2 * time.Second)
	}
	return i % len(p.keys), p.keys[i%len(p.keys)]
}

func benchGuard() (*idempotency.Guard, *clocktest.Manual) {
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk}
	return idempotency.New(s, idempotency.Config{Lock: time.Second, Retain: time.Second, Clock: clk}), clk
}

func BenchmarkGuardDo(b *testing.B) {
	fp := []byte("fingerprint")
	b.Run("Fresh", func(b *testing.B) {
		g, clk := benchGuard()
		keys := newKeyPool(1<<14, clk)
		b.ReportAllocs()
		for b.Loop() {
			_, k := keys.key()
			if _, err := g.Do(bg, k, fp, benchFn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Replay", func(b *testing.B) {
		g, _ := benchGuard()
		if _, err := g.Do(bg, "k", fp, benchFn); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := g.Do(bg, "k", fp, benchFn); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("FreshParallel", func(b *testing.B) {
		g, clk := benchGuard()
		keys := newKeyPool(1<<16, clk)
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, k := keys.key()
				_, _ = g.Do(bg, k, fp, benchFn) // a key may meet the clock jump: any answer will do
			}
		})
	})
	b.Run("ReplayParallel", func(b *testing.B) {
		g, _ := benchGuard()
		for i := range 64 {
			if _, err := g.Do(bg, fmt.Sprint("k", i), fp, benchFn); err != nil {
				b.Fatal(err)
			}
		}
		var next atomic.Int64
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			k := fmt.Sprint("k", next.Add(1)%64) // one key per goroutine, as retries of different clients
			for pb.Next() {
				if _, err := g.Do(bg, k, fp, benchFn); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// benchBody is a resettable request body.
type benchBody struct{ bytes.Reader }

func (*benchBody) Close() error { return nil }

// discard is a ResponseWriter that keeps nothing but its header map.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }

func created(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/charges/ch_1")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(benchResult)
}

// benchOptions scope keys by an account, as an API would by its
// authenticated principal.
var benchOptions = idempotency.MiddlewareOptions{Scope: func(*http.Request) string { return "acct_1MqLrb2eZvKYlo2C" }}

// BenchmarkMiddleware measures the overhead per request over the bare
// handler: a first request (claim, run, record) and a replay.
func BenchmarkMiddleware(b *testing.B) {
	payload := []byte(`{"amount":1000,"currency":"eur","source":"tok_visa"}`)
	run := func(b *testing.B, h http.Handler, key func() []string) {
		r := httptest.NewRequest("POST", "/charges", nil)
		body := &benchBody{}
		w := &discard{h: http.Header{}}
		b.ReportAllocs()
		for b.Loop() {
			body.Reset(payload)
			r.Body = body
			r.Header[idempotency.KeyHeader] = key()
			clear(w.h)
			h.ServeHTTP(w, r)
		}
	}
	fixed := []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`}
	b.Run("Bare", func(b *testing.B) {
		run(b, http.HandlerFunc(created), func() []string { return fixed })
	})
	b.Run("Fresh", func(b *testing.B) {
		g, clk := benchGuard()
		keys := newKeyPool(1<<14, clk)
		quoted := make([][]string, len(keys.keys))
		for i, k := range keys.keys {
			quoted[i] = []string{`"` + k + `"`}
		}
		run(b, idempotency.Middleware(g, benchOptions)(http.HandlerFunc(created)),
			func() []string { i, _ := keys.key(); return quoted[i] })
	})
	b.Run("Replay", func(b *testing.B) {
		g, _ := benchGuard()
		run(b, idempotency.Middleware(g, benchOptions)(http.HandlerFunc(created)),
			func() []string { return fixed })
	})
}
