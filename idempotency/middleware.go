package idempotency

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Header fields the middleware reads and writes.
const (
	// KeyHeader carries the request's idempotency key.
	KeyHeader = "Idempotency-Key"
	// ReplayedHeader is set to "true" on a response that replays another
	// request's, as Stripe marks its replays.
	ReplayedHeader = "Idempotent-Replayed"
)

// Defaults for the zero fields of [MiddlewareOptions].
const (
	DefaultMaxBody   = 1 << 20
	DefaultMaxKeyLen = 255
)

// MiddlewareOptions configures [Middleware]. Zero fields mean the
// documented defaults.
type MiddlewareOptions struct {
	// Methods lists the request methods that take idempotency keys;
	// requests with other methods pass through untouched. nil: POST and
	// PATCH.
	Methods []string
	// Optional lets requests without a key through, unguarded. By default
	// they are answered 400, as the draft asks of operations that require
	// the header.
	Optional bool
	// MaxBody bounds the request body, which the middleware reads in full
	// to fingerprint it; larger bodies are answered 413. 0: DefaultMaxBody
	// (1 MiB).
	MaxBody int64
	// MaxKeyLen bounds the key, in bytes once unquoted; longer keys are
	// answered 400. 0: DefaultMaxKeyLen (255, Stripe's limit). At most
	// MaxKeyBytes, less the scope's length.
	MaxKeyLen int
	// Scope returns the namespace of the request's key, typically the
	// authenticated principal (Stripe scopes keys by account), so that
	// two clients who send the same key never see each other's
	// responses. A request whose scope is empty, or that makes the scoped
	// key longer than MaxKeyBytes or holds a control character, is
	// answered 500: the server failed to name its principal. Middleware
	// panics if Scope is nil and GlobalScope is not set.
	Scope func(r *http.Request) string
	// GlobalScope puts every request's key in one namespace, which is
	// only right when every client may see every other client's
	// responses (a single tenant, say). Scope must then be nil.
	GlobalScope bool
	// ReplayHeaders lists header fields that are recorded and replayed
	// although they belong to one user's session: by default
	// Set-Cookie, Set-Cookie2, Authentication-Info,
	// Proxy-Authentication-Info and Clear-Site-Data reach the first
	// response only, and are neither recorded nor replayed.
	ReplayHeaders []string
	// RetryAfter is the delay the 409 answer to a request whose key is in
	// progress advises, in its Retry-After field (whole seconds, rounded
	// up). 0: one second.
	RetryAfter time.Duration
	// Fingerprint digests the request to detect a key reused for another
	// payload. nil: SHA-256 over the method, the path and query, and the
	// body.
	Fingerprint func(r *http.Request, body []byte) []byte
	// Retryable reports whether a response with the given status must not
	// be recorded: its claim is released and a retry runs the handler
	// again. nil: 408, 429 and every 5xx (see the package documentation).
	Retryable func(status int) bool
	// ProblemType is the "type" URI of the problem details the middleware
	// answers with, a page that documents the API's use of idempotency
	// keys and their expiry, as the draft asks. "": "about:blank", with
	// the status text as title.
	ProblemType string
	// Logger receives the store failures that the middleware answers
	// with 500 or works around. nil: discard.
	Logger *slog.Logger
}

// Middleware returns net/http middleware that makes handlers idempotent
// per the IETF draft "The Idempotency-Key HTTP Header Field", on top of g.
//
// For a request whose method is in opts.Methods it parses the
// Idempotency-Key field, reads the body, fingerprints the request and
// runs the handler through g.Do, buffering its response. It answers:
//
//   - 400 with a problem+json body when the key is missing (unless
//     Optional), malformed, repeated or longer than MaxKeyLen;
//   - 413 when the body exceeds MaxBody;
//   - the handler's response, recorded, the first time a key is used;
//   - a replay of the recorded status, header fields and body, marked
//     "Idempotent-Replayed: true", for a retry with the same payload while
//     the record lives (and, if the Guard has Config.Wait, for concurrent
//     duplicates in this process, which wait for the first request's
//     execution until their own contexts end);
//   - 409 with Retry-After while a request with the key is in progress,
//     in this process or any other;
//   - 422 when the key is reused with a different payload;
//   - 503 when the store is full, 500 when it fails or returns a record
//     that cannot be trusted, or when Scope fails to name a namespace.
//
// Keys are scoped: the Guard sees len(scope) ":" scope key, so that keys
// of different scopes never meet. Header fields that carry one user's
// session are not recorded (see ReplayHeaders).
//
// The handler sees a request whose context ends when the claim's lock
// lapses, and a ResponseWriter that buffers the whole response (it does
// not implement http.Flusher; 1xx responses and trailers are dropped;
// header fields with invalid names are dropped and control characters in
// values become spaces, as net/http would send them). It panics if g is
// nil, if opts has no Scope and no GlobalScope or both, or if MaxKeyLen
// exceeds MaxKeyBytes.
func Middleware(g *Guard, opts MiddlewareOptions) func(http.Handler) http.Handler {
	switch {
	case g == nil:
		panic("idempotency: Middleware with a nil Guard")
	case opts.Scope == nil && !opts.GlobalScope:
		panic("idempotency: Middleware without a Scope: set MiddlewareOptions.Scope, " +
			"or GlobalScope if every client may see every other's responses")
	case opts.Scope != nil && opts.GlobalScope:
		panic("idempotency: Middleware with both a Scope and GlobalScope")
	case opts.MaxKeyLen > MaxKeyBytes:
		panic(fmt.Sprintf("idempotency: Middleware with MaxKeyLen %d above MaxKeyBytes", opts.MaxKeyLen))
	}
	m := &middleware{MiddlewareOptions: opts, guard: g}
	if m.Methods == nil {
		m.Methods = []string{http.MethodPost, http.MethodPatch}
	}
	if m.MaxBody <= 0 {
		m.MaxBody = DefaultMaxBody
	}
	if m.MaxKeyLen <= 0 {
		m.MaxKeyLen = DefaultMaxKeyLen
	}
	if m.Fingerprint == nil {
		m.Fingerprint = fingerprint
	}
	if m.Retryable == nil {
		m.Retryable = retryableStatus
	}
	if m.Logger == nil {
		m.Logger = slog.New(slog.DiscardHandler)
	}
	m.private = map[string]bool{}
	for _, k := range privateHeaders {
		m.private[k] = true
	}
	for _, k := range m.ReplayHeaders {
		delete(m.private, http.CanonicalHeaderKey(k))
	}
	m.retryAfter = []string{strconv.FormatInt(int64(max(time.Second, m.RetryAfter+time.Second-1)/time.Second), 10)}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			m.serve(w, r, next)
		})
	}
}

type middleware struct {
	MiddlewareOptions
	guard      *Guard
	private    map[string]bool // header fields not recorded
	retryAfter []string        // the Retry-After value of a 409
}

// privateHeaders are the response header fields that carry one user's
// session and are not recorded unless MiddlewareOptions.ReplayHeaders
// lists them.
var privateHeaders = []string{"Set-Cookie", "Set-Cookie2", "Authentication-Info",
	"Proxy-Authentication-Info", "Clear-Site-Data"}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if !slices.Contains(m.Methods, r.Method) {
		next.ServeHTTP(w, r)
		return
	}
	fields := r.Header[KeyHeader]
	switch {
	case len(fields) == 0 && m.Optional:
		next.ServeHTTP(w, r)
		return
	case len(fields) == 0:
		m.problem(w, http.StatusBadRequest, "Idempotency-Key is missing",
			"This operation is idempotent and requires an Idempotency-Key header.")
		return
	case len(fields) > 1:
		m.problem(w, http.StatusBadRequest, "Idempotency-Key is malformed",
			"A request must carry exactly one Idempotency-Key header.")
		return
	}
	key, err := parseKey(fields[0])
	if err == nil && len(key) > m.MaxKeyLen {
		err = fmt.Errorf("key of %d bytes is longer than %d", len(key), m.MaxKeyLen)
	}
	if err != nil {
		m.problem(w, http.StatusBadRequest, "Idempotency-Key is malformed", err.Error())
		return
	}
	body, err := m.readBody(w, r)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			m.problem(w, http.StatusRequestEntityTooLarge, "Request body is too large",
				fmt.Sprintf("Requests with an Idempotency-Key may carry at most %d bytes.", m.MaxBody))
		} else {
			m.problem(w, http.StatusBadRequest, "Request body could not be read", err.Error())
		}
		return
	}
	if m.Scope != nil {
		scope := m.Scope(r)
		if scope == "" {
			m.Logger.Error("idempotency: Scope returned an empty namespace", "method", r.Method, "path", r.URL.Path)
			m.problem(w, http.StatusInternalServerError, "", "The request could not be processed.")
			return
		}
		// The length makes the join unambiguous.
		key = strconv.Itoa(len(scope)) + ":" + scope + key
	}

	var ran *response // the handler's response, if this request ran it
	out, err := m.guard.Do(r.Context(), key, m.Fingerprint(r, body), func(ctx context.Context) ([]byte, error) {
		ran = record(ctx, next, r, body)
		if m.Retryable(ran.status) {
			return nil, Retryable(&unrecorded{ran})
		}
		return ran.recorded(m.private).encode(), nil
	})
	if ran != nil {
		if _, ok := errors.AsType[*unrecorded](err); err != nil && !ok {
			m.Logger.Warn("idempotency: response sent but not recorded", "err", err)
		}
		ran.writeTo(w, false)
		return
	}
	m.answer(w, out, err)
}

// answer writes what Do returned to a request that did not run the
// handler itself.
func (m *middleware) answer(w http.ResponseWriter, out []byte, err error) {
	u, isUnrecorded := errors.AsType[*unrecorded](err)
	switch {
	case err == nil || out != nil && errors.Is(err, ErrLockExpired): // shared, maybe unrecorded
		resp, derr := decodeResponse(out)
		if derr != nil {
			m.Logger.Error("idempotency: replaying a response", "err", derr)
			m.problem(w, http.StatusInternalServerError, "", "The recorded response could not be replayed.")
			return
		}
		resp.writeTo(w, true)
	case isUnrecorded:
		u.resp.recorded(m.private).writeTo(w, true)
	case errors.Is(err, ErrInProgress):
		w.Header()["Retry-After"] = m.retryAfter
		m.problem(w, http.StatusConflict, "A request is outstanding for this Idempotency-Key",
			"A request with the same Idempotency-Key is being processed; retry later.")
	case errors.Is(err, ErrMismatch):
		m.problem(w, http.StatusUnprocessableEntity, "Idempotency-Key is already used",
			fmt.Sprintf("This Idempotency-Key was used for a different request; keys must not be reused "+
				"across payloads and are remembered for %v.", m.guard.Retain()))
	case errors.Is(err, ErrBadKey): // the client's key was checked: the scope is at fault
		m.Logger.Error("idempotency: Scope made a key the Guard refuses", "err", err)
		m.problem(w, http.StatusInternalServerError, "", "The request could not be processed.")
	case errors.Is(err, ErrFull):
		m.problem(w, http.StatusServiceUnavailable, "", "Too many requests are being tracked; retry later.")
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		m.problem(w, http.StatusServiceUnavailable, "", "The request ended before it was processed.")
	default:
		m.Logger.Error("idempotency: store failed", "err", err)
		m.problem(w, http.StatusInternalServerError, "", "The request could not be processed.")
	}
}

func (m *middleware) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	switch {
	case r.Body == nil || r.Body == http.NoBody:
		return nil, nil
	case r.ContentLength > m.MaxBody:
		return nil, &http.MaxBytesError{Limit: m.MaxBody}
	case r.ContentLength >= 0: // the server stops the body at its declared length
		body := make([]byte, r.ContentLength)
		_, err := io.ReadFull(r.Body, body)
		return body, err
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, m.MaxBody))
}

// problem writes an RFC 9457 problem details response. An empty title
// means the status text.
func (m *middleware) problem(w http.ResponseWriter, status int, title, detail string) {
	p := struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}{m.ProblemType, title, status, detail}
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Type == "about:blank" || p.Title == "" {
		p.Title = http.StatusText(status) // RFC 9457 §4.2.1
	}
	body, _ := json.Marshal(p) // cannot fail: strings and an int
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// fingerprint is the default MiddlewareOptions.Fingerprint.
func fingerprint(r *http.Request, body []byte) []byte {
	h := sha256.New()
	_, _ = io.WriteString(h, r.Method)
	_, _ = h.Write(nul)
	_, _ = io.WriteString(h, r.URL.EscapedPath())
	_, _ = h.Write(nul)
	_, _ = io.WriteString(h, r.URL.RawQuery)
	_, _ = h.Write(nul)
	_, _ = h.Write(body)
	return h.Sum(nil)
}

var nul = []byte{0}

// retryableStatus is the default MiddlewareOptions.Retryable.
func retryableStatus(status int) bool {
	return status >= 500 || status == http.StatusRequestTimeout || status == http.StatusTooManyRequests
}

// recorded returns resp without the header fields in private, sharing
// everything else with resp.
func (resp *response) recorded(private map[string]bool) *response {
	drop := false
	for k := range resp.header {
		drop = drop || private[k]
	}
	if !drop {
		return resp
	}
	c := *resp
	c.header = make(http.Header, len(resp.header))
	for k, vs := range resp.header {
		if !private[k] {
			c.header[k] = vs
		}
	}
	return &c
}

// unrecorded carries a response that was not recorded to the callers that
// shared its execution.
type unrecorded struct{ resp *response }

func (u *unrecorded) Error() string {
	return fmt.Sprintf("idempotency: response with status %d not recorded", u.resp.status)
}

// record runs next on a copy of r with context ctx and the buffered body,
// and returns what it wrote.
func record(ctx context.Context, next http.Handler, r *http.Request, body []byte) *response {
	r = r.WithContext(ctx)
	r.Body = io.NopCloser(bytes.NewReader(body))
	rw := &recorder{header: make(http.Header)}
	next.ServeHTTP(rw, r)
	if rw.resp.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	return &rw.resp
}

// recorder is the buffering http.ResponseWriter handlers run with.
type recorder struct {
	header http.Header // what Header returns; resp.header is its snapshot at WriteHeader
	resp   response
}

func (rw *recorder) Header() http.Header { return rw.header }

func (rw *recorder) WriteHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code)) // as net/http does
	}
	if rw.resp.status != 0 || code < 200 {
		return // a repeated call, or an informational response: dropped
	}
	rw.resp.status = code
	rw.resp.header = sendable(rw.header)
}

// sendable returns a copy of h as it can be sent, recorded and replayed
// alike: fields whose names are not tokens are dropped, as net/http drops
// them when it writes a response, and the bytes a field value may not hold
// (control characters but tab) become spaces, as net/http turns CR and LF
// into spaces. Recorded verbatim they would fail decodeResponse, and every
// replay of the response would fail with them.
func sendable(h http.Header) http.Header {
	c := h.Clone()
	for k, vs := range c {
		if !isToken([]byte(k)) {
			delete(c, k)
			continue
		}
		for i, v := range vs {
			if isFieldValue([]byte(v)) {
				continue
			}
			b := []byte(v)
			for j, x := range b {
				if !isFieldByte(x) {
					b[j] = ' '
				}
			}
			vs[i] = string(b)
		}
	}
	return c
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.resp.status == 0 {
		rw.WriteHeader(http.StatusOK)
	}
	rw.resp.body = append(rw.resp.body, b...)
	return len(b), nil
}

var replayedValue = []string{"true"}

// writeTo sends resp on w, marked as a replay if replayed.
func (resp *response) writeTo(w http.ResponseWriter, replayed bool) {
	h := w.Header()
	for k, vs := range resp.header {
		h[k] = vs
	}
	if replayed {
		h[ReplayedHeader] = replayedValue
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(resp.body)
}
