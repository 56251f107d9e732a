package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
)

// TestBadFlags checks that nonsense is refused with a message naming
// the flag, before any request.
func TestBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-target", "redis"}, "-target"},
		{[]string{"-c", "0"}, "-c 0"},
		{[]string{"-c", "-3"}, "-c -3"},
		{[]string{"-c", "100000"}, "-c 100000"},
		{[]string{"-reads", "1.5"}, "-reads"},
		{[]string{"-reads", "-0.1"}, "-reads"},
		{[]string{"-reads", "NaN"}, "-reads"},
		{[]string{"-value", "-1"}, "-value"},
		{[]string{"-value", "2000000"}, "-value"},
		{[]string{"-keys", "0"}, "-keys"},
		{[]string{"-duration", "0s"}, "-duration"},
		{[]string{"-duration", "-5s"}, "-duration"},
		{[]string{"-duration", "2h"}, "-duration"},
		{[]string{"-timeout", "0s"}, "-timeout"},
		{[]string{"-max-ops", "0"}, "-max-ops"},
		{[]string{"-prefix", "a/b"}, "-prefix"},
		{[]string{"-prefix", strings.Repeat("a", 65)}, "-prefix"},
		{[]string{"-addrs", ""}, "-addrs"},
		{[]string{"-addrs", ",,"}, "-addrs"},
		{[]string{"-addrs", "localhost"}, "localhost"},
		{[]string{"-addrs", "127.0.0.1:0"}, "port"},
		{[]string{"-addrs", "127.0.0.1:http"}, "port"},
		{[]string{"-addrs", ":7001"}, "host:port"},
		{[]string{"-duration", "forever"}, "invalid value"},
		{[]string{"-nope"}, "not defined"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, &out)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want a usage error naming %q", tc.args, err, tc.want)
		}
		if out.Len() > 0 {
			t.Errorf("%q: printed a report %q", tc.args, out.String())
		}
	}
	if _, err := parse([]string{"-h"}, io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("-h: %v, want flag.ErrHelp", err)
	}
}

// cluster starts n kv nodes with quorum q over HTTP on loopback, and
// returns their addresses.
func cluster(t *testing.T, n int, q quorum.Config) []string {
	t.Helper()
	var (
		nodes    []ring.Node
		handlers = make([]http.Handler, n)
		addrs    []string
		mu       sync.Mutex
	)
	tr := &kv.HTTPTransport{}
	for i := range n {
		id := fmt.Sprint("n", i+1)
		nodes = append(nodes, ring.Node{ID: id})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			h := handlers[i]
			mu.Unlock()
			h.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		addr := strings.TrimPrefix(srv.URL, "http://")
		tr.SetAddr(id, addr)
		addrs = append(addrs, addr)
	}
	r, err := ring.New(nodes, ring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for i, rn := range nodes {
		s, err := kv.Open(filepath.Join(dir, rn.ID+".db"), kv.StoreConfig{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		node, err := kv.NewNode(kv.NodeConfig{ID: rn.ID, Ring: r, Store: s, Transport: tr, Quorum: q})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { node.Close(); s.Close() })
		mu.Lock()
		handlers[i] = kv.API(node, kv.APIConfig{})
		mu.Unlock()
	}
	return addrs
}

// result parses the RESULT line of a report.
func resultLine(t *testing.T, report string) map[string]string {
	t.Helper()
	for line := range strings.Lines(report) {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			out := map[string]string{}
			for _, f := range strings.Fields(rest) {
				k, v, _ := strings.Cut(f, "=")
				out[k] = v
			}
			return out
		}
	}
	t.Fatalf("no RESULT line in %q", report)
	return nil
}

// TestAgainstCluster runs kvload, blind and read-modify-write, against
// a 3-node cluster in process, bounded by -max-ops, and checks that
// every operation succeeded and the report counts them.
func TestAgainstCluster(t *testing.T) {
	addrs := strings.Join(cluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}), ",")
	for _, mode := range [][]string{nil, {"-rmw"}} {
		var out bytes.Buffer
		args := append([]string{"-addrs", addrs, "-c", "4", "-keys", "5", "-max-ops", "200", "-duration", "1m", "-timeout", "10s"}, mode...)
		if err := run(context.Background(), args, &out); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out.String())
		}
		res := resultLine(t, out.String())
		if res["ops"] != "200" || res["errors"] != "0" {
			t.Errorf("%q: ops %s, errors %s; want 200 and 0\n%s", args, res["ops"], res["errors"], out.String())
		}
		// Blind writes to 5 keys leave siblings, which reads count as
		// successes; read-modify-writes from 4 clients may too.
		if mode == nil && res["siblings"] == "0" {
			t.Errorf("blind writes to 5 keys left no siblings:\n%s", out.String())
		}
	}
}

// TestSiblingsAndAbsentKeysAreReads checks the kv client's reading of a
// 404 and a 300 as successful reads.
func TestSiblingsAndAbsentKeysAreReads(t *testing.T) {
	addr := cluster(t, 1, quorum.Config{N: 1, R: 1, W: 1})[0]
	s := kvStore{newClient(1, 5*time.Second)}
	ctx := context.Background()
	r, err := s.get(ctx, addr, "absent")
	if err != nil || r.found {
		t.Fatalf("absent key: %+v, %v; want a successful read that found nothing", r, err)
	}
	for range 2 {
		if _, err := s.put(ctx, addr, "k", []byte("v"), false, ""); err != nil {
			t.Fatal(err)
		}
	}
	r, err = s.get(ctx, addr, "k")
	if err != nil || !r.found || !r.siblings || r.version == "" {
		t.Fatalf("two blind writes: %+v, %v; want siblings with a context", r, err)
	}
	// A write with the read's context resolves them.
	if _, err := s.put(ctx, addr, "k", []byte("w"), true, r.version); err != nil {
		t.Fatal(err)
	}
	if r, err = s.get(ctx, addr, "k"); err != nil || r.siblings {
		t.Fatalf("after a read-modify-write: %+v, %v; want one value", r, err)
	}
}

// fakeEtcd serves the three paths of etcd's v3 JSON gateway that
// kvload uses over a map, as etcd 3.4 encodes them.
func fakeEtcd(t *testing.T) (addr string, requests func() int) {
	var (
		mu   sync.Mutex
		data = map[string]string{}
		revs = map[string]int64{}
		rev  int64
		n    int
	)
	type kvJSON struct {
		Key   string `json:"key"`
		Value string `json:"value,omitempty"`
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n++
		body, _ := io.ReadAll(r.Body)
		decodeKey := func(s string) string {
			b, err := base64.StdEncoding.DecodeString(s)
			if err != nil {
				t.Errorf("%s: key %q is not base64", r.URL.Path, s)
			}
			return string(b)
		}
		switch r.URL.Path {
		case "/v3/kv/range":
			var in kvJSON
			if err := json.Unmarshal(body, &in); err != nil {
				t.Error(err)
			}
			k := decodeKey(in.Key)
			if _, ok := data[k]; !ok {
				fmt.Fprint(w, `{"header":{}}`)
				return
			}
			fmt.Fprintf(w, `{"header":{},"kvs":[{"key":%q,"value":%q,"mod_revision":"%d"}],"count":"1"}`, in.Key, data[k], revs[k])
		case "/v3/kv/put":
			var in kvJSON
			if err := json.Unmarshal(body, &in); err != nil {
				t.Error(err)
			}
			rev++
			k := decodeKey(in.Key)
			data[k], revs[k] = in.Value, rev
			fmt.Fprint(w, `{"header":{}}`)
		case "/v3/kv/txn":
			var in struct {
				Compare []struct {
					Target, Result, Key string
					ModRevision         int64 `json:"mod_revision"`
				}
				Success []struct {
					RequestPut kvJSON `json:"request_put"`
				}
			}
			if err := json.Unmarshal(body, &in); err != nil {
				t.Error(err)
			}
			if len(in.Compare) != 1 || len(in.Success) != 1 || in.Compare[0].Target != "MOD" || in.Compare[0].Result != "EQUAL" {
				t.Errorf("txn %s", body)
				return
			}
			k := decodeKey(in.Compare[0].Key)
			if revs[k] != in.Compare[0].ModRevision {
				fmt.Fprint(w, `{"header":{}}`)
				return
			}
			rev++
			data[k], revs[k] = in.Success[0].RequestPut.Value, rev
			fmt.Fprint(w, `{"header":{},"succeeded":true}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// TestAgainstEtcdGateway runs kvload's etcd client, blind and
// read-modify-write, against a fake of etcd's gateway.
func TestAgainstEtcdGateway(t *testing.T) {
	addr, requests := fakeEtcd(t)
	for _, mode := range [][]string{nil, {"-rmw"}} {
		var out bytes.Buffer
		args := append([]string{"-target", "etcd", "-addrs", addr, "-c", "3", "-keys", "4", "-max-ops", "90", "-duration", "1m"}, mode...)
		if err := run(context.Background(), args, &out); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out.String())
		}
		if res := resultLine(t, out.String()); res["ops"] != "90" || res["errors"] != "0" {
			t.Errorf("%q:\n%s", args, out.String())
		}
	}
	if requests() < 180 {
		t.Errorf("%d requests for 180 operations", requests())
	}
}

// TestSilentTarget checks that a target that accepts connections and
// never answers costs at most -duration plus a little: every request is
// bounded, and the run ends with an error saying nothing succeeded.
func TestSilentTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns sync.WaitGroup
	stop := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() { <-stop; c.Close() })
		}
	}()
	defer func() { ln.Close(); close(stop); conns.Wait() }()
	for _, tc := range []struct{ duration, timeout string }{{"300ms", "5s"}, {"1s", "100ms"}} {
		var out bytes.Buffer
		start := time.Now()
		err := run(context.Background(), []string{"-addrs", ln.Addr().String(), "-c", "4", "-duration", tc.duration, "-timeout", tc.timeout}, &out)
		took := time.Since(start)
		d, _ := time.ParseDuration(tc.duration)
		// Unbounded, it would hang until the test's own timeout; the
		// margin is wide for a loaded machine.
		if took > d+10*time.Second {
			t.Errorf("-duration %s -timeout %s took %v", tc.duration, tc.timeout, took)
		}
		if err == nil || !strings.Contains(err.Error(), "no operation succeeded") {
			t.Errorf("-duration %s -timeout %s: %v, want a failure", tc.duration, tc.timeout, err)
		}
		res := resultLine(t, out.String())
		// With a short timeout, the requests that timed out are errors.
		if tc.timeout == "100ms" {
			if n, _ := strconv.Atoi(res["errors"]); n == 0 || !strings.Contains(out.String(), "timeout") {
				t.Errorf("no timeouts reported:\n%s", out.String())
			}
		}
	}
}

// endedCtx is a run's context just after its deadline, before its timer
// has cancelled it: Err is still nil.
type endedCtx struct{ context.Context }

func (endedCtx) Deadline() (time.Time, bool) { return time.Now().Add(-time.Millisecond), true }

// failing is a store whose every request fails, as a request does when
// its deadline is the run's and has passed.
type failing struct{}

func (failing) get(context.Context, string, string) (read, error) {
	return read{}, context.DeadlineExceeded
}

func (failing) put(context.Context, string, string, []byte, bool, string) (bool, error) {
	return false, context.DeadlineExceeded
}

// TestRunEndAbandons checks that an operation ending once the run's time
// is up is abandoned, neither an error nor a latency, even while the
// run's context does not yet report its end: otherwise each client would
// count a burst of instant failures there.
func TestRunEndAbandons(t *testing.T) {
	c, err := parse(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	w := &worker{c: c, s: failing{}, rng: rand.New(rand.NewPCG(1, 2)), kinds: map[string]int64{}}
	for range 100 {
		w.op(endedCtx{context.Background()})
	}
	if w.errors != 0 || len(w.latencies) != 0 {
		t.Errorf("after the run's end: %d errors, %d latencies; want none", w.errors, len(w.latencies))
	}
	// The same failures within the run are errors.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.op(ctx)
	if w.errors != 1 {
		t.Errorf("within the run: %d errors, want 1", w.errors)
	}
}
