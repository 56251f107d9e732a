package kv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

// do serves one request through h and returns the recorded response.
func do(h http.Handler, method, target, body string, header ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAPI(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		metrics := &Metrics{}
		guard := idempotency.New(&idempotency.MemStore{}, idempotency.Config{})
		h := API(c.node("n1"), APIConfig{Guard: guard, Metrics: metrics})

		rec := do(h, "PUT", "/kv/k", "v1", "Idempotency-Key", `"put-1"`)
		if rec.Code != http.StatusNoContent || rec.Header().Get(HeaderContext) == "" || rec.Header().Get(HeaderDot) == "" {
			t.Fatalf("PUT: %d %v", rec.Code, rec.Header())
		}
		ctx1 := rec.Header().Get(HeaderContext)
		// The retry is replayed, not applied again.
		if rec := do(h, "PUT", "/kv/k", "v1", "Idempotency-Key", `"put-1"`); rec.Code != http.StatusNoContent ||
			rec.Header().Get("Idempotent-Replayed") != "true" || rec.Header().Get(HeaderContext) != ctx1 {
			t.Fatalf("retried PUT: %d %v", rec.Code, rec.Header())
		}
		rec = do(h, "GET", "/kv/k", "")
		if rec.Code != http.StatusOK || rec.Body.String() != "v1" || rec.Header().Get(HeaderContext) != ctx1 {
			t.Fatalf("GET: %d %q %v", rec.Code, rec.Body, rec.Header())
		}
		// Two writes from the same context: siblings.
		for _, v := range []string{"v2", "v3"} {
			if rec := do(h, "PUT", "/kv/k?w=3", v, HeaderContext, ctx1); rec.Code != http.StatusNoContent {
				t.Fatalf("PUT %s: %d %s", v, rec.Code, rec.Body)
			}
		}
		rec = do(h, "GET", "/kv/k?r=3", "")
		var sib struct{ Siblings [][]byte }
		if rec.Code != http.StatusMultipleChoices || json.Unmarshal(rec.Body.Bytes(), &sib) != nil || len(sib.Siblings) != 2 {
			t.Fatalf("GET of siblings: %d %s", rec.Code, rec.Body)
		}
		ctx2 := rec.Header().Get(HeaderContext)
		if rec := do(h, "DELETE", "/kv/k", ""); rec.Code != http.StatusPreconditionRequired {
			t.Fatalf("DELETE without a context: %d", rec.Code)
		}
		if rec := do(h, "DELETE", "/kv/k?w=3", "", HeaderContext, ctx2); rec.Code != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", rec.Code, rec.Body)
		}
		if rec := do(h, "GET", "/kv/k", ""); rec.Code != http.StatusNotFound || rec.Header().Get(HeaderContext) == "" {
			t.Fatalf("GET after DELETE: %d %v", rec.Code, rec.Header())
		}
		for target, hdr := range map[string][]string{
			"/kv/k?w=x": nil, "/kv/k?w=9": nil, "/kv/k": {HeaderContext, "!!"},
		} {
			if rec := do(h, "PUT", target, "v", hdr...); rec.Code != http.StatusBadRequest {
				t.Errorf("PUT %s %v: %d, want 400", target, hdr, rec.Code)
			}
		}
		if rec := do(h, "POST", "/kv/k", ""); rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d, want 405", rec.Code)
		}
		// Cut off from the rest, a node cannot reach W replicas.
		c.net.partitioned["n1"] = true
		rec = do(h, "PUT", "/kv/other", "v")
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "indeterminate") {
			t.Fatalf("PUT without quorum: %d %q", rec.Code, rec.Body)
		}
		c.net.partitioned["n1"] = false

		rec = do(h, "GET", "/metrics", "")
		for _, want := range []string{`kv_requests_total{code="204",method="PUT",route="/kv/{key}"} 4`,
			`kv_requests_total{code="300",method="GET",route="/kv/{key}"} 1`, `kv_read_siblings_bucket{le="2"} 3`,
			`kv_request_duration_seconds_count{method="PUT",route="/kv/{key}"}`, "kv_hints_stored_total ", "kv_read_repairs_total ",
			"go_goroutines ", "process_start_time_seconds "} {
			if !strings.Contains(rec.Body.String(), want) {
				t.Errorf("/metrics lacks %q:\n%s", want, rec.Body)
			}
		}
		var view clusterView
		if rec := do(h, "GET", "/cluster", ""); json.Unmarshal(rec.Body.Bytes(), &view) != nil || len(view.Members) != 5 || len(view.Ranges) != 0 {
			t.Fatalf("/cluster: %s", rec.Body)
		}
		owns := 0.0
		for _, m := range view.Members {
			owns += m.Owns
		}
		if owns < 299.999 || owns > 300.001 {
			t.Errorf("/cluster: the members own %v%% of the hash space together, want N × 100 = 300", owns)
		}
		if rec := do(h, "GET", "/cluster?ranges=1", ""); json.Unmarshal(rec.Body.Bytes(), &view) != nil || len(view.Ranges) == 0 {
			t.Fatalf("/cluster?ranges=1: %s", rec.Body)
		}
		if rec := do(h, "GET", "/healthz", ""); rec.Code != http.StatusOK {
			t.Errorf("/healthz: %d", rec.Code)
		}
		ready := false
		hr := API(c.node("n1"), APIConfig{Ready: func() bool { return ready }})
		if rec := do(hr, "GET", "/readyz", ""); rec.Code != http.StatusServiceUnavailable {
			t.Errorf("/readyz before ready: %d", rec.Code)
		}
		ready = true
		if rec := do(hr, "GET", "/readyz", ""); rec.Code != http.StatusOK {
			t.Errorf("/readyz: %d", rec.Code)
		}
	})
}

// httpNodes starts nodes a, b and c on loopback HTTP servers that serve
// replica RPCs under the cluster key key (nil: none), and returns them and
// their transport, whose Key is key. Cleanup stops them.
func httpNodes(t *testing.T, key []byte) (*HTTPTransport, []*httptest.Server) {
	tr := &HTTPTransport{Key: key}
	return tr, httpCluster(t, tr, nil, func(h http.Handler) http.Handler { return h })
}

// httpCluster starts nodes a, b and c over tr on loopback HTTP servers
// that serve replica RPCs under tr.Key, their handlers wrapped by wrap,
// and returns the servers; the nodes are in nodes, when not nil. Cleanup
// stops them.
func httpCluster(t testing.TB, tr *HTTPTransport, nodes *[]*Node, wrap func(http.Handler) http.Handler) []*httptest.Server {
	key := tr.Key
	var rn []ring.Node
	for _, id := range []string{"a", "b", "c"} {
		rn = append(rn, ring.Node{ID: id})
	}
	r, err := ring.New(rn, ring.Config{VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	var servers []*httptest.Server
	for _, m := range rn {
		s, err := Open(filepath.Join(t.TempDir(), m.ID+".db"), StoreConfig{Tree: testTree, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		n, err := NewNode(NodeConfig{ID: m.ID, Ring: r, Store: s, Transport: tr, Timeout: 10 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		if nodes != nil {
			*nodes = append(*nodes, n)
		}
		srv := httptest.NewServer(wrap(API(n, APIConfig{ClusterKey: key})))
		t.Cleanup(srv.Close)
		servers = append(servers, srv)
		tr.SetAddr(m.ID, srv.Listener.Addr().(*net.TCPAddr).String())
	}
	return servers
}

// Three nodes on loopback HTTP servers: writes and reads through any node,
// replica RPCs over HTTPTransport, each on its own HTTP request or
// multiplexed on one connection per peer under a cluster key.
func TestHTTPTransport(t *testing.T) {
	for _, mux := range []bool{false, true} {
		t.Run(fmt.Sprint("mux=", mux), func(t *testing.T) { testHTTPTransport(t, mux) })
	}
}

func testHTTPTransport(t *testing.T, mux bool) {
	var key []byte
	if mux {
		key = []byte("a cluster key of some length")
	}
	tr, servers := httpNodes(t, key)
	tr.Mux = mux
	t.Cleanup(tr.closeMux)
	put, err := http.NewRequest("PUT", servers[0].URL+"/kv/hello?w=3", strings.NewReader("world"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(put)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %v %v", resp, err)
	}
	resp.Body.Close()
	for _, srv := range servers {
		resp, err := http.Get(srv.URL + "/kv/hello?r=3")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || string(b) != "world" {
			t.Fatalf("GET via %s: %d %q %v", srv.URL, resp.StatusCode, b, err)
		}
	}
	// An Idempotency-Key travels to the coordinator over the RPCs, and its
	// reuse with another value comes back as 422 from every node.
	for i, w := range []struct {
		body string
		code int
	}{{"once", 204}, {"once", 204}, {"twice", 422}, {"twice", 422}, {"twice", 422}} {
		put, err := http.NewRequest("PUT", servers[i%3].URL+"/kv/keyed", strings.NewReader(w.body))
		if err != nil {
			t.Fatal(err)
		}
		put.Header.Set(idempotency.KeyHeader, `"k1"`)
		resp, err := http.DefaultClient.Do(put)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != w.code {
			t.Fatalf("PUT %q via node %d: %d, want %d", w.body, i%3, resp.StatusCode, w.code)
		}
	}
	if _, err := tr.Call(context.Background(), "nobody", nil); err == nil {
		t.Fatal("call to an unknown node succeeded")
	}
	bad, err := http.Post(servers[0].URL+rpcPath, "application/msgpack", strings.NewReader("\xc1"))
	want := http.StatusBadRequest
	if key != nil {
		want = http.StatusUnauthorized // before its body is read
	}
	if err != nil || bad.StatusCode != want {
		t.Fatalf("malformed RPC: %v %v, want %d", bad, err, want)
	}
	bad.Body.Close()
	if mux {
		for _, id := range []string{"a", "b", "c"} {
			tr.mu.RLock()
			addr := tr.addrs[id]
			tr.mu.RUnlock()
			if c, _ := tr.openMux(id, addr); c == nil {
				t.Errorf("no multiplexed connection to %s", id)
			}
		}
	}
}

// Contexts from clients are hostile: a counter past the bound, an
// oversized field or too many writers is refused with 400 or 431 and a
// body saying what to send; a forged writer never enters the key's
// history, a forged counter of the coordinator's own writer neither
// breaks the key nor raises the reap floor, and the key stays writable
// and reapable afterwards.
func TestAPIForgedContext(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		n := c.node(c.node("n1").Home([]byte("k"))[0])
		h := API(n, APIConfig{Limits: Limits{MaxContextEntries: 8, MaxContextLen: 1024}})
		forged := func(entries ...vclock.Dot) string {
			var v vclock.VClock
			for _, d := range entries {
				v.Add(d)
			}
			return EncodeContext(v)
		}
		// 2^64-1, by hand: the encoder refuses to write it.
		over := base64.RawURLEncoding.EncodeToString([]byte{0x91, 0x92, 0xa4, 'e', 'v', 'i', 'l', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		var many []vclock.Dot
		for i := range 9 {
			many = append(many, vclock.Dot{ID: fmt.Sprint("w", i), Counter: 1})
		}
		for name, tc := range map[string]struct {
			ctx  string
			code int
		}{
			"counter past the bound": {over, http.StatusBadRequest},
			"too many writers":       {forged(many...), http.StatusBadRequest},
			"too long":               {strings.Repeat("A", 1025), http.StatusRequestHeaderFieldsTooLarge},
		} {
			rec := do(h, "PUT", "/kv/k", "v", HeaderContext, tc.ctx)
			if rec.Code != tc.code || !strings.Contains(rec.Body.String(), "X-Context") || strings.Contains(rec.Body.String(), "not an array") {
				t.Errorf("PUT with a context %s: %d %q, want %d", name, rec.Code, rec.Body, tc.code)
			}
		}
		own := n.Actor()
		rec := do(h, "PUT", "/kv/k", "v1", HeaderContext,
			forged(vclock.Dot{ID: "evil", Counter: vclock.MaxCounter}, vclock.Dot{ID: own, Counter: vclock.MaxCounter - 1}))
		if rec.Code != http.StatusNoContent {
			t.Fatalf("PUT with forged writers: %d %q", rec.Code, rec.Body)
		}
		for i := range 3 {
			rec := do(h, "GET", "/kv/k", "")
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %d: %d %q", i, rec.Code, rec.Body)
			}
			got, err := DecodeContext(rec.Header().Get(HeaderContext))
			if err != nil || got.Get("evil") != 0 || got.Get(own) != uint64(i+1) {
				t.Fatalf("context after write %d: %v, %v; want only %s:%d", i, got, err, own, i+1)
			}
			if i == 2 {
				break
			}
			if rec := do(h, "PUT", "/kv/k", fmt.Sprint("v", i+2), HeaderContext, rec.Header().Get(HeaderContext)); rec.Code != http.StatusNoContent {
				t.Fatalf("PUT %d: %d %q", i+2, rec.Code, rec.Body)
			}
		}
		// A delete with a forged own counter, then a reap: the floor stays
		// at the key's own dots and the next write is numbered just above.
		rec = do(h, "GET", "/kv/k?r=3", "")
		got, _ := DecodeContext(rec.Header().Get(HeaderContext))
		got.Add(vclock.Dot{ID: own, Counter: vclock.MaxCounter - 1})
		if rec := do(h, "DELETE", "/kv/k?w=3", "", HeaderContext, EncodeContext(got)); rec.Code != http.StatusNoContent {
			t.Fatalf("DELETE: %d %q", rec.Code, rec.Body)
		}
		synctest.Wait() // the replication after the acknowledgement
		if reaped, err := n.Reap(context.Background(), time.Now().Add(time.Hour)); err != nil || reaped != 1 {
			t.Fatalf("Reap = %d, %v; want 1", reaped, err)
		}
		rec = do(h, "PUT", "/kv/k", "again")
		dot, err := DecodeDot(rec.Header().Get(HeaderDot))
		if rec.Code != http.StatusNoContent || err != nil || dot != (vclock.Dot{ID: own, Counter: 5}) {
			t.Fatalf("PUT after the reap: %d %q, dot %v (%v); want %s:5", rec.Code, rec.Body, dot, err, own)
		}
	})
}

// A write that would leave a key with more siblings than MaxSiblings, or
// more bytes of values than MaxObjectLen, is refused (409, 413) with a
// body that says to read and resolve, through any node; the write that
// resolves them with the read's context passes.
func TestAPIKeyLimits(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		c.limits = StoreConfig{MaxSiblings: 3, MaxObjectLen: 20}
		for _, id := range c.ids {
			c.crash(id)
			c.start(id)
		}
		other := c.node("n1").Home([]byte("k"))[1] // a node that forwards
		h := API(c.node(other), APIConfig{})
		for i := range 3 {
			if rec := do(h, "PUT", "/kv/k", fmt.Sprint("v", i)); rec.Code != http.StatusNoContent {
				t.Fatalf("blind PUT %d: %d %q", i, rec.Code, rec.Body)
			}
		}
		rec := do(h, "PUT", "/kv/k", "v3")
		if rec.Code != http.StatusConflict || !strings.Contains(rec.Body.String(), "resolve") {
			t.Fatalf("a fourth sibling: %d %q; want 409 saying to resolve", rec.Code, rec.Body)
		}
		read := do(h, "GET", "/kv/k?r=3", "")
		if read.Code != http.StatusMultipleChoices || strings.Contains(read.Body.String(), "djM") { // "v3" in base64
			t.Fatalf("GET after the refusal: %d %q; want the three siblings", read.Code, read.Body)
		}
		if rec := do(h, "PUT", "/kv/k", "resolved", HeaderContext, read.Header().Get(HeaderContext)); rec.Code != http.StatusNoContent {
			t.Fatalf("the resolving PUT: %d %q", rec.Code, rec.Body)
		}
		rec = do(h, "PUT", "/kv/k", "thirteen bytes")
		if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(rec.Body.String(), "resolve") {
			t.Fatalf("a sibling past 20 bytes of values: %d %q; want 413", rec.Code, rec.Body)
		}
		read = do(h, "GET", "/kv/k?r=3", "")
		if rec := do(h, "PUT", "/kv/k", "thirteen bytes", HeaderContext, read.Header().Get(HeaderContext)); rec.Code != http.StatusNoContent {
			t.Fatalf("the same bytes replacing the value: %d %q", rec.Code, rec.Body)
		}
	})
}

// Requests with invented methods are counted under one "other" label, so
// no client can grow /metrics: the number of series after 200 junk
// methods is the number after the first.
func TestMetricsMethodsBounded(t *testing.T) {
	inCluster(t, 1, quorum.Config{N: 1, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		h := API(c.node("n1"), APIConfig{Metrics: &Metrics{}})
		series := func() int {
			n := 0
			for line := range strings.Lines(do(h, "GET", "/metrics", "").Body.String()) {
				if !strings.HasPrefix(line, "#") {
					n++
				}
			}
			return n
		}
		do(h, "BAZ0", "/kv/k", "")
		series() // the first scrape adds the series of /metrics itself
		before := series()
		for i := range 200 {
			do(h, fmt.Sprintf("BAZ%d", 7729+i), "/kv/k", "")
		}
		if after := series(); after != before {
			t.Fatalf("/metrics went from %d to %d series after 200 invented methods", before, after)
		}
		if body := do(h, "GET", "/metrics", "").Body.String(); !strings.Contains(body, `kv_requests_total{code="405",method="other",route="/kv/{key}"} 201`) {
			t.Fatalf("invented methods not counted as other:\n%s", body)
		}
	})
}
