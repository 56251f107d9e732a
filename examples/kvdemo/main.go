// Command kvdemo runs the replicated store of package kv as a cluster on
// loopback under a concurrent workload and walks it through faults:
//
//	go run ./examples/kvdemo
//	go run ./examples/kvdemo -faults kill,partition,leave,join -report timeline.svg
//
// Each node is a [kv.Server] in this process, with its own bbolt file,
// HTTP listener and SWIM failure detector on UDP; the nodes authenticate
// their replica RPCs with a random cluster key, and clients speak the
// HTTP API: they read keys, write them back with the context they read
// (now and then blindly, making siblings) and delete some (-deletes). A
// partition cuts both the node's HTTP and its SWIM traffic. The phases
// are: steady load; kill one node; partition another from the rest;
// heal; with -faults ...,leave, a third node leaves gracefully (it hands
// its keys and hints over to the others, leaves the ring, and its data
// directory is deleted); restart the killed node; with -faults ...,join,
// a new node joins (the ring grows and moved keys are streamed);
// converge (hinted handoff, anti-entropy, and the reaping of the keys
// left deleted), which prints a line per round. Tombstones are also
// reaped during the run, once dead for -reap-after.
//
// A kill is a hard stop, as SIGKILL would make it: from its instant the
// node sends nothing and receives nothing, so replication it had in
// flight (the copies beyond a write's quorum, read repairs, hints) is
// abandoned and every answer still on its way to or from it is lost; its
// data stays on disk.
//
// A line per phase shows its operations, throughput, latency and
// failures, counting each operation in the phase in which it completed;
// the report repeats these lines unchanged (operations cut short when
// the clients stop are indeterminate writes for the checks, and counted
// nowhere). The report ends with the verdicts of package kv's checks
// over the whole history: [kv.CheckReaped] (no acknowledged write lost,
// no deleted value back, every key's replicas identical) and
// [kv.CheckReads] (each read returned every write acknowledged before it
// began that nothing could have replaced since). Stale reads during a
// fault are reported: the store's sloppy quorums allow them; a stale read
// in the steady phase, before any fault, fails the verdict. The exit
// status is 1 when the verdict fails.
//
// -report FILE.svg writes the run's timeline: operations per second,
// acknowledged and failed, and p50/p99 latency, with each fault's window
// shaded. timeline.svg beside this file is one, from
//
//	go run ./examples/kvdemo -faults kill,partition,leave,join -report examples/kvdemo/timeline.svg
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/distkit/distkit/detector/swim"
	"github.com/distkit/distkit/examples/internal/timeline"
	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the usage, as asked
		}
		fmt.Fprintln(os.Stderr, "kvdemo:", err)
		os.Exit(1)
	}
}

type options struct {
	nodes, clients, keys int
	quorum               quorum.Config
	valueLen             int
	deletes              float64 // the fraction of writes that delete
	reapAfter            time.Duration
	phase                time.Duration
	seed                 uint64
	faults               map[string]bool
	dir                  string
	report               string // the SVG timeline's file; "": none
}

func run(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("kvdemo", flag.ContinueOnError)
	nodes := fs.Int("nodes", 5, "cluster size (at least 3)")
	clients := fs.Int("clients", 8, "concurrent clients")
	keys := fs.Int("keys", 100, "distinct keys")
	n := fs.Int("n", 3, "replicas per key")
	r := fs.Int("r", 2, "read quorum")
	w := fs.Int("w", 2, "write quorum")
	valueLen := fs.Int("value", 100, "bytes per value written (at least the 16 of its unique prefix)")
	deletes := fs.Float64("deletes", 0.1, "the fraction of writes to a key that has a value that delete it")
	reapAfter := fs.Duration("reap-after", 2*time.Second, "how long a dead key's tombstone is kept before it is reaped; negative: forever")
	phase := fs.Duration("phase", 3*time.Second, "duration of each load phase")
	seed := fs.Uint64("seed", 1, "seed of the clients' choices")
	faults := fs.String("faults", "kill,partition", "faults to inject: kill, partition, leave (a node leaves gracefully, its data deleted), join (a new node joins at the end); comma-separated; empty: none")
	dir := fs.String("data", "", "data directory (default: a temporary one, removed at the end)")
	report := fs.String("report", "", "write the run's timeline (throughput, latency, failures, fault windows) to this SVG file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodes < 3 {
		return fmt.Errorf("-nodes %d: need at least 3", *nodes)
	}
	o := options{nodes: *nodes, clients: *clients, keys: *keys, quorum: quorum.Config{N: *n, R: *r, W: *w}, valueLen: *valueLen,
		deletes: *deletes, reapAfter: *reapAfter, phase: *phase, seed: *seed, faults: map[string]bool{}, dir: *dir, report: *report}
	if err := o.quorum.Validate(); err != nil {
		return err
	}
	for _, f := range strings.Split(*faults, ",") {
		switch f = strings.TrimSpace(f); f {
		case "":
		case "kill", "partition", "leave", "join":
			o.faults[f] = true
		default:
			return fmt.Errorf("-faults: unknown fault %q", f)
		}
	}
	if o.dir == "" {
		d, err := os.MkdirTemp("", "kvdemo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		o.dir = d
	}
	d, err := newDemo(o, out)
	if err != nil {
		return err
	}
	return d.run()
}

// network injects faults into the nodes' HTTP clients: a request between
// a partitioned address and an unpartitioned one fails, and so does any
// request from or to a killed node's address, also one that was under
// way when the node was killed (its answer is lost).
type network struct {
	mu     sync.Mutex
	cut    map[string]bool // by address
	killed map[string]bool // by address
}

func (nw *network) split(from, to string) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.cut[from] != nw.cut[to] || nw.killed[from] || nw.killed[to]
}

// dead reports whether addr belongs to a killed node.
func (nw *network) dead(addr string) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.killed[addr]
}

func (nw *network) set(addr string, cut bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[addr] = cut
}

// kill makes the addresses send and receive nothing from now on, or
// again everything.
func (nw *network) kill(dead bool, addrs ...string) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	for _, a := range addrs {
		nw.killed[a] = dead
	}
}

// faultyTransport is one node's view of the network.
type faultyTransport struct {
	nw   *network
	from string
	next http.RoundTripper
}

func (t faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	to := r.URL.Host
	if t.nw.dead(to) {
		// What dialling a killed process's port gets.
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	}
	if t.nw.split(t.from, to) {
		return nil, fmt.Errorf("partitioned from %s", to)
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && t.nw.split(t.from, to) {
		// The request went out, but one end died (or was cut off)
		// before the answer came back.
		resp.Body.Close()
		return nil, fmt.Errorf("lost the answer of %s", to)
	}
	return resp, err
}

// faultyGossip is one node's SWIM transport under the faults of nw:
// packets across a partition, from a killed node or to one are dropped.
type faultyGossip struct {
	swim.Transport
	nw   *network
	from string
}

func (t faultyGossip) WriteTo(packet []byte, addr string) error {
	if t.nw.split(t.from, addr) {
		return nil // lost, as a partition loses it
	}
	return t.Transport.WriteTo(packet, addr)
}

// record is an operation of the history.
type record struct {
	kv.Op
	cut  bool // cut short when the clients stopped: not counted (a write stays, as indeterminate)
	node int  // the member it was sent to
}

// phase is a part of the run: an operation counts in the phase in which
// it completed (since the run began), in [start, end).
type phase struct {
	name       string
	start, end time.Duration
	fault      string // the fault it injects ("kill", "partition", ...), or ""
}

type demo struct {
	o       options
	out     io.Writer
	members []kv.Member
	gossip  []string // SWIM addresses, by member
	nw      *network
	mu      sync.Mutex
	servers []*kv.Server // nil: killed or left
	gone    map[int]bool // left for good: not in the members a node starts with
	client  *http.Client
	start   time.Time // of the load

	history []record                 // guarded by mu, in the order of completion
	phases  []phase                  // guarded by mu; the last is in progress until the load ends
	sibs    atomic.Int64             // reads that returned siblings
	solved  atomic.Int64             // acknowledged writes with the context of such a read
	reaped  map[string]vclock.VClock // guarded by mu: the histories of the tombstones reaped, by key
	key     []byte                   // the cluster key: replica RPCs are authenticated
}

func newDemo(o options, out io.Writer) (*demo, error) {
	d := &demo{o: o, out: out, nw: &network{cut: map[string]bool{}, killed: map[string]bool{}}, gone: map[int]bool{}, reaped: map[string]vclock.VClock{},
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		key:    []byte(rand.Text())}
	spare := 0
	if o.faults["join"] {
		spare = 1
	}
	for i := range o.nodes + spare {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		d.members = append(d.members, kv.Member{ID: fmt.Sprintf("n%d", i+1), Addr: ln.Addr().String(), Zone: fmt.Sprintf("z%d", i%3)})
		d.gossip = append(d.gossip, pc.LocalAddr().String())
		ln.Close()
		pc.Close()
	}
	d.servers = make([]*kv.Server, len(d.members))
	for i := range o.nodes {
		if err := d.start1(i); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// start1 starts node i (again, after a kill: on its disk).
func (d *demo) start1(i int) error {
	m := d.members[i]
	d.mu.Lock()
	var members []kv.Member
	for j, m := range d.members[:d.o.nodes] {
		if !d.gone[j] {
			members = append(members, m)
		}
	}
	d.mu.Unlock()
	d.nw.kill(false, m.Addr, d.gossip[i])
	s, err := kv.StartServer(kv.ServerConfig{
		ID: m.ID, Zone: m.Zone, Listen: m.Addr, Gossip: d.gossip[i], Join: d.gossip, Data: filepath.Join(d.o.dir, m.ID), Members: members,
		ProbeInterval: 100 * time.Millisecond,
		WrapGossip: func(t swim.Transport) swim.Transport {
			return faultyGossip{Transport: t, nw: d.nw, from: d.gossip[i]}
		},
		Quorum: d.o.quorum, ClusterKey: d.key,
		Client: &http.Client{Timeout: time.Second, Transport: faultyTransport{nw: d.nw, from: m.Addr,
			next: &http.Transport{MaxIdleConnsPerHost: 64}}},
		Maintain: kv.MaintainConfig{HandOffEvery: 200 * time.Millisecond, AntiEntropyEvery: time.Second,
			ReapEvery: max(d.o.reapAfter/4, 0), ReapAfter: d.o.reapAfter},
		OnReap: func(key []byte, tombstone kv.Object) {
			d.mu.Lock()
			defer d.mu.Unlock()
			h := d.reaped[string(key)]
			h.Merge(tombstone.Context())
			d.reaped[string(key)] = h
		},
	})
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.servers[i] = s
	d.mu.Unlock()
	return nil
}

// kill stops node i at once, as SIGKILL would: from this instant it
// sends and receives nothing (replication in flight is abandoned,
// answers under way are lost), then its server is stopped without a
// handover. Its data stays on disk.
func (d *demo) kill(i int) error {
	d.mu.Lock()
	s := d.servers[i]
	d.servers[i] = nil
	d.mu.Unlock()
	d.nw.kill(true, d.members[i].Addr, d.gossip[i])
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

// leaveAttempts bounds the handovers a leave tries.
const leaveAttempts = 3

// leave makes node i leave gracefully: clients stop choosing it, it hands
// its keys and hints over ([kv.Node.Leave], up to leaveAttempts times)
// and shuts down, which leaves SWIM, and its data directory is deleted.
// It returns what was handed over, how long that took, and how long
// until every live node's ring had dropped it after it shut down.
func (d *demo) leave(i int) (h kv.Handover, took, dropped time.Duration, err error) {
	d.mu.Lock()
	s := d.servers[i]
	d.servers[i], d.gone[i] = nil, true
	d.mu.Unlock()
	start := time.Now()
	// A handover that found no node for some key (all its new replicas
	// down or too slow) changed nothing for good: the node stays, as an
	// operator's would, and tries again.
	for attempt := 1; ; attempt++ {
		h, err = s.Node().Leave(context.Background())
		if err == nil || !errors.Is(err, kv.ErrNotPlaced) || attempt == leaveAttempts {
			break
		}
		fmt.Fprintf(d.out, "%-22s handover attempt %d of %d: %v; trying again\n", "leave "+d.members[i].ID, attempt, leaveAttempts, err)
		time.Sleep(500 * time.Millisecond)
	}
	took = time.Since(start)
	if err != nil {
		return h, took, 0, errors.Join(err, s.Shutdown(context.Background()))
	}
	start = time.Now()
	if err := s.Shutdown(context.Background()); err != nil {
		return h, took, 0, err
	}
	if err := os.RemoveAll(filepath.Join(d.o.dir, d.members[i].ID)); err != nil {
		return h, took, 0, err
	}
	id := d.members[i].ID
	for time.Since(start) < 10*time.Second {
		in := false
		for _, j := range d.live() {
			in = in || slices.ContainsFunc(d.serverAt(j).Node().Ring().Nodes(), func(n ring.Node) bool { return n.ID == id })
		}
		if !in {
			return h, took, time.Since(start), nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return h, took, 0, fmt.Errorf("%s still in a ring 10s after it left", id)
}

func (d *demo) live() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []int
	for i, s := range d.servers {
		if s != nil {
			out = append(out, i)
		}
	}
	return out
}

func (d *demo) run() error {
	fmt.Fprintf(d.out, "kvdemo: %d nodes on loopback (N=%d R=%d W=%d), %d clients, %d keys, %d-byte values, seed %d, data in %s\n",
		d.o.nodes, d.o.quorum.N, d.o.quorum.R, d.o.quorum.W, d.o.clients, d.o.keys, d.o.valueLen, d.o.seed, d.o.dir)
	victim, island, leaver := d.o.nodes-1, d.o.nodes-2, 0
	var detection, handing, dropped time.Duration
	var handover kv.Handover
	phases := []struct {
		name, fault string
		on          bool
		setup       func() error
	}{
		{"steady load", "", true, nil},
		{fmt.Sprintf("kill %s", d.members[victim].ID), "kill", d.o.faults["kill"], func() error {
			start := time.Now()
			if err := d.kill(victim); err != nil {
				return err
			}
			detection = d.detect(victim, start)
			return nil
		}},
		{fmt.Sprintf("partition %s", d.members[island].ID), "partition", d.o.faults["partition"], func() error {
			d.nw.set(d.members[island].Addr, true)
			d.nw.set(d.gossip[island], true)
			return nil
		}},
		{"heal", "", d.o.faults["partition"], func() error {
			d.nw.set(d.members[island].Addr, false)
			d.nw.set(d.gossip[island], false)
			return nil
		}},
		{fmt.Sprintf("leave %s", d.members[leaver].ID), "leave", d.o.faults["leave"], func() (err error) {
			handover, handing, dropped, err = d.leave(leaver)
			return err
		}},
		{fmt.Sprintf("restart %s", d.members[victim].ID), "", d.o.faults["kill"], func() error { return d.start1(victim) }},
		{fmt.Sprintf("join n%d", d.o.nodes+1), "join", d.o.faults["join"], func() error { return d.start1(d.o.nodes) }},
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	d.start = time.Now()
	first := true
	for _, p := range phases {
		if !p.on {
			continue
		}
		// The phase includes its fault's injection.
		d.next(phase{name: p.name, fault: p.fault})
		if first {
			for c := range d.o.clients {
				wg.Go(func() { d.client1(ctx, c) })
			}
			first = false
		}
		if p.setup != nil {
			if err := p.setup(); err != nil {
				stop()
				wg.Wait()
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		time.Sleep(d.o.phase)
	}
	// The last phase ends once the clients stopped: no operation
	// completes outside a phase.
	stop()
	wg.Wait()
	d.next(phase{})
	if _, err := d.converge(); err != nil {
		return err
	}
	return d.report(detection, leaving{handover, handing, dropped})
}

// next ends the phase in progress, if any, printing its line, and begins
// p unless its name is empty. An operation's completion is stamped and
// recorded under the same lock, so the line counts every operation that
// will ever count in its phase.
func (d *demo) next(p phase) {
	d.mu.Lock()
	now := time.Since(d.start)
	if k := len(d.phases); k > 0 {
		d.phases[k-1].end = now
		d.mu.Unlock()
		fmt.Fprintln(d.out, d.line(k-1))
		d.mu.Lock()
	}
	if p.name != "" {
		p.start = now
		d.phases = append(d.phases, p)
	}
	d.mu.Unlock()
}

// line is phase k's line: its operations, throughput, latency and
// failures, over the operations that completed in it.
func (d *demo) line(k int) string {
	d.mu.Lock()
	p := d.phases[k]
	var lat []time.Duration
	failed := 0
	for _, r := range d.history {
		if r.cut || r.Complete < p.start || r.Complete >= p.end {
			continue
		}
		if r.OK {
			lat = append(lat, r.Complete-r.Invoke)
		} else {
			failed++
		}
	}
	d.mu.Unlock()
	slices.Sort(lat)
	rate := float64(len(lat)) / max(p.end-p.start, time.Millisecond).Seconds()
	return fmt.Sprintf("%-22s %6d ops %8.0f ops/s  p50 %8v  p99 %8v  failed %d", p.name, len(lat), rate,
		timeline.Quantile(lat, 0.5).Round(time.Microsecond), timeline.Quantile(lat, 0.99).Round(time.Microsecond), failed)
}

// failedIn counts the failed operations that completed in phase p: sent
// to member node, and sent to others.
func (d *demo) failedIn(p phase, node int) (to, others int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, r := range d.history {
		if r.cut || r.OK || r.Complete < p.start || r.Complete >= p.end {
			continue
		}
		if r.node == node {
			to++
		} else {
			others++
		}
	}
	return to, others
}

// detect waits until every live node suspects node i, and returns how long
// that took since start; 0 if it took more than ten seconds.
func (d *demo) detect(i int, start time.Time) time.Duration {
	for time.Since(start) < 10*time.Second {
		all := true
		for _, j := range d.live() {
			if d.serverAt(j).Node().Alive(d.members[i].ID) {
				all = false
			}
		}
		if all {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}

func (d *demo) serverAt(i int) *kv.Server {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.servers[i]
}

// client1 is one client: it reads a key and writes it back with the
// context it read (or, now and then, blindly), until ctx is done.
func (d *demo) client1(ctx context.Context, c int) {
	rng := mrand.New(mrand.NewPCG(d.o.seed, uint64(c)))
	for seq := 0; ctx.Err() == nil; seq++ {
		live := d.live()
		i := live[rng.IntN(len(live))]
		node := d.members[i]
		key := fmt.Sprintf("key%d", rng.IntN(d.o.keys))
		url := "http://" + node.Addr + "/kv/" + key
		get := d.do(ctx, kv.Op{Kind: kv.OpGet, Key: key}, url, i)
		if !get.OK {
			continue
		}
		siblings := len(get.Values) > 1
		if siblings {
			d.sibs.Add(1)
		}
		w := kv.Op{Kind: kv.OpPut, Key: key, Context: get.Context}
		switch {
		case len(get.Values) > 0 && rng.Float64() < d.o.deletes:
			w.Kind = kv.OpDelete
		case rng.IntN(10) == 0:
			w.Context = vclock.VClock{} // a blind write: a sibling of what is there
			fallthrough
		default:
			value := fmt.Sprintf("c%d-%d.", c, seq)
			w.Value = []byte(value + strings.Repeat("x", max(0, d.o.valueLen-len(value))))
		}
		if w = d.do(ctx, w, url, i); w.OK && siblings && w.Context.Len() > 0 {
			d.solved.Add(1) // written back over the siblings it read
		}
	}
}

// do runs o against url, of member node, and records it in the history,
// unless it is a read cut short by the end of the load.
func (d *demo) do(ctx context.Context, o kv.Op, url string, node int) kv.Op {
	method := map[kv.OpKind]string{kv.OpGet: http.MethodGet, kv.OpPut: http.MethodPut, kv.OpDelete: http.MethodDelete}[o.Kind]
	o.Invoke = time.Since(d.start)
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(string(o.Value)))
	if err == nil {
		if o.Context.Len() > 0 {
			req.Header.Set(kv.HeaderContext, kv.EncodeContext(o.Context))
		}
		var resp *http.Response
		if resp, err = d.client.Do(req); err == nil {
			err = o.Record(resp)
			resp.Body.Close()
		}
	}
	o.OK = err == nil
	cut := ctx.Err() != nil && !o.OK
	if cut && o.Kind == kv.OpGet {
		return o
	}
	d.mu.Lock()
	o.Complete = time.Since(d.start)
	d.history = append(d.history, record{Op: o, cut: cut, node: node})
	d.mu.Unlock()
	return o
}

// converge delivers every hint, runs anti-entropy between every pair of
// nodes and reaps the dead keys until a round changes nothing and no hint
// is pending, printing a line per round. Handoff waits for SWIM to see a
// returning node alive (a healed partition: at the next push-pull, 3s at
// the demo's 100ms probe interval), so rounds are 100ms apart. It
// returns the totals of the rounds' lines; when it gives up, its error
// says what the last round still changed, node by node.
func (d *demo) converge() (converged, error) {
	ctx := context.Background()
	const rounds = 100
	var total converged
	start := time.Now()
	var changes []string // the round's, for the error
	for round := 1; round <= rounds; round++ {
		changes = changes[:0]
		var this converged
		for _, i := range d.live() {
			n := d.serverAt(i).Node()
			k, err := n.HandOff(ctx)
			if err != nil {
				return total, err
			}
			this.delivered += k
			pending := n.Stats().HintsPending
			this.pending += pending
			if k+pending > 0 {
				var down []string
				for _, m := range d.members[:d.o.nodes] {
					if m.ID != d.members[i].ID && !n.Alive(m.ID) {
						down = append(down, m.ID)
					}
				}
				changes = append(changes, fmt.Sprintf("%s delivered %d hints, holds %d, sees down %v", d.members[i].ID, k, pending, down))
			}
			for _, j := range d.live() {
				if j == i {
					continue
				}
				k, _, err := n.AntiEntropy(ctx, d.members[j].ID)
				if err != nil {
					return total, err
				}
				this.repaired += k
				if k > 0 {
					changes = append(changes, fmt.Sprintf("%s repaired %d keys with %s", d.members[i].ID, k, d.members[j].ID))
				}
			}
			if d.o.reapAfter < 0 {
				continue
			}
			// The clients have stopped and the replicas agree: no message
			// about a dead key is in flight, so it may go now.
			k, err = n.Reap(ctx, time.Now())
			if err != nil {
				return total, err
			}
			this.reaped += k
			if k > 0 {
				changes = append(changes, fmt.Sprintf("%s reaped %d dead keys", d.members[i].ID, k))
			}
		}
		total.rounds, total.took = round, time.Since(start)
		total.delivered += this.delivered
		total.repaired += this.repaired
		total.reaped += this.reaped
		total.pending = this.pending
		fmt.Fprintf(d.out, "%-22s round %d: hints delivered %d (pending %d), keys repaired %d, dead keys reaped %d; %v so far\n",
			"converge", round, this.delivered, this.pending, this.repaired, this.reaped, total.took.Round(time.Millisecond))
		if len(changes) == 0 {
			fmt.Fprintf(d.out, "%-22s %v\n", "converge", total)
			return total, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return total, fmt.Errorf("no convergence after %d rounds; the last: %s", rounds, strings.Join(changes, "; "))
}

// converged is what converge did: the sums of its rounds' lines.
type converged struct {
	rounds                      int
	took                        time.Duration
	delivered, repaired, reaped int
	pending                     int // hints still held after the last round
}

func (c converged) String() string {
	return fmt.Sprintf("%d rounds in %v: hints delivered %d, keys repaired %d, dead keys reaped %d, hints pending %d",
		c.rounds, c.took.Round(time.Millisecond), c.delivered, c.repaired, c.reaped, c.pending)
}

// leaving is what the leave phase measured.
type leaving struct {
	kv.Handover
	took, dropped time.Duration // handing over; from shutdown until out of every ring
}

func (d *demo) report(detection time.Duration, l leaving) error {
	var total kv.Stats
	for _, i := range d.live() {
		s := d.serverAt(i).Node().Stats()
		total.HintsStored += s.HintsStored
		total.HintsDelivered += s.HintsDelivered
		total.HintsPending += s.HintsPending
		total.ReadRepairs += s.ReadRepairs
		total.KeysRepaired += s.KeysRepaired
		total.Reaped += s.Reaped
	}
	fmt.Fprintln(d.out, "\nreport (each operation counted in the phase in which it completed, as in the lines above)")
	for k := range d.phases {
		fmt.Fprintln(d.out, d.line(k))
	}
	for _, p := range d.phases {
		if p.fault != "kill" {
			continue
		}
		victim := slices.IndexFunc(d.members, func(m kv.Member) bool { return "kill "+m.ID == p.name })
		toVictim, toLive := d.failedIn(p, victim)
		fmt.Fprintf(d.out, "%s: %d failed operations had been sent to %s before it was killed, %d to live nodes\n",
			p.name, toVictim, d.members[victim].ID, toLive)
	}
	switch {
	case detection > 0:
		fmt.Fprintf(d.out, "failure detected by every node after %v\n", detection.Round(time.Millisecond))
	case d.o.faults["kill"]:
		fmt.Fprintln(d.out, "failure not detected by every node within 10s")
	}
	if d.o.faults["leave"] {
		fmt.Fprintf(d.out, "leaving node handed over %d keys (%d copies taken, %d failed) and %d hints (%d unplaced) in %v; out of every ring %v later\n",
			l.Keys, l.Copies, l.Failed, l.Hints, l.Unplaced, l.took.Round(time.Millisecond), l.dropped.Round(time.Millisecond))
	}
	fmt.Fprintf(d.out, "over the whole run, converge included, by the nodes alive at the end: writes taken with a hint %d, hints delivered %d (one per key and node), pending %d; read repairs %d, keys repaired by anti-entropy %d\n",
		total.HintsStored, total.HintsDelivered, total.HintsPending, total.ReadRepairs, total.KeysRepaired)
	fmt.Fprintf(d.out, "reads that found siblings %d, writes that resolved siblings %d\n", d.sibs.Load(), d.solved.Load())

	d.mu.Lock()
	history := make([]kv.Op, len(d.history))
	for i, r := range d.history {
		history[i] = r.Op
	}
	reaped := d.reaped
	d.mu.Unlock()
	acks, indet := kv.Acks(history)
	deletes := 0
	for _, a := range acks {
		if a.Version.Deleted {
			deletes++
		}
	}
	fmt.Fprintf(d.out, "deletes acknowledged %d, tombstones reaped %d (replica copies) of %d keys\n", deletes, total.Reaped, len(reaped))

	replicas := map[string][]kv.Object{}
	for k := range d.o.keys {
		key := fmt.Sprintf("key%d", k)
		n0 := d.serverAt(d.live()[0]).Node()
		for _, h := range n0.Home([]byte(key)) {
			o, _, err := d.serverAt(slices.IndexFunc(d.members, func(m kv.Member) bool { return m.ID == h })).Node().Local([]byte(key))
			if err != nil {
				return err
			}
			replicas[key] = append(replicas[key], o)
		}
	}
	v := kv.CheckReaped(acks, indet, replicas, reaped)
	stale := kv.CheckReads(history)
	for _, i := range d.live() {
		if err := d.kill(i); err != nil { // the cluster is discarded: no handover
			return err
		}
	}
	calm := d.reportReads(history, stale)
	if d.o.report != "" {
		if err := os.WriteFile(d.o.report, d.svg(), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(d.out, "timeline written to %s\n", d.o.report)
	}
	errs := []error{v.Err()}
	if calm > 0 {
		errs = append(errs, fmt.Errorf("%d stale reads in the steady phase, with no fault", calm))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(d.out, "verdict: FAIL over %d acknowledged writes, %d indeterminate, %d keys: %v\n", len(acks), len(indet), v.Keys, err)
		return err
	}
	fmt.Fprintf(d.out, "verdict: PASS: none of %d acknowledged writes lost (%d indeterminate), no deleted value back, all replicas of %d keys identical, no stale read before the first fault\n",
		len(acks), len(indet), v.Keys)
	return nil
}

// reportReads prints the stale reads of history by phase (of the read's
// completion), with the first few, and returns how many fell in the
// steady phase, before any fault.
func (d *demo) reportReads(history []kv.Op, stale []kv.StaleRead) (calm int) {
	d.mu.Lock()
	phases := slices.Clone(d.phases)
	d.mu.Unlock()
	reads := 0
	for _, o := range history {
		if o.Kind == kv.OpGet && o.OK {
			reads++
		}
	}
	byPhase := make([]int, len(phases))
	for _, s := range stale {
		at := history[s.Read].Complete
		if k := slices.IndexFunc(phases, func(p phase) bool { return at >= p.start && at < p.end }); k >= 0 {
			byPhase[k]++
		}
	}
	var parts []string
	for k, p := range phases {
		parts = append(parts, fmt.Sprintf("%s %d", p.name, byPhase[k]))
	}
	fmt.Fprintf(d.out, "reads %d, stale %d (%s)\n", reads, len(stale), strings.Join(parts, ", "))
	for i, s := range stale {
		if i == 3 {
			fmt.Fprintf(d.out, "  ... %d more\n", len(stale)-i)
			break
		}
		r, w := history[s.Read], history[s.Write]
		what := "missed"
		if s.Back {
			what = "returned a value replaced by"
		}
		fmt.Fprintf(d.out, "  read of %s [%v, %v] %s %s %.12q (dot %v, acknowledged at %v); it returned %d values\n",
			r.Key, r.Invoke.Round(time.Millisecond), r.Complete.Round(time.Millisecond), what, w.Kind, w.Value, w.Dot, w.Complete.Round(time.Millisecond), len(r.Values))
	}
	if len(phases) > 0 && phases[0].fault == "" {
		calm = byPhase[0]
	}
	return calm
}

// svg draws the run's timeline: the operations of the load and a window
// per fault: a kill until the restart (or the end of the load), a
// partition until the heal, a leave and a join for their phases.
func (d *demo) svg() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	end := d.phases[len(d.phases)-1].end
	c := timeline.Chart{Title: fmt.Sprintf("kvdemo, %d nodes, N=%d R=%d W=%d, seed %d", d.o.nodes, d.o.quorum.N, d.o.quorum.R, d.o.quorum.W, d.o.seed), Duration: end}
	for _, r := range d.history {
		if !r.cut {
			c.Ops = append(c.Ops, timeline.Op{Invoke: r.Invoke, Latency: r.Complete - r.Invoke, Failed: !r.OK})
		}
	}
	for k, p := range d.phases {
		if p.fault == "" {
			continue
		}
		to := p.end
		if until := map[string]string{"kill": "restart", "partition": "heal"}[p.fault]; until != "" {
			to = end
			if j := slices.IndexFunc(d.phases[k:], func(q phase) bool { return strings.HasPrefix(q.name, until) }); j >= 0 {
				to = d.phases[k+j].start
			}
		}
		c.Windows = append(c.Windows, timeline.Window{From: p.start, To: to, Label: p.name,
			Color: slices.Index([]string{"kill", "partition", "leave", "join"}, p.fault)})
	}
	return c.SVG()
}
