package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	long       = flag.Bool("long", false, "run TestLostDiskRepair as a measurement, with -repair-mib of data")
	repairMiB  = flag.Int("repair-mib", 80, "MiB of values the node that lost its disk gets back, in TestLostDiskRepair")
	repairRate = flag.String("repair-rate", "16MiB", "the -anti-entropy-rate of TestLostDiskRepair's nodes")
	repairStop = flag.Duration("repair-pause", 3*time.Second, "how long TestLostDiskRepair pauses n2 (SIGSTOP), two seconds into the repair")
)

// TestLostDiskRepair measures, on three kvnode processes (N = 3), the
// repair of a node that lost its disk while holding -repair-mib MiB,
// under anti-entropy throttled at -repair-rate: how long until it holds
// every key again, the peak RSS of it and of a node that sends, and the
// latency of a client of another node while the repair runs against
// while the cluster is idle. Two seconds into the repair, n2 is paused
// (SIGSTOP) for -repair-pause, a process stalled in the middle of
// exchanges. It asserts only that the repair completes. Without -long it
// repairs 1 MiB, with no idle phase and no pause: a check that the
// flags reach the nodes and that paged exchanges work over
// authenticated HTTP.
//
//	go test ./examples/cmd/kvnode -run TestLostDiskRepair -long -v
func TestLostDiskRepair(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	mib, phase, pauseFor, pageBytes := *repairMiB, 10*time.Second, *repairStop, "1MiB"
	if !*long {
		mib, phase, pauseFor, pageBytes = 1, 0, 0, "64KiB"
	}
	dir := t.TempDir()
	keyFile := dir + "/cluster.key"
	if err := os.WriteFile(keyFile, []byte("a secret the three nodes share\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ids, addrs, gossip := []string{"n1", "n2", "n3"}, freeAddrs(t, "tcp", 3), freeAddrs(t, "udp", 3)
	var peers []string
	for i, id := range ids {
		peers = append(peers, fmt.Sprintf("%s=%s@z%d", id, addrs[i], i))
	}
	args := func(i int) []string {
		return []string{"-id", ids[i], "-data", dir + "/" + ids[i], "-peers", strings.Join(peers, ","),
			"-gossip", gossip[i], "-join", strings.Join(gossip, ","), "-anti-entropy-every", "1s",
			"-anti-entropy-rate", *repairRate, "-handover-rate", *repairRate, "-progress-every", "5s",
			"-repair-page-bytes", pageBytes, "-cluster-key-file", keyFile,
			// The load is 64 KiB writes to all three nodes from 8 clients,
			// under the race detector in CI: give replicas time to answer.
			"-replica-timeout", "5s"}
	}
	procs := make([]*proc, 3)
	t.Cleanup(func() {
		for _, p := range procs {
			if p != nil && p.cmd.ProcessState == nil {
				_ = p.cmd.Process.Kill()
				_ = p.cmd.Wait()
			}
		}
	})
	for i := range ids {
		procs[i] = start(t, addrs[i], args(i)...)
	}

	const valueSize = 64 << 10
	keys := mib << 20 / valueSize
	value := strings.Repeat("v", valueSize)
	loadStart := time.Now()
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for k := w; k < keys; k += 8 {
				// A write that missed its quorum on a loaded machine is
				// written again (its value is the same).
				err := timed(fmt.Sprintf("http://%s/kv/big%06d?w=3", addrs[k%3], k), "PUT", value, http.StatusNoContent)
				for try := 1; err != nil && try < 5; try++ {
					err = timed(fmt.Sprintf("http://%s/kv/big%06d?w=3", addrs[k%3], k), "PUT", value, http.StatusNoContent)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("loaded %d keys of %d KiB (%d MiB) on each node in %v", keys, valueSize>>10, keys*valueSize>>20, time.Since(loadStart).Round(time.Millisecond))

	idle := clientLatencies(t, addrs[0], "idle", func(start time.Time) bool { return time.Since(start) < phase })

	if err := procs[2].cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = procs[2].cmd.Wait()
	if err := os.RemoveAll(dir + "/n3"); err != nil {
		t.Fatal(err)
	}
	repairStart := time.Now()
	procs[2] = start(t, addrs[2], args(2)...)
	var (
		done      atomic.Bool
		repairing []time.Duration
	)
	wg.Go(func() {
		repairing = clientLatencies(t, addrs[0], "repairing", func(time.Time) bool { return !done.Load() })
	})
	anon := 0 // the largest anonymous RSS of n3 seen: its heap, not its mapped file
	paused := false
	for next := 0; next < keys; {
		if !paused && time.Since(repairStart) > 2*time.Second && pauseFor > 0 {
			paused = true
			pause(t, procs[1].cmd.Process.Pid, pauseFor)
		}
		if time.Since(repairStart) > 10*time.Minute {
			t.Fatalf("after 10 minutes n3 holds %d of %d keys", next, keys)
		}
		time.Sleep(200 * time.Millisecond) // polling a real process
		anon = max(anon, status(t, procs[2].cmd.Process.Pid, "RssAnon"))
		for ; next < keys; next++ {
			code, _ := request(t, "GET", fmt.Sprintf("http://%s/kv/big%06d?r=1", addrs[2], next), "")
			if code != http.StatusOK && code != http.StatusMultipleChoices { // siblings of a write made again
				break
			}
		}
	}
	repaired := time.Since(repairStart)
	done.Store(true)
	wg.Wait()
	t.Logf("n3 holds all %d keys (%d MiB) %v after it restarted with an empty disk, -anti-entropy-rate %s on each node",
		keys, keys*valueSize>>20, repaired.Round(time.Millisecond), *repairRate)
	for i, p := range procs {
		t.Logf("%s: peak RSS %d MiB (its bbolt file is mapped), CPU time %v", ids[i], status(t, p.cmd.Process.Pid, "VmHWM")>>10, cpuTime(t, p.cmd.Process.Pid))
	}
	t.Logf("n3: largest anonymous RSS seen during the repair (sampled every 200ms) %d MiB", anon>>10)
	for _, line := range procs[2].tail(1000) {
		if strings.Contains(line, `anti-entropy progress"`) || strings.Contains(line, `anti-entropy failed"`) {
			t.Log("n3:", line)
		}
	}
	t.Logf("client of n1, PUT and GET of 100 bytes: idle %s; during the repair %s", summary(idle), summary(repairing))
}

// pause stops process pid with SIGSTOP for d, then lets it go on.
func pause(t *testing.T, pid int, d time.Duration) {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(d) // a real process, paused for real
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("n2 paused for %v", d)
}

// clientLatencies runs one client of the node at addr, alternating PUTs
// and GETs of small keys, while more(start) holds, and returns each
// request's latency; a request that fails is an error of the test.
func clientLatencies(t *testing.T, addr, name string, more func(start time.Time) bool) []time.Duration {
	var out []time.Duration
	start := time.Now()
	for i := 0; more(start); i++ {
		method, body, want := "PUT", strings.Repeat("x", 100), http.StatusNoContent
		if i%2 == 1 {
			method, body, want = "GET", "", http.StatusOK
		}
		began := time.Now()
		if err := timed(fmt.Sprintf("http://%s/kv/%s%d", addr, name, i/2), method, body, want); err != nil {
			t.Errorf("during %s: %v", name, err)
		}
		out = append(out, time.Since(began))
	}
	return out
}

// timed makes one request and returns an error unless it got the status
// want; it may run on any goroutine.
func timed(url, method, body string, want int) error {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if err == nil && resp.StatusCode != want {
		err = fmt.Errorf("%s %s: %d %s", method, url, resp.StatusCode, text)
	}
	return err
}

// summary gives the count, p50 and p99 of ls.
func summary(ls []time.Duration) string {
	if len(ls) == 0 {
		return "no requests"
	}
	s := slices.Sorted(slices.Values(ls))
	q := func(p float64) time.Duration {
		return s[min(len(s)-1, int(p*float64(len(s))))].Round(10 * time.Microsecond)
	}
	return fmt.Sprintf("%d requests, p50 %v, p99 %v, max %v", len(s), q(0.5), q(0.99), s[len(s)-1].Round(10*time.Microsecond))
}

// cpuTime returns the user and system CPU time process pid used so far,
// from /proc/pid/stat, in clock ticks of 10ms.
func cpuTime(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// The fields after the command's name, which ends with the last ')':
	// state is the first, utime the 12th and stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	user, err1 := strconv.Atoi(f[11])
	sys, err2 := strconv.Atoi(f[12])
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: %q", pid, b)
	}
	return time.Duration(user+sys) * 10 * time.Millisecond
}

// status returns the field (in KiB) of /proc/pid/status.
func status(t *testing.T, pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			if kb, err := strconv.Atoi(strings.Fields(v)[0]); err == nil {
				return kb
			}
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// The size flags take plain numbers and binary or decimal units, and
// refuse anything else, negative sizes and sizes past 2 TiB.
func TestByteSizeFlag(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "512": 512, "8MiB": 8 << 20, "8M": 8 << 20, "1.5KiB": 1536, "2GB": 2e9, "64KB": 64e3, "3B": 3, "8 MiB": 8 << 20} {
		var n int
		if err := (byteSize{&n}).Set(in); err != nil || n != want {
			t.Errorf("%q: %d, %v; want %d", in, n, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1", "8XB", "1e30", "3TiB", "NaN"} {
		n := 7
		if err := (byteSize{&n}).Set(in); err == nil || n != 7 {
			t.Errorf("%q: %d, %v; want an error and nothing set", in, n, err)
		}
	}
	if err := run([]string{"-id", "n1", "-data", t.TempDir(), "-repair-page-bytes", "0"}); err == nil || !strings.Contains(err.Error(), "-repair-page-bytes 0") {
		t.Errorf("-repair-page-bytes 0: %v", err)
	}
}
