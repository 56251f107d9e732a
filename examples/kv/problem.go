package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// Problem is the body of every error response of the HTTP API, client
// and replica RPC routes alike: an RFC 9457 problem details object,
// served as application/problem+json. It is a plain value.
type Problem struct {
	// Type identifies the kind of problem: one of the Problem* URIs
	// below, or "about:blank" when the status code says it all.
	Type   string `json:"type"`
	Title  string `json:"title"`  // a short summary of the Type
	Status int    `json:"status"` // the response's status code
	// Detail says what went wrong with this request, and what to do.
	Detail string `json:"detail,omitempty"`
}

// errCoordinator wraps the error of a write forwarded to its
// coordinator that the coordinator answered with.
var errCoordinator = errors.New("kv: coordinator")

// ProblemContentType is the media type of a [Problem] body.
const ProblemContentType = "application/problem+json"

// Problem types of the API (tag URIs, RFC 4151: names, not addresses).
const (
	// ProblemNoQuorum (503): too few replicas answered. A write's outcome
	// is indeterminate: it may be applied on some replicas; a retry with
	// the same Idempotency-Key is safe.
	ProblemNoQuorum = "tag:distkit.dev,2026:kv/no-quorum"
	// ProblemStorage (500): this node's own disk failed; nothing was
	// written through it.
	ProblemStorage = "tag:distkit.dev,2026:kv/storage"
	// ProblemCoordinator (502): the node this one forwarded the write to
	// (the key's coordinator) failed it for a reason of its own, its disk
	// for example; the write may be applied there. Retry, with the same
	// Idempotency-Key.
	ProblemCoordinator = "tag:distkit.dev,2026:kv/coordinator-failed"
	// ProblemInternal (500): any other failure of the node.
	ProblemInternal = "tag:distkit.dev,2026:kv/internal"
	// ProblemTooManySiblings (409) and ProblemObjectTooLarge (413): the
	// write would grow the key past a bound; read it and write the value
	// that resolves its siblings.
	ProblemTooManySiblings = "tag:distkit.dev,2026:kv/too-many-siblings"
	ProblemObjectTooLarge  = "tag:distkit.dev,2026:kv/object-too-large"
	// ProblemCounterExhausted (409): the key's history holds a counter at
	// its bound; nothing was written.
	ProblemCounterExhausted = "tag:distkit.dev,2026:kv/counter-exhausted"
	// ProblemKeyReused (422): the Idempotency-Key was used for a
	// different request.
	ProblemKeyReused = "tag:distkit.dev,2026:kv/idempotency-key-reused"
	// ProblemUnhealthy (503): /healthz found the disk or the membership
	// loop failing.
	ProblemUnhealthy = "tag:distkit.dev,2026:kv/unhealthy"
)

var problemTitles = map[string]string{
	ProblemNoQuorum:         "Too few replicas answered",
	ProblemStorage:          "Local storage failed",
	ProblemCoordinator:      "The write's coordinator failed",
	ProblemInternal:         "Internal error",
	ProblemTooManySiblings:  "Too many siblings",
	ProblemObjectTooLarge:   "Object too large",
	ProblemCounterExhausted: "Counter exhausted",
	ProblemKeyReused:        "Idempotency key reused",
	ProblemUnhealthy:        "Unhealthy",
}

// problem answers a request with a Problem of the given type ("" for
// about:blank), status and detail.
func problem(w http.ResponseWriter, typ string, status int, detail string) {
	p := Problem{Type: typ, Title: problemTitles[typ], Status: status, Detail: detail}
	if typ == "" {
		p.Type, p.Title = "about:blank", http.StatusText(status)
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", ProblemContentType)
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

// problems returns h with every error response written as plain text
// (http.Error: the mux's 404 and 405, the idempotency middleware's
// refusals) rewritten as an about:blank [Problem] whose detail is the
// text, so that every error of the API has the same form.
func problems(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pw := &problemWriter{ResponseWriter: w}
		h.ServeHTTP(pw, r)
		if pw.status != 0 {
			problem(w, "", pw.status, strings.TrimSpace(pw.text.String()))
		}
	})
}

// problemWriter holds back a plain-text error response to rewrite it.
type problemWriter struct {
	http.ResponseWriter
	wrote  bool
	status int          // the status of a held-back error; 0: passing through
	text   bytes.Buffer // its text, up to maxErrorBytes
}

func (p *problemWriter) WriteHeader(code int) {
	if code < 200 {
		p.ResponseWriter.WriteHeader(code) // informational: the response is still to come
		return
	}
	if p.wrote {
		return
	}
	p.wrote = true
	if code >= 400 && strings.HasPrefix(p.Header().Get("Content-Type"), "text/plain") {
		p.status = code
		return
	}
	p.ResponseWriter.WriteHeader(code)
}

func (p *problemWriter) Write(b []byte) (int, error) {
	if !p.wrote {
		p.WriteHeader(http.StatusOK)
	}
	if p.status == 0 {
		return p.ResponseWriter.Write(b)
	}
	p.text.Write(b[:min(len(b), max(maxErrorBytes-p.text.Len(), 0))])
	return len(b), nil
}

// Unwrap gives http.ResponseController the underlying writer.
func (p *problemWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }
