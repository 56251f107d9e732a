package jepsen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Prefix names every namespace, link and nft table the harness creates,
// so that cleanup removes only those.
const Prefix = "dkj-"

const (
	bridge     = Prefix + "br0"
	subnet     = "10.77.0" // a /24 that exists only on the harness's bridge and namespaces
	bridgeAddr = subnet + ".1"
	nftTable   = "dkjfault" // in each node's own namespace
	cmdTimeout = 10 * time.Second
)

// nsName is node slot i's namespace; vethName its link on the bridge.
func nsName(i int) string   { return fmt.Sprintf("%sn%d", Prefix, i) }
func vethName(i int) string { return fmt.Sprintf("%sv%d", Prefix, i) }

// nodeIP is node slot i's address inside its namespace.
func nodeIP(i int) string { return fmt.Sprintf("%s.%d", subnet, 11+i) }

// Available reports why the harness cannot run here (nil: it can): it
// needs root, ip, nft and tc.
func Available() error {
	var errs []error
	if out, err := exec.Command("id", "-u").Output(); err != nil || strings.TrimSpace(string(out)) != "0" {
		errs = append(errs, errors.New("not root"))
	}
	for _, tool := range []string{"ip", "nft", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			errs = append(errs, fmt.Errorf("%s missing (apt-get install -y iproute2 nftables)", tool))
		}
	}
	return errors.Join(errs...)
}

// run runs a command, bounded by cmdTimeout, and returns its combined
// output in the error.
func run(ctx context.Context, name string, args ...string) error {
	return runIn(ctx, nil, name, args...)
}

func runIn(ctx context.Context, stdin []byte, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// inNS runs a command inside namespace ns.
func inNS(ctx context.Context, ns string, stdin []byte, args ...string) error {
	return runIn(ctx, stdin, "ip", append([]string{"netns", "exec", ns}, args...)...)
}

// Cleanup removes everything a run of the harness may have left: the
// processes inside its namespaces (killed), the namespaces (with their
// nft tables and qdiscs), the veths and the bridge, and the temporary
// working directories of runs. It touches only names
// starting with [Prefix] and returns the errors of what it could not
// remove.
func Cleanup(ctx context.Context) error {
	var errs []error
	out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		ns, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !strings.HasPrefix(ns, Prefix) {
			continue
		}
		pids, _ := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
		for _, pid := range strings.Fields(string(pids)) {
			_ = run(ctx, "kill", "-KILL", pid)
		}
		if err := run(ctx, "ip", "netns", "delete", ns); err != nil {
			errs = append(errs, err)
		}
	}
	out, err = exec.CommandContext(ctx, "ip", "-o", "link", "show").Output()
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("ip link show: %w", err))...)
	}
	for _, line := range strings.Split(string(out), "\n") {
		// "7: dkj-v0@if6: <...>"
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if strings.HasPrefix(name, Prefix) {
			// A veth whose peer's namespace was just deleted may vanish
			// on its own meanwhile.
			if err := run(ctx, "ip", "link", "delete", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
				errs = append(errs, err)
			}
		}
	}
	// The working directories of runs that were killed.
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), Prefix+"run*"))
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// setupNet creates the bridge (with bridgeAddr, so that the root
// namespace reaches the nodes) and n namespaces, each with a veth pair:
// eth0 inside at nodeIP(i), vethName(i) on the bridge.
func setupNet(ctx context.Context, n int) error {
	steps := [][]string{
		{"ip", "link", "add", bridge, "type", "bridge"},
		{"ip", "addr", "add", bridgeAddr + "/24", "dev", bridge},
		{"ip", "link", "set", bridge, "up"},
	}
	for i := range n {
		ns, v := nsName(i), vethName(i)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", v, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "link", "set", v, "master", bridge},
			[]string{"ip", "link", "set", v, "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "addr", "add", nodeIP(i) + "/24", "dev", "eth0"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"},
			[]string{"ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := run(ctx, s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// block makes node slot i drop every packet it would send to the slots
// in to (nft, its output chain); an empty to lifts its rules.
func block(ctx context.Context, i int, to []int) error {
	_ = inNS(ctx, nsName(i), nil, "nft", "delete", "table", "inet", nftTable)
	if len(to) == 0 {
		return nil
	}
	var addrs []string
	for _, j := range to {
		addrs = append(addrs, nodeIP(j))
	}
	rules := fmt.Sprintf("table inet %s {\n chain output {\n  type filter hook output priority 0; policy accept;\n  ip daddr { %s } drop\n }\n}\n",
		nftTable, strings.Join(addrs, ", "))
	return inNS(ctx, nsName(i), []byte(rules), "nft", "-f", "-")
}

// slow limits what node slot i sends to rate (tc tbf on its eth0); an
// empty rate lifts it.
func slow(ctx context.Context, i int, rate string) error {
	_ = inNS(ctx, nsName(i), nil, "tc", "qdisc", "del", "dev", "eth0", "root")
	if rate == "" {
		return nil
	}
	return inNS(ctx, nsName(i), nil, "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", rate, "burst", "2kb", "latency", "500ms")
}
