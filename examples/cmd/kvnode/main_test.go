package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
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

// Three kvnode processes sharing a cluster key; one is killed with
// SIGKILL after acknowledging writes, restarted on its data directory, and
// serves them alone once the others shut down cleanly on SIGTERM.
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
	keyFile := filepath.Join(dir, "cluster.key")
	if err := os.WriteFile(keyFile, []byte("a secret the three nodes share\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := func(i int) []string {
		return []string{"-id", ids[i], "-data", dir + "/" + ids[i], "-peers", strings.Join(peers, ","),
			"-gossip", gossip[i], "-join", strings.Join(gossip, ","), "-cluster-key-file", keyFile}
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
	procs[1].waitLog(t, `"msg":"ring changed"`, `"members":1`)
	if code, _ := request(t, "GET", "http://"+addrs[1]+"/readyz", ""); code != http.StatusOK {
		t.Fatalf("/readyz of the last member: %d", code)
	}
	// The others left: the ring follows, n2 replicates everything alone.
	code, body := request(t, "GET", "http://"+addrs[1]+"/cluster", "")
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

// A SWIM period that is not positive is refused before anything starts.
func TestBadProbeInterval(t *testing.T) {
	for _, d := range []string{"0s", "-1s"} {
		err := run([]string{"-id", "n1", "-data", t.TempDir(), "-probe-interval", d})
		if err == nil || !strings.Contains(err.Error(), "-probe-interval") {
			t.Errorf("-probe-interval %s: %v, want an error naming the flag", d, err)
		}
	}
}
