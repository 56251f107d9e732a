package kv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
)

// pipeNet is a network of in-memory connections (net.Pipe) between an
// HTTP client and servers, so that HTTP runs inside a synctest bubble:
// every goroutine blocked on a connection is durably blocked.
type pipeNet struct {
	mu        sync.Mutex
	listeners map[string]*pipeListener
}

type pipeListener struct {
	addr  string
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

type pipeAddr string

func (a pipeAddr) Network() string { return "pipe" }
func (a pipeAddr) String() string  { return string(a) }

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return pipeAddr(l.addr) }

// listen returns a listener at addr.
func (p *pipeNet) listen(addr string) *pipeListener {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.listeners == nil {
		p.listeners = map[string]*pipeListener{}
	}
	l := &pipeListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
	p.listeners[addr] = l
	return l
}

// dial connects to the listener at addr; without one (or a closed one),
// the connection is refused as a dial error.
func (p *pipeNet) dial(ctx context.Context, _, addr string) (net.Conn, error) {
	p.mu.Lock()
	l := p.listeners[addr]
	p.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: "pipe", Err: errors.New("connection refused")}
	if l == nil {
		return nil, refused
	}
	c, s := net.Pipe()
	select {
	case l.conns <- s:
		return c, nil
	case <-l.done:
		return nil, refused
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// client returns an HTTP client over the network; close its transport's
// idle connections before the bubble ends.
func (p *pipeNet) client() (*http.Client, *http.Transport) {
	tr := &http.Transport{DialContext: p.dial, MaxIdleConnsPerHost: 64}
	return &http.Client{Transport: tr}, tr
}

// batchRig is node "b" served over a pipeNet at "b:80", and a transport
// calling it from "a". Every POST it serves is counted by path, and while
// hold is set, RPCs wait for release before they are served.
type batchRig struct {
	t       *testing.T
	tr      *HTTPTransport
	node    *Node
	srv     *http.Server
	httpTr  *http.Transport
	mu      sync.Mutex
	posts   map[string]int
	batches [][]time.Duration // the timeouts of each batch's requests, as served
	hold    bool
	release chan struct{}
}

// newBatchRig starts the rig inside the caller's bubble; cfg configures
// the API, mod the transport.
func newBatchRig(t *testing.T, cfg APIConfig, mod func(*HTTPTransport)) *batchRig {
	var pn pipeNet
	r, err := ring.New([]ring.Node{{ID: "a"}, {ID: "b"}}, ring.Config{VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	client, httpTr := pn.client()
	tr := &HTTPTransport{Client: client}
	if mod != nil {
		mod(tr)
	}
	tr.SetAddr("b", "b:80")
	s, err := Open(filepath.Join(t.TempDir(), "b.db"), StoreConfig{Tree: testTree, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(NodeConfig{ID: "b", Ring: r, Store: s, Transport: tr, Quorum: quorum.Config{N: 2, R: 1, W: 1}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	rig := &batchRig{t: t, tr: tr, node: n, httpTr: httpTr, posts: map[string]int{}, release: make(chan struct{})}
	api := API(n, cfg)
	rig.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rig.mu.Lock()
		rig.posts[r.URL.Path]++
		hold := rig.hold && (r.URL.Path == batchPath || r.URL.Path == rpcPath)
		rig.mu.Unlock()
		if hold {
			<-rig.release
		}
		if r.URL.Path == batchPath {
			body, _ := io.ReadAll(r.Body)
			if items, err := decodeBatch(body); err == nil {
				var timeouts []time.Duration
				for _, it := range items {
					timeouts = append(timeouts, it.timeout)
				}
				rig.mu.Lock()
				rig.batches = append(rig.batches, timeouts)
				rig.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		api.ServeHTTP(w, r)
	})}
	l := pn.listen("b:80")
	go rig.srv.Serve(l)
	t.Cleanup(func() {
		rig.srv.Close()
		httpTr.CloseIdleConnections()
		n.Close()
		s.Close()
	})
	return rig
}

// write is an encoded opWrite of key with a one-byte value.
func batchWrite(t testing.TB, key string) []byte {
	var o Object
	o.Update(o.Context(), "a.e", Version{Value: []byte{1}})
	b, err := (&request{Op: opWrite, Key: []byte(key), Object: o}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// callAll makes n concurrent calls of reqs[i] to "b" with ctxs[i] (nil:
// context.Background()) and returns their errors.
func (r *batchRig) callAll(reqs [][]byte, ctx func(i int) context.Context) []error {
	errs := make([]error, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			c := context.Background()
			if ctx != nil {
				c = ctx(i)
			}
			out, err := r.tr.Call(c, "b", req)
			if err == nil {
				var resp response
				err = resp.unmarshal(out)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errs
}

func (r *batchRig) count(path string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.posts[path]
}

func writes(t testing.TB, n int) [][]byte {
	reqs := make([][]byte, n)
	for i := range reqs {
		reqs[i] = batchWrite(t, fmt.Sprintf("k%d", i))
	}
	return reqs
}

// N concurrent calls to one peer while its first requests are
// outstanding leave in as few HTTP requests as the batch caps allow: with
// 2 in flight and 128 calls per batch, 2 + ⌈(N−2)/128⌉ requests (the
// first two alone, the rest in batches), each call sent once, answered
// and applied.
func TestBatchCoalesces(t *testing.T) {
	for _, tc := range []struct {
		calls, maxBatch, inFlight, posts int
	}{
		{calls: 1, posts: 1},
		{calls: 64, posts: 3},                            // 1, 1, 62
		{calls: 300, posts: 5},                           // 1, 1, 128, 128, 42
		{calls: 64, inFlight: 1, posts: 2},               // 1, 63
		{calls: 64, maxBatch: 10, inFlight: 1, posts: 8}, // 1, then 63 by 10
	} {
		t.Run(fmt.Sprintf("%d/%d/%d", tc.calls, tc.maxBatch, tc.inFlight), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rig := newBatchRig(t, APIConfig{}, func(tr *HTTPTransport) { tr.MaxBatch, tr.BatchesInFlight = tc.maxBatch, tc.inFlight })
				rig.hold = true
				reqs := writes(t, tc.calls)
				var errs []error
				done := make(chan struct{})
				go func() {
					errs = rig.callAll(reqs, nil)
					close(done)
				}()
				synctest.Wait() // every call is queued or in a held batch
				rig.mu.Lock()
				rig.hold = false
				rig.mu.Unlock()
				close(rig.release)
				<-done
				for i, err := range errs {
					if err != nil {
						t.Fatalf("call %d: %v", i, err)
					}
				}
				if got := rig.count(batchPath) + rig.count(rpcPath); got != tc.posts {
					t.Errorf("%d calls in %d HTTP requests (%d batches), want %d", tc.calls, got, len(rig.batches), tc.posts)
				}
				n := rig.count(rpcPath)
				for _, b := range rig.batches {
					n += len(b)
				}
				if n != tc.calls {
					t.Errorf("%d calls sent, want %d", n, tc.calls)
				}
				for i := range tc.calls {
					if _, found, err := rig.node.store.Get(fmt.Appendf(nil, "k%d", i)); err != nil || !found {
						t.Fatalf("k%d not stored: %v", i, err)
					}
				}
			})
		})
	}
}

// Reads are batched apart: with every batch slot of writes to a peer
// held, a read still leaves at once and is answered.
func TestBatchReadsApart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{}, func(tr *HTTPTransport) { tr.BatchesInFlight = 1 })
		rig.hold = true
		write := make(chan error, 1)
		go func() {
			_, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "w"))
			write <- err
		}()
		synctest.Wait()
		rig.mu.Lock()
		rig.hold = false // the write's batch stays held; what comes next is not
		rig.mu.Unlock()
		read, err := (&request{Op: opRead, Key: []byte("w")}).marshal()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rig.tr.Call(context.Background(), "b", read); err != nil {
			t.Fatalf("read behind a held write: %v", err)
		}
		select {
		case err := <-write:
			t.Fatalf("the held write returned: %v", err)
		default:
		}
		close(rig.release)
		if err := <-write; err != nil {
			t.Fatal(err)
		}
		if got := rig.count(rpcPath); got != 2 {
			t.Errorf("%d HTTP requests, want 2", got)
		}
	})
}

// Calls made one after another each leave at once, alone: no timer holds
// a call back for company.
func TestBatchNoWaitAlone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{}, nil)
		start := time.Now()
		for i, req := range writes(t, 5) {
			if _, err := rig.tr.Call(context.Background(), "b", req); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("5 sequential calls took %v of the bubble's time, want 0", d)
		}
		if p, b := rig.count(rpcPath), rig.count(batchPath); p != 5 || b != 0 {
			t.Errorf("%d requests to %s and %d batches, want 5 and 0", p, rpcPath, b)
		}
	})
}

// Each call keeps its own deadline: one that ends while the call waits in
// the queue was not delivered and leaves in no batch; one whose caller
// gives up once its batch left is indeterminate; a
// request's timeout in its batch is what is left of its caller's
// deadline when the batch leaves.
func TestBatchDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{}, func(tr *HTTPTransport) { tr.BatchesInFlight = 1 })
		rig.hold = true
		call := func(ctx context.Context, key string, timeout time.Duration) <-chan error {
			out := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(ctx, timeout)
				defer cancel()
				_, err := rig.tr.Call(ctx, "b", batchWrite(t, key))
				out <- err
			}()
			synctest.Wait()
			return out
		}
		start := time.Now()
		actx, giveUp := context.WithCancel(context.Background())
		a := call(actx, "a", 20*time.Second)                // leaves alone, and is held
		b := call(context.Background(), "b", 3*time.Second) // queued behind a
		c := call(context.Background(), "c", 10*time.Second)
		d := call(context.Background(), "d", 12*time.Second)
		if err := <-b; !errors.Is(err, ErrNotDelivered) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) != 3*time.Second {
			t.Errorf("queued call at its deadline: %v after %v, want ErrNotDelivered after 3s", err, time.Since(start))
		}
		<-time.After(time.Second)
		giveUp()
		if err := <-a; errors.Is(err, ErrNotDelivered) || !errors.Is(err, context.Canceled) {
			t.Errorf("sent call given up: %v, want an indeterminate error", err)
		}
		synctest.Wait() // c and d left together, and are held
		rig.mu.Lock()
		rig.hold = false
		rig.mu.Unlock()
		close(rig.release)
		if err := errors.Join(<-c, <-d); err != nil {
			t.Fatal(err)
		}
		if want := [][]time.Duration{{6 * time.Second, 8 * time.Second}}; !reflect.DeepEqual(rig.batches, want) {
			t.Errorf("batches' timeouts %v, want %v", rig.batches, want)
		}
		// Whether a was applied is unknown, as its error said.
		for key, stored := range map[string]bool{"b": false, "c": true, "d": true} {
			if _, found, _ := rig.node.store.Get([]byte(key)); found != stored {
				t.Errorf("%s stored: %v, want %v", key, found, stored)
			}
		}
	})
}

// MaxBatch 1 sends each call alone to /internal/rpc, as nodes without
// batches serve.
func TestBatchOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{}, func(tr *HTTPTransport) { tr.MaxBatch = 1 })
		for i, err := range rig.callAll(writes(t, 8), nil) {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if p, b := rig.count(rpcPath), rig.count(batchPath); p != 8 || b != 0 {
			t.Errorf("%d requests to %s and %d batches, want 8 and 0", p, rpcPath, b)
		}
	})
}

// A batch that could not be sent delivered none of its calls.
func TestBatchNotDelivered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{}, nil)
		rig.tr.SetAddr("b", "nowhere:80")
		for i, err := range rig.callAll(writes(t, 20), nil) {
			if !errors.Is(err, ErrNotDelivered) {
				t.Fatalf("call %d: %v, want ErrNotDelivered", i, err)
			}
		}
	})
}

// A batch refused as a whole carries the refusal to each of its calls:
// 401 without the cluster key. (503, for a batch that finds no slot
// free, is TestBatchSlotsPerRequest's.)
func TestBatchRefusedWhole(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{ClusterKey: bytes.Repeat([]byte("k"), 16)}, func(tr *HTTPTransport) { tr.Key = bytes.Repeat([]byte("x"), 16) })
		for i, err := range rig.callAll(writes(t, 10), nil) {
			if !errors.Is(err, ErrUnauthenticated) || errors.Is(err, ErrNotDelivered) {
				t.Fatalf("call %d: %v, want ErrUnauthenticated", i, err)
			}
		}
	})
}

// Every request of a batch counts against the RPC concurrency limit: with
// k slots free when a batch arrives, its first k requests are served and
// the rest answered 503 each (ErrUnavailable), not delivered to the node.
func TestBatchSlotsPerRequest(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "b.db"), StoreConfig{Tree: testTree, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := ring.New([]ring.Node{{ID: "b"}}, ring.Config{VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	n, err := NewNode(NodeConfig{ID: "b", Ring: r, Store: s, Transport: &HTTPTransport{}, Quorum: quorum.Config{N: 1, R: 1, W: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	a := &api{n: n, cfg: APIConfig{Limits: Limits{}.withDefaults()}, rpcSlots: make(limiter, 5)}
	a.rpcSlots.try() // two requests in progress elsewhere: 3 slots free
	a.rpcSlots.try()
	items := make([]batchItem, 7)
	for i := range items {
		items[i] = batchItem{timeout: time.Second, req: batchWrite(t, fmt.Sprintf("k%d", i))}
	}
	body, err := encodeBatch(items)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.serveBatch(rec, httptest.NewRequest("POST", batchPath, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("batch: %d %s", rec.Code, rec.Body)
	}
	status := map[int]int{}
	err = readFrames(bufio.NewReader(rec.Body), len(items), func(i, st int, _ []byte) { status[i] = st })
	if err != nil {
		t.Fatal(err)
	}
	for i := range items {
		want := http.StatusOK
		if i >= 3 {
			want = http.StatusServiceUnavailable
		}
		_, found, _ := s.Get(fmt.Appendf(nil, "k%d", i))
		if status[i] != want || found != (want == http.StatusOK) {
			t.Errorf("request %d: status %d, stored %v; want %d", i, status[i], found, want)
		}
	}
	if free := cap(a.rpcSlots) - len(a.rpcSlots); free != 3 {
		t.Errorf("%d slots free after the batch, want 3", free)
	}
	// No slot free: the whole batch is refused unread, 503, which each
	// of its calls takes for ErrUnavailable.
	for len(a.rpcSlots) < cap(a.rpcSlots) {
		a.rpcSlots.try()
	}
	rec = httptest.NewRecorder()
	a.serveBatch(rec, httptest.NewRequest("POST", batchPath, bytes.NewReader(body)))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Fatalf("batch with no slot free: %d %v", rec.Code, rec.Header())
	}
	if err := statusError("b", rec.Code, rec.Body.String()); !errors.Is(err, ErrUnavailable) {
		t.Errorf("503: %v, want ErrUnavailable", err)
	}
}

// batchBody encodes a batch by hand: n requests, each [timeout, req].
func batchBody(magic string, n int, item func(e *msgpack.Encoder, i int)) []byte {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	_ = e.EncodeArrayLen(2)
	_ = e.EncodeString(magic)
	_ = e.EncodeArrayLen(n)
	for i := range n {
		item(e, i)
	}
	return buf.Bytes()
}

// Hostile batches are refused whole with 400 and a reason, before any of
// their requests runs: too many requests (a million tiny ones included),
// a batch inside a batch, a timeout out of bounds, no batch at all,
// trailing bytes; a body over the declared limit is refused unread
// (413). A malformed request inside a good batch is refused alone.
func TestBatchHostile(t *testing.T) {
	key := bytes.Repeat([]byte("k"), 16)
	_, servers := httpNodes(t, key)
	url := servers[0].URL + batchPath
	post := func(body []byte, auth string) (int, string) {
		t.Helper()
		req, err := http.NewRequest("POST", url, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth == "" {
			auth = authenticator(key, time.Now(), body)
		}
		req.Header.Set(HeaderAuth, auth)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	tiny := func(e *msgpack.Encoder, _ int) { _, _ = e.EncodeArrayLen(2), e.EncodeInt(1); _ = e.EncodeBytes(nil) }
	good := batchWrite(t, "x")
	nested, err := encodeBatch([]batchItem{{timeout: time.Second, req: good}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		body []byte
		want string
	}{
		{"a million tiny requests", batchBody(batchMagic, 1<<20, tiny), "1048576 requests, want at most 1024"},
		{"one too many", batchBody(batchMagic, MaxBatchLen+1, tiny), "want at most 1024"},
		{"nested", batchBody(batchMagic, 2, func(e *msgpack.Encoder, i int) {
			_, _ = e.EncodeArrayLen(2), e.EncodeInt(int64(time.Second))
			_ = e.EncodeBytes([][]byte{good, nested}[i])
		}), "request 1 is itself a batch"},
		{"zero timeout", batchBody(batchMagic, 1, func(e *msgpack.Encoder, _ int) {
			_, _ = e.EncodeArrayLen(2), e.EncodeInt(0)
			_ = e.EncodeBytes(good)
		}), "timeout of 0 ns"},
		{"negative timeout", batchBody(batchMagic, 1, func(e *msgpack.Encoder, _ int) {
			_, _ = e.EncodeArrayLen(2), e.EncodeInt(-1)
			_ = e.EncodeBytes(good)
		}), "timeout of -1 ns"},
		{"timeout too long", batchBody(batchMagic, 1, func(e *msgpack.Encoder, _ int) {
			_, _ = e.EncodeArrayLen(2), e.EncodeInt(int64(MaxBatchTimeout+1))
			_ = e.EncodeBytes(good)
		}), "timeout of 600000000001 ns"},
		{"not a batch", good, "batch: 13 fields, want 2"},
		{"other magic", batchBody("kv-batch/2", 0, nil), "not a batch"},
		{"trailing bytes", append(slices.Clone(nested), 0), "1 trailing bytes"},
	} {
		code, text := post(tc.body, "")
		if code != http.StatusBadRequest || !strings.Contains(text, tc.want) {
			t.Errorf("%s: %d %q, want 400 with %q", tc.name, code, text, tc.want)
		}
	}
	// The declared length is checked before a byte of the body is read.
	big := authenticator(key, time.Now(), nil)
	parts := strings.Split(big, ".")
	parts[1] = fmt.Sprint(MaxRPCLen + 1)
	signed := strings.Join(parts[:3], ".")
	big = signed + "." + hex.EncodeToString(newClusterKey(key).mac(signed))
	if code, text := post(nil, big); code != http.StatusRequestEntityTooLarge || !strings.Contains(text, "at most") {
		t.Errorf("oversized batch: %d %q, want 413", code, text)
	}
	// A malformed request is refused alone.
	body, err := encodeBatch([]batchItem{{time.Second, good}, {time.Second, []byte{0xc1}}, {time.Second, batchWrite(t, "y")}})
	if err != nil {
		t.Fatal(err)
	}
	code, text := post(body, "")
	if code != http.StatusOK {
		t.Fatalf("batch with a malformed request: %d %q", code, text)
	}
	status := map[int]int{}
	if err := readFrames(bufio.NewReader(strings.NewReader(text)), 3, func(i, st int, _ []byte) { status[i] = st }); err != nil {
		t.Fatal(err)
	}
	if status[0] != 200 || status[1] != 400 || status[2] != 200 {
		t.Errorf("statuses %v, want 200, 400, 200", status)
	}
}

// hostileReply serves every batch with reply(n), n the batch's requests,
// and every call sent alone with a found response; the first request
// waits for release.
func hostileReply(t *testing.T, reply func(n int) []byte, release <-chan struct{}) *HTTPTransport {
	var pn pipeNet
	client, httpTr := pn.client()
	var first sync.Once
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first.Do(func() { <-release })
		if r.URL.Path == rpcPath {
			ok, _ := (&response{Found: true}).marshal()
			_, _ = w.Write(ok)
			return
		}
		body, _ := io.ReadAll(r.Body)
		items, err := decodeBatch(body)
		if err != nil {
			t.Errorf("the transport sent a bad batch: %v", err)
		}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(reply(len(items)))
	})}
	go srv.Serve(pn.listen("b:80"))
	t.Cleanup(func() {
		srv.Close()
		httpTr.CloseIdleConnections()
	})
	tr := &HTTPTransport{Client: client, BatchesInFlight: 1}
	tr.SetAddr("b", "b:80")
	return tr
}

// frames encodes frames of [index, status, body].
func frames(fs ...[3]any) []byte {
	var buf bytes.Buffer
	e := msgpack.NewEncoder(&buf)
	for _, f := range fs {
		_ = e.EncodeArrayLen(3)
		_ = e.Encode(f[0])
		_ = e.Encode(f[1])
		_ = e.Encode(f[2])
	}
	return buf.Bytes()
}

// A reply from a hostile or failing peer answers the calls it answered
// correctly and leaves every other indeterminate (an error, never
// ErrNotDelivered: the batch was sent): a reply cut short, an index
// repeated or out of range, a status out of range, a body longer than any
// RPC, bytes that are no frame.
func TestBatchHostileReply(t *testing.T) {
	ok, _ := (&response{Found: true}).marshal()
	for _, tc := range []struct {
		name    string
		reply   func(n int) []byte
		answers bool // the reply answers its first request
	}{
		{"cut short", func(int) []byte { return frames([3]any{0, 200, ok}) }, true},
		{"empty", func(int) []byte { return nil }, false},
		{"index repeated", func(int) []byte { return frames([3]any{0, 200, ok}, [3]any{0, 200, ok}) }, true},
		{"index out of range", func(n int) []byte { return frames([3]any{0, 200, ok}, [3]any{n, 200, ok}) }, true},
		{"negative index", func(int) []byte { return frames([3]any{-1, 200, ok}) }, false},
		{"status out of range", func(int) []byte { return frames([3]any{0, 200, ok}, [3]any{1, 999, ok}) }, true},
		{"body too long", func(int) []byte {
			return append(frames([3]any{0, 200, ok}), 0x93, 0x01, 0xcc, 200, 0xc6, 0x7f, 0xff, 0xff, 0xff)
		}, true},
		{"garbage", func(int) []byte { return []byte{0xc1, 0xc1, 0xc1} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				tr := hostileReply(t, tc.reply, release)
				// Call 0 leaves alone and is held; calls 1 to 4 queue
				// behind it in order and leave together as a batch of 4,
				// whose reply is the hostile one.
				var errs [5]error
				var wg sync.WaitGroup
				for i := range errs {
					wg.Go(func() {
						_, errs[i] = tr.Call(context.Background(), "b", batchWrite(t, fmt.Sprint(i)))
					})
					synctest.Wait()
				}
				close(release)
				wg.Wait()
				for i, err := range errs {
					answered := i == 0 || tc.answers && i == 1 // alone, or the batch's first
					switch {
					case answered && err != nil:
						t.Errorf("call %d: %v, want an answer", i, err)
					case !answered && (err == nil || errors.Is(err, ErrNotDelivered)):
						t.Errorf("call %d: %v, want an indeterminate error", i, err)
					}
				}
			})
		})
	}
}

// decodeBatch never panics, and what it accepts encodes back to the same
// bytes: the encoding is canonical.
func FuzzDecodeBatch(f *testing.F) {
	good, _ := encodeBatch([]batchItem{{time.Second, batchWrite(f, "k")}, {MaxBatchTimeout, nil}})
	nested, _ := encodeBatch([]batchItem{{time.Second, good}})
	f.Add(good)
	f.Add(nested)
	f.Add(batchBody(batchMagic, 3, func(e *msgpack.Encoder, _ int) { _, _ = e.EncodeArrayLen(2), e.EncodeInt(1); _ = e.EncodeBytes(nil) }))
	f.Add([]byte{0x92, 0xaa})
	f.Fuzz(func(t *testing.T, b []byte) {
		items, err := decodeBatch(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if len(items) > MaxBatchLen {
			t.Fatalf("%d requests accepted", len(items))
		}
		for _, it := range items {
			if it.timeout <= 0 || it.timeout > MaxBatchTimeout || bytes.HasPrefix(it.req, batchPrefix) {
				t.Fatalf("accepted %v, %x", it.timeout, it.req)
			}
		}
		again, err := encodeBatch(items)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := decodeBatch(again); err != nil || !reflect.DeepEqual(back, items) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// readFrames never panics, answers each request at most once, within the
// batch, with a valid status, and stops at the first bad frame.
func FuzzReadFrames(f *testing.F) {
	ok, _ := (&response{Found: true}).marshal()
	f.Add(frames([3]any{0, 200, ok}, [3]any{2, 503, []byte("busy")}, [3]any{1, 400, nil}), 3)
	f.Add(frames([3]any{0, 200, ok}, [3]any{0, 200, ok}), 2)
	f.Add([]byte{0x93, 0x01, 0xcc, 200, 0xc6, 0x7f, 0xff, 0xff, 0xff}, 2)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		if n < 0 || n > MaxBatchLen {
			return
		}
		seen := map[int]bool{}
		_ = readFrames(bufio.NewReader(bytes.NewReader(b)), n, func(i, status int, body []byte) {
			if i < 0 || i >= n || seen[i] || status < 100 || status > 599 || len(body) > len(b) {
				t.Fatalf("frame %d (seen %v) of %d, status %d, %d bytes", i, seen[i], n, status, len(body))
			}
			seen[i] = true
		})
	})
}
