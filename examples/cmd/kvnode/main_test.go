package main

import (
	"bufio"
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/distkit/distkit/detector/swim"
	"github.com/distkit/distkit/examples/internal/testcert"
	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/vclock"
)

// The test binary doubles as kvnode: with KVNODE_MAIN set it runs main.
func TestMain(m *testing.M) {
	if os.Getenv("KVNODE_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// proc is a kvnode process started by the test.
type proc struct {
	cmd  *exec.Cmd
	addr string
	logs chan string // its log lines after "serving"
}

// waitLog returns once the process logs a line containing every one of
// parts, or fails the test after ten seconds.
func (p *proc) waitLog(t *testing.T, parts ...string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case line := <-p.logs:
			if !slices.ContainsFunc(parts, func(s string) bool { return !strings.Contains(line, s) }) {
				return
			}
		case <-timeout:
			t.Fatalf("no log line with %q", parts)
		}
	}
}

// tail returns the last n of the log lines not yet read, once none came
// for a moment.
func (p *proc) tail(n int) []string {
	var lines []string
	for {
		select {
		case line := <-p.logs:
			lines = append(lines, line)
		case <-time.After(500 * time.Millisecond):
			return lines[max(0, len(lines)-n):]
		}
	}
}

// freeAddrs returns n loopback addresses free for network ("tcp" or
// "udp") a moment ago.
func freeAddrs(t *testing.T, network string, n int) []string {
	var out []string
	var closers []io.Closer
	for range n {
		var addr net.Addr
		var c io.Closer
		if network == "udp" {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr, c = pc.LocalAddr(), pc
		} else {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr, c = ln.Addr(), ln
		}
		closers = append(closers, c)
		out = append(out, addr.String())
	}
	for _, c := range closers {
		c.Close()
	}
	return out
}

// spawn starts kvnode with args and returns it with a scanner of its
// log lines.
func spawn(t *testing.T, args ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KVNODE_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(stderr)
}

// start runs kvnode with args and returns once it logged that it serves.
func start(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	cmd, sc := spawn(t, append([]string{"-listen", addr}, args...)...)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"msg":"serving"`) {
			p := &proc{cmd: cmd, addr: addr, logs: make(chan string, 1024)}
			go func() {
				for sc.Scan() {
					select {
					case p.logs <- sc.Text():
					default: // nobody waits for so many lines
					}
				}
			}()
			return p
		}
	}
	t.Fatalf("kvnode %v exited before serving: %v", args, cmd.Wait())
	return nil
}

func request(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// keyedCluster is three kvnode processes, n1 to n3, sharing a cluster
// key (each node has its own copy of the key file), each with the others
// as its -peers and -join.
type keyedCluster struct {
	ids, addrs, gossip []string
	keyFiles           []string             // by node
	args               func(i int) []string // the arguments of node i
	procs              []*proc
}

// clusterSecret is the key a keyedCluster starts with.
const clusterSecret = "a secret the three nodes share"

// startKeyed starts a keyedCluster; the test's cleanup kills the
// processes still running.
func startKeyed(t *testing.T, extra ...string) *keyedCluster {
	dir := t.TempDir()
	c := &keyedCluster{ids: []string{"n1", "n2", "n3"}, addrs: freeAddrs(t, "tcp", 3), gossip: freeAddrs(t, "udp", 3)}
	var peers []string
	for i, id := range c.ids {
		peers = append(peers, fmt.Sprintf("%s=%s@z%d", id, c.addrs[i], i))
	}
	for _, id := range c.ids {
		c.keyFiles = append(c.keyFiles, filepath.Join(dir, id+".key"))
		if err := os.WriteFile(c.keyFiles[len(c.keyFiles)-1], []byte(clusterSecret+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.args = func(i int) []string {
		return append([]string{"-id", c.ids[i], "-data", dir + "/" + c.ids[i], "-peers", strings.Join(peers, ","),
			"-gossip", c.gossip[i], "-join", strings.Join(c.gossip, ","), "-cluster-key-file", c.keyFiles[i]}, extra...)
	}
	t.Cleanup(func() {
		for _, p := range c.procs {
			if p != nil && p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	})
	c.procs = make([]*proc, 3)
	for i := range c.ids {
		c.procs[i] = start(t, c.addrs[i], c.args(i)...)
	}
	return c
}

// leave stops nodes i with SIGTERM, one after the other, and fails the
// test unless each exits cleanly.
func (c *keyedCluster) leave(t *testing.T, i ...int) {
	t.Helper()
	for _, i := range i {
		if err := c.procs[i].cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := c.procs[i].cmd.Wait(); err != nil {
			t.Fatalf("%s after SIGTERM: %v; its last lines:\n%s", c.ids[i], err, strings.Join(c.procs[i].tail(20), "\n"))
		}
	}
}

// Three kvnode processes sharing a cluster key; one is killed with
// SIGKILL after acknowledging writes, restarted on its data directory, and
// serves them alone once the others shut down cleanly on SIGTERM.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	c := startKeyed(t)
	addrs, procs := c.addrs, c.procs

	for k := range 20 {
		if code, body := request(t, "PUT", fmt.Sprintf("http://%s/kv/k%d?w=3", addrs[0], k), fmt.Sprint("v", k)); code != http.StatusNoContent {
			t.Fatalf("PUT k%d: %d %s", k, code, body)
		}
	}
	if err := procs[1].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs[1].cmd.Wait()
	for k := 20; k < 30; k++ { // n2 is down: sloppy quorum
		if code, body := request(t, "PUT", fmt.Sprintf("http://%s/kv/k%d", addrs[0], k), fmt.Sprint("v", k)); code != http.StatusNoContent {
			t.Fatalf("PUT k%d with n2 down: %d %s", k, code, body)
		}
	}
	procs[1] = start(t, addrs[1], c.args(1)...)
	for k := range 30 {
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d", addrs[1], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d via the restarted node: %d %q", k, code, body)
		}
	}
	c.leave(t, 0, 2)
	for k := range 20 { // acknowledged by n2 before the SIGKILL
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d?r=1", addrs[1], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d from n2 alone: %d %q", k, code, body)
		}
	}
	if code, body := request(t, "GET", "http://"+addrs[1]+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "kv_requests_total") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	procs[1].waitLog(t, `"msg":"ring changed"`, `"members":1`)
	if code, _ := request(t, "GET", "http://"+addrs[1]+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz of the last member: %d", code)
	}
	// The others left: the ring follows, n2 replicates everything alone.
	code, body := request(t, "GET", "http://"+addrs[1]+"/cluster?ranges=1", "")
	var view struct {
		Members []struct{ ID, State string }
		Ranges  []struct{ Replicas []string }
	}
	if code != http.StatusOK || json.Unmarshal([]byte(body), &view) != nil {
		t.Fatalf("/cluster: %d %s", code, body)
	}
	for _, r := range view.Ranges {
		if len(r.Replicas) != 1 || r.Replicas[0] != "n2" {
			t.Fatalf("/cluster after n1 and n3 left: range replicas %v", r.Replicas)
		}
	}
}

// A node that joins through SWIM enters every ring and receives the keys
// it now replicates; it keeps them when the first node leaves.
func TestJoinStreamsKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	addrs, gossip := freeAddrs(t, "tcp", 2), freeAddrs(t, "udp", 2)
	n1 := start(t, addrs[0], "-id", "n1", "-data", dir+"/n1", "-gossip", gossip[0], "-w", "1", "-r", "1")
	defer func() { _ = n1.cmd.Process.Kill(); _ = n1.cmd.Wait() }()
	for k := range 20 {
		if code, body := request(t, "PUT", fmt.Sprintf("http://%s/kv/k%d", addrs[0], k), fmt.Sprint("v", k)); code != http.StatusNoContent {
			t.Fatalf("PUT k%d: %d %s", k, code, body)
		}
	}
	n2 := start(t, addrs[1], "-id", "n2", "-data", dir+"/n2", "-gossip", gossip[1], "-join", gossip[0], "-w", "1", "-r", "1")
	defer func() { _ = n2.cmd.Process.Kill(); _ = n2.cmd.Wait() }()
	n1.waitLog(t, `"msg":"ring changed"`, `"members":2`, `"streamed":20`)
	if err := n1.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := n1.cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	n2.waitLog(t, `"msg":"ring changed"`, `"members":1`)
	for k := range 20 {
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d", addrs[1], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d from the joined node alone: %d %q", k, code, body)
		}
	}
}

// TestBadClusterKeyFile: kvnode refuses to start with a cluster key file
// it cannot read or whose key (without surrounding whitespace) is empty
// or too short, and names the file; it never serves unauthenticated
// instead.
func TestBadClusterKeyFile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	for name, content := range map[string]string{"empty": "", "blank": " \n\t\n", "short": "fifteen bytes!!\n", "missing": "-"} {
		t.Run(name, func(t *testing.T) {
			keyFile := filepath.Join(dir, name+".key")
			if content != "-" {
				if err := os.WriteFile(keyFile, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			cmd, sc := spawn(t, "-id", "n1", "-data", filepath.Join(dir, name), "-listen", freeAddrs(t, "tcp", 1)[0],
				"-gossip", freeAddrs(t, "udp", 1)[0], "-cluster-key-file", keyFile)
			var out strings.Builder
			for sc.Scan() {
				if strings.Contains(sc.Text(), `"msg":"serving"`) {
					_ = cmd.Process.Kill()
					_ = cmd.Wait()
					t.Fatalf("kvnode serves with the key file %q", content)
				}
				out.WriteString(sc.Text() + "\n")
			}
			err := cmd.Wait()
			if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(out.String(), "-cluster-key-file") || !strings.Contains(out.String(), keyFile) {
				t.Fatalf("kvnode: %v, stderr %q; want exit status 1 naming the key file", err, out.String())
			}
		})
	}
}

// metric returns the value of the unlabelled metric name in the /metrics
// of the node at addr.
func metric(t *testing.T, addr, name string) int {
	t.Helper()
	code, body := request(t, "GET", "http://"+addr+"/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics of %s: %d %s", addr, code, body)
	}
	for line := range strings.Lines(body) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+" "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("/metrics of %s: %q", addr, line)
			}
			return n
		}
	}
	t.Fatalf("/metrics of %s has no %s:\n%s", addr, name, body)
	return 0
}

// impostor runs a SWIM node in this process that claims to be id, alive
// at incarnation 1000 (above the real node's), at gossipAddr (empty: its
// own), with httpAddr as its HTTP address, joining through seeds; keyring
// nil gossips unsealed.
func impostor(t *testing.T, id, gossipAddr, httpAddr string, keyring *swim.Keyring, seeds []string) *swim.Node {
	t.Helper()
	udp, err := swim.ListenUDP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	meta, err := json.Marshal(map[string]string{"http": httpAddr})
	if err != nil {
		t.Fatal(err)
	}
	core, err := swim.New(swim.Config{ID: id, Addr: cmp.Or(gossipAddr, udp.Addr()), Incarnation: 1000, Meta: meta, Seeds: seeds,
		ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, Keyring: keyring, Label: "kv"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	n := swim.Start(t.Context(), core, udp, nil)
	t.Cleanup(func() { _ = n.Close(); _ = udp.Close() })
	return n
}

// Three nodes keyed with a cluster key, and two impostors in this process
// that gossip as n2 at a higher incarnation with this process's HTTP
// address: one without a key, at n2's own gossip address, and one with
// another key, at its own. The nodes refuse their packets and count them
// in /metrics; no write, read or handover ever reaches the impostors'
// HTTP listener, and the real n2 ends up with every key.
func TestGossipImpostor(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	var reached atomic.Int64
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
		t.Errorf("the impostor received %s %s", r.Method, r.URL)
		http.Error(w, "impostor", http.StatusServiceUnavailable)
	}))
	defer fake.Close()
	fakeAddr := strings.TrimPrefix(fake.URL, "http://")

	c := startKeyed(t)
	ids, addrs, gossip := c.ids, c.addrs, c.gossip
	otherKey, err := swim.NewKeyring([]byte("another key, of thirty-two bytes"))
	if err != nil {
		t.Fatal(err)
	}
	seeds := []string{gossip[0], gossip[2]}
	unkeyed := impostor(t, "n2", gossip[1], fakeAddr, nil, seeds)
	wrongKey := impostor(t, "n2", "", fakeAddr, otherKey, seeds)
	// Both impostors keep asking n1 and n3 to push-pull until they hear
	// back, which they never do; wait until each node refused packets.
	deadline := time.Now().Add(10 * time.Second)
	for _, i := range []int{0, 2} {
		for metric(t, addrs[i], "kv_gossip_packets_unopened_total") < 4 {
			if time.Now().After(deadline) {
				t.Fatalf("%s refused no gossip packets", ids[i])
			}
			<-time.After(50 * time.Millisecond)
		}
	}

	for k := range 40 {
		if code, body := request(t, "PUT", fmt.Sprintf("http://%s/kv/k%d?w=3", addrs[0], k), fmt.Sprint("v", k)); code != http.StatusNoContent {
			t.Fatalf("PUT k%d: %d %s", k, code, body)
		}
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d?r=3", addrs[2], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d: %d %q", k, code, body)
		}
	}
	refused := make([]int, 3)
	for _, i := range []int{0, 2} {
		refused[i] = metric(t, addrs[i], "kv_gossip_packets_unopened_total")
		if n := metric(t, addrs[i], "kv_gossip_conflicts_total"); n != 0 {
			t.Errorf("%s: %d gossip conflicts: an unauthenticated claim was read", ids[i], n)
		}
	}
	// n1 and n3 leave, handing their keys over to the one other member
	// of their ring, n2.
	c.leave(t, 0, 2)
	for k := range 40 {
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d?r=1", addrs[1], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d from n2 alone: %d %q", k, code, body)
		}
	}
	if n := reached.Load(); n != 0 {
		t.Fatalf("the impostors' HTTP listener received %d requests", n)
	}
	for name, n := range map[string]*swim.Node{"unkeyed": unkeyed, "wrong-key": wrongKey} {
		if live := n.NumLive(); live != 1 {
			t.Errorf("the %s impostor sees %d live members, want only itself", name, live)
		}
	}
	t.Logf("impostors' HTTP requests: %d; gossip packets refused: n1 %d, n3 %d; 40 w=3 writes, 40 r=3 reads and the handovers of n1 and n3 all went to the real n2",
		reached.Load(), refused[0], refused[2])
}

// A client's forged X-Context cannot break a node: a counter past the
// bound or too many writers is refused with 400, and a context naming a
// foreign writer at the bound and this node's own writer just below it,
// then a delete with it and a reap, leave the key and the node writable,
// across a restart.
func TestForgedContext(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	addr, gossip := freeAddrs(t, "tcp", 1)[0], freeAddrs(t, "udp", 1)[0]
	args := []string{"-id", "n1", "-data", dir + "/n1", "-gossip", gossip, "-n", "1", "-r", "1", "-w", "1",
		"-reap-after", "1ms", "-reap-every", "50ms", "-max-context-entries", "4"}
	p := start(t, addr, args...)
	defer func() { _ = p.cmd.Process.Kill(); _ = p.cmd.Wait() }()
	url := "http://" + addr + "/kv/k"
	put := func(ctx, body string) (int, string, http.Header) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPut, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if ctx != "" {
			req.Header.Set(kv.HeaderContext, ctx)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	// {"evil": 2^64-1}, by hand: the encoder refuses to write it.
	over := base64.RawURLEncoding.EncodeToString([]byte{0x91, 0x92, 0xa4, 'e', 'v', 'i', 'l', 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	var many vclock.VClock
	for i := range 5 {
		many.Add(vclock.Dot{ID: fmt.Sprint("w", i), Counter: 1})
	}
	for name, ctx := range map[string]string{"a counter past the bound": over, "too many writers": kv.EncodeContext(many)} {
		if code, body, _ := put(ctx, "v"); code != http.StatusBadRequest || !strings.Contains(body, "X-Context") {
			t.Errorf("PUT with %s: %d %q, want 400 naming X-Context", name, code, body)
		}
	}
	code, body, h := put("", "v0")
	dot, err := kv.DecodeDot(h.Get(kv.HeaderDot))
	if code != http.StatusNoContent || err != nil {
		t.Fatalf("PUT: %d %q %v", code, body, err)
	}
	var forged vclock.VClock
	forged.Add(vclock.Dot{ID: "evil", Counter: vclock.MaxCounter})
	forged.Add(vclock.Dot{ID: dot.ID, Counter: vclock.MaxCounter - 1})
	if code, body, _ := put(kv.EncodeContext(forged), "v1"); code != http.StatusNoContent {
		t.Fatalf("PUT with a forged context: %d %q", code, body)
	}
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	req.Header.Set(kv.HeaderContext, kv.EncodeContext(forged))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE with a forged context: %v %v", resp, err)
	}
	resp.Body.Close()
	p.waitLog(t, `"msg":"reap"`, `"reaped":1`)
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p = start(t, addr, args...)
	for i := range 3 {
		code, body, h := put("", fmt.Sprint("after", i))
		d, err := kv.DecodeDot(h.Get(kv.HeaderDot))
		if code != http.StatusNoContent || err != nil || d.Counter > 10 {
			t.Fatalf("PUT %d after the reap and a restart: %d %q, dot %v %v", i, code, body, d, err)
		}
	}
}

// Quorum sizes below one are refused, not replaced by defaults.
func TestZeroQuorumFlags(t *testing.T) {
	for _, flag := range []string{"-n", "-r", "-w"} {
		err := run([]string{"-id", "n1", "-data", t.TempDir(), flag, "0"})
		if err == nil || !strings.Contains(err.Error(), "at least 1") {
			t.Errorf("%s 0: %v, want a refusal", flag, err)
		}
	}
}

// Batch sizes and batches in flight out of range are refused before
// anything starts.
func TestBadBatchFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-rpc-batch", "0"}, {"-rpc-batch", "-1"}, {"-rpc-batch", "1025"}, {"-rpc-batches-in-flight", "0"},
	} {
		err := run(append([]string{"-id", "n1", "-data", t.TempDir()}, args...))
		if err == nil || !strings.Contains(err.Error(), args[0]) {
			t.Errorf("%v: %v, want an error naming the flag", args, err)
		}
	}
}

// A SWIM period or a replica timeout that is not positive is refused
// before anything starts.
func TestBadDurations(t *testing.T) {
	for _, flag := range []string{"-probe-interval", "-replica-timeout"} {
		for _, d := range []string{"0s", "-1s"} {
			err := run([]string{"-id", "n1", "-data", t.TempDir(), flag, d})
			if err == nil || !strings.Contains(err.Error(), flag) {
				t.Errorf("%s %s: %v, want an error naming the flag", flag, d, err)
			}
		}
	}
}

// -h prints the usage and exits 0; an unknown flag exits 1.
func TestHelpExitStatus(t *testing.T) {
	for args, want := range map[string]int{"-h": 0, "-no-such-flag": 1} {
		cmd := exec.Command(os.Args[0], args)
		cmd.Env = append(os.Environ(), "KVNODE_MAIN=1")
		out, err := cmd.CombinedOutput()
		code := 0
		if exit, ok := err.(*exec.ExitError); ok {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != want || !strings.Contains(string(out), "-cluster-key-file") {
			t.Errorf("kvnode %s: exit %d, want %d; output %q", args, code, want, out)
		}
	}
}

// Log lines carry durations as readable strings, and -log-level sets the
// least severe level written; an unknown level is refused.
func TestLogLevelAndDurations(t *testing.T) {
	var out strings.Builder
	log := newLogger(&out, slog.LevelWarn)
	log.Info("hidden", "took", time.Second)
	log.Warn("shown", "took", 1500*time.Millisecond, "n", 3)
	if got, want := out.String(), `"msg":"shown","took":"1.5s","n":3}`; strings.Contains(got, "hidden") || !strings.Contains(got, want) {
		t.Fatalf("log at warn: %q, want only the warning, with %s", got, want)
	}
	out.Reset()
	newLogger(&out, slog.LevelDebug).Debug("copy failed")
	if !strings.Contains(out.String(), `"level":"DEBUG"`) {
		t.Fatalf("log at debug: %q", out.String())
	}
	err := run([]string{"-id", "n1", "-data", t.TempDir(), "-log-level", "loud"})
	if err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Fatalf("-log-level loud: %v, want a refusal naming the flag", err)
	}
}

// A rolling rotation of the cluster key with SIGHUP, node by node: add
// the new key everywhere, make it primary everywhere, remove the old one.
// A writer with w=3 (every node takes every write over authenticated
// RPCs, over HTTP and multiplexed) runs throughout and never fails, no gossip packet is refused
// (no partition), and the old key opens nothing at the end. A key file
// with a junk line, or one that cannot be read, leaves a node on its keys
// with an error logged.
func TestKeyRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	for _, transport := range []string{"mux", "http"} {
		t.Run(transport, func(t *testing.T) {
			testKeyRotation(t, startKeyed(t, "-rpc-mux="+fmt.Sprint(transport == "mux")))
		})
	}
}

// testKeyRotation rotates c's cluster key under a steady stream of
// writes with every replica (w=3), which must all be acknowledged.
func testKeyRotation(t *testing.T, c *keyedCluster) {
	const next = "the next secret of the three nodes"
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 10 * time.Second}
		for k := 0; ; k++ {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodPut, fmt.Sprintf("http://%s/kv/r%d?w=3", c.addrs[k%3], k), strings.NewReader(fmt.Sprint("v", k)))
			resp, err := client.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					err = fmt.Errorf("PUT r%d: %s %s", k, resp.Status, b)
				}
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			ok.Add(1)
		}
	}()
	// wrote waits until the writer has had n more writes acknowledged.
	wrote := func(n int64) {
		t.Helper()
		want := ok.Load() + n
		deadline := time.Now().Add(20 * time.Second)
		for ok.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("the writer is stuck: %d acknowledged, %d failed (%v)", ok.Load(), failed.Load(), firstErr.Load())
			}
			<-time.After(10 * time.Millisecond)
		}
	}
	hup := func(i int, content string, log ...string) {
		t.Helper()
		if err := os.WriteFile(c.keyFiles[i], []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := c.procs[i].cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		c.procs[i].waitLog(t, log...)
		wrote(5)
	}
	wrote(5)
	for round, keys := range [][]string{{clusterSecret, next}, {next, clusterSecret}, {next}} {
		for i := range c.ids {
			hup(i, "# round "+fmt.Sprint(round+1)+"\n\n"+strings.Join(keys, "\n")+"\n", `"msg":"cluster keys reloaded"`, fmt.Sprintf(`"keys":%d`, len(keys)))
		}
	}
	// Bad files: each node keeps the new key alone.
	hup(0, next+"\njunk\n", `"level":"ERROR"`, `cluster keys not reloaded`, "line 2")
	if err := os.Remove(c.keyFiles[1]); err != nil {
		t.Fatal(err)
	}
	if err := c.procs[1].cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	c.procs[1].waitLog(t, `"level":"ERROR"`, `cluster keys not reloaded`, "no such file")
	wrote(5)
	close(stop)
	<-done
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d writes failed during the rotation, first: %v", n, n+ok.Load(), firstErr.Load())
	}
	for i := range c.ids {
		if n := metric(t, c.addrs[i], "kv_gossip_packets_unopened_total"); n != 0 {
			t.Errorf("%s refused %d gossip packets during the rotation", c.ids[i], n)
		}
	}
	for key, want := range map[string]error{clusterSecret: kv.ErrUnauthenticated, next: nil} {
		tr := &kv.HTTPTransport{Key: []byte(key)}
		tr.SetAddr("n2", c.addrs[1])
		_, err := tr.Call(t.Context(), "n2", []byte("not a request"))
		if got := errors.Is(err, kv.ErrUnauthenticated); got != (want != nil) {
			t.Errorf("an RPC under %q after the rotation: %v", key, err)
		}
	}
	t.Logf("%d writes with w=3 acknowledged through the rotation, none failed; no gossip packet refused", ok.Load())
}

// tlsFiles writes a certificate for 127.0.0.1 issued by ca and valid
// until notAfter, its key and the PEM of trust into dir, and returns the
// kvnode flags naming them.
func tlsFiles(t *testing.T, dir, name string, ca, trust *testcert.CA, notAfter time.Time) []string {
	t.Helper()
	certPEM, keyPEM, err := ca.Issue(name, notAfter, net.IPv4(127, 0, 0, 1))
	if err != nil {
		t.Fatal(err)
	}
	args := []string{}
	for flag, b := range map[string][]byte{"-tls-cert": certPEM, "-tls-key": keyPEM, "-tls-ca": trust.PEM()} {
		f := filepath.Join(dir, name+flag+".pem")
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, flag, f)
	}
	return args
}

// httpsClient trusts ca.
func httpsClient(ca *testcert.CA) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM())
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

// Three kvnode processes with certificates of one CA replicate over
// mutual TLS (w=3 writes, r=3 reads, no cluster key). A fourth process
// with a certificate of another CA, configured with the three as its
// peers, has every replica RPC refused at the handshake, so its writes
// fail and none reaches the three; an expired certificate of the right
// CA and a plaintext call are refused as well.
func TestMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	ca, err := testcert.NewCA("cluster CA")
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := testcert.NewCA("another CA")
	if err != nil {
		t.Fatal(err)
	}
	ids, addrs, gossip := []string{"n1", "n2", "n3", "n4"}, freeAddrs(t, "tcp", 4), freeAddrs(t, "udp", 4)
	var peers []string
	for i, id := range ids {
		peers = append(peers, fmt.Sprintf("%s=%s", id, addrs[i]))
	}
	hour := time.Now().Add(time.Hour)
	var procs []*proc
	t.Cleanup(func() {
		for _, p := range procs {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	for i := range 3 {
		procs = append(procs, start(t, addrs[i], append([]string{"-id", ids[i], "-data", filepath.Join(dir, ids[i]), "-gossip", gossip[i],
			"-join", strings.Join(gossip[:3], ","), "-peers", strings.Join(peers[:3], ",")}, tlsFiles(t, dir, ids[i], ca, ca, hour)...)...))
	}
	procs = append(procs, start(t, addrs[3], append([]string{"-id", "n4", "-data", filepath.Join(dir, "n4"), "-gossip", gossip[3],
		"-peers", strings.Join(peers, ",")}, tlsFiles(t, dir, "n4", foreign, foreign, hour)...)...))

	client := httpsClient(ca)
	do := func(c *http.Client, method, url, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for k := range 20 {
		if code, body := do(client, "PUT", fmt.Sprintf("https://%s/kv/k%d?w=3", addrs[k%3], k), fmt.Sprint("v", k)); code != http.StatusNoContent {
			t.Fatalf("PUT k%d over mutual TLS: %d %s", k, code, body)
		}
		if code, body := do(client, "GET", fmt.Sprintf("https://%s/kv/k%d?r=3", addrs[(k+1)%3], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d over mutual TLS: %d %q", k, code, body)
		}
	}
	// The impostor n4: its replica RPCs to n1-n3 are refused.
	for k := range 5 {
		code, body := do(httpsClient(foreign), "PUT", fmt.Sprintf("https://%s/kv/x%d?w=3", addrs[3], k), "forged")
		if code != http.StatusServiceUnavailable {
			t.Fatalf("PUT x%d through the node of another CA: %d %s, want 503", k, code, body)
		}
		if code, body := do(client, "GET", fmt.Sprintf("https://%s/kv/x%d?r=2", addrs[0], k), ""); code != http.StatusNotFound {
			t.Fatalf("GET x%d from n1: %d %q: the node of another CA wrote it", k, code, body)
		}
	}
	procs[0].waitLog(t, "TLS handshake error")
	// Calls with another CA's certificate, an expired one, or in plaintext.
	for name, args := range map[string][]string{
		"another CA's certificate": tlsFiles(t, dir, "x1", foreign, ca, hour),
		"an expired certificate":   tlsFiles(t, dir, "x2", ca, ca, time.Now().Add(-time.Minute)),
		"a valid certificate":      tlsFiles(t, dir, "x3", ca, ca, hour),
	} {
		flags := map[string]string{}
		for i := 0; i < len(args); i += 2 {
			flags[args[i]] = args[i+1]
		}
		p, err := kv.LoadPeerTLS(flags["-tls-cert"], flags["-tls-key"], flags["-tls-ca"])
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca.PEM())
		tr := &kv.HTTPTransport{TLS: true, Client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{Certificates: []tls.Certificate{p.Certificate}, RootCAs: pool}}}}
		tr.SetAddr("n2", addrs[1])
		_, err = tr.Call(t.Context(), "n2", []byte("not a request"))
		// A peer it trusts gets as far as the request's decoding.
		if reached := err != nil && strings.Contains(err.Error(), "400 Bad Request"); reached != (name == "a valid certificate") {
			t.Errorf("an RPC with %s: %v", name, err)
		}
	}
	plain := &kv.HTTPTransport{}
	plain.SetAddr("n2", addrs[1])
	if _, err := plain.Call(t.Context(), "n2", []byte("not a request")); err == nil || !strings.Contains(err.Error(), "HTTP request to an HTTPS server") {
		t.Errorf("a plaintext RPC: %v", err)
	}
}

// The TLS flags go together, and files that do not load are refused
// before anything starts.
func TestTLSFlags(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-cert", missing}, "go together: 1 of 3"},
		{[]string{"-tls-cert", missing, "-tls-key", missing}, "go together: 2 of 3"},
		{[]string{"-tls-cert", missing, "-tls-key", missing, "-tls-ca", missing}, missing},
	} {
		err := run(append([]string{"-id", "n1", "-data", dir}, c.args...))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error with %q", c.args, err, c.want)
		}
	}
}

// Key files: comments, blank lines and whitespace are skipped; junk, a
// repeated key, too many keys or none are refused naming the line, never
// echoing a key.
func TestParseClusterKeys(t *testing.T) {
	a, b := "the first secret of the cluster", "the second secret of the cluster"
	keys, err := parseClusterKeys([]byte("# rotation, round 2\n\n  " + a + "  \r\n\t" + b + "\n"))
	if err != nil || len(keys) != 2 || string(keys[0]) != a || string(keys[1]) != b {
		t.Fatalf("parseClusterKeys: %q %v", keys, err)
	}
	var many strings.Builder
	for i := range kv.MaxClusterKeys + 1 {
		fmt.Fprintf(&many, "a secret of the cluster, number %d\n", i)
	}
	for content, want := range map[string]string{
		a + "\njunk\n":             "line 2: a key of 4 bytes",
		a + "\n" + b + "\n" + a:    "line 3 repeats the key of line 1",
		"# only a comment\n\n \t ": "no key",
		many.String():              fmt.Sprintf("line %d: more than %d keys", kv.MaxClusterKeys+1, kv.MaxClusterKeys),
	} {
		_, err := parseClusterKeys([]byte(content))
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: %v, want %q and no key in it", content, err, want)
		}
	}
}

// Any file parses to keys a node accepts, or to an error; never a panic.
func FuzzParseClusterKeys(f *testing.F) {
	f.Add([]byte("a secret the three nodes share\n"))
	f.Add([]byte("# c\nthe first secret of the cluster\n\nthe second secret of the cluster\n"))
	f.Add([]byte("short\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseClusterKeys(b)
		if err != nil {
			return
		}
		if _, err := kv.NewClusterKeys(keys[0], keys[1:]...); err != nil {
			t.Fatalf("parsed keys a node refuses: %v", err)
		}
	})
}

// -pprof serves the profiles on their own listener, never on the API's.
func TestPprof(t *testing.T) {
	addrs, gossip := freeAddrs(t, "tcp", 2), freeAddrs(t, "udp", 1)
	p := start(t, addrs[0], "-id", "n1", "-data", t.TempDir(), "-gossip", gossip[0], "-pprof", addrs[1])
	defer func() { p.cmd.Process.Kill(); p.cmd.Wait() }()
	if code, body := request(t, "GET", "http://"+addrs[1]+"/debug/pprof/cmdline", ""); code != 200 || !strings.Contains(body, "-pprof") {
		t.Errorf("pprof listener: %d %q, want the command line", code, body)
	}
	if code, _ := request(t, "GET", "http://"+addrs[0]+"/debug/pprof/", ""); code != http.StatusNotFound {
		t.Errorf("API listener: /debug/pprof/ answered %d, want 404", code)
	}
}

// A -pprof address that cannot be listened on stops kvnode before it
// serves.
func TestBadPprofAddr(t *testing.T) {
	err := run([]string{"-id", "n1", "-data", t.TempDir(), "-pprof", "256.0.0.1:1"})
	if err == nil || !strings.Contains(err.Error(), "-pprof") {
		t.Errorf("-pprof 256.0.0.1:1: %v, want an error naming the flag", err)
	}
}
