package jepsen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

const (
	httpPort   = 7001
	gossipPort = 7101
	// probeInterval is the nodes' SWIM period: the probe timeout is half
	// of it, a suspicion lasts 4 to 24 of them (with SWIM's default
	// multipliers) and push-pull, which heals partitions, runs every 30.
	probeInterval = 200 * time.Millisecond
	// detectorTimeout bounds how long a silent node takes to be declared
	// failed: the longest suspicion plus a probe.
	detectorTimeout = 25 * probeInterval
)

// slot is one node's place: its namespace and address, and the process
// that currently runs there (nil: none).
type slot struct {
	i    int
	id   string // the current node's ID; a node that joins after a leave gets a new one
	zone string
	data string
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd exited
	log  *os.File
}

func (s *slot) addr() string   { return fmt.Sprintf("%s:%d", nodeIP(s.i), httpPort) }
func (s *slot) gossip() string { return fmt.Sprintf("%s:%d", nodeIP(s.i), gossipPort) }

// cluster is the running nodes of one run.
type cluster struct {
	dir, bin, keyFile string
	slots             []*slot
	client            *http.Client
	generation        int // bumps the ID of nodes that join
}

// buildKVNode builds cmd/kvnode into dir and returns the binary's path.
func buildKVNode(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "kvnode")
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/distkit/distkit/examples/cmd/kvnode")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build kvnode: %w: %s", err, out)
	}
	return bin, nil
}

func newCluster(dir, bin string, n int) (*cluster, error) {
	c := &cluster{dir: dir, bin: bin, keyFile: filepath.Join(dir, "cluster.key"),
		client: &http.Client{Timeout: 2 * time.Second}}
	if err := os.WriteFile(c.keyFile, []byte("the fault harness's shared cluster secret\n"), 0o600); err != nil {
		return nil, err
	}
	for i := range n {
		c.slots = append(c.slots, &slot{i: i, id: fmt.Sprintf("n%d", i), zone: fmt.Sprintf("z%d", i),
			data: filepath.Join(dir, fmt.Sprintf("n%d", i))})
	}
	return c, nil
}

// start runs slot s's node in its namespace, its stderr in a log file.
// The others are its peers and seeds: the members that currently run.
func (c *cluster) start(s *slot) error {
	var peers, join []string
	for _, o := range c.slots {
		if o == s || o.cmd != nil {
			peers = append(peers, fmt.Sprintf("%s=%s@%s", o.id, o.addr(), o.zone))
			if o != s {
				join = append(join, o.gossip())
			}
		}
	}
	log, err := os.OpenFile(filepath.Join(c.dir, s.id+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := []string{"netns", "exec", nsName(s.i), c.bin, "-id", s.id, "-zone", s.zone, "-data", s.data,
		"-listen", s.addr(), "-gossip", s.gossip(), "-peers", strings.Join(peers, ","),
		"-cluster-key-file", c.keyFile, "-probe-interval", probeInterval.String(),
		"-reap-after", "-1s", "-leave-timeout", "20s"}
	if len(join) > 0 {
		args = append(args, "-join", strings.Join(join, ","))
	}
	// ip netns exec execs the program: the process is kvnode itself, so
	// signals reach it.
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return err
	}
	s.cmd, s.log, s.done = cmd, log, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(s.done)
	return nil
}

// signal sends sig to slot s's process.
func (s *slot) signal(sig syscall.Signal) error {
	if s.cmd == nil {
		return fmt.Errorf("%s: not running", s.id)
	}
	return s.cmd.Process.Signal(sig)
}

// stop kills slot s's process (SIGCONT first, in case it is paused),
// or, graceful, sends SIGTERM and waits up to timeout for it to hand its
// data over and leave, then kills it.
func (s *slot) stop(graceful bool, timeout time.Duration) error {
	if s.cmd == nil {
		return nil
	}
	_ = s.signal(syscall.SIGCONT)
	var err error
	if graceful {
		_ = s.signal(syscall.SIGTERM)
		select {
		case <-s.done:
			if st := s.cmd.ProcessState; st != nil && !st.Success() {
				err = fmt.Errorf("%s exited after SIGTERM: %s", s.id, st)
			}
		case <-time.After(timeout):
			err = fmt.Errorf("%s did not leave within %v", s.id, timeout)
		}
	}
	_ = s.signal(syscall.SIGKILL)
	<-s.done
	s.log.Close()
	s.cmd = nil
	return err
}

func (c *cluster) stopAll() {
	for _, s := range c.slots {
		_ = s.stop(false, 0)
	}
}

// clusterView is the part of GET /cluster the harness reads.
type clusterView struct {
	Members []struct{ ID, State string }
}

func (c *cluster) view(ctx context.Context, s *slot) (clusterView, error) {
	var v clusterView
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr()+"/cluster", nil)
	if err != nil {
		return v, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, fmt.Errorf("/cluster of %s: %s", s.id, resp.Status)
	}
	return v, json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&v)
}

// views returns what every running node that answers within
// probeInterval sees: member=state, sorted, by node.
func (c *cluster) views(ctx context.Context) map[string]string {
	out := map[string]string{}
	for _, s := range c.slots {
		if s.cmd == nil {
			continue
		}
		vctx, cancel := context.WithTimeout(ctx, probeInterval)
		v, err := c.view(vctx, s)
		cancel()
		if err != nil {
			continue
		}
		var ms []string
		for _, m := range v.Members {
			ms = append(ms, m.ID+"="+m.State)
		}
		slices.Sort(ms)
		out[s.id] = strings.Join(ms, ",")
	}
	return out
}

// noticed reports whether a node answering in now sees the cluster
// otherwise than it did in before.
func noticed(before, now map[string]string) bool {
	for id, v := range now {
		if b, ok := before[id]; ok && b != v {
			return true
		}
	}
	return false
}

// converged reports whether every running node sees exactly the running
// nodes, all alive.
func (c *cluster) converged(ctx context.Context) error {
	want := map[string]bool{}
	for _, s := range c.slots {
		if s.cmd != nil {
			want[s.id] = true
		}
	}
	for _, s := range c.slots {
		if s.cmd == nil {
			continue
		}
		v, err := c.view(ctx, s)
		if err != nil {
			return err
		}
		alive := 0
		for _, m := range v.Members {
			if !want[m.ID] || m.State != "alive" {
				return fmt.Errorf("%s sees %s %s", s.id, m.ID, m.State)
			}
			alive++
		}
		if alive != len(want) {
			return fmt.Errorf("%s sees %d of %d members", s.id, alive, len(want))
		}
	}
	return nil
}

// waitConverged polls converged every probe interval until it holds or
// timeout passes, and returns how long that took.
func (c *cluster) waitConverged(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	var err error
	for range int(timeout / probeInterval) {
		if err = c.converged(ctx); err == nil {
			return time.Since(start), nil
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(probeInterval):
		}
	}
	return time.Since(start), errors.Join(fmt.Errorf("cluster not converged after %v", timeout), err)
}
