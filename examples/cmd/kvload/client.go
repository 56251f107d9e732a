package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// maxBody bounds the bytes kvload reads of any response: a value is at
// most maxValue bytes, siblings and JSON framing take a few times that.
const maxBody = 8 * maxValue

// read is the outcome of one successful read.
type read struct {
	found    bool
	siblings bool // kv: more than one value (300 Multiple Choices)
	// version is what a read-modify-write sends back: kv's X-Context,
	// etcd's mod_revision in decimal ("0": the key is absent).
	version string
}

// store is one system under test as a client sees it. Its methods are
// safe for concurrent use and bounded by ctx.
type store interface {
	get(ctx context.Context, addr, key string) (read, error)
	// put writes value under key; with rmw, as the successor of the read
	// whose version is version, and it reports false when the store
	// refused it as a lost race (etcd's failed compare).
	put(ctx context.Context, addr, key string, value []byte, rmw bool, version string) (bool, error)
}

// statusError is a response with an unexpected status.
type statusError struct {
	code int
	body string
}

func (e *statusError) Error() string { return fmt.Sprintf("status %d: %s", e.code, e.body) }

// newClient returns the HTTP client of a run of clients concurrent
// requests, each bounded by timeout. It is fasthttp's: its caller's
// goroutine writes the request and reads the answer itself, where
// net/http's client hands both to two goroutines of the connection, so
// kvload takes a small share of the CPU it shares with the stores it
// measures. A response body of more than maxBody bytes is an error.
func newClient(clients int, timeout time.Duration) *fasthttp.Client {
	return &fasthttp.Client{
		Name:                          "kvload",
		MaxConnsPerHost:               clients,
		MaxResponseBodySize:           maxBody,
		ReadTimeout:                   timeout,
		WriteTimeout:                  timeout,
		MaxConnWaitTimeout:            timeout,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		Dial:                          (&fasthttp.TCPDialer{}).Dial,
	}
}

// do sends the request that build fills in with c, by ctx's deadline
// (without one, within c's timeouts), and returns the status, the
// X-Context header and the body. The request does not watch ctx for a
// cancellation before its deadline.
func do(ctx context.Context, c *fasthttp.Client, build func(req *fasthttp.Request)) (code int, xctx string, body []byte, err error) {
	if err := ctx.Err(); err != nil {
		return 0, "", nil, err
	}
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	build(req)
	if deadline, ok := ctx.Deadline(); ok {
		err = c.DoDeadline(req, resp, deadline)
	} else {
		err = c.Do(req, resp)
	}
	if err != nil {
		if errors.Is(err, fasthttp.ErrTimeout) {
			err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
		}
		return 0, "", nil, err
	}
	return resp.StatusCode(), string(resp.Header.Peek("X-Context")), bytes.Clone(resp.Body()), nil
}

func unexpected(code int, body []byte) error {
	return &statusError{code: code, body: string(bytes.TrimSpace(body[:min(len(body), 200)]))}
}

// kvStore drives kvnode's client API: GET and PUT /kv/{key} with
// X-Context.
type kvStore struct{ c *fasthttp.Client }

func (s kvStore) get(ctx context.Context, addr, key string) (read, error) {
	code, xctx, body, err := do(ctx, s.c, func(req *fasthttp.Request) {
		req.SetRequestURI("http://" + addr + "/kv/" + key)
	})
	switch {
	case err != nil:
		return read{}, err
	case code == http.StatusOK, code == http.StatusMultipleChoices, code == http.StatusNotFound:
		// Siblings are a successful read: the client resolves them.
		return read{found: code != http.StatusNotFound, siblings: code == http.StatusMultipleChoices, version: xctx}, nil
	}
	return read{}, unexpected(code, body)
}

func (s kvStore) put(ctx context.Context, addr, key string, value []byte, rmw bool, version string) (bool, error) {
	code, _, body, err := do(ctx, s.c, func(req *fasthttp.Request) {
		req.SetRequestURI("http://" + addr + "/kv/" + key)
		req.Header.SetMethod(http.MethodPut)
		req.SetBodyRaw(value)
		if rmw && version != "" {
			req.Header.Set("X-Context", version)
		}
	})
	if err != nil {
		return false, err
	}
	if code != http.StatusNoContent && code != http.StatusOK {
		return false, unexpected(code, body)
	}
	return true, nil
}

// etcdStore drives etcd's v3 JSON gateway: /v3/kv/range and /v3/kv/put
// with base64 keys and values; a read-modify-write is a range and a txn
// that puts only if the key's mod_revision is still the one read, as
// etcd's clients do a compare-and-swap.
type etcdStore struct{ c *fasthttp.Client }

func (s etcdStore) post(ctx context.Context, addr, path string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	code, _, body, err := do(ctx, s.c, func(req *fasthttp.Request) {
		req.SetRequestURI("http://" + addr + path)
		req.Header.SetMethod(http.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(b)
	})
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return unexpected(code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func (s etcdStore) get(ctx context.Context, addr, key string) (read, error) {
	var out struct {
		Kvs []struct {
			ModRevision string `json:"mod_revision"` // int64 in JSON as a string
		} `json:"kvs"`
	}
	if err := s.post(ctx, addr, "/v3/kv/range", map[string]string{"key": b64(key)}, &out); err != nil {
		return read{}, err
	}
	if len(out.Kvs) == 0 {
		return read{version: "0"}, nil
	}
	return read{found: true, version: out.Kvs[0].ModRevision}, nil
}

func (s etcdStore) put(ctx context.Context, addr, key string, value []byte, rmw bool, version string) (bool, error) {
	kv := map[string]string{"key": b64(key), "value": base64.StdEncoding.EncodeToString(value)}
	if !rmw {
		var out struct{}
		return true, s.post(ctx, addr, "/v3/kv/put", kv, &out)
	}
	rev, err := strconv.ParseInt(version, 10, 64)
	if err != nil {
		return false, fmt.Errorf("etcd mod_revision %q: %w", version, err)
	}
	txn := map[string]any{
		"compare": []map[string]any{{"target": "MOD", "result": "EQUAL", "key": kv["key"], "mod_revision": rev}},
		"success": []map[string]any{{"request_put": kv}},
	}
	var out struct {
		Succeeded bool `json:"succeeded"`
	}
	if err := s.post(ctx, addr, "/v3/kv/txn", txn, &out); err != nil {
		return false, err
	}
	return out.Succeeded, nil
}
