// Command kvdemo runs the replicated store of package kv as a cluster on
// loopback under a concurrent workload and walks it through faults:
//
//	go run ./examples/kvdemo
//
// Each node is a [kv.Server] in this process, with its own bbolt file,
// HTTP listener and SWIM failure detector on UDP; the nodes authenticate
// their replica RPCs with a random cluster key, and clients speak the
// HTTP API: they read keys, write them back with the context they read
// (now and then blindly, making siblings) and delete some (-deletes). A
// partition cuts both the node's HTTP and its SWIM traffic. The phases
// are: steady load; kill one node (a hard stop: its data stays on disk);
// partition another from the rest; heal; with -faults ...,leave, a third
// node leaves gracefully (it hands its keys and hints over to the others,
// leaves the ring, and its data directory is deleted); restart the killed
// node; with -faults ...,join, a new node joins (the ring grows and moved
// keys are streamed); converge (hinted handoff, anti-entropy, and the
// reaping of the keys left deleted). Tombstones are also reaped during
// the run, once dead for -reap-after. A progress line per phase shows
// throughput and latency; the report ends with a verdict computed by
// [kv.CheckReaped]: no acknowledged write lost, no deleted value back,
// and every key's replicas identical. The exit status is 1 when the
// verdict fails.
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
	"time"

	"github.com/distkit/distkit/detector/swim"
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
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *nodes < 3 {
		return fmt.Errorf("-nodes %d: need at least 3", *nodes)
	}
	o := options{nodes: *nodes, clients: *clients, keys: *keys, quorum: quorum.Config{N: *n, R: *r, W: *w}, valueLen: *valueLen,
		deletes: *deletes, reapAfter: *reapAfter, phase: *phase, seed: *seed, faults: map[string]bool{}, dir: *dir}
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

// network injects partitions into the nodes' HTTP clients: a request
// between a partitioned address and an unpartitioned one fails.
type network struct {
	mu  sync.Mutex
	cut map[string]bool // by address
}

func (nw *network) split(from, to string) bool {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	return nw.cut[from] != nw.cut[to]
}

func (nw *network) set(addr string, cut bool) {
	nw.mu.Lock()
	defer nw.mu.Unlock()
	nw.cut[addr] = cut
}

// faultyTransport is one node's view of the network.
type faultyTransport struct {
	nw   *network
	from string
	next http.RoundTripper
}

func (t faultyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.nw.split(t.from, r.URL.Host) {
		return nil, fmt.Errorf("partitioned from %s", r.URL.Host)
	}
	return t.next.RoundTrip(r)
}

// faultyGossip is one node's SWIM transport under the partitions of nw:
// packets across a partition are dropped.
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

	stats  []*phaseStats // guarded by mu; the last is in progress
	acks   []kv.Ack      // guarded by mu
	indet  []kv.Ack
	sibs   atomic.Int64             // reads that returned siblings
	solved atomic.Int64             // acknowledged writes with the context of such a read
	reaped map[string]vclock.VClock // guarded by mu: the histories of the tombstones reaped, by key
	key    []byte                   // the cluster key: replica RPCs are authenticated
}

type phaseStats struct {
	name      string
	mu        sync.Mutex
	latencies []time.Duration
	failed    int
	elapsed   time.Duration
}

func newDemo(o options, out io.Writer) (*demo, error) {
	d := &demo{o: o, out: out, nw: &network{cut: map[string]bool{}}, gone: map[int]bool{}, reaped: map[string]vclock.VClock{},
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
		if err := d.start(i); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (d *demo) start(i int) error {
	m := d.members[i]
	d.mu.Lock()
	var members []kv.Member
	for j, m := range d.members[:d.o.nodes] {
		if !d.gone[j] {
			members = append(members, m)
		}
	}
	d.mu.Unlock()
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

// kill stops node i at once, as a crash would; its data stays on disk.
func (d *demo) kill(i int) error {
	d.mu.Lock()
	s := d.servers[i]
	d.servers[i] = nil
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return s.Shutdown(ctx)
}

// leave makes node i leave gracefully: clients stop choosing it, it hands
// its keys and hints over ([kv.Node.Leave]) and shuts down, which leaves
// SWIM, and its data directory is deleted. It returns what was handed
// over, how long that took, and how long until every live node's ring had
// dropped it after it shut down.
func (d *demo) leave(i int) (h kv.Handover, took, dropped time.Duration, err error) {
	d.mu.Lock()
	s := d.servers[i]
	d.servers[i], d.gone[i] = nil, true
	d.mu.Unlock()
	start := time.Now()
	h, err = s.Node().Leave(context.Background())
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
		name  string
		on    bool
		setup func() error
	}{
		{"steady load", true, nil},
		{fmt.Sprintf("kill %s", d.members[victim].ID), d.o.faults["kill"], func() error {
			start := time.Now()
			if err := d.kill(victim); err != nil {
				return err
			}
			detection = d.detect(victim, start)
			return nil
		}},
		{fmt.Sprintf("partition %s", d.members[island].ID), d.o.faults["partition"], func() error {
			d.nw.set(d.members[island].Addr, true)
			d.nw.set(d.gossip[island], true)
			return nil
		}},
		{"heal", d.o.faults["partition"], func() error {
			d.nw.set(d.members[island].Addr, false)
			d.nw.set(d.gossip[island], false)
			return nil
		}},
		{fmt.Sprintf("leave %s", d.members[leaver].ID), d.o.faults["leave"], func() (err error) {
			handover, handing, dropped, err = d.leave(leaver)
			return err
		}},
		{fmt.Sprintf("restart %s", d.members[victim].ID), d.o.faults["kill"], func() error { return d.start(victim) }},
		{fmt.Sprintf("join n%d", d.o.nodes+1), d.o.faults["join"], func() error { return d.start(d.o.nodes) }},
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i, p := range phases {
		if !p.on {
			continue
		}
		st := &phaseStats{name: p.name}
		d.mu.Lock()
		d.stats = append(d.stats, st)
		d.mu.Unlock()
		if i == 0 {
			for c := range d.o.clients {
				wg.Go(func() { d.client1(ctx, c) })
			}
		}
		start := time.Now() // the phase includes its fault's injection
		if p.setup != nil {
			if err := p.setup(); err != nil {
				stop()
				wg.Wait()
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
		time.Sleep(d.o.phase)
		st.mu.Lock()
		st.elapsed = time.Since(start)
		st.mu.Unlock()
		d.progress(st)
	}
	stop()
	wg.Wait()
	start := time.Now()
	rounds, err := d.converge()
	if err != nil {
		return err
	}
	fmt.Fprintf(d.out, "%-22s %d rounds of hinted handoff and anti-entropy in %v\n", "converge", rounds, time.Since(start).Round(time.Millisecond))
	return d.report(detection, leaving{handover, handing, dropped})
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
		node := d.members[live[rng.IntN(len(live))]]
		key := fmt.Sprintf("key%d", rng.IntN(d.o.keys))
		url := "http://" + node.Addr + "/kv/" + key
		st := d.current()

		start := time.Now()
		code, hdr, err := d.do(ctx, http.MethodGet, url, nil, "")
		if ctx.Err() != nil {
			return // the run ended: not a failure of the store
		}
		d.record(st, start, err == nil && code < 500)
		if err != nil || code >= 500 {
			continue
		}
		cctx := hdr.Get(kv.HeaderContext)
		siblings := code == http.StatusMultipleChoices
		if siblings {
			d.sibs.Add(1)
		}
		method, ack := http.MethodPut, kv.Ack{Key: key}
		var body []byte
		switch {
		case code != http.StatusNotFound && rng.Float64() < d.o.deletes:
			method, ack.Version = http.MethodDelete, kv.Version{Deleted: true}
		case rng.IntN(10) == 0:
			cctx = "" // a blind write: a sibling of what is there
			fallthrough
		default:
			value := fmt.Sprintf("c%d-%d.", c, seq)
			body = []byte(value + strings.Repeat("x", max(0, d.o.valueLen-len(value))))
			ack.Version = kv.Version{Value: body}
		}
		start = time.Now()
		code, hdr, err = d.do(ctx, method, url, body, cctx)
		if ctx.Err() == nil {
			d.record(st, start, err == nil && code == http.StatusNoContent)
		}
		if cctx != "" {
			ack.Context, _ = kv.DecodeContext(cctx)
		}
		if dot := hdr.Get(kv.HeaderDot); dot != "" {
			ack.Dot, _ = kv.DecodeDot(dot)
		}
		d.mu.Lock()
		if err == nil && code == http.StatusNoContent {
			d.acks = append(d.acks, ack)
			if siblings && cctx != "" {
				d.solved.Add(1) // written back over the siblings it read
			}
		} else {
			d.indet = append(d.indet, ack)
		}
		d.mu.Unlock()
	}
}

func (d *demo) do(ctx context.Context, method, url string, body []byte, cctx string) (int, http.Header, error) {
	var r io.Reader
	if body != nil {
		r = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return 0, nil, err
	}
	if cctx != "" {
		req.Header.Set(kv.HeaderContext, cctx)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header, err
}

// current returns the stats of the phase in progress.
func (d *demo) current() *phaseStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stats[len(d.stats)-1]
}

func (d *demo) record(st *phaseStats, start time.Time, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if ok {
		st.latencies = append(st.latencies, time.Since(start))
	} else {
		st.failed++
	}
}

func (st *phaseStats) summary() (ops int, rate float64, p50, p99 time.Duration, failed int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	l := slices.Clone(st.latencies)
	slices.Sort(l)
	if len(l) > 0 {
		p50, p99 = l[len(l)*50/100], l[min(len(l)-1, len(l)*99/100)]
	}
	return len(l), float64(len(l)) / st.elapsed.Seconds(), p50, p99, st.failed
}

func (d *demo) progress(st *phaseStats) {
	ops, rate, p50, p99, failed := st.summary()
	fmt.Fprintf(d.out, "%-22s %6d ops %8.0f ops/s  p50 %8v  p99 %8v  failed %d\n",
		st.name, ops, rate, p50.Round(time.Microsecond), p99.Round(time.Microsecond), failed)
}

// converge delivers every hint, runs anti-entropy between every pair of
// nodes and reaps the dead keys until a round changes nothing and no hint
// is pending. Handoff
// waits for SWIM to see a returning node alive (a healed partition: at the
// next push-pull, 3s at the demo's 100ms probe interval), so rounds are
// 100ms apart. When it gives up, its error says what the last round still
// changed, node by node.
func (d *demo) converge() (int, error) {
	ctx := context.Background()
	const rounds = 100
	var changes []string // the round's, for the error
	for round := 1; round <= rounds; round++ {
		changes = changes[:0]
		for _, i := range d.live() {
			n := d.serverAt(i).Node()
			k, err := n.HandOff(ctx)
			if err != nil {
				return round, err
			}
			if pending := n.Stats().HintsPending; k+pending > 0 {
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
					return round, err
				}
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
				return round, err
			}
			if k > 0 {
				changes = append(changes, fmt.Sprintf("%s reaped %d dead keys", d.members[i].ID, k))
			}
		}
		if len(changes) == 0 {
			return round, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return rounds, fmt.Errorf("no convergence after %d rounds; the last: %s", rounds, strings.Join(changes, "; "))
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
	fmt.Fprintln(d.out, "\nreport")
	for _, st := range d.stats {
		d.progress(st)
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
	fmt.Fprintf(d.out, "writes taken with a hint %d, hints delivered %d (one per key and node), pending %d\n",
		total.HintsStored, total.HintsDelivered, total.HintsPending)
	fmt.Fprintf(d.out, "read repairs %d, keys repaired by anti-entropy %d\n", total.ReadRepairs, total.KeysRepaired)
	fmt.Fprintf(d.out, "reads that found siblings %d, writes that resolved siblings %d\n", d.sibs.Load(), d.solved.Load())
	deletes := 0
	for _, a := range d.acks {
		if a.Version.Deleted {
			deletes++
		}
	}
	d.mu.Lock()
	fmt.Fprintf(d.out, "deletes acknowledged %d, tombstones reaped %d (replica copies) of %d keys\n", deletes, total.Reaped, len(d.reaped))
	d.mu.Unlock()

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
	d.mu.Lock()
	v := kv.CheckReaped(d.acks, d.indet, replicas, d.reaped)
	d.mu.Unlock()
	for _, i := range d.live() {
		if err := d.kill(i); err != nil { // the cluster is discarded: no handover
			return err
		}
	}
	if err := v.Err(); err != nil {
		fmt.Fprintf(d.out, "verdict: FAIL over %d acknowledged writes, %d indeterminate, %d keys: %v\n", len(d.acks), len(d.indet), v.Keys, err)
		return err
	}
	fmt.Fprintf(d.out, "verdict: PASS: none of %d acknowledged writes lost (%d indeterminate), no deleted value back, all replicas of %d keys identical\n",
		len(d.acks), len(d.indet), v.Keys)
	return nil
}
