package kv

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/distkit/distkit/merkle"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

var long = flag.Bool("long", false, "run the cluster histories over many more seeds")

var errUnreachable = errors.New("unreachable")

// memNet connects in-process nodes through the full RPC encoding, with
// seeded faults: crashed nodes, partitioned nodes (which the failure
// detector does not notice), lost requests, lost responses (the request
// was applied) and duplicated requests.
type memNet struct {
	mu          sync.Mutex
	seed        uint64
	seen        map[uint64]uint64 // calls so far by hash of (from, to, request)
	nodes       map[string]*Node  // nil: crashed
	partitioned map[string]bool
	loss, dup   float64
	calls       int
}

func (m *memNet) transport(from string) Transport { return memTransport{m, from} }

type memTransport struct {
	m    *memNet
	from string
}

// fate decides what happens to one call. The draw depends on the seed, the
// call and how many equal calls came before, not on the order in which
// concurrent calls arrive, so that a seed replays the same faults.
func (m *memNet) fate(from, to string, req []byte) (n *Node, lostReq, lostResp, dup bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	n = m.nodes[to]
	if n == nil || m.nodes[from] == nil || m.partitioned[from] != m.partitioned[to] {
		return nil, true, false, false
	}
	h := xxhash.Sum64String(from + "\x00" + to + "\x00" + string(req))
	m.seen[h]++
	rng := rand.New(rand.NewPCG(m.seed, h+m.seen[h]))
	return n, rng.Float64() < m.loss, rng.Float64() < m.loss, rng.Float64() < m.dup
}

func (t memTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	n, lostReq, lostResp, dup := t.m.fate(t.from, to, req)
	if lostReq {
		return nil, fmt.Errorf("%s -> %s: %w", t.from, to, errUnreachable)
	}
	if dup {
		_, _ = n.Handle(ctx, req)
	}
	resp, err := n.Handle(ctx, req)
	if err == nil && lostResp {
		return nil, fmt.Errorf("%s -> %s: response lost: %w", t.from, to, errUnreachable)
	}
	return resp, err
}

// alive is the failure detector: it sees crashes, not partitions.
func (m *memNet) alive(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[id] != nil
}

// cluster is a test cluster of nodes on real bbolt files.
type cluster struct {
	t      testing.TB
	dir    string
	ring   *ring.Ring
	q      quorum.Config
	net    *memNet
	stores map[string]*Store
	ids    []string
	wipes  int // disks lost so far, for fresh epochs
	// onReap, when set, is every node's NodeConfig.OnReap.
	onReap func(key []byte, tombstone Object)
}

var testTree = merkle.Config{Branches: 16, SegmentsPerBranch: 16}

func newCluster(t testing.TB, seed uint64, nodes int, q quorum.Config) *cluster {
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
	c := &cluster{
		t: t, dir: t.TempDir(), ring: r, q: q, ids: ids,
		net:    &memNet{seed: seed, seen: map[uint64]uint64{}, nodes: map[string]*Node{}, partitioned: map[string]bool{}},
		stores: map[string]*Store{},
	}
	for _, id := range ids {
		c.start(id)
	}
	return c
}

func (c *cluster) start(id string) {
	s, err := Open(filepath.Join(c.dir, id+".db"), StoreConfig{Tree: testTree, NoSync: true,
		MaxBatchDelay: time.Nanosecond, Epoch: fmt.Sprint(c.wipes)})
	if err != nil {
		c.t.Fatal(err)
	}
	n, err := NewNode(NodeConfig{ID: id, Ring: c.ring, Store: s, Transport: c.net.transport(id), Quorum: c.q,
		Alive: c.net.alive, Timeout: time.Second, HedgeDelay: 100 * time.Millisecond, OnReap: func(key []byte, o Object) {
			if c.onReap != nil {
				c.onReap(key, o)
			}
		}})
	if err != nil {
		c.t.Fatal(err)
	}
	c.net.mu.Lock()
	c.net.nodes[id], c.stores[id] = n, s
	c.net.mu.Unlock()
}

// crash takes id off the network, lets its in-flight work fail, and
// closes its store; its file stays for a restart.
func (c *cluster) crash(id string) {
	c.net.mu.Lock()
	n := c.net.nodes[id]
	c.net.nodes[id] = nil
	c.net.mu.Unlock()
	n.Close()
	if err := c.stores[id].Close(); err != nil {
		c.t.Fatal(err)
	}
}

// wipe crashes id and deletes its disk: it restarts empty, with a new
// epoch.
func (c *cluster) wipe(id string) {
	c.crash(id)
	if err := os.Remove(filepath.Join(c.dir, id+".db")); err != nil {
		c.t.Fatal(err)
	}
	c.wipes++
	c.start(id)
}

func (c *cluster) node(id string) *Node {
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	return c.net.nodes[id]
}

func (c *cluster) up() []string {
	return slices.DeleteFunc(slices.Clone(c.ids), func(id string) bool { return c.node(id) == nil })
}

func (c *cluster) close() {
	for _, id := range c.up() {
		c.crash(id)
	}
}

// converge heals every fault, restarts crashed nodes and runs handoff and
// anti-entropy rounds until a round changes nothing.
func (c *cluster) converge(ctx context.Context) (rounds int) {
	c.net.mu.Lock()
	c.net.loss, c.net.dup = 0, 0
	clear(c.net.partitioned)
	c.net.mu.Unlock()
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

// replicas returns every key's objects on its home replicas.
func (c *cluster) replicas(keys []string) map[string][]Object {
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

func (c *cluster) pendingHints() int {
	n := 0
	for _, s := range c.stores {
		n += s.Hints()
	}
	return n
}

// TestClusterNoAckedWriteLost runs seeded histories of reads, writes and
// deletes by clients with stale contexts through random coordinators,
// under crashes with restarts on the same bbolt files, partitions the
// failure detector misses, and lost and duplicated messages; after the
// faults heal and handoff and anti-entropy converge, no acknowledged write
// is lost and every key's replicas are identical.
func TestClusterNoAckedWriteLost(t *testing.T) {
	seeds := uint64(16)
	if *long {
		seeds = 500
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runHistory(t, seed, 250) })
		})
	}
}

func runHistory(t *testing.T, seed uint64, steps int) {
	rng := rand.New(rand.NewPCG(seed, 2))
	c := newCluster(t, seed, 5, quorum.Config{N: 3, R: 2, W: 2})
	defer c.close()
	c.net.loss, c.net.dup = 0.05, 0.05
	ctx := context.Background()
	keys := []string{"a", "b", "c", "d", "e", "f"}
	const clients = 4
	contexts := make([]map[string]vclock.VClock, clients) // each client's last context per key
	for i := range contexts {
		contexts[i] = map[string]vclock.VClock{}
	}
	var acks, indeterminate []Ack
	failed := 0
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
			c.net.mu.Lock()
			c.net.partitioned[c.ids[rng.IntN(len(c.ids))]] = true
			c.net.mu.Unlock()
		case f == 3:
			c.net.mu.Lock()
			clear(c.net.partitioned)
			c.net.mu.Unlock()
		case f == 4 && c.wipes == 0 && len(c.up()) == len(c.ids):
			// One disk lost for good, within what W = 2 tolerates.
			c.wipe(c.ids[rng.IntN(len(c.ids))])
		}
		up := c.up()
		coord := c.node(up[rng.IntN(len(up))])
		cl, key := rng.IntN(clients), keys[rng.IntN(len(keys))]
		switch op := rng.IntN(10); {
		case op < 4:
			res, err := coord.Get(ctx, []byte(key), 0)
			if err != nil {
				failed++
				continue
			}
			contexts[cl][key] = res.Context
		default:
			v := Version{Value: fmt.Appendf(nil, "%d/%d", cl, step)}
			var w Written
			var err error
			if op == 9 {
				v = Version{Deleted: true}
				w, err = coord.Delete(ctx, []byte(key), contexts[cl][key], 0)
			} else {
				w, err = coord.Put(ctx, []byte(key), contexts[cl][key], v.Value, 0)
			}
			a := Ack{Key: key, Version: v, Context: contexts[cl][key], Dot: w.Dot}
			if err != nil {
				failed++
				indeterminate = append(indeterminate, a)
				continue
			}
			acks = append(acks, a)
			contexts[cl][key] = w.Context
		}
	}
	rounds := c.converge(ctx)
	verdict := Check(acks, indeterminate, c.replicas(keys))
	if err := verdict.Err(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if c.pendingHints() != 0 {
		t.Fatalf("seed %d: %d hints pending after convergence", seed, c.pendingHints())
	}
	if len(acks) < steps/4 {
		t.Fatalf("seed %d: only %d writes acknowledged (%d operations failed)", seed, len(acks), failed)
	}
	t.Logf("seed %d: %d acks, %d failed ops, %d rounds to converge, %d calls", seed, len(acks), failed, rounds, c.net.calls)
}

// TestClusterConcurrentClients has clients run at once, so that
// coordinators race on the same keys, between rounds of crashes,
// restarts and partitions; the verdict is the same as for the sequential
// histories. Goroutine scheduling makes a seed's run vary.
func TestClusterConcurrentClients(t *testing.T) {
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { runConcurrent(t, seed) })
		})
	}
}

func runConcurrent(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 3))
	c := newCluster(t, seed, 5, quorum.Config{N: 3, R: 2, W: 2})
	defer c.close()
	c.net.loss, c.net.dup = 0.02, 0.02
	ctx := context.Background()
	keys := []string{"a", "b", "c"}
	var mu sync.Mutex
	var acks, indeterminate []Ack
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
			c.net.mu.Lock()
			clear(c.net.partitioned)
			c.net.partitioned[c.ids[rng.IntN(len(c.ids))]] = true
			c.net.mu.Unlock()
		}
		up := c.up()
		var wg sync.WaitGroup
		for cl := range 4 {
			coord := c.node(up[rng.IntN(len(up))])
			crng := rand.New(rand.NewPCG(seed, uint64(round*10+cl)))
			wg.Go(func() {
				for op := range 10 {
					key := []byte(keys[crng.IntN(len(keys))])
					res, err := coord.Get(ctx, key, 0)
					if err != nil {
						continue
					}
					a := Ack{Key: string(key), Version: Version{Value: fmt.Appendf(nil, "%d/%d/%d", round, cl, op)}, Context: res.Context}
					w, err := coord.Put(ctx, key, res.Context, a.Version.Value, 0)
					a.Dot = w.Dot
					mu.Lock()
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
	c.converge(ctx)
	if err := Check(acks, indeterminate, c.replicas(keys)).Err(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if len(acks) < 100 {
		t.Fatalf("seed %d: only %d writes acknowledged", seed, len(acks))
	}
}
