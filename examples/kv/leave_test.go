package kv

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

// depart removes node id from the cluster after it left: it stops, its
// file is deleted, and the others take the ring without it and stream
// what moved, as Server does on SWIM's leave event.
func (c *clusterOn[N]) depart(ctx context.Context, id string) {
	path := c.stores[id].Path()
	c.crash(id)
	if err := os.Remove(path); err != nil {
		c.t.Fatal(err)
	}
	delete(c.stores, id)
	c.ids = slices.DeleteFunc(c.ids, func(x string) bool { return x == id })
	old := c.ring
	c.ring = old.Without(id)
	for _, x := range c.up() {
		_, _ = c.node(x).ApplyRing(ctx, c.ring) // fails for crashed nodes, as on a Server (which logs it); anti-entropy completes
	}
}

// holders returns the running nodes whose data or hints hold the write
// with dot d of key.
func (c *clusterOn[N]) holders(key string, d vclock.Dot) []string {
	var out []string
	for _, id := range c.up() {
		if c.held(id, key).Context().Contains(d) {
			out = append(out, id)
		}
	}
	return out
}

// TestLeaveHandsOver: a node that holds the only copies of writes (W = 1
// writes it took while partitioned from its peers) and the only copies of
// others as hints for crashed nodes (their coordinator's disk was lost
// since) leaves; its file is deleted. After the rest converge, no
// acknowledged write is lost, every key's replicas are identical and no
// hint is pending. While it leaves, it takes no write.
func TestLeaveHandsOver(t *testing.T) {
	seeds := uint64(8)
	if *long {
		seeds = 200
	}
	forSeeds(t, seeds, runLeave)
}

func runLeave(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 4))
	c := newSimCluster(t, seed, 5, quorum.Config{N: 3, R: 2, W: 2}, simLink(0, 0.05))
	defer c.close()
	ctx := context.Background()

	// Roles, from a preference list (3 home replicas, 2 fallbacks) the
	// seed picks: L leaves; X and Z crash; C coordinates and loses its
	// disk; M is cut off. hintKeys have that list, uniqueKeys have L home.
	lists := map[string][]string{}
	var uniqueKeys []string
	for i := range 2000 {
		key := fmt.Sprintf("k%d", i)
		all := c.ring.Replicas([]byte(key), c.q.N+DefaultFallbacks, nil)
		lists[strings.Join(all, ",")] = append(lists[strings.Join(all, ",")], key)
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for l, keys := range lists {
			if len(keys) >= 4 && !yield(l) {
				return
			}
		}
	})
	list := strings.Split(names[rng.IntN(len(names))], ",")
	hintKeys := lists[strings.Join(list, ",")][:4]
	C, X, Z, L, M := list[0], list[1], list[2], list[3], list[4]
	for i := 0; len(uniqueKeys) < 8; i++ {
		if key := fmt.Sprintf("u%d", i); slices.Contains(c.ring.Replicas([]byte(key), c.q.N, nil), L) {
			uniqueKeys = append(uniqueKeys, key)
		}
	}
	keys := slices.Concat(hintKeys, uniqueKeys)
	t.Logf("seed %d: C %s, X %s, Z %s, L %s, M %s", seed, C, X, Z, L, M)

	var acks []Ack
	contexts := map[string]vclock.VClock{}
	step := 0
	put := func(via, key string, w int) Ack {
		step++
		a := Ack{Key: key, Version: Version{Value: fmt.Appendf(nil, "%s/%d", key, step)}, Context: contexts[key]}
		wr, err := c.node(via).Put(ctx, []byte(key), a.Context, a.Version.Value, w)
		if err != nil {
			t.Fatalf("seed %d: put %s via %s: %v", seed, key, via, err)
		}
		a.Dot, contexts[key] = wr.Dot, wr.Context
		acks = append(acks, a)
		return a
	}
	wait := func() {
		for _, id := range c.up() {
			c.node(id).Wait()
		}
	}

	// Steady writes, every replica up.
	for range 40 {
		put(c.ids[rng.IntN(len(c.ids))], keys[rng.IntN(len(keys))], 0)
	}
	wait()
	c.crash(X)
	c.crash(Z)
	// L, cut off, takes writes alone.
	c.net.split(L)
	var unique []Ack
	for _, k := range uniqueKeys {
		unique = append(unique, put(L, k, 1))
	}
	wait()
	// C takes writes with M cut off: only a hint on L, for X or Z, joins it.
	c.net.split(M)
	for _, k := range hintKeys {
		unique = append(unique, put(C, k, 2))
	}
	wait()
	c.net.split()
	c.wipe(C)
	for _, a := range unique {
		if h := c.holders(a.Key, a.Dot); !slices.Equal(h, []string{L}) {
			t.Fatalf("seed %d: %s = %q held by %v, want %s alone", seed, a.Key, a.Version.Value, h, L)
		}
	}
	if got := c.stores[L].Hints().Len(); got != len(hintKeys) {
		t.Fatalf("seed %d: %s holds %d hints, want %d", seed, L, got, len(hintKeys))
	}

	h, err := c.node(L).Leave(ctx)
	if err != nil {
		t.Fatalf("seed %d: leave: %v (%+v)", seed, err, h)
	}
	if h.Hints != len(hintKeys) || h.Unplaced != 0 || h.Keys < len(uniqueKeys) || h.Copies+h.Failed != 3*h.Keys || c.stores[L].Hints().Len() != 0 {
		t.Fatalf("seed %d: handed over %+v, %d hints left; want %d hints, %d keys at least", seed, h, c.stores[L].Hints().Len(), len(hintKeys), len(uniqueKeys))
	}
	if _, err := c.node(L).Leave(ctx); !errors.Is(err, ErrLeaving) {
		t.Fatalf("seed %d: second leave: %v, want ErrLeaving", seed, err)
	}
	// A leaving node takes no write: it forwards clients' and refuses
	// replicas', which go to fallbacks with hints for it.
	var k string
	var home []string
	for _, k = range uniqueKeys {
		if home = slices.DeleteFunc(c.ring.Replicas([]byte(k), c.q.N, nil), func(id string) bool { return id == L || c.node(id) == nil }); len(home) > 0 {
			break
		}
	}
	if len(home) == 0 {
		t.Fatalf("seed %d: no key of %s has another live home replica", seed, L)
	}
	forwarded, replicated := put(L, k, 0), put(home[0], k, 0)
	wait()
	if forwarded.Dot.ID == c.node(L).Actor() {
		t.Fatalf("seed %d: the leaving node coordinated a write", seed)
	}
	for _, a := range []Ack{forwarded, replicated} {
		if slices.Contains(c.holders(k, a.Dot), L) {
			t.Fatalf("seed %d: the leaving node stored %q", seed, a.Version.Value)
		}
	}
	// A node that is not a home replica forwards a write to the first
	// live one; when that is the leaving node, to the next one.
	for i := 0; ; i++ {
		key := fmt.Sprintf("w%d", i)
		home := slices.DeleteFunc(c.ring.Replicas([]byte(key), c.q.N, nil), func(id string) bool { return c.node(id) == nil })
		others := slices.DeleteFunc(slices.Clone(c.up()), func(id string) bool { return slices.Contains(home, id) })
		if len(home) < 2 || home[0] != L || len(others) == 0 {
			continue
		}
		keys = append(keys, key)
		if a := put(others[0], key, 0); a.Dot.ID != c.node(home[1]).Actor() {
			t.Fatalf("seed %d: a write forwarded past the leaving node got dot %v, want one of %s", seed, a.Dot, home[1])
		}
		break
	}
	wait()

	c.depart(ctx, L)
	rounds := c.converge(ctx)
	if err := Check(acks, nil, c.replicas(keys)).Err(); err != nil {
		t.Fatalf("seed %d: %v", seed, err)
	}
	if n := c.pendingHints(); n != 0 {
		t.Fatalf("seed %d: %d hints pending after convergence", seed, n)
	}
	t.Logf("seed %d: %d acks, handed over %+v, %d rounds to converge", seed, len(acks), h, rounds)
}

// TestLeaveCanceled: a Leave whose ctx ends fails with ctx's error, and
// the node takes writes again.
func TestLeaveCanceled(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		n := c.node("n1")
		if _, err := n.Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		if h, err := n.Leave(canceled); !errors.Is(err, context.Canceled) || h.Copies != 0 {
			t.Fatalf("leave: %+v, %v; want context.Canceled and no copy", h, err)
		}
		if w, err := n.Put(ctx, []byte("k"), vclock.VClock{}, []byte("v2"), 0); err != nil || w.Dot.ID != n.Actor() {
			t.Fatalf("write after a canceled leave: %v, %v", w, err)
		}
	})
}

// TestLeaveAlone: a node alone in its ring has nowhere to place its data:
// Leave fails with ErrNotPlaced and the node takes writes again.
func TestLeaveAlone(t *testing.T) {
	inCluster(t, 1, quorum.Config{N: 1, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		n := c.node("n1")
		if h, err := n.Leave(ctx); err != nil || h != (Handover{}) {
			t.Fatalf("empty node: %+v, %v", h, err)
		}
		n.leaver.mu.Lock()
		n.leaver.departing = false // as if it had not left
		n.leaver.mu.Unlock()
		if _, err := n.Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 0); err != nil {
			t.Fatal(err)
		}
		h, err := n.Leave(ctx)
		if !errors.Is(err, ErrNotPlaced) || h != (Handover{Keys: 1, Unplaced: 1}) {
			t.Fatalf("leave: %+v, %v; want ErrNotPlaced", h, err)
		}
		if _, err := n.Put(ctx, []byte("k"), vclock.VClock{}, []byte("v2"), 0); err != nil {
			t.Fatalf("write after a failed leave: %v", err)
		}
	})
}

// TestLeaveHintNoFallback: in a ring of four with N = 3, a node that
// leaves holds a hint for a node that is down, and the ring without it
// leaves the key no fallback: the hint goes to one of the key's home
// replicas, which hands it to its target when it returns.
func TestLeaveHintNoFallback(t *testing.T) {
	inCluster(t, 4, quorum.Config{N: 3, R: 2, W: 3}, func(t *testing.T, c *cluster, ctx context.Context) {
		var key string
		var list []string
		for i := 0; ; i++ {
			key = fmt.Sprintf("k%d", i)
			if list = c.ring.Replicas([]byte(key), 4, nil); list[0] != "n1" {
				break
			}
		}
		target, leaver := list[2], list[3] // the third home replica, the only fallback
		c.crash(target)
		w, err := c.node(list[0]).Put(ctx, []byte(key), vclock.VClock{}, []byte("v"), 3)
		if err != nil {
			t.Fatal(err)
		}
		c.node(list[0]).Wait()
		if got := c.stores[leaver].Hints().Len(); got != 1 {
			t.Fatalf("%s holds %d hints, want 1", leaver, got)
		}
		h, err := c.node(leaver).Leave(ctx)
		if err != nil || h.Hints != 1 || h.Unplaced != 0 {
			t.Fatalf("leave: %+v, %v; want the hint passed on", h, err)
		}
		c.depart(ctx, leaver)
		c.start(target)
		c.settled(ctx, []Ack{{Key: key, Version: Version{Value: []byte("v")}, Dot: w.Dot}}, []string{key})
	})
}

// TestForwardedWriteNotRepeated: a coordinator that applied a forwarded
// write but missed its quorum because a replica was leaving (and no
// fallback was up) answers with its error, not as a leaving node, so the
// forwarding node does not have the write coordinated again by the next
// home replica: the key holds the write once.
func TestForwardedWriteNotRepeated(t *testing.T) {
	inCluster(t, 6, quorum.Config{N: 3, R: 2, W: 3}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		list := c.ring.Replicas(key, 6, nil)
		home, via := list[:3], list[5]
		c.crash(list[3])
		c.crash(list[4]) // no fallback is up
		leaver := c.node(home[2])
		leaver.leaver.mu.Lock()
		leaver.leaver.departing = true // as Leave sets it
		leaver.leaver.mu.Unlock()
		_, err := c.node(via).Put(ctx, key, vclock.VClock{}, []byte("v"), 3)
		if !errors.Is(err, quorum.ErrNoQuorum) {
			t.Fatalf("put via %s: %v, want ErrNoQuorum", via, err)
		}
		for _, id := range home[:2] {
			c.node(id).Wait()
			if o, _, err := c.stores[id].Get(key); err != nil || len(Live(o)) != 1 {
				t.Fatalf("%s holds %d values (%v), want the write once", id, len(Live(o)), err)
			}
		}
	})
}

// TestWriteAsLeaveBegins: a client's write that a home replica was about
// to coordinate when Leave began is forwarded to another home replica,
// as every client write a leaving node receives is, rather than failing.
func TestWriteAsLeaveBegins(t *testing.T) {
	inCluster(t, 4, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		home := c.ring.Replicas(key, 3, nil)
		c.crash(home[0])
		n := c.node(home[1])
		n.alive = func(id string) bool {
			if id == home[0] { // asked on the way to coordinating the write: Leave begins
				n.leaver.mu.Lock()
				n.leaver.departing = true
				n.leaver.mu.Unlock()
			}
			return c.net.node(id) != nil
		}
		w, err := n.Write(context.Background(), key, vclock.VClock{}, Version{Value: []byte("v"), IdempotencyKey: "i1"}, 0)
		if err != nil || w.Dot.ID != c.node(home[2]).Actor() {
			t.Fatalf("write: %+v, %v; want it coordinated by %s", w, err, home[2])
		}
	})
}

// TestLeaveStrayCopy: a node that holds the only copy of a key it does not
// replicate (as a failed rebalance can leave one) hands it to the key's
// replicas when it leaves.
func TestLeaveStrayCopy(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		leaver := "n1"
		var key string
		for i := 0; ; i++ {
			if key = fmt.Sprintf("k%d", i); !slices.Contains(c.ring.Replicas([]byte(key), c.q.N, nil), leaver) {
				break
			}
		}
		var o Object
		o.Update(vclock.VClock{}, "n9.0", Version{Value: []byte("stray")})
		if _, err := c.stores[leaver].Merge([]byte(key), o); err != nil {
			t.Fatal(err)
		}
		h, err := c.node(leaver).Leave(ctx)
		if err != nil || h.Keys != 1 || h.Copies != 3 {
			t.Fatalf("leave: %+v, %v; want the stray key sent to its 3 replicas", h, err)
		}
		c.depart(ctx, leaver)
		c.converge(ctx)
		acks := []Ack{{Key: key, Version: Version{Value: []byte("stray")}, Dot: vclock.Dot{ID: "n9.0", Counter: 1}}}
		if err := Check(acks, nil, c.replicas([]string{key})).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestLeaveRetriesUnplaced: a leaving node whose first copy of each key
// fails on every node (timeouts on a loaded cluster) tries again, and
// leaves with every key placed instead of failing with ErrNotPlaced.
func TestLeaveRetriesUnplaced(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 3}, func(t *testing.T, c *cluster, ctx context.Context) {
		acks, keys := writeKeys(t, c, 10)
		var mu sync.Mutex
		tried := map[string]bool{} // the keys whose copies failed once
		c.net.serve = func(ctx context.Context, to string, req []byte, n *Node) ([]byte, error) {
			var q request
			if err := q.unmarshal(req); err == nil && q.Op == opWrite {
				mu.Lock()
				first := !tried[to+"/"+string(q.Key)]
				tried[to+"/"+string(q.Key)] = true
				mu.Unlock()
				if first {
					return nil, context.DeadlineExceeded
				}
			}
			return n.Handle(ctx, req)
		}
		h, err := c.node("n1").Leave(ctx)
		if err != nil || h.Keys != len(keys) || h.Copies != 2*len(keys) || h.Unplaced != 0 {
			t.Fatalf("leave with every first copy failing: %+v, %v", h, err)
		}
		c.net.serve = nil
		c.depart(ctx, "n1")
		c.settled(ctx, acks, keys)
	})
}
