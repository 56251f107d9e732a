package kv

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// loopbackAddrs returns n TCP and n UDP loopback addresses that were free
// a moment ago.
func loopbackAddrs(t *testing.T, n int) (tcp, udp []string) {
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, ln, pc)
		tcp, udp = append(tcp, ln.Addr().String()), append(udp, pc.LocalAddr().String())
	}
	return tcp, udp
}

// scrape returns the series of a /metrics answer: each sample line's
// name and labels, with its value.
func scrape(t *testing.T, c *http.Client, addr string) map[string]string {
	t.Helper()
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" && !strings.HasPrefix(line, "#") {
			i := strings.LastIndexByte(line, ' ')
			out[line[:i]] = line[i+1:]
		}
	}
	return out
}

// clusterDriven matches the series whose label values come from the
// cluster (its members, hint targets, membership events), never from a
// client: their number may change while a test runs, within the ring's
// bound.
var clusterDriven = regexp.MustCompile(`\{(peer|target|event)=`)

// A 3-node cluster of Servers on loopback serves, under a load of client
// reads and writes, the series operators watch: replica RPCs and
// anti-entropy per peer, commit latency, file sizes, SWIM, Go and process
// collectors. Clients sending junk (invented methods, paths, oversized
// headers, unauthenticated replica RPCs) add no series.
func TestScrapeUnderLoad(t *testing.T) {
	tcp, udp := loopbackAddrs(t, 3)
	var members []Member
	for i := range 3 {
		members = append(members, Member{ID: fmt.Sprintf("n%d", i+1), Addr: tcp[i], Zone: fmt.Sprintf("z%d", i)})
	}
	var servers []*Server
	for i, m := range members {
		s, err := StartServer(ServerConfig{ID: m.ID, Listen: m.Addr, Zone: m.Zone, Gossip: udp[i], Join: udp[:i],
			Data: t.TempDir(), Members: members, ProbeInterval: 100 * time.Millisecond,
			Store: StoreConfig{MaxBatchDelay: time.Millisecond}, ClusterKey: []byte("a test cluster key, 32 bytes lon")})
		if err != nil {
			t.Fatal(err)
		}
		servers = append(servers, s)
	}
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // hard stops: nothing to hand over
		for _, s := range servers {
			_ = s.Shutdown(ctx)
		}
	}()
	client := &http.Client{Timeout: 10 * time.Second}

	// Load: 4 clients, each 60 writes and reads of 20 keys through every node.
	var wg sync.WaitGroup
	for c := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			for i := range 60 {
				addr := tcp[rng.IntN(3)]
				key := fmt.Sprintf("key%d", rng.IntN(20))
				method, body := http.MethodGet, io.Reader(nil)
				if i%2 == 0 {
					method, body = http.MethodPut, strings.NewReader(fmt.Sprint(i))
				}
				req, _ := http.NewRequest(method, "http://"+addr+"/kv/"+key, body)
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	for _, s := range servers {
		for _, m := range members {
			if m.ID != s.Node().ID() {
				if _, _, err := s.Node().AntiEntropy(context.Background(), m.ID); err != nil {
					t.Errorf("anti-entropy %s with %s: %v", s.Node().ID(), m.ID, err)
				}
			}
		}
	}
	loaded := scrape(t, client, tcp[0])
	for _, re := range []string{
		`^kv_peer_round_trip_time_seconds_count\{peer="n2"\}$`, `^kv_peer_sent_bytes_total\{peer="n3"\}$`,
		`^kv_antientropy_exchanges_total\{peer="n2",result="ok"\}$`, `^kv_antientropy_last_success_timestamp_seconds\{peer="n3"\}$`,
		`^kv_commit_write_duration_seconds_count$`, `^kv_bbolt_file_bytes\{file="data"\}$`, `^kv_bbolt_file_bytes\{file="hints"\}$`,
		`^kv_read_siblings_count$`, `^kv_requests_total\{code="204",method="PUT",route="/kv/\{key\}"\}$`,
		`^kv_swim_health_score$`, `^kv_swim_probes_total$`, `^kv_swim_members\{state="alive"\}$`, `^kv_gossip_packets_unopened_total$`,
		`^kv_gossip_cookies_total$`, `^kv_gossip_packets_replayed_total$`, `^kv_bulk_running\{task="handover"\}$`,
		`^go_goroutines$`, `^process_cpu_seconds_total$`,
	} {
		if !slices.ContainsFunc(keysOf(loaded), regexp.MustCompile(re).MatchString) {
			t.Errorf("/metrics under load lacks a series matching %s", re)
		}
	}
	if v := loaded["kv_commit_write_duration_seconds_count"]; v == "0" {
		t.Error("no commit latency observed")
	}
	if v, _ := strconv.Atoi(loaded[`kv_bulk_runs_total{task="anti_entropy"}`]); v < 2 {
		t.Errorf("kv_bulk_runs_total of anti-entropy = %d, want at least 2: one exchange with each peer", v)
	}

	junk := func(rounds int) {
		for i := range rounds {
			for _, r := range []struct {
				method, path string
				header       string
			}{
				{fmt.Sprintf("BAZ%d", rand.Uint32()), "/kv/k", ""},
				{http.MethodGet, fmt.Sprintf("/junk/%d/%x", i, rand.Uint64()), ""},
				{fmt.Sprintf("X%d", rand.Uint32()), fmt.Sprintf("/%x", rand.Uint64()), ""},
				{http.MethodPost, rpcPath, ""}, // no authenticator: 401
				{http.MethodGet, "/kv/k", strings.Repeat("h", 200<<10)},
			} {
				req, _ := http.NewRequest(r.method, "http://"+tcp[i%3]+r.path, strings.NewReader("junk"))
				if r.header != "" {
					req.Header.Set("X-Junk", r.header)
				}
				if resp, err := client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}
	junk(3) // each kind of junk once per node: its route, method and code series exist from now on
	scrape(t, client, tcp[0])
	before := scrape(t, client, tcp[0])
	junk(300)
	after := scrape(t, client, tcp[0])
	var added []string
	for k := range after {
		if _, ok := before[k]; !ok && !clusterDriven.MatchString(k) {
			added = append(added, k)
		}
	}
	firstJunk := map[string]int{}
	for k := range before {
		if _, ok := loaded[k]; !ok {
			firstJunk[k[:strings.IndexAny(k+"{", "{")]]++
		}
	}
	t.Logf("series the first junk of each kind added, by family: %v", firstJunk)
	t.Logf("n1's /metrics: %d series under load, %d after junk of each kind, %d after 1500 more junk requests",
		len(loaded), len(before), len(after))
	if len(added) > 0 {
		t.Fatalf("junk requests added series: %d → %d, new %q", len(before), len(after), added)
	}
}

func keysOf(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// A Server's /healthz says ok while its disk takes the probe's write and
// read, and 503 with the reason once its data file fails (here: closed
// under it), as the periodic probe finds.
func TestServerHealthz(t *testing.T) {
	s, err := StartServer(ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_ = s.Shutdown(ctx)
	}()
	get := func() (int, string) {
		resp, err := http.Get("http://" + s.Addr() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != http.StatusOK {
		t.Fatalf("/healthz of a fresh server: %d %s", code, body)
	}
	if err := s.store.db.Close(); err != nil {
		t.Fatal(err)
	}
	s.health.probedAt(time.Now(), s.store.Probe()) // what the next probe of probeDisk records
	if code, body := get(); code != http.StatusServiceUnavailable || !strings.Contains(body, "disk") || !strings.Contains(body, "database not open") {
		t.Fatalf("/healthz with the data file closed: %d %s", code, body)
	}
}
