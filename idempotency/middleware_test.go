package idempotency_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
)

// createHandler is an API endpoint that creates a resource per execution.
type createHandler struct {
	runs   atomic.Int32
	status int // 0: 201
}

func (h *createHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.runs.Add(1)
	body, _ := io.ReadAll(r.Body)
	status := h.status
	if status == 0 {
		status = http.StatusCreated
	}
	w.Header().Set("Location", fmt.Sprintf("/things/%d", n))
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(status)
	fmt.Fprintf(w, "created %d from %s", n, body)
}

type api struct {
	handler http.Handler
	create  *createHandler
	store   *idempotency.MemStore
	clock   *clocktest.Manual
}

func newAPI(opts idempotency.MiddlewareOptions) *api {
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk}
	return newAPIOn(s, clk, opts)
}

func newAPIOn(s *idempotency.MemStore, clk *clocktest.Manual, opts idempotency.MiddlewareOptions) *api {
	g := idempotency.New(s, idempotency.Config{Lock: time.Minute, Retain: 24 * time.Hour, Clock: clk})
	h := &createHandler{}
	mux := http.NewServeMux()
	mux.Handle("/things", h)
	mux.Handle("/other", h)
	if opts.Scope == nil {
		opts.GlobalScope = true
	}
	return &api{handler: idempotency.Middleware(g, opts)(mux), create: h, store: s, clock: clk}
}

// do sends a request; key "" sends no Idempotency-Key field.
func (a *api) do(method, path, key, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if key != "" {
		r.Header.Set(idempotency.KeyHeader, key)
	}
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	return w
}

type problem struct {
	Type, Title, Detail string
	Status              int
}

func requireProblem(t *testing.T, w *httptest.ResponseRecorder, status int) problem {
	t.Helper()
	require.Equal(t, status, w.Code, w.Body.String())
	require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
	var p problem
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &p))
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Type)
	require.NotEmpty(t, p.Title)
	require.NotEmpty(t, p.Detail)
	return p
}

func TestMiddlewareDraftStatusCodes(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{ProblemType: "https://api.example.com/docs/idempotency"})

	p := requireProblem(t, a.do("POST", "/things", "", "x"), http.StatusBadRequest)
	require.Equal(t, "https://api.example.com/docs/idempotency", p.Type)
	require.Equal(t, "Idempotency-Key is missing", p.Title)

	first := a.do("POST", "/things", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "x")
	require.Equal(t, http.StatusCreated, first.Code)
	require.Equal(t, "/things/1", first.Header().Get("Location"))
	require.Equal(t, "created 1 from x", first.Body.String())
	require.Empty(t, first.Header().Get(idempotency.ReplayedHeader))

	// The retry, quoted or bare, replays status, fields and body.
	for _, key := range []string{`"8e03978e-40d5-43e8-bc93-6894a57f9324"`, `8e03978e-40d5-43e8-bc93-6894a57f9324`} {
		again := a.do("POST", "/things", key, "x")
		require.Equal(t, http.StatusCreated, again.Code)
		require.Equal(t, "/things/1", again.Header().Get("Location"))
		require.Equal(t, "text/plain", again.Header().Get("Content-Type"))
		require.Equal(t, "created 1 from x", again.Body.String())
		require.Equal(t, "true", again.Header().Get(idempotency.ReplayedHeader))
	}
	require.EqualValues(t, 1, a.create.runs.Load())

	// Reuse with another payload: 422, for the body, the path or the method.
	p = requireProblem(t, a.do("POST", "/things", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "y"), http.StatusUnprocessableEntity)
	require.Equal(t, "Idempotency-Key is already used", p.Title)
	require.Contains(t, p.Detail, "24h0m0s", "the expiry policy is published")
	requireProblem(t, a.do("POST", "/other", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "x"), http.StatusUnprocessableEntity)
	requireProblem(t, a.do("PATCH", "/things", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "x"), http.StatusUnprocessableEntity)
	requireProblem(t, a.do("POST", "/things?x=1", `"8e03978e-40d5-43e8-bc93-6894a57f9324"`, "x"), http.StatusUnprocessableEntity)
	require.EqualValues(t, 1, a.create.runs.Load())

	// Methods other than POST and PATCH pass through, key or not.
	require.Equal(t, http.StatusCreated, a.do("PUT", "/things", "", "z").Code)
	require.Equal(t, http.StatusCreated, a.do("PUT", "/things", `"k"`, "z").Code)
	require.EqualValues(t, 3, a.create.runs.Load())

	// A different key is a different operation.
	require.Equal(t, "created 4 from x", a.do("POST", "/things", `"other"`, "x").Body.String())
}

func TestMiddlewareMalformedKeys(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{GlobalScope: true})
	for _, key := range []string{`""`, `"unterminated`, `"bad \x escape"`, `"a" "b"`, `"a", "b"`, `a b`, `"x";A=1`, `(paren)`, `"` + strings.Repeat("k", 256) + `"`,
		"\"ctl\x01\"", "\"tab\there\"", "\"del\x7f\"", "nul\x00"} {
		p := requireProblem(t, a.do("POST", "/things", key, "x"), http.StatusBadRequest)
		require.Equal(t, "about:blank", p.Type)
		require.Equal(t, "Bad Request", p.Title, "about:blank takes the status text")
	}
	// Two fields.
	r := httptest.NewRequest("POST", "/things", strings.NewReader("x"))
	r.Header.Add(idempotency.KeyHeader, `"a"`)
	r.Header.Add(idempotency.KeyHeader, `"a"`)
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	requireProblem(t, w, http.StatusBadRequest)
	require.EqualValues(t, 0, a.create.runs.Load())
	// 255 bytes is fine.
	require.Equal(t, http.StatusCreated, a.do("POST", "/things", strings.Repeat("k", 255), "x").Code)
}

func TestMiddlewareBodyLimit(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{MaxBody: 10})
	requireProblem(t, a.do("POST", "/things", `"k"`, strings.Repeat("b", 11)), http.StatusRequestEntityTooLarge)
	// Without a declared length too.
	r := httptest.NewRequest("POST", "/things", io.MultiReader(strings.NewReader(strings.Repeat("b", 11))))
	r.ContentLength = -1
	r.Header.Set(idempotency.KeyHeader, `"k"`)
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	requireProblem(t, w, http.StatusRequestEntityTooLarge)
	require.Equal(t, http.StatusCreated, a.do("POST", "/things", `"k"`, strings.Repeat("b", 10)).Code)
}

// TestMiddlewareInProgress: two processes share the store; a retry that
// reaches the second while the first still runs gets 409, and the replay
// once it finished.
func TestMiddlewareInProgress(t *testing.T) {
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk}
	blocking := newAPIOn(s, clk, idempotency.MiddlewareOptions{GlobalScope: true})
	other := newAPIOn(s, clk, idempotency.MiddlewareOptions{GlobalScope: true})
	started, finish := make(chan struct{}), make(chan struct{})
	inner := blocking.create
	blocking.handler = idempotency.Middleware(idempotency.New(s, idempotency.Config{Clock: clk}), idempotency.MiddlewareOptions{GlobalScope: true})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-finish
			inner.ServeHTTP(w, r)
		}))
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- blocking.do("POST", "/things", `"k"`, "x") }()
	<-started
	w := other.do("POST", "/things", `"k"`, "x")
	p := requireProblem(t, w, http.StatusConflict)
	require.Equal(t, "Conflict", p.Title)
	require.Equal(t, "1", w.Header().Get("Retry-After"))
	close(finish)
	require.Equal(t, http.StatusCreated, (<-done).Code)
	replay := other.do("POST", "/things", `"k"`, "x")
	require.Equal(t, "true", replay.Header().Get(idempotency.ReplayedHeader))
	require.Equal(t, "created 1 from x", replay.Body.String())
	require.EqualValues(t, 0, other.create.runs.Load())
}

// TestMiddlewareCrashTakeover: the first process hangs (or died) holding
// the claim; after its lock lapses a retry elsewhere takes the key over.
func TestMiddlewareCrashTakeover(t *testing.T) {
	clk := clocktest.NewManual(t0)
	s := &idempotency.MemStore{Clock: clk}
	started, finish := make(chan struct{}), make(chan struct{})
	hung := idempotency.Middleware(idempotency.New(s, idempotency.Config{Lock: time.Minute, Clock: clk}), idempotency.MiddlewareOptions{GlobalScope: true})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			close(started)
			<-finish
			w.WriteHeader(http.StatusCreated)
		}))
	done := make(chan int)
	go func() {
		w := httptest.NewRecorder()
		hung.ServeHTTP(w, keyed("x"))
		done <- w.Code
	}()
	<-started
	healthy := newAPIOn(s, clk, idempotency.MiddlewareOptions{GlobalScope: true})
	requireProblem(t, healthy.do("POST", "/things", `"k"`, "x"), http.StatusConflict)
	clk.Advance(time.Minute)
	w := healthy.do("POST", "/things", `"k"`, "x")
	require.Equal(t, http.StatusCreated, w.Code)
	require.Equal(t, "created 1 from x", w.Body.String())
	// The hung process wakes up: its client gets its answer, but the
	// record stays the new owner's.
	close(finish)
	require.Equal(t, http.StatusCreated, <-done)
	require.Equal(t, "created 1 from x", healthy.do("POST", "/things", `"k"`, "x").Body.String())
}

func keyed(body string) *http.Request {
	r := httptest.NewRequest("POST", "/things", strings.NewReader(body))
	r.Header.Set(idempotency.KeyHeader, `"k"`)
	return r
}

// TestMiddlewareServerErrorsNotRecorded: a 5xx releases the key so the
// client's retry runs the handler again; a 4xx is the outcome and is
// replayed.
func TestMiddlewareServerErrorsNotRecorded(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{GlobalScope: true})
	a.create.status = http.StatusServiceUnavailable
	require.Equal(t, http.StatusServiceUnavailable, a.do("POST", "/things", `"k"`, "x").Code)
	a.create.status = http.StatusTooManyRequests
	require.Equal(t, http.StatusTooManyRequests, a.do("POST", "/things", `"k"`, "x").Code)
	a.create.status = 0
	require.Equal(t, "created 3 from x", a.do("POST", "/things", `"k"`, "x").Body.String())

	a.create.status = http.StatusBadRequest
	require.Equal(t, http.StatusBadRequest, a.do("POST", "/things", `"k2"`, "x").Code)
	a.create.status = 0
	w := a.do("POST", "/things", `"k2"`, "x")
	require.Equal(t, http.StatusBadRequest, w.Code)
	require.Equal(t, "true", w.Header().Get(idempotency.ReplayedHeader))
	require.EqualValues(t, 4, a.create.runs.Load())

	// A custom policy records everything.
	a = newAPI(idempotency.MiddlewareOptions{Retryable: func(int) bool { return false }})
	a.create.status = http.StatusInternalServerError
	a.do("POST", "/things", `"k"`, "x")
	require.Equal(t, "true", a.do("POST", "/things", `"k"`, "x").Header().Get(idempotency.ReplayedHeader))
}

// TestMiddlewareConcurrentDuplicates: duplicates arriving together at one
// process share one execution; all but one are marked replays.
// duplicates sends n concurrent requests with one key through a
// middleware on g with opts, to a handler that runs until all of them are
// in, and returns their responses.
func duplicates(t *testing.T, g *idempotency.Guard, opts idempotency.MiddlewareOptions, n int) []*httptest.ResponseRecorder {
	var runs atomic.Int32
	release := make(chan struct{})
	h := idempotency.Middleware(g, opts)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		<-release
		w.Header().Set("Location", "/things/1")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "one")
	}))
	recs, wait := serveConcurrently(h, n)
	synctest.Wait()
	close(release)
	wait()
	require.EqualValues(t, 1, runs.Load())
	return recs
}

// TestMiddlewareConcurrentConflict: by default a duplicate that arrives
// while the first request runs in this process gets 409 with
// Retry-After, as it would from another process.
func TestMiddlewareConcurrentConflict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
		created := 0
		for _, w := range duplicates(t, g, idempotency.MiddlewareOptions{GlobalScope: true, RetryAfter: 1500 * time.Millisecond}, 8) {
			if w.Code == http.StatusCreated {
				created++
				continue
			}
			requireProblem(t, w, http.StatusConflict)
			require.Equal(t, "2", w.Header().Get("Retry-After"), "1.5s rounds up")
		}
		require.Equal(t, 1, created)
	})
}

// TestMiddlewareConcurrentDuplicates: with Config.Wait, duplicates in
// this process wait for the first request and replay its response.
func TestMiddlewareConcurrentDuplicates(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Wait: true})
		const n = 8
		replays := 0
		for _, w := range duplicates(t, g, idempotency.MiddlewareOptions{GlobalScope: true}, n) {
			require.Equal(t, http.StatusCreated, w.Code)
			require.Equal(t, "one", w.Body.String())
			require.Equal(t, "/things/1", w.Header().Get("Location"))
			if w.Header().Get(idempotency.ReplayedHeader) == "true" {
				replays++
			}
		}
		require.Equal(t, n-1, replays)
	})
}

func TestMiddlewareConcurrentDuplicatesLockLapsed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clk := clocktest.NewManual(t0)
		g := idempotency.New(&idempotency.MemStore{Clock: clk}, idempotency.Config{Lock: time.Minute, Clock: clk, Wait: true})
		var runs atomic.Int32
		release := make(chan struct{})
		h := idempotency.Middleware(g, idempotency.MiddlewareOptions{GlobalScope: true})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			runs.Add(1)
			<-release
			w.WriteHeader(http.StatusCreated)
			_, _ = io.WriteString(w, "one")
		}))
		const n = 4
		recs, wait := serveConcurrently(h, n)
		synctest.Wait()
		clk.Advance(time.Minute) // the lock lapses while the handler runs
		close(release)
		wait()
		require.EqualValues(t, 1, runs.Load())
		for i, w := range recs {
			require.Equal(t, http.StatusCreated, w.Code, "request %d: %s", i, w.Body)
			require.Equal(t, "one", w.Body.String())
		}
	})
}

func TestMiddlewareRetention(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{GlobalScope: true})
	a.do("POST", "/things", `"k"`, "x")
	a.clock.Advance(24*time.Hour - time.Second)
	require.Equal(t, "true", a.do("POST", "/things", `"k"`, "x").Header().Get(idempotency.ReplayedHeader))
	a.clock.Advance(time.Second)
	w := a.do("POST", "/things", `"k"`, "y") // forgotten: reusable, even for another payload
	require.Equal(t, "created 2 from y", w.Body.String())
	require.Empty(t, w.Header().Get(idempotency.ReplayedHeader))
}

func TestMiddlewareOptions(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{
		Optional: true,
		Methods:  []string{"PUT"},
		Scope:    func(r *http.Request) string { return r.Header.Get("Tenant") },
		Fingerprint: func(r *http.Request, body []byte) []byte {
			return []byte(strings.ToLower(string(body))) // case-insensitive payloads
		},
	})
	require.Equal(t, http.StatusCreated, a.do("PUT", "/things", "", "x").Code, "optional key")
	require.Equal(t, http.StatusCreated, a.do("POST", "/things", "", "x").Code, "POST not guarded")
	send := func(tenant, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest("PUT", "/things", strings.NewReader(body))
		r.Header.Set(idempotency.KeyHeader, `"k"`)
		r.Header.Set("Tenant", tenant)
		w := httptest.NewRecorder()
		a.handler.ServeHTTP(w, r)
		return w
	}
	require.Equal(t, "created 3 from x", send("acme", "x").Body.String())
	require.Equal(t, "created 3 from x", send("acme", "X").Body.String(), "same fingerprint: replay")
	require.Equal(t, "created 4 from x", send("globex", "x").Body.String(), "another tenant's key")
}

// TestMiddlewareRecorder: the buffered writer behaves as net/http's does.
func TestMiddlewareRecorder(t *testing.T) {
	g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	h := idempotency.Middleware(g, idempotency.MiddlewareOptions{GlobalScope: true})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("A", "1")
		w.WriteHeader(http.StatusEarlyHints) // dropped
		_, _ = io.WriteString(w, "implicit 200")
		w.Header().Set("B", "too late")
		w.WriteHeader(http.StatusTeapot) // superfluous
	}))
	for _, replayed := range []string{"", "true"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, keyed("x"))
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, "1", w.Header().Get("A"))
		require.Empty(t, w.Header().Get("B"))
		require.Equal(t, "implicit 200", w.Body.String())
		require.Equal(t, replayed, w.Header().Get(idempotency.ReplayedHeader))
	}
}

// TestMiddlewareUnsendableHeaders: header fields that net/http would drop
// (a name that is not a token) or rewrite (control characters in a value)
// are recorded as they are sent, so the replays match the first response;
// recorded verbatim, they made every replay of a successful request a 500
// for the whole retention period.
func TestMiddlewareUnsendableHeaders(t *testing.T) {
	g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	h := idempotency.Middleware(g, idempotency.MiddlewareOptions{GlobalScope: true})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Note", "line1\r\nline2\x01\x7f\tend")
		w.Header()["Bad Name"] = []string{"x"}
		w.Header()[""] = []string{"y"}
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "made")
	}))
	var first http.Header
	for _, replayed := range []string{"", "true"} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, keyed("x"))
		require.Equal(t, http.StatusCreated, w.Code, "replayed=%q", replayed)
		require.Equal(t, "made", w.Body.String())
		require.Equal(t, replayed, w.Header().Get(idempotency.ReplayedHeader))
		w.Header().Del(idempotency.ReplayedHeader)
		require.Equal(t, http.Header{"X-Note": {"line1  line2  \tend"}}, w.Header())
		if first == nil {
			first = w.Header()
		}
		require.Equal(t, first, w.Header())
	}
}

// TestMiddlewareOverHTTP runs the exchange through a real server and
// client.
func TestMiddlewareOverHTTP(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{GlobalScope: true})
	srv := httptest.NewServer(a.handler)
	defer srv.Close()
	post := func(key, body string) (*http.Response, string) {
		req, err := http.NewRequest("POST", srv.URL+"/things", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set(idempotency.KeyHeader, key)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, string(b)
	}
	resp, body := post(`"k"`, "x")
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, "created 1 from x", body)
	resp, body = post(`"k"`, "x")
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	require.Equal(t, "created 1 from x", body)
	require.Equal(t, "true", resp.Header.Get(idempotency.ReplayedHeader))
	require.Equal(t, "/things/1", resp.Header.Get("Location"))
	resp, _ = post(`"k"`, "y")
	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode)
	resp, _ = post(`"k"`, strings.Repeat("z", idempotency.DefaultMaxBody+1))
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

func TestMiddlewareNilGuard(t *testing.T) {
	require.PanicsWithValue(t, "idempotency: Middleware with a nil Guard", func() {
		idempotency.Middleware(nil, idempotency.MiddlewareOptions{GlobalScope: true})
	})
}

// brokenStore fails every Claim.
type brokenStore struct{ idempotency.MemStore }

func (*brokenStore) Claim(context.Context, string, []byte, time.Duration) (uint64, *idempotency.Record, error) {
	return 0, nil, errDisk
}

func TestMiddlewareStoreTrouble(t *testing.T) {
	clk := clocktest.NewManual(t0)
	full := newAPIOn(&idempotency.MemStore{Clock: clk, MaxKeys: 1}, clk, idempotency.MiddlewareOptions{GlobalScope: true})
	require.Equal(t, http.StatusCreated, full.do("POST", "/things", `"a"`, "x").Code)
	requireProblem(t, full.do("POST", "/things", `"b"`, "x"), http.StatusServiceUnavailable)
	require.Equal(t, "true", full.do("POST", "/things", `"a"`, "x").Header().Get(idempotency.ReplayedHeader))

	h := idempotency.Middleware(idempotency.New(&brokenStore{}, idempotency.Config{}), idempotency.MiddlewareOptions{GlobalScope: true})(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran without a claim") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, keyed("x"))
	requireProblem(t, w, http.StatusInternalServerError)

	// A record the middleware cannot decode is a 500, not a panic.
	s := &idempotency.MemStore{}
	token, _, err := s.Claim(context.Background(), "k", nil, time.Minute)
	require.NoError(t, err)
	require.NoError(t, s.Complete(context.Background(), "k", token, []byte{0x92, 0x00, 0xc4, 0x01, 0xc0}, time.Hour))
	h = idempotency.Middleware(idempotency.New(s, idempotency.Config{}), idempotency.MiddlewareOptions{
		GlobalScope: true,
		Fingerprint: func(*http.Request, []byte) []byte { return nil },
	})(http.HandlerFunc(created))
	w = httptest.NewRecorder()
	h.ServeHTTP(w, keyed("x"))
	requireProblem(t, w, http.StatusInternalServerError)
}

// serveConcurrently starts n requests with key "x" on h, each on its own
// goroutine, and returns their recorders and a function that waits for
// them all.
func serveConcurrently(h http.Handler, n int) ([]*httptest.ResponseRecorder, func()) {
	recs := make([]*httptest.ResponseRecorder, n)
	var wg sync.WaitGroup
	for i := range n {
		recs[i] = httptest.NewRecorder()
		wg.Go(func() { h.ServeHTTP(recs[i], keyed("x")) })
	}
	return recs, wg.Wait
}

// userHeader names the principal in the scoping tests.
const userHeader = "X-User"

func byUser(r *http.Request) string { return r.Header.Get(userHeader) }

// doAs sends a keyed POST as user.
func (a *api) doAs(user, key, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest("POST", "/things", strings.NewReader(body))
	r.Header.Set(idempotency.KeyHeader, key)
	if user != "" {
		r.Header.Set(userHeader, user)
	}
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, r)
	return w
}

// TestMiddlewareScope: two users who send the same key and body each run
// the handler and see their own response; a retry replays each user's.
func TestMiddlewareScope(t *testing.T) {
	a := newAPI(idempotency.MiddlewareOptions{Scope: byUser})
	alice := a.doAs("alice", `"k"`, "x")
	bob := a.doAs("bob", `"k"`, "x")
	require.Equal(t, "created 1 from x", alice.Body.String())
	require.Equal(t, "created 2 from x", bob.Body.String())
	require.Equal(t, "created 1 from x", a.doAs("alice", `"k"`, "x").Body.String())
	require.Equal(t, "created 2 from x", a.doAs("bob", `"k"`, "x").Body.String())
	// Scope and key are joined unambiguously: ("a", "bk") is not ("ab", "k").
	require.Equal(t, "created 3 from x", a.doAs("a", `"bk"`, "x").Body.String())
	require.Equal(t, "created 4 from x", a.doAs("ab", `"k"`, "x").Body.String())

	// A request the scope cannot name is refused, never put in a shared
	// namespace; so is one the scope makes unacceptable to the Guard.
	requireProblem(t, a.doAs("", `"k"`, "x"), http.StatusInternalServerError)
	requireProblem(t, a.doAs("eve\x01", `"k"`, "x"), http.StatusInternalServerError)
	requireProblem(t, a.doAs(strings.Repeat("e", idempotency.MaxKeyBytes), `"k"`, "x"), http.StatusInternalServerError)
	require.EqualValues(t, 4, a.create.runs.Load())
}

func TestMiddlewareRequiresScope(t *testing.T) {
	g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
	require.PanicsWithValue(t, "idempotency: Middleware without a Scope: set MiddlewareOptions.Scope, "+
		"or GlobalScope if every client may see every other's responses", func() {
		idempotency.Middleware(g, idempotency.MiddlewareOptions{})
	})
	require.Panics(t, func() { idempotency.Middleware(g, idempotency.MiddlewareOptions{Scope: byUser, GlobalScope: true}) })
	require.Panics(t, func() {
		idempotency.Middleware(g, idempotency.MiddlewareOptions{GlobalScope: true, MaxKeyLen: idempotency.MaxKeyBytes + 1})
	})
}

// TestMiddlewarePrivateHeaders: a session cookie reaches the first
// response only, unless ReplayHeaders lists it.
func TestMiddlewarePrivateHeaders(t *testing.T) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Set-Cookie", "session=secret")
		w.Header().Set("Authentication-Info", `nextnonce="n"`)
		w.Header().Set("Location", "/things/1")
		w.WriteHeader(http.StatusCreated)
	})
	for _, listed := range []bool{false, true} {
		opts := idempotency.MiddlewareOptions{GlobalScope: true}
		if listed {
			opts.ReplayHeaders = []string{"set-cookie"}
		}
		h := idempotency.Middleware(idempotency.New(&idempotency.MemStore{}, idempotency.Config{}), opts)(handler)
		var recs []*httptest.ResponseRecorder
		for range 2 {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, keyed("k"))
			recs = append(recs, w)
		}
		first, replay := recs[0], recs[1]
		require.Equal(t, "session=secret", first.Header().Get("Set-Cookie"))
		require.Equal(t, `nextnonce="n"`, first.Header().Get("Authentication-Info"))
		require.Equal(t, "true", replay.Header().Get(idempotency.ReplayedHeader))
		require.Equal(t, "/things/1", replay.Header().Get("Location"))
		require.Empty(t, replay.Header().Get("Authentication-Info"))
		if listed {
			require.Equal(t, "session=secret", replay.Header().Get("Set-Cookie"))
		} else {
			require.Empty(t, replay.Header().Get("Set-Cookie"))
		}
	}
}

// TestMiddlewareUntrustedRecord: a record whose fingerprint has another
// length than the request's, or that is another key's, is a store fault,
// answered 500 and logged, not 422 and not a replay of someone else's
// response.
func TestMiddlewareUntrustedRecord(t *testing.T) {
	for lie, want := range map[string]string{
		"short fingerprint": "fingerprint of 1 bytes",
		"other key":         "someone-else",
	} {
		var logs strings.Builder
		s := &lyingStore{lie: func(r *idempotency.Record) {
			if lie == "other key" {
				r.Key = "someone-else"
			} else {
				r.Fingerprint = r.Fingerprint[:1]
			}
		}}
		h := idempotency.Middleware(idempotency.New(s, idempotency.Config{}), idempotency.MiddlewareOptions{
			GlobalScope: true, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		})(http.HandlerFunc(created))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, keyed("k"))
		require.Equal(t, http.StatusCreated, w.Code)
		w = httptest.NewRecorder()
		h.ServeHTTP(w, keyed("k"))
		requireProblem(t, w, http.StatusInternalServerError)
		require.Contains(t, logs.String(), want, lie)
	}
}
