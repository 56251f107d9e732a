package kv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/distkit/distkit/quorum"
)

// seriesOf returns the series m's registry holds now, by family name.
func seriesOf(t *testing.T, m *Metrics) map[string][]*dto.Metric {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]*dto.Metric{}
	for _, f := range fams {
		out[f.GetName()] = f.GetMetric()
	}
	return out
}

// peersOf returns the values of the peer label of a family's series.
func peersOf(ms []*dto.Metric) []string {
	var out []string
	for _, m := range ms {
		for _, l := range m.GetLabel() {
			if l.GetName() == "peer" {
				out = append(out, l.GetValue())
			}
		}
	}
	return out
}

type echoTransport struct{ err error }

func (e echoTransport) Call(_ context.Context, _ string, req []byte) ([]byte, error) {
	if e.err != nil {
		return nil, e.err
	}
	return req, nil
}

// Replica RPCs get series per member of the ring only: calls to a
// thousand invented IDs, IDs that are not UTF-8 and one that spells
// "other" all land on the peer "other"; no more than MaxPeerLabels
// members get series; a member that leaves the ring takes its series
// along; cancelled calls are neither failures nor round trips.
func TestMetricsPeerLabelsBounded(t *testing.T) {
	m := &Metrics{}
	m.SetPeers([]string{"n1", "n2", "bad\xff", "other"})
	tr := m.Transport(echoTransport{})
	ctx := context.Background()
	for _, to := range []string{"n1", "n2", "bad\xff", "other", "n1"} {
		if _, err := tr.Call(ctx, to, []byte("abc")); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 1000 {
		if _, err := tr.Call(ctx, fmt.Sprintf("forged-%d", i), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	s := seriesOf(t, m)
	if got := peersOf(s["kv_peer_sent_bytes_total"]); strings.Join(got, ",") != "n1,n2,other" {
		t.Fatalf("peers with series after 1000 forged IDs: %q, want n1, n2, other", got)
	}
	for _, x := range s["kv_peer_sent_bytes_total"] {
		if want := map[string]float64{"n1": 6, "n2": 3, "other": 1006}[peersOf([]*dto.Metric{x})[0]]; x.GetCounter().GetValue() != want {
			t.Errorf("%v: %v bytes, want %v", x.GetLabel(), x.GetCounter().GetValue(), want)
		}
	}
	failing := m.Transport(echoTransport{err: errors.New("refused")})
	cancelled := m.Transport(echoTransport{err: fmt.Errorf("hedge lost: %w", context.Canceled)})
	_, _ = failing.Call(ctx, "n2", nil)
	_, _ = cancelled.Call(ctx, "n2", nil)
	s = seriesOf(t, m)
	if f := s["kv_peer_rpc_failures_total"]; len(f) != 1 || f[0].GetCounter().GetValue() != 1 {
		t.Fatalf("failures: %v, want one, for n2 (the cancelled call is none)", f)
	}
	for _, h := range s["kv_peer_round_trip_time_seconds"] {
		if p := peersOf([]*dto.Metric{h})[0]; p == "n2" && h.GetHistogram().GetSampleCount() != 2 {
			t.Fatalf("n2 round trips: %d, want 2 (one ok, one failed; not the cancelled one)", h.GetHistogram().GetSampleCount())
		}
	}

	m.SetPeers([]string{"n1"}) // n2 left the ring
	if got := peersOf(seriesOf(t, m)["kv_peer_sent_bytes_total"]); strings.Join(got, ",") != "n1,other" {
		t.Fatalf("peers after n2 left: %q, want n1, other", got)
	}
	many := make([]string, 3*MaxPeerLabels)
	for i := range many {
		many[i] = fmt.Sprintf("m%04d", i)
	}
	m.SetPeers(many)
	for _, id := range many {
		_, _ = tr.Call(ctx, id, nil)
	}
	if got := len(seriesOf(t, m)["kv_peer_sent_bytes_total"]); got != MaxPeerLabels+1 {
		t.Fatalf("%d members: %d peer series, want MaxPeerLabels + other = %d", len(many), got, MaxPeerLabels+1)
	}
}

// problemOf decodes a response's problem body, failing the test when it
// is not application/problem+json with the response's status.
func problemOf(t *testing.T, what string, code int, header http.Header, body string) Problem {
	t.Helper()
	var p Problem
	if ct := header.Get("Content-Type"); ct != ProblemContentType {
		t.Fatalf("%s: Content-Type %q, want %s; body %q", what, ct, ProblemContentType, body)
	}
	if err := json.Unmarshal([]byte(body), &p); err != nil || p.Status != code || p.Type == "" || p.Title == "" {
		t.Fatalf("%s: problem %+v (%v) of a %d", what, p, err, code)
	}
	return p
}

// keyHomedAt returns a key whose first home replica is id.
func keyHomedAt(t *testing.T, n *Node, id string) string {
	for i := range 1000 {
		if k := fmt.Sprintf("k%d", i); n.Home([]byte(k))[0] == id {
			return k
		}
	}
	t.Fatalf("no key homed at %s", id)
	return ""
}

// Every error of the API is a problem+json body, its status saying whose
// fault it is: the client's (4xx, with the refusal's reason), too few
// replicas (503), this node's disk (500, a closed store or a failing
// file), the coordinator a write was forwarded to (502).
func TestErrorsMapped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, 3, quorum.Config{N: 3, R: 2, W: 2})
		defer c.close()
		h := API(c.node("n1"), APIConfig{Metrics: &Metrics{}, Limits: Limits{MaxContextLen: 64}})
		for _, tc := range []struct {
			method, target, typ string
			code                int
			header              []string
			detail              string
		}{
			{"PUT", "/kv/k?w=x", "about:blank", 400, nil, "not a number"},
			{"PUT", "/kv/k?w=9", "about:blank", 400, nil, "w = 9"},
			{"PUT", "/kv/k", "about:blank", 400, []string{HeaderContext, "!!"}, "X-Context"},
			{"PUT", "/kv/k", "about:blank", 431, []string{HeaderContext, strings.Repeat("A", 65)}, "at most 64"},
			{"DELETE", "/kv/k", "about:blank", 428, nil, "X-Context of a read"},
			{"PATCH", "/kv/k", "about:blank", 405, nil, "method not allowed"},
			{"GET", "/no/such/path", "about:blank", 404, nil, "not found"},
			{"PUT", "/metrics", "about:blank", 405, nil, "Method Not Allowed"},
			{"GET", "/kv/missing", "about:blank", 404, nil, "not found"},
		} {
			rec := do(h, tc.method, tc.target, "v", tc.header...)
			what := tc.method + " " + tc.target
			p := problemOf(t, what, rec.Code, rec.Header(), rec.Body.String())
			if rec.Code != tc.code || p.Type != tc.typ || !strings.Contains(p.Detail, tc.detail) {
				t.Errorf("%s: %d %+v, want %d %s with %q", what, rec.Code, p, tc.code, tc.typ, tc.detail)
			}
		}

		// Too few replicas: 503, a retry with the same key is safe.
		c.net.partitioned["n1"] = true
		rec := do(h, "PUT", "/kv/"+keyHomedAt(t, c.node("n1"), "n1"), "v")
		if p := problemOf(t, "PUT without quorum", rec.Code, rec.Header(), rec.Body.String()); rec.Code != 503 || p.Type != ProblemNoQuorum || !strings.Contains(p.Detail, "indeterminate") {
			t.Fatalf("PUT without quorum: %d %+v", rec.Code, p)
		}
		rec = do(h, "GET", "/kv/k?r=3", "")
		if p := problemOf(t, "GET without quorum", rec.Code, rec.Header(), rec.Body.String()); rec.Code != 503 || p.Type != ProblemNoQuorum {
			t.Fatalf("GET without quorum: %d %+v", rec.Code, p)
		}
		c.net.heal()

		// The coordinator's own disk fails: 500, storage, not 503.
		local, remote := keyHomedAt(t, c.node("n1"), "n1"), keyHomedAt(t, c.node("n1"), "n2")
		failStore(t, c.stores["n1"])
		rec = do(h, "PUT", "/kv/"+local, "v")
		if p := problemOf(t, "PUT on a closed store", rec.Code, rec.Header(), rec.Body.String()); rec.Code != 500 || p.Type != ProblemStorage {
			t.Fatalf("PUT on a closed store: %d %+v, want 500 %s", rec.Code, p, ProblemStorage)
		}
		// A write n1 forwards to n2's coordination (an Idempotency-Key's
		// goes to the key's first home replica) needs no more than W = 2
		// of the three disks.
		if rec := do(h, "PUT", "/kv/"+remote, "v", "Idempotency-Key", `"r1"`); rec.Code != http.StatusNoContent {
			t.Fatalf("PUT coordinated by n2: %d %s", rec.Code, rec.Body)
		}
		if err := c.stores["n1"].Probe(); !errors.Is(err, ErrStorage) {
			t.Fatalf("Probe of a closed store: %v, want ErrStorage", err)
		}
		// The forwarded write fails at n2's disk (its file fails every
		// write): n1 answers 502, naming the coordinator.
		failDisk(t, c.stores["n2"].Path())
		if err := c.stores["n2"].Probe(); !errors.Is(err, ErrStorage) || !isStorage(err) {
			t.Fatalf("Probe of a failing file: %v, want ErrStorage", err)
		}
		rec = do(h, "PUT", "/kv/"+remote, "v2", "Idempotency-Key", `"r2"`)
		if p := problemOf(t, "PUT to a failing coordinator", rec.Code, rec.Header(), rec.Body.String()); rec.Code != 502 || p.Type != ProblemCoordinator || !strings.Contains(p.Detail, "coordinator n2") {
			t.Fatalf("PUT coordinated by a failing n2: %d %+v, want 502 %s naming n2", rec.Code, p, ProblemCoordinator)
		}
		h2 := API(c.node("n2"), APIConfig{})
		rec = do(h2, "PUT", "/kv/"+remote, "v2")
		if p := problemOf(t, "PUT on a failing file", rec.Code, rec.Header(), rec.Body.String()); rec.Code != 500 || p.Type != ProblemStorage {
			t.Fatalf("PUT on n2's failing file: %d %+v, want 500 %s", rec.Code, p, ProblemStorage)
		}
		c.net.detach("n2").Close()
		_ = c.stores["n2"].Close() // its file is already closed
	})
}

// failDisk makes every write to the open file at path, and to the write-ahead
// log of a store's file at path, fail as on a full disk (ENOSPC): it puts
// /dev/full under the process's descriptors of them.
func failDisk(t *testing.T, path string) {
	if runtime.GOOS != "linux" {
		t.Skip("failDisk needs /proc and /dev/full")
	}
	full, err := os.OpenFile("/dev/full", os.O_RDWR, 0)
	if err != nil {
		t.Skip(err)
	}
	defer full.Close()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range fds {
		if target, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && (target == path || strings.HasPrefix(target, path+".log.")) {
			fd, _ := strconv.Atoi(e.Name())
			if err := syscall.Dup3(int(full.Fd()), fd, 0); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no descriptor of %s", path)
	}
}

// The overload refusal keeps its Retry-After and says why, as a problem.
func TestOverloadIsProblem(t *testing.T) {
	rec := do(problems(bounded(make(limiter), time.Second, http.NotFoundHandler())), "GET", "/kv/k", "")
	p := problemOf(t, "overload", rec.Code, rec.Header(), rec.Body.String())
	if rec.Code != 503 || rec.Header().Get("Retry-After") == "" || !strings.Contains(p.Detail, "overloaded") {
		t.Fatalf("overload: %d %v %+v", rec.Code, rec.Header(), p)
	}
}

// /healthz reports the disk and the membership loop: a failed or stale
// probe of the disk, or a loop busy with one thing for too long, is a 503
// with the reason; a loop busy for less, or back to waiting, is healthy.
func TestHealth(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stall := 30 * time.Second
	var h health
	h.probedAt(t0, nil)
	h.setBusy(t0, "")
	for _, tc := range []struct {
		name  string
		setup func()
		at    time.Duration
		want  string // "" healthy
	}{
		{"fresh probe, idle loop", func() {}, time.Second, ""},
		{"stale probe", func() {}, DiskProbeStale + time.Second, "no probe ended"},
		{"failed probe", func() { h.probedAt(t0, fmt.Errorf("%w: write: input/output error", ErrStorage)) }, 0, "input/output error"},
		{"busy, within the stall", func() { h.probedAt(t0.Add(stall), nil); h.setBusy(t0, "rebalancing to a ring of 4 members") }, stall, ""},
		{"busy past the stall", func() {}, stall + time.Millisecond, "rebalancing to a ring of 4 members for 30.001s"},
		{"idle again", func() { h.setBusy(t0, "") }, stall + time.Second, ""},
	} {
		tc.setup()
		err := h.check(t0.Add(tc.at), stall)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}

	api := API(nil, APIConfig{Health: func() error { return h.check(t0.Add(time.Hour), stall) }})
	rec := do(api, "GET", "/healthz", "")
	if p := problemOf(t, "/healthz", rec.Code, rec.Header(), rec.Body.String()); rec.Code != 503 || p.Type != ProblemUnhealthy || !strings.Contains(p.Detail, "disk") {
		t.Fatalf("/healthz with a stale probe: %d %+v", rec.Code, p)
	}
}

// The hints a node holds are reported per target, with the age of the
// oldest: from when the target's hints last went from none to some.
func TestMetricsHints(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, 5, quorum.Config{N: 3, R: 2, W: 2})
		defer c.close()
		c.metrics = map[string]*Metrics{}
		handlers := map[string]http.Handler{}
		for _, id := range c.ids {
			c.metrics[id] = &Metrics{}
			c.metrics[id].SetPeers(c.ids)
			c.crash(id)
			c.start(id)
			handlers[id] = API(c.node(id), APIConfig{Metrics: c.metrics[id]})
		}
		down := c.net.detach("n3")
		key := keyHomedAt(t, c.node("n1"), "n1")
		for !strings.Contains(strings.Join(c.node("n1").Home([]byte(key)), ","), "n3") {
			key += "x"
		}
		if rec := do(handlers["n1"], "PUT", "/kv/"+key, "v"); rec.Code != http.StatusNoContent {
			t.Fatalf("PUT with n3 down: %d %s", rec.Code, rec.Body)
		}
		c.node("n1").Wait()
		time.Sleep(90 * time.Second) // virtual time: the hint ages
		holder := ""
		for _, id := range c.up() {
			if c.stores[id].Hints().Len() > 0 {
				holder = id
			}
		}
		if holder == "" {
			t.Fatal("no node took a hint for n3")
		}
		body := do(handlers[holder], "GET", "/metrics", "").Body.String()
		for _, want := range []string{`kv_hints_pending{target="n3"} 1`, `kv_hints_oldest_age_seconds{target="n3"} 90`} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics of %s lacks %q", holder, want)
			}
		}
		var view clusterView
		if err := json.Unmarshal(do(handlers[holder], "GET", "/cluster", "").Body.Bytes(), &view); err != nil {
			t.Fatal(err)
		}
		for _, m := range view.Members {
			if want := map[bool]int{true: 1}[m.ID == "n3"]; m.HintsPending != want {
				t.Errorf("/cluster of %s: %s has %d hints pending, want %d", holder, m.ID, m.HintsPending, want)
			}
		}
		c.net.attach("n3", down)
		if k, err := c.node(holder).HandOff(context.Background()); k != 1 || err != nil {
			t.Fatalf("handoff: %d, %v", k, err)
		}
		if body := do(handlers[holder], "GET", "/metrics", "").Body.String(); strings.Contains(body, "kv_hints_pending{") {
			t.Errorf("/metrics of %s after the handoff still shows hints", holder)
		}
		if p, err := c.stores[holder].Hints().Pending(); len(p) != 0 || err != nil {
			t.Errorf("pending after the handoff: %v, %v", p, err)
		}

		// Anti-entropy with a peer is counted, and /cluster shows when it last succeeded.
		if _, _, err := c.node("n1").AntiEntropy(context.Background(), "n2"); err != nil {
			t.Fatal(err)
		}
		body = do(handlers["n1"], "GET", "/metrics", "").Body.String()
		if want := `kv_antientropy_exchanges_total{peer="n2",result="ok"} 1`; !strings.Contains(body, want) {
			t.Errorf("/metrics of n1 lacks %q", want)
		}
		if err := json.Unmarshal(do(handlers["n1"], "GET", "/cluster", "").Body.Bytes(), &view); err != nil {
			t.Fatal(err)
		}
		for _, m := range view.Members {
			if (m.LastAntiEntropy != nil) != (m.ID == "n2") {
				t.Errorf("/cluster of n1: %s last anti-entropy %v; want a time for n2 alone", m.ID, m.LastAntiEntropy)
			}
		}
	})
}

// BenchmarkAPIGet is one GET of a 100-byte value through the HTTP handler
// of a single node, without and with metrics: the cost of counting a
// request by route, method and code and timing it.
func BenchmarkAPIGet(b *testing.B) {
	for _, metered := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", metered), func(b *testing.B) {
			c := newCluster(b, 1, 1, quorum.Config{N: 1, R: 1, W: 1})
			defer c.close()
			cfg := APIConfig{}
			if metered {
				cfg.Metrics = &Metrics{}
			}
			h := API(c.node("n1"), cfg)
			if rec := do(h, "PUT", "/kv/k", strings.Repeat("v", 100)); rec.Code != http.StatusNoContent {
				b.Fatal(rec.Code)
			}
			req := httptest.NewRequest("GET", "/kv/k", nil)
			b.ReportAllocs()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
			}
		})
	}
}
