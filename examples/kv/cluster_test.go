package kv

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/merkle"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

var (
	long        = flag.Bool("long", false, "run the cluster histories over many more seeds")
	replaySeeds = flag.Uint64("replay-seeds", 4, "seeds TestClusterReplaysSeed runs twice each")
)

var errUnreachable = fmt.Errorf("unreachable: %w", ErrNotDelivered)

// fabric is the network a test cluster's nodes talk over. It routes calls
// to attached nodes; a node detached (crashed) gets no calls and makes
// none, and the failure detector (Alive) sees exactly that: crashes, not
// partitions.
type fabric interface {
	transport(from string) Transport
	node(id string) *Node // nil: not attached
	attach(id string, n *Node)
	// detach takes id's node off the network and returns it once no
	// request to it is being served any more.
	detach(id string) *Node
	// heal ends every partition and message fault.
	heal()
}

// memNet connects in-process nodes through the full RPC encoding,
// synchronously: a call runs the callee's Handle on the caller's
// goroutine. Unit tests and benchmarks use it; the only faults are
// crashes and partitioned nodes (which can reach each other but not the
// rest). The seeded histories run on [simNet] instead.
type memNet struct {
	mu          sync.Mutex
	nodes       map[string]*Node // nil: crashed
	partitioned map[string]bool
	// limit, when positive, fails a call whose request or response is
	// longer, as a transport does past its RPC limit.
	limit int
	// largest is the longest request or response carried.
	largest int
	// serve, when set, answers the calls to its node instead of it.
	serve func(ctx context.Context, to string, req []byte, n *Node) ([]byte, error)
}

func (m *memNet) transport(from string) Transport { return memTransport{m, from} }

type memTransport struct {
	m    *memNet
	from string
}

func (t memTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	t.m.mu.Lock()
	n := t.m.nodes[to]
	open := n != nil && t.m.nodes[t.from] != nil && t.m.partitioned[t.from] == t.m.partitioned[to]
	serve := t.m.serve
	t.m.mu.Unlock()
	if !open {
		return nil, fmt.Errorf("%s -> %s: %w", t.from, to, errUnreachable)
	}
	if err := t.m.carry(req); err != nil {
		return nil, err
	}
	var resp []byte
	var err error
	if serve != nil {
		resp, err = serve(ctx, to, req, n)
	} else {
		resp, err = n.Handle(ctx, req)
	}
	if err == nil {
		err = t.m.carry(resp)
	}
	return resp, err
}

// carry records the length of a message and refuses one past the limit.
func (m *memNet) carry(msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.largest = max(m.largest, len(msg))
	if m.limit > 0 && len(msg) > m.limit {
		return fmt.Errorf("a message of %d bytes, past the limit of %d", len(msg), m.limit)
	}
	return nil
}

func (m *memNet) node(id string) *Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[id]
}

func (m *memNet) attach(id string, n *Node) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nodes[id] = n
}

func (m *memNet) detach(id string) *Node {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.nodes[id]
	m.nodes[id] = nil
	return n
}

func (m *memNet) heal() {
	m.mu.Lock()
	defer m.mu.Unlock()
	clear(m.partitioned)
}

// clusterOn is a test cluster of nodes on real bbolt files, talking over
// the fabric N.
type clusterOn[N fabric] struct {
	t      testing.TB
	dir    string
	ring   *ring.Ring
	q      quorum.Config
	net    N
	stores map[string]*Store
	ids    []string
	wipes  int // disks lost so far, for fresh epochs
	// onReap, when set, is every node's NodeConfig.OnReap.
	onReap func(key []byte, tombstone Object)
	// limits are the bounds of the stores started from now on.
	limits StoreConfig
	// metrics are the nodes' NodeConfig.Metrics from their next start.
	metrics map[string]*Metrics
	// repair and logger are those of the nodes started from now on.
	repair RepairConfig
	logger *slog.Logger
}

// cluster is the in-process cluster of the unit tests.
type cluster = clusterOn[*memNet]

var testTree = merkle.Config{Branches: 16, SegmentsPerBranch: 16}

// inCluster runs f in a synctest bubble on a new in-process cluster of
// nodes with quorum q, and closes the cluster when f returns.
func inCluster(t *testing.T, nodes int, q quorum.Config, f func(t *testing.T, c *cluster, ctx context.Context)) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, 1, nodes, q)
		defer c.close()
		f(t, c, context.Background())
	})
}

// newCluster starts a cluster of nodes on a [memNet]. The seed is unused:
// memNet draws nothing at random.
func newCluster(t testing.TB, _ uint64, nodes int, q quorum.Config) *cluster {
	return newClusterOn(t, &memNet{nodes: map[string]*Node{}, partitioned: map[string]bool{}}, nodes, q)
}

func newClusterOn[N fabric](t testing.TB, net N, nodes int, q quorum.Config) *clusterOn[N] {
	var rn []ring.Node
	var ids []string
	for i := range nodes {
		id := fmt.Sprintf("n%d", i+1)
		ids = append(ids, id)
		rn = append(rn, ring.Node{ID: id, Zone: fmt.Sprintf("z%d", i%3)})
	}
	r, err := ring.New(rn, ring.Config{VNodes: 16})
	if err != nil {
		t.Fatal(err)
	}
	c := &clusterOn[N]{t: t, dir: t.TempDir(), ring: r, q: q, ids: ids, net: net, stores: map[string]*Store{},
		repair: RepairConfig{PageBytes: testPage, PageSegments: 4}} // pages of a few keys, so that every test pages
	for _, id := range ids {
		c.start(id)
	}
	return c
}

func (c *clusterOn[N]) start(id string) {
	s, err := Open(filepath.Join(c.dir, id+".db"), StoreConfig{Tree: testTree, NoSync: true,
		MaxBatchDelay: time.Nanosecond, Epoch: fmt.Sprint(c.wipes), MaxSiblings: c.limits.MaxSiblings, MaxObjectLen: c.limits.MaxObjectLen})
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := NewNode(NodeConfig{ID: id, Ring: c.ring, Store: s, Transport: c.net.transport(id), Quorum: c.q,
		Alive: func(id string) bool { return c.net.node(id) != nil }, Timeout: time.Second, HedgeDelay: 100 * time.Millisecond, Metrics: c.metrics[id],
		OnReap: func(key []byte, o Object) {
			if c.onReap != nil {
				c.onReap(key, o)
			}
		}, Repair: c.repair, Logger: c.logger})
	if err != nil {
		c.t.Fatal(err)
	}
	c.stores[id] = s
	c.net.attach(id, n)
}

// crash takes id off the network, lets its in-flight work fail, and
// closes its store; its file stays for a restart.
func (c *clusterOn[N]) crash(id string) {
	c.net.detach(id).Close()
	if err := c.stores[id].Close(); err != nil {
		c.t.Fatal(err)
	}
}

// wipe crashes id and deletes its disk: it restarts empty, with a new
// epoch.
func (c *clusterOn[N]) wipe(id string) {
	c.crash(id)
	if err := os.Remove(filepath.Join(c.dir, id+".db")); err != nil {
		c.t.Fatal(err)
	}
	c.wipes++
	c.start(id)
}

func (c *clusterOn[N]) node(id string) *Node { return c.net.node(id) }

func (c *clusterOn[N]) up() []string {
	return slices.DeleteFunc(slices.Clone(c.ids), func(id string) bool { return c.node(id) == nil })
}

func (c *clusterOn[N]) close() {
	for _, id := range c.up() {
		c.crash(id)
	}
}

// converge heals every fault, restarts crashed nodes and runs handoff and
// anti-entropy rounds until a round changes nothing.
func (c *clusterOn[N]) converge(ctx context.Context) (rounds int) {
	c.net.heal()
	for _, id := range c.ids {
		if c.node(id) == nil {
			c.start(id)
		}
	}
	for _, id := range c.ids {
		c.node(id).Wait() // let background repairs land
	}
	for rounds = 1; rounds < 20; rounds++ {
		changed := 0
		for _, id := range c.ids {
			d, err := c.node(id).HandOff(ctx)
			if err != nil {
				c.t.Fatal(err)
			}
			changed += d
			for _, peer := range c.ids {
				if peer != id {
					k, _, err := c.node(id).AntiEntropy(ctx, peer)
					if err != nil {
						c.t.Fatal(err)
					}
					changed += k
				}
			}
		}
		if changed == 0 {
			return rounds
		}
	}
	c.t.Fatalf("no convergence after %d rounds", rounds)
	return rounds
}

// settled converges the cluster and fails the test unless every key's
// home replicas hold every write of acks and no hint is left.
func (c *clusterOn[N]) settled(ctx context.Context, acks []Ack, keys []string) {
	c.t.Helper()
	c.converge(ctx)
	if err := Check(acks, nil, c.replicas(keys)).Err(); err != nil {
		c.t.Fatal(err)
	}
	if n := c.pendingHints(); n != 0 {
		c.t.Fatalf("%d hints pending", n)
	}
}

// replicas returns every key's objects on its home replicas.
func (c *clusterOn[N]) replicas(keys []string) map[string][]Object {
	out := map[string][]Object{}
	for _, k := range keys {
		for _, h := range c.ring.Replicas([]byte(k), c.q.N, nil) {
			o, _, err := c.stores[h].Get([]byte(k))
			if err != nil {
				c.t.Fatal(err)
			}
			out[k] = append(out[k], o)
		}
	}
	return out
}

// held returns what node id holds of key, data and hints merged.
func (c *clusterOn[N]) held(id, key string) Object {
	o, _, err := c.stores[id].Get([]byte(key))
	if err != nil {
		c.t.Fatal(err)
	}
	h, _, err := c.stores[id].Hints().Object([]byte(key))
	if err != nil {
		c.t.Fatal(err)
	}
	o.Sync(h)
	return o
}

// holdings returns what each node holds of keys ([clusterOn.held]).
// Every node must be up.
func (c *clusterOn[N]) holdings(keys []string) map[string]map[string]Object {
	out := map[string]map[string]Object{}
	for _, id := range c.ids {
		out[id] = map[string]Object{}
		for _, k := range keys {
			out[id][k] = c.held(id, k)
		}
	}
	return out
}

func (c *clusterOn[N]) pendingHints() int {
	n := 0
	for _, s := range c.stores {
		n += s.Hints().Len()
	}
	return n
}

// clientTimeout bounds each client operation of the histories: a call
// whose request or response the network lost ends with it.
const clientTimeout = 5 * time.Second

// forSeeds runs f for seeds 0 to n-1, each in a subtest of its own
// inside a synctest bubble.
func forSeeds(t *testing.T, n uint64, f func(t *testing.T, seed uint64)) {
	for seed := range n {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { f(t, seed) })
		})
	}
}

// TestClusterNoAckedWriteLost runs seeded histories of reads, writes and
// deletes by clients with stale contexts through random coordinators, on
// the simulated network ([simNet]: random delays, 5% of messages lost and
// 5% duplicated, requests and responses alike), under crashes with
// restarts on the same bbolt files, one disk lost for good, and
// partitions the failure detector misses, with handoff and anti-entropy
// passes now and then. At the end every write acknowledged since the disk
// loss is on W = 2 disks: losing any one node's disk as well loses none
// of them. After the faults heal and handoff and anti-entropy converge,
// no acknowledged write is lost, every key's replicas are identical and
// no hint is left.
func TestClusterNoAckedWriteLost(t *testing.T) {
	seeds := uint64(16)
	if *long {
		seeds = 500
	}
	forSeeds(t, seeds, func(t *testing.T, seed uint64) {
		h := runHistory(t, seed, historyConfig{steps: 250, keys: 6, deletes: 2, repairs: true})
		// The faults happened: messages were lost, duplicated, and dropped
		// by partitions and crashes, and late or duplicated responses
		// reached no caller.
		if f := h.faults; f.Lost == 0 || f.Duplicated == 0 || f.Blocked == 0 || h.ignored == 0 {
			t.Fatalf("seed %d: faults %+v, %d responses ignored", seed, f, h.ignored)
		}
	})
}

// TestClusterReapUnderFaults runs delete-heavy histories over many keys,
// so that keys stay dead long enough to be reaped while messages are lost,
// duplicated and partitioned and nodes crash: the verdict (with
// CheckReaped: no deleted value back) holds, and keys were reaped under
// the faults.
func TestClusterReapUnderFaults(t *testing.T) {
	seeds := uint64(8)
	if *long {
		seeds = 200
	}
	early := 0
	forSeeds(t, seeds, func(t *testing.T, seed uint64) {
		early += runHistory(t, seed, historyConfig{steps: 300, keys: 16, deletes: 4, repairs: true}).reapedEarly
	})
	if early == 0 {
		t.Fatalf("no key was reaped under the faults in %d histories", seeds)
	}
}

// TestClusterReplaysSeed runs each seed's histories twice, a sequential
// one with handoff, anti-entropy and reap passes under the faults, and
// one with concurrent clients, and checks that the two runs of a seed
// are the same byte for byte: every operation's outcome, dot, context
// and values, at the same virtual time, and the network's counters.
// With -replay-seeds it runs more seeds.
func TestClusterReplaysSeed(t *testing.T) {
	for seed := range *replaySeeds {
		var runs [2][]byte
		for i := range runs {
			t.Run(fmt.Sprintf("%d/%d", seed, i), func(t *testing.T) {
				synctest.Test(t, func(t *testing.T) {
					h := runHistory(t, seed, historyConfig{steps: 250, keys: 6, deletes: 2, repairs: true})
					runs[i] = fmt.Appendf(h.transcript, "network %+v, %d ignored\n", h.faults, h.ignored)
				})
				synctest.Test(t, func(t *testing.T) { runs[i] = append(runs[i], runConcurrent(t, seed)...) })
			})
		}
		if a, b := runs[0], runs[1]; !bytes.Equal(a, b) {
			t.Errorf("seed %d replayed differently:\n%s", seed, firstDiff(a, b))
		}
	}
}

// firstDiff returns the first line where a and b differ, in both.
func firstDiff(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return fmt.Sprintf("line %d:\n  %s\n  %s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("%d and %d lines", len(la), len(lb))
}

// history is what a run of [runHistory] observed.
type history struct {
	acks, indeterminate []Ack
	failed              int          // operations that returned an error
	faults              simnet.Stats // the network's counters before the final convergence
	ignored             int          // responses that reached no caller (late or duplicated)
	reapedEarly         int          // keys reaped under the faults
	reapedLate          int          // keys reaped after convergence
	transcript          []byte       // every operation's outcome, one line each, at its virtual time
}

// reapGrace is how long the histories let a key stay dead before it is
// reaped under the faults: longer than a client operation or a repair pass
// (clientTimeout), within which every message about the key ends.
const reapGrace = 2 * clientTimeout

// reapLog collects the histories of the tombstones the nodes reap.
type reapLog struct {
	mu     sync.Mutex
	reaped map[string]vclock.VClock
}

func (l *reapLog) add(key []byte, o Object) {
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.reaped[string(key)]
	h.Merge(o.Context())
	l.reaped[string(key)] = h
}

func (l *reapLog) snapshot() map[string]vclock.VClock {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.reaped)
}

// historyConfig shapes a history of [runHistory].
type historyConfig struct {
	steps   int  // operations
	keys    int  // distinct keys, at most 26
	deletes int  // of every 6 writes, how many delete
	repairs bool // handoff, anti-entropy and reap passes under the faults
}

// runHistory runs cfg.steps operations through random coordinators under
// seeded faults and checks the outcome; with cfg.repairs, handoff,
// anti-entropy and reap passes run among them, under the faults.
func runHistory(t *testing.T, seed uint64, cfg historyConfig) history {
	steps, repairs := cfg.steps, cfg.repairs
	rng := rand.New(rand.NewPCG(seed, 2))
	c := newSimCluster(t, seed, 5, quorum.Config{N: 3, R: 2, W: 2}, simLink(0.05, 0.05))
	defer c.close()
	reaps := &reapLog{reaped: map[string]vclock.VClock{}}
	c.onReap = reaps.add
	var keys []string
	for k := range cfg.keys {
		keys = append(keys, string(rune('a'+k)))
	}
	const clients = 4
	contexts := make([]map[string]vclock.VClock, clients) // each client's last context per key
	for i := range contexts {
		contexts[i] = map[string]vclock.VClock{}
	}
	var h history
	start := time.Now()
	var side []string // partitioned nodes
	sinceWipe := 0    // acks before the disk loss
	for step := range steps {
		switch f := rng.IntN(40); {
		case f == 0 && len(c.up()) > 3:
			c.crash(c.up()[rng.IntN(len(c.up()))])
		case f == 1:
			for _, id := range c.ids {
				if c.node(id) == nil {
					c.start(id)
					break
				}
			}
		case f == 2:
			side = append(side, c.ids[rng.IntN(len(c.ids))])
			c.net.split(side...)
		case f == 3:
			side = nil
			c.net.split()
		case f == 4 && c.wipes == 0 && len(c.up()) == len(c.ids):
			// One disk lost for good, within what W = 2 tolerates.
			c.wipe(c.ids[rng.IntN(len(c.ids))])
			sinceWipe = len(h.acks)
		case repairs && (f == 5 || f == 6):
			// Repair under the faults, which make it fail at times: a
			// handoff pass on every live node, one anti-entropy exchange,
			// a reap pass of the keys dead for reapGrace on every live node.
			up := c.up()
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			for _, id := range up {
				_, _ = c.node(id).HandOff(ctx)
			}
			if a, b := up[rng.IntN(len(up))], up[rng.IntN(len(up))]; a != b {
				_, _, _ = c.node(a).AntiEntropy(ctx, b)
			}
			for _, id := range up {
				k, _ := c.node(id).Reap(ctx, time.Now().Add(-reapGrace))
				h.reapedEarly += k
			}
			cancel()
		}
		up := c.up()
		coord := c.node(up[rng.IntN(len(up))])
		cl, key := rng.IntN(clients), keys[rng.IntN(len(keys))]
		ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
		switch op := rng.IntN(10); {
		case op < 4:
			res, err := coord.Get(ctx, []byte(key), 0)
			h.transcript = fmt.Appendf(h.transcript, "%v %s c%d get %s: %s\n", time.Since(start), coord.ID(), cl, key, outcome(res, err))
			if err != nil {
				h.failed++
				break
			}
			contexts[cl][key] = res.Context
		default:
			v := Version{Value: fmt.Appendf(nil, "%d/%d", cl, step)}
			var w Written
			var err error
			if op-4 < cfg.deletes {
				v = Version{Deleted: true}
				w, err = coord.Delete(ctx, []byte(key), contexts[cl][key], 0)
			} else {
				w, err = coord.Put(ctx, []byte(key), contexts[cl][key], v.Value, 0)
			}
			a := Ack{Key: key, Version: v, Context: contexts[cl][key], Dot: w.Dot}
			h.transcript = fmt.Appendf(h.transcript, "%v %s c%d write %s %q: %s\n", time.Since(start), coord.ID(), cl, key, v.Value, written(w, err))
			if err != nil {
				h.failed++
				h.indeterminate = append(h.indeterminate, a)
				break
			}
			h.acks = append(h.acks, a)
			contexts[cl][key] = w.Context
		}
		cancel()
	}
	h.faults = c.net.stats()
	// Durability: a write acknowledged since the disk loss is on W = 2
	// disks (as data or as a hint), so it survives the loss of any one
	// more: the merge of every other node's copies, which is what
	// convergence would make of them, passes the check. Crashed nodes
	// restart first (their disks count).
	for _, id := range c.ids {
		if c.node(id) == nil {
			c.start(id)
		}
		c.node(id).Wait()
	}
	held := c.holdings(keys)
	for _, lost := range c.ids {
		survivors := map[string][]Object{}
		for _, k := range keys {
			var o Object
			for id, objs := range held {
				if id != lost {
					o.Sync(objs[k])
				}
			}
			survivors[k] = []Object{o}
		}
		if err := CheckReaped(h.acks[sinceWipe:], slices.Concat(h.acks[:sinceWipe], h.indeterminate), survivors, reaps.snapshot()).Err(); err != nil {
			t.Fatalf("seed %d: with %s's disk lost: %v", seed, lost, err)
		}
	}
	rounds := c.converge(context.Background())
	if err := CheckReaped(h.acks, h.indeterminate, c.replicas(keys), reaps.snapshot()).Err(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if repairs {
		// Every message has landed: the keys dead now go at once, and the
		// verdict holds without them.
		for _, id := range c.ids {
			k, err := c.node(id).Reap(context.Background(), time.Now().Add(time.Nanosecond))
			if err != nil {
				t.Fatalf("seed %d: reap after convergence: %v", seed, err)
			}
			h.reapedLate += k
		}
		c.converge(context.Background())
		if err := CheckReaped(h.acks, h.indeterminate, c.replicas(keys), reaps.snapshot()).Err(); err != nil {
			t.Fatalf("seed %d: after reaping: %v", seed, err)
		}
		for _, k := range keys {
			for _, o := range c.replicas([]string{k})[k] {
				if Dead(o) {
					t.Fatalf("seed %d: key %q still dead after reaping", seed, k)
				}
			}
		}
	}
	if c.pendingHints() != 0 {
		t.Fatalf("seed %d: %d hints pending after convergence", seed, c.pendingHints())
	}
	if len(h.acks) < steps/4 {
		t.Fatalf("seed %d: only %d writes acknowledged (%d operations failed)", seed, len(h.acks), h.failed)
	}
	h.ignored = c.net.ignoredResponses()
	t.Logf("seed %d: %d acks, %d failed ops, %d rounds to converge, network %+v before converging, %d responses ignored, %d keys reaped under the faults and %d after",
		seed, len(h.acks), h.failed, rounds, h.faults, h.ignored, h.reapedEarly, h.reapedLate)
	return h
}

// TestClusterConcurrentClients has clients run at once, so that
// coordinators race on the same keys, between rounds of crashes,
// restarts and partitions, on the simulated network with 2% of messages
// lost and 2% duplicated; the verdict is the same as for the sequential
// histories, and a seed replays exactly (TestClusterReplaysSeed).
func TestClusterConcurrentClients(t *testing.T) {
	forSeeds(t, 4, func(t *testing.T, seed uint64) { runConcurrent(t, seed) })
}

// runConcurrent runs a history of concurrent clients and returns its
// transcript: every operation's outcome at its virtual time, in time and
// client order, and the network's counters.
func runConcurrent(t *testing.T, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 3))
	c := newSimCluster(t, seed, 5, quorum.Config{N: 3, R: 2, W: 2}, simLink(0.02, 0.02))
	defer c.close()
	keys := []string{"a", "b", "c"}
	var mu sync.Mutex
	var acks, indeterminate []Ack
	var lines []string
	start := time.Now()
	for round := range 8 {
		switch rng.IntN(4) {
		case 0:
			if up := c.up(); len(up) > 3 {
				c.crash(up[rng.IntN(len(up))])
			}
		case 1:
			for _, id := range c.ids {
				if c.node(id) == nil {
					c.start(id)
				}
			}
		case 2:
			c.net.split(c.ids[rng.IntN(len(c.ids))])
		}
		up := c.up()
		var wg sync.WaitGroup
		for cl := range 4 {
			coord := c.node(up[rng.IntN(len(up))])
			crng := rand.New(rand.NewPCG(seed, uint64(round*10+cl)))
			wg.Go(func() {
				// Clients do not start at the same instant: each starts in
				// a millisecond of its own, at a seeded offset in it (virtual
				// time: the bubble's clock jumps there), so that no two of
				// them touch a node at once and the run replays.
				time.Sleep(time.Duration(cl)*time.Millisecond + time.Duration(crng.Int64N(int64(time.Millisecond))))
				for op := range 10 {
					key := []byte(keys[crng.IntN(len(keys))])
					ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
					res, err := coord.Get(ctx, key, 0)
					line := fmt.Sprintf("%015d %d c%d.%d %s get %s: %s", time.Since(start).Nanoseconds(), round, cl, op, coord.ID(), key, outcome(res, err))
					if err != nil {
						cancel()
						mu.Lock()
						lines = append(lines, line)
						mu.Unlock()
						continue
					}
					a := Ack{Key: string(key), Version: Version{Value: fmt.Appendf(nil, "%d/%d/%d", round, cl, op)}, Context: res.Context}
					w, err := coord.Put(ctx, key, res.Context, a.Version.Value, 0)
					cancel()
					a.Dot = w.Dot
					mu.Lock()
					lines = append(lines, line, fmt.Sprintf("%015d %d c%d.%d %s write %s %q: %s", time.Since(start).Nanoseconds(), round, cl, op, coord.ID(), key, a.Version.Value, written(w, err)))
					if err != nil {
						indeterminate = append(indeterminate, a)
					} else {
						acks = append(acks, a)
					}
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	c.converge(context.Background())
	if err := Check(acks, indeterminate, c.replicas(keys)).Err(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if len(acks) < 100 {
		t.Fatalf("seed %d: only %d writes acknowledged", seed, len(acks))
	}
	t.Logf("seed %d: %d acks, %d indeterminate, network %+v", seed, len(acks), len(indeterminate), c.net.stats())
	slices.Sort(lines) // by time, then client: the same instant's lines in a fixed order
	return fmt.Appendf([]byte(strings.Join(lines, "\n")), "\nnetwork %+v, %d ignored\n", c.net.stats(), c.net.ignoredResponses())
}

// outcome is a read's result in a transcript.
func outcome(res Result, err error) string {
	if err != nil {
		return "error"
	}
	return fmt.Sprintf("%q %v", res.Values, res.Context)
}

// written is a write's result in a transcript.
func written(w Written, err error) string {
	if err != nil {
		return fmt.Sprintf("error, dot %v", w.Dot)
	}
	return fmt.Sprintf("dot %v context %v", w.Dot, w.Context)
}
