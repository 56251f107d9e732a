package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
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

// start runs kvnode with args and returns once it logged that it serves.
func start(t *testing.T, addr string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-listen", addr}, args...)...)
	cmd.Env = append(os.Environ(), "KVNODE_MAIN=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"msg":"serving"`) {
			go func() { _, _ = io.Copy(io.Discard, stderr) }()
			return &proc{cmd: cmd, addr: addr}
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

// Three kvnode processes; one is killed with SIGKILL after acknowledging
// writes, restarted on its data directory, and serves them alone once the
// others shut down cleanly on SIGTERM.
func TestKillAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	dir := t.TempDir()
	addrs, gossip := freeAddrs(t, "tcp", 3), freeAddrs(t, "udp", 3)
	ids := []string{"n1", "n2", "n3"}
	var peers []string
	for i, id := range ids {
		peers = append(peers, fmt.Sprintf("%s=%s@z%d", id, addrs[i], i))
	}
	args := func(i int) []string {
		return []string{"-id", ids[i], "-data", dir + "/" + ids[i], "-peers", strings.Join(peers, ","),
			"-gossip", gossip[i], "-join", strings.Join(gossip, ",")}
	}
	procs := make([]*proc, 3)
	for i := range ids {
		procs[i] = start(t, addrs[i], args(i)...)
	}
	defer func() {
		for _, p := range procs {
			if p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	}()

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
	procs[1] = start(t, addrs[1], args(1)...)
	for k := range 30 {
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d", addrs[1], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d via the restarted node: %d %q", k, code, body)
		}
	}
	for _, i := range []int{0, 2} {
		if err := procs[i].cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := procs[i].cmd.Wait(); err != nil {
			t.Fatalf("%s after SIGTERM: %v", ids[i], err)
		}
	}
	for k := range 20 { // acknowledged by n2 before the SIGKILL
		if code, body := request(t, "GET", fmt.Sprintf("http://%s/kv/k%d?r=1", addrs[1], k), ""); code != http.StatusOK || body != fmt.Sprint("v", k) {
			t.Fatalf("GET k%d from n2 alone: %d %q", k, code, body)
		}
	}
	if code, body := request(t, "GET", "http://"+addrs[1]+"/metrics", ""); code != http.StatusOK || !strings.Contains(body, "kv_requests_total") {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if code, _ := request(t, "GET", "http://"+addrs[1]+"/readyz", ""); code != http.StatusServiceUnavailable {
		t.Fatalf("/readyz with every other member gone: %d, want 503", code)
	}
	if code, body := request(t, "GET", "http://"+addrs[1]+"/cluster", ""); code != http.StatusOK || !strings.Contains(body, `"incarnation"`) {
		t.Fatalf("/cluster: %d %s", code, body)
	}
}
