package kv

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/detector/swim"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
)

// authenticator returns the HeaderAuth value of body under key at now.
func authenticator(key []byte, now time.Time, body []byte) string {
	return newClusterKey(key).authenticator(now, body)
}

// authenticate checks the HeaderAuth value auth of body under key at now
// as a node does; errors wrap [ErrUnauthenticated].
func authenticate(key []byte, auth string, body []byte, now time.Time) error {
	a, err := parseAuth([]*clusterKey{newClusterKey(key)}, auth, now)
	if err == nil {
		err = a.check(body)
	}
	return err
}

func TestAuthenticate(t *testing.T) {
	key := []byte("0123456789abcdef")
	body := []byte("request")
	now := time.Unix(1_800_000_000, 0)
	good := authenticator(key, now, body)
	for _, c := range []struct {
		name string
		key  []byte
		auth string
		body []byte
		at   time.Time
		ok   bool
	}{
		{"valid", key, good, body, now, true},
		{"at the window's edge", key, good, body, now.Add(AuthWindow), true},
		{"from the future edge", key, good, body, now.Add(-AuthWindow), true},
		{"too old", key, good, body, now.Add(AuthWindow + time.Second), false},
		{"too far ahead", key, good, body, now.Add(-AuthWindow - time.Second), false},
		{"another key", []byte("fedcba9876543210"), good, body, now, false},
		{"another body", key, good, []byte("requesT"), now, false},
		{"another time", key, "1800000001" + good[strings.IndexByte(good, '.'):], body, now, false},
		{"missing", key, "", body, now, false},
		{"no separator", key, "1800000000", body, now, false},
		{"bad time", key, "x." + good[strings.IndexByte(good, '.')+1:], body, now, false},
		{"bad hex", key, "1800000000.zz", body, now, false},
		{"truncated MAC", key, good[:len(good)-2], body, now, false},
		{"another declared length", key, strings.Replace(good, ".7.", ".8.", 1), append(body, 'x'), now, false},
		{"the old form", key, "1800000000." + good[strings.LastIndexByte(good, '.')+1:], body, now, false},
	} {
		err := authenticate(c.key, c.auth, c.body, c.at)
		if (err == nil) != c.ok || err != nil && !errors.Is(err, ErrUnauthenticated) {
			t.Errorf("%s: %v, want ok %v", c.name, err, c.ok)
		}
	}
}

// FuzzAuthenticate: any header and body are judged without a panic, a
// fresh authenticator of a body passes, and it fails for a longer body.
func FuzzAuthenticate(f *testing.F) {
	key := []byte("0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	f.Add(authenticator(key, now, []byte("x")), []byte("x"))
	f.Add("1800000000.", []byte{})
	f.Add("-9223372036854775808.00", []byte("y"))
	f.Fuzz(func(t *testing.T, auth string, body []byte) {
		_ = authenticate(key, auth, body, now)
		fresh := authenticator(key, now, body)
		if err := authenticate(key, fresh, body, now); err != nil {
			t.Fatalf("refused a fresh authenticator: %v", err)
		}
		if err := authenticate(key, fresh, append(body, 'x'), now); err == nil {
			t.Fatal("accepted the authenticator of another body")
		}
	})
}

// With a cluster key, nodes serve each other's replica RPCs and nothing
// else: a call without the key, or under another, is refused with 401,
// which the transport reports as ErrUnauthenticated.
func TestClusterKey(t *testing.T) {
	key := []byte("a cluster secret of some length")
	tr, servers := httpNodes(t, key)
	put, err := http.NewRequest(http.MethodPut, servers[0].URL+"/kv/k?w=3", strings.NewReader("v"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(put)
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT with w=3 over authenticated RPCs: %v %v", resp, err)
	}
	req, err := (&request{Op: opRead, Key: []byte("k")}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Call(context.Background(), "b", req); err != nil {
		t.Fatalf("a read with the key: %v", err)
	}
	other := &HTTPTransport{Key: []byte("another secret of some length")}
	other.SetAddr("b", servers[1].Listener.Addr().String())
	if _, err := other.Call(context.Background(), "b", req); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("a call under another key: %v, want ErrUnauthenticated", err)
	}
	bare, err := http.Post(servers[1].URL+rpcPath, "application/msgpack", bytes.NewReader(req))
	if err != nil || bare.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a call without a key: %v %v, want 401", bare, err)
	}
	bare.Body.Close()
}

func TestStartServerShortClusterKey(t *testing.T) {
	_, err := StartServer(ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir(), ClusterKey: []byte("short")})
	if err == nil || !strings.Contains(err.Error(), "cluster key") {
		t.Fatalf("StartServer with a 5-byte cluster key: %v", err)
	}
}

// StartServer refuses a cluster name too long for a gossip label, and
// closes what it opened (the store in the same directory opens again).
func TestStartServerLongClusterName(t *testing.T) {
	cfg := ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir(),
		ClusterKey: []byte("a secret of the cluster"), ClusterName: strings.Repeat("x", swim.MaxLabelLen+1)}
	if _, err := StartServer(cfg); err == nil || !strings.Contains(err.Error(), "Label") {
		t.Fatalf("StartServer with a %d-byte cluster name: %v", len(cfg.ClusterName), err)
	}
	cfg.ClusterName = strings.Repeat("x", swim.MaxLabelLen)
	s, err := StartServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	r.n += len(p)
	return len(p), nil
}

// A replica RPC without a current authenticator under the cluster key is
// refused before any of its body is read, whatever length it claims; one
// with an authenticator is read up to the length it declared, no further.
func TestUnauthenticatedBodyUnread(t *testing.T) {
	inCluster(t, 1, quorum.Config{N: 1, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("0123456789abcdef")
		h := API(c.node("n1"), APIConfig{ClusterKey: key})
		now := strconv.FormatInt(time.Now().Unix(), 10)
		hex64 := strings.Repeat("ab", 32)
		for _, auth := range []string{
			"", "12.00", authenticator(key, time.Now().Add(-2*AuthWindow), nil),
			now + "." + hex64, // a fresh time and any MAC
			now + ".67108864." + hex64 + "." + hex64,
			authenticator([]byte("another key of 16"), time.Now(), make([]byte, 1<<20)),
		} {
			body := &countingReader{}
			req := httptest.NewRequest(http.MethodPost, rpcPath, body)
			req.Header.Set(HeaderAuth, auth)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized || body.n != 0 {
				t.Fatalf("authenticator %q: %d after reading %d bytes; want 401 before reading", auth, rec.Code, body.n)
			}
		}
		body := &countingReader{}
		req := httptest.NewRequest(http.MethodPost, rpcPath, body)
		req.Header.Set(HeaderAuth, authenticator(key, time.Now(), make([]byte, 10)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusRequestEntityTooLarge || body.n > 11 {
			t.Fatalf("a body longer than the authenticated 10 bytes: %d after reading %d bytes; want 413 after at most 11", rec.Code, body.n)
		}
	})
}

// TestGossipKey: the gossip key is HMAC-SHA256 of "distkit kv gossip key
// v1" under the cluster key (the vector from `openssl dgst -sha256
// -hmac`), a swim key in size, and neither the cluster key nor the key of
// another cluster.
func TestGossipKey(t *testing.T) {
	clusterKey := []byte("a secret the three nodes share")
	got := GossipKey(clusterKey)
	want, err := hex.DecodeString("30870c4431a7c0b51afb6053f9dcacd58dcdce53590d25c77f2a139c742445cd")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("GossipKey = %x, want %x", got, want)
	}
	if len(got) != swim.KeySize {
		t.Fatalf("GossipKey has %d bytes, want %d", len(got), swim.KeySize)
	}
	if other := GossipKey([]byte("a secret the three nodes sharE")); bytes.Equal(other, got) || bytes.Equal(got[:len(clusterKey)], clusterKey) {
		t.Fatal("the gossip key does not depend on the cluster key alone")
	}
}

// blockingReader blocks its reads until release is closed, then ends.
type blockingReader struct{ release chan struct{} }

func (r blockingReader) Read([]byte) (int, error) {
	<-r.release
	return 0, io.EOF
}

// Beyond MaxConcurrent client requests, or MaxConcurrentRPC replica
// RPCs, a request is answered 503 with Retry-After at once, and served
// again once a slot is free.
func TestConcurrencyLimit(t *testing.T) {
	inCluster(t, 1, quorum.Config{N: 1, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		h := API(c.node("n1"), APIConfig{Limits: Limits{MaxConcurrent: 1, MaxConcurrentRPC: 1}})
		for _, path := range []string{"/kv/k", rpcPath} {
			method := http.MethodPut
			if path == rpcPath {
				method = http.MethodPost
			}
			stuck := blockingReader{make(chan struct{})}
			done := make(chan int)
			go func() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest(method, path, stuck))
				done <- rec.Code
			}()
			synctest.Wait()
			rec := do(h, method, path, "v")
			if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "overloaded") {
				t.Fatalf("%s %s beyond the limit: %d %v %q; want 503 with Retry-After", method, path, rec.Code, rec.Header(), rec.Body)
			}
			close(stuck.release)
			<-done
			if path == "/kv/k" {
				if rec := do(h, method, path, "v"); rec.Code != http.StatusNoContent {
					t.Fatalf("PUT once the slot is free: %d %q", rec.Code, rec.Body)
				}
			}
		}
	})
}

// A body that does not arrive within BodyTimeout is answered 408 and its
// connection closed, on a real listener.
func TestBodyTimeout(t *testing.T) {
	c := newCluster(t, 1, 1, quorum.Config{N: 1, R: 1, W: 1})
	defer c.close()
	srv := httptest.NewServer(API(c.node("n1"), APIConfig{Limits: Limits{BodyTimeout: 100 * time.Millisecond}}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "PUT /kv/k HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(time.Minute)) // a bound for a broken server, not a timing
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("a stalled body: %d, want 408", resp.StatusCode)
	}
}

// A set of cluster keys refuses a short key, a repeated one and too
// many, changing nothing; the primary is the first.
func TestClusterKeysSet(t *testing.T) {
	a, b := []byte("the first key of the set"), []byte("the second key of the set")
	k, err := NewClusterKeys(a, b)
	if err != nil {
		t.Fatal(err)
	}
	many := make([][]byte, MaxClusterKeys)
	for i := range many {
		many[i] = fmt.Appendf(nil, "a key of sixteen bytes or more %d", i)
	}
	for name, keys := range map[string][][]byte{"short": {a, []byte("short")}, "repeated": {b, a, b}, "too many": append([][]byte{b}, many...), "empty": {nil}} {
		if err := k.Set(keys[0], keys[1:]...); err == nil {
			t.Errorf("%s: accepted", name)
		}
		if !bytes.Equal(k.Primary(), a) || len(k.all()) != 2 {
			t.Errorf("%s: the set changed to %q", name, k.all())
		}
	}
	if err := k.Set(many[0], many[1:]...); err != nil {
		t.Fatalf("%d keys: %v", MaxClusterKeys, err)
	}
}

// A rolling rotation over HTTP: while both keys are installed, calls
// signed under either are served; once the old key is removed, a call
// under it is refused as ErrUnauthenticated; the transport signs with the
// primary at the time of the call.
func TestClusterKeysRotation(t *testing.T) {
	old, next := []byte("the old key of the cluster"), []byte("the new key of the cluster")
	served, err := NewClusterKeys(old)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(API(nodeOf(t, &HTTPTransport{}), APIConfig{Keys: served}))
	defer srv.Close()
	req, err := (&request{Op: opRead, Key: []byte("k")}).marshal()
	if err != nil {
		t.Fatal(err)
	}
	signing, err := NewClusterKeys(old)
	if err != nil {
		t.Fatal(err)
	}
	caller := &HTTPTransport{Keys: signing}
	caller.SetAddr("x", srv.Listener.Addr().String())
	call := func() error { _, err := caller.Call(context.Background(), "x", req); return err }
	if err := call(); err != nil {
		t.Fatalf("under the old key: %v", err)
	}
	// The caller switches first: refused until the server installs the key.
	if err := signing.Set(next, old); err != nil {
		t.Fatal(err)
	}
	if err := call(); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("under a key the server lacks: %v", err)
	}
	if err := served.Set(old, next); err != nil {
		t.Fatal(err)
	}
	if err := call(); err != nil {
		t.Fatalf("under the added key: %v", err)
	}
	if err := served.Set(next); err != nil {
		t.Fatal(err)
	}
	if err := call(); err != nil {
		t.Fatalf("under the new primary: %v", err)
	}
	if err := signing.Set(old); err != nil {
		t.Fatal(err)
	}
	if err := call(); !errors.Is(err, ErrUnauthenticated) {
		t.Fatalf("under the removed key: %v, want ErrUnauthenticated", err)
	}
}

// nodeOf returns a one-node Node over tr.
func nodeOf(t *testing.T, tr Transport) *Node {
	t.Helper()
	r, err := ring.New([]ring.Node{{ID: "x"}}, ring.Config{VNodes: 8})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(filepath.Join(t.TempDir(), "x.db"), StoreConfig{Tree: testTree, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	n, err := NewNode(NodeConfig{ID: "x", Ring: r, Store: s, Transport: tr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Close)
	return n
}

// SetClusterKeys keeps the gossip keyring in step with the RPC keys: the
// new keys are installed, the primary switched and the others removed;
// a bad set changes nothing, and a server without a key refuses.
func TestServerSetClusterKeys(t *testing.T) {
	old, next := []byte("the old key of the cluster"), []byte("the new key of the cluster")
	s, err := StartServer(ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir(), ClusterKey: old})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	gossip := func() [][]byte { return s.keyring.Keys() }
	for _, step := range []struct {
		keys [][]byte
		ok   bool
	}{
		{[][]byte{old, next}, true},
		{[][]byte{next, old}, true},
		{[][]byte{next, []byte("junk")}, false},
		{[][]byte{next}, true},
	} {
		before := gossip()
		err := s.SetClusterKeys(step.keys[0], step.keys[1:]...)
		if (err == nil) != step.ok {
			t.Fatalf("SetClusterKeys(%q): %v", step.keys, err)
		}
		want := step.keys
		if !step.ok {
			if !slices.EqualFunc(gossip(), before, bytes.Equal) {
				t.Fatalf("a refused set changed the gossip keys")
			}
			continue
		}
		var wantGossip [][]byte
		for _, k := range want {
			wantGossip = append(wantGossip, GossipKey(k))
		}
		if got := gossip(); !bytes.Equal(got[0], wantGossip[0]) || len(got) != len(wantGossip) {
			t.Fatalf("after SetClusterKeys(%q): %d gossip keys, primary right %v", step.keys, len(got), bytes.Equal(got[0], wantGossip[0]))
		}
		if !slices.EqualFunc(s.keys.all(), want, bytes.Equal) {
			t.Fatalf("RPC keys %q, want %q", s.keys.all(), want)
		}
	}
	plain, err := StartServer(ServerConfig{ID: "n2", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Shutdown(context.Background())
	if err := plain.SetClusterKeys(next); !errors.Is(err, ErrNoClusterKey) {
		t.Fatalf("SetClusterKeys on an unkeyed server: %v", err)
	}
}

// The cost of checking an RPC's authenticator when its key is the last
// of 1 or MaxClusterKeys installed keys (the worst case of a rotation).
func BenchmarkParseAuth(b *testing.B) {
	for _, n := range []int{1, MaxClusterKeys} {
		b.Run(fmt.Sprint("keys=", n), func(b *testing.B) {
			keys := make([]*clusterKey, n)
			for i := range keys {
				keys[i] = newClusterKey(fmt.Appendf(nil, "a cluster key of the benchmark %d", i))
			}
			now := time.Now()
			auth := keys[n-1].authenticator(now, make([]byte, 1024))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseAuth(keys, auth, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// CheckReads over a linearizable history of 8 clients, 16 keys and
// 20,000 operations.
func BenchmarkCheckReads(b *testing.B) {
	h := linearizableHistory(rand.New(rand.NewPCG(1, 2)), 8, 2500, 16)
	b.ReportAllocs()
	for b.Loop() {
		if s := CheckReads(h); len(s) != 0 {
			b.Fatalf("%d stale reads", len(s))
		}
	}
}
