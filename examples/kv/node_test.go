package kv

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
)

// homeAndOther returns key's home replicas and a node that is not one.
func homeAndOther(c *cluster, key string) (home []string, other string) {
	home = c.ring.Replicas([]byte(key), c.q.N, nil)
	for _, id := range c.ids {
		if !slices.Contains(home, id) {
			return home, id
		}
	}
	return home, ""
}

func values(r Result) []string {
	var out []string
	for _, v := range r.Values {
		out = append(out, string(v))
	}
	return out
}

func TestNodeWriteReadDelete(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		home, other := homeAndOther(c, "k")

		// A non-home node forwards the write to the first home replica.
		w, err := c.node(other).Put(ctx, key, vclock.VClock{}, []byte("v1"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if want := c.node(home[0]).Actor(); w.Dot != (vclock.Dot{ID: want, Counter: 1}) {
			t.Fatalf("dot %v, want (%s, 1)", w.Dot, want)
		}
		c.node(home[0]).Wait() // replication beyond W lands
		for _, h := range home {
			if o, found, _ := c.stores[h].Get(key); !found || !slices.Equal(live(o), []string{"v1"}) {
				t.Fatalf("replica %s holds %q", h, live(o))
			}
		}
		// Concurrent writes from the same context become siblings.
		if _, err := c.node(home[1]).Put(ctx, key, w.Context, []byte("v2"), 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.node(home[2]).Put(ctx, key, w.Context, []byte("v3"), 3); err != nil {
			t.Fatal(err)
		}
		r, err := c.node(other).Get(ctx, key, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got := values(r); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"v2", "v3"}) {
			t.Fatalf("siblings %q, want v2 and v3", got)
		}
		// A delete with the read's context removes both; a read finds nothing.
		if _, err := c.node(other).Delete(ctx, key, r.Context, 3); err != nil {
			t.Fatal(err)
		}
		r, err = c.node(home[0]).Get(ctx, key, 2)
		if err != nil || len(r.Values) != 0 || r.Context.Len() == 0 {
			t.Fatalf("after delete: %q, context %v, %v; want no values and a context", values(r), r.Context, err)
		}
		for _, bad := range []int{-1, 4} {
			if _, err := c.node(other).Put(ctx, key, vclock.VClock{}, nil, bad); !errors.Is(err, quorum.ErrInvalid) {
				t.Errorf("Put with w = %d: %v, want quorum.ErrInvalid", bad, err)
			}
			if _, err := c.node(other).Get(ctx, key, bad); !errors.Is(err, quorum.ErrInvalid) {
				t.Errorf("Get with r = %d: %v, want quorum.ErrInvalid", bad, err)
			}
		}
	})
}

// A write with a home replica down goes to a fallback with a hint, which
// is handed back when the replica returns.
func TestNodeSloppyQuorumHandoff(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 3}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		home, _ := homeAndOther(c, "k")
		c.crash(home[2])

		coord := c.node(home[0])
		if _, err := coord.Put(ctx, key, vclock.VClock{}, []byte("v"), 3); err != nil {
			t.Fatalf("W = 3 with a home replica down: %v", err)
		}
		if s := coord.Stats(); s.HintsStored != 1 {
			t.Fatalf("HintsStored = %d, want 1", s.HintsStored)
		}
		if c.pendingHints() != 1 {
			t.Fatalf("%d hints pending, want 1", c.pendingHints())
		}
		// While the replica is down, handoff keeps the hint.
		for _, id := range c.up() {
			if d, err := c.node(id).HandOff(ctx); d != 0 || err != nil {
				t.Fatalf("handoff to a down node: %d, %v", d, err)
			}
		}
		c.start(home[2])
		delivered := 0
		for _, id := range c.ids {
			d, err := c.node(id).HandOff(ctx)
			if err != nil {
				t.Fatal(err)
			}
			delivered += d
		}
		if delivered != 1 || c.pendingHints() != 0 {
			t.Fatalf("delivered %d hints, %d pending; want 1 and 0", delivered, c.pendingHints())
		}
		if o, _, _ := c.stores[home[2]].Get(key); !slices.Equal(live(o), []string{"v"}) {
			t.Fatalf("the returned replica holds %q", live(o))
		}
	})
}

// With every replica unreachable but itself, the coordinator keeps the
// write (it may surface later) but reports no quorum, with the write's
// dot.
func TestNodeNoQuorum(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		home, _ := homeAndOther(c, "k")
		c.net.partitioned[home[0]] = true
		w, err := c.node(home[0]).Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 0)
		if !errors.Is(err, quorum.ErrNoQuorum) {
			t.Fatalf("Put from a partitioned coordinator: %v, want ErrNoQuorum", err)
		}
		if w.Dot.Counter != 1 {
			t.Fatalf("dot %v, want the write's dot", w.Dot)
		}
		if _, err := c.node(home[0]).Get(ctx, []byte("k"), 2); !errors.Is(err, quorum.ErrNoQuorum) {
			t.Fatalf("Get from a partitioned node: %v, want ErrNoQuorum", err)
		}
		for _, id := range c.ids {
			if !slices.Contains(home, id) {
				c.crash(id)
			}
		}
		c.net.partitioned[home[0]] = false
		c.crash(home[0])
		c.crash(home[1])
		if _, err := c.node(home[2]).Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 0); !errors.Is(err, quorum.ErrNoQuorum) {
			t.Fatalf("Put with one node up: %v, want ErrNoQuorum", err)
		}
	})
}

// A forwarded write whose W is outside [1, N] is refused as malformed
// before it is applied: a peer cannot have a write acknowledged without
// its replication.
func TestNodeCoordinateBadW(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		for _, w := range []int{0, -1, 4, math.MaxInt} {
			req, err := (&request{Op: opCoordinate, Key: []byte("k"), Value: Version{Value: []byte("v")}, W: w}).marshal()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.node("n1").Handle(context.Background(), req); !errors.Is(err, ErrMalformed) {
				t.Fatalf("coordinate with w = %d: %v, want ErrMalformed", w, err)
			}
			if _, found, _ := c.node("n1").Local([]byte("k")); found {
				t.Fatalf("coordinate with w = %d applied the write", w)
			}
		}
	})
}

// A read that finds a stale replica sends it the merged object.
func TestNodeReadRepair(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 3, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		home, _ := homeAndOther(c, "k")
		w, err := c.node(home[0]).Put(ctx, key, vclock.VClock{}, []byte("v1"), 3)
		if err != nil {
			t.Fatal(err)
		}
		c.net.partitioned[home[2]] = true // misses v2; the detector does not know
		if _, err := c.node(home[0]).Put(ctx, key, w.Context, []byte("v2"), 2); err != nil {
			t.Fatal(err)
		}
		c.node(home[0]).Wait()
		c.net.partitioned[home[2]] = false
		c.crash(home[0]) // the read must use the stale replica
		r, err := c.node(home[1]).Get(ctx, key, 2)
		if err != nil || !slices.Equal(values(r), []string{"v2"}) {
			t.Fatalf("read %q, %v; want v2", values(r), err)
		}
		c.node(home[1]).Wait()
		if s := c.node(home[1]).Stats(); s.ReadRepairs != 1 {
			t.Fatalf("ReadRepairs = %d, want 1", s.ReadRepairs)
		}
		if o, _, _ := c.stores[home[2]].Get(key); !slices.Equal(live(o), []string{"v2"}) {
			t.Fatalf("stale replica after read repair holds %q", live(o))
		}
	})
}

// A node whose disk is lost comes back with a new epoch: its new writes
// get dots of a new actor and never collide with its lost writes' dots.
func TestNodeLostDiskNewEpoch(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		home, _ := homeAndOther(c, "k")
		before := c.node(home[0]).Actor()
		if _, err := c.node(home[0]).Put(ctx, key, vclock.VClock{}, []byte("old"), 3); err != nil {
			t.Fatal(err)
		}
		c.wipe(home[0])
		if after := c.node(home[0]).Actor(); after == before || !strings.HasPrefix(after, home[0]+".") {
			t.Fatalf("actor after disk loss %q, before %q", after, before)
		}
		if _, err := c.node(home[0]).Put(ctx, key, vclock.VClock{}, []byte("new"), 1); err != nil {
			t.Fatal(err)
		}
		c.converge(ctx)
		r, err := c.node(home[1]).Get(ctx, key, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got := slices.Sorted(slices.Values(values(r))); !slices.Equal(got, []string{"new", "old"}) {
			t.Fatalf("blind writes before and after the disk loss: %q, want both", got)
		}
	})
}

// A coordinator sends a write to the other replicas while its own copy
// syncs. When that sync fails, the other replicas may hold the write the
// coordinator lost; its store then reopens under a new incarnation, so
// that its next write of the key gets a dot of a new actor and is not
// taken for the lost one (which would drop it on the other replicas, as
// a write they already hold).
func TestNodeLostSyncNewIncarnation(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		home, _ := homeAndOther(c, "k")
		coord := c.node(home[0])
		before := coord.Actor()
		s := c.stores[home[0]]
		s.logMu.Lock()
		_ = s.log.Close() // the next sync of the log fails
		s.logMu.Unlock()
		if _, err := coord.Put(ctx, key, vclock.VClock{}, []byte("lost"), 2); !errors.Is(err, ErrStorage) {
			t.Fatalf("a write whose sync failed: %v, want ErrStorage", err)
		}
		coord.Wait()
		for _, h := range home[1:] {
			if o, _, _ := c.stores[h].Get(key); !slices.Equal(live(o), []string{"lost"}) {
				t.Fatalf("%s holds %q, want the copy sent before the sync failed", h, live(o))
			}
		}
		c.crash(home[0])
		c.start(home[0])
		coord = c.node(home[0])
		if after := coord.Actor(); after == before {
			t.Fatalf("the actor after a failed sync is %q, as before", after)
		}
		if _, err := coord.Put(ctx, key, vclock.VClock{}, []byte("new"), 3); err != nil {
			t.Fatal(err)
		}
		c.converge(ctx)
		for _, h := range home {
			if o, _, _ := c.stores[h].Get(key); !slices.Equal(slices.Sorted(slices.Values(live(o))), []string{"lost", "new"}) {
				t.Fatalf("%s holds %q after the acknowledged write \"new\", want it beside \"lost\"", h, live(o))
			}
		}
	})
}

// Anti-entropy repairs exactly the keys a replica missed, and the
// exchange moves bytes that grow with the differences.
func TestNodeAntiEntropy(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		c.net.partitioned["n3"] = true
		for i := range 40 {
			if _, err := c.node("n1").Put(ctx, []byte{'a' + byte(i%26), byte('0' + i/26)}, vclock.VClock{}, []byte("v"), 1); err != nil {
				t.Fatal(err)
			}
		}
		c.node("n1").Wait()
		c.net.partitioned["n3"] = false
		if k, _, err := c.node("n1").AntiEntropy(ctx, "n2"); k != 0 || err != nil {
			t.Fatalf("n1 and n2 agree, yet %d keys repaired (%v)", k, err)
		}
		k, moved, err := c.node("n3").AntiEntropy(ctx, "n1")
		if err != nil || k != 40 {
			t.Fatalf("n3 missed 40 keys; anti-entropy repaired %d (%v)", k, err)
		}
		if s := c.node("n3").Stats(); s.KeysRepaired != 40 {
			t.Fatalf("KeysRepaired = %d", s.KeysRepaired)
		}
		if k, again, err := c.node("n1").AntiEntropy(ctx, "n3"); k != 0 || err != nil || again >= moved {
			t.Fatalf("after repair: %d keys, %d bytes (first exchange %d), %v", k, again, moved, err)
		}
	})
}

// Maintain hands hints back and repairs by anti-entropy on its own, in
// virtual time, and returns when its context ends.
func TestNodeMaintain(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		home, _ := homeAndOther(c, "k")
		c.crash(home[2])
		c.net.partitioned[home[1]] = true // misses the write; nobody notices
		if _, err := c.node(home[0]).Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 2); err != nil {
			t.Fatal(err)
		}
		c.node(home[0]).Wait()
		c.net.partitioned[home[1]] = false
		c.start(home[2])

		run, stop := context.WithTimeout(ctx, time.Minute)
		defer stop()
		var wg sync.WaitGroup
		for _, id := range c.ids {
			wg.Go(func() {
				c.node(id).Maintain(run, MaintainConfig{HandOffEvery: time.Second, AntiEntropyEvery: 2 * time.Second})
			})
		}
		wg.Wait() // returns once the minute has passed, in virtual time
		if c.pendingHints() != 0 {
			t.Fatalf("%d hints pending after a minute of maintenance", c.pendingHints())
		}
		for _, h := range home {
			if o, _, _ := c.stores[h].Get([]byte("k")); !slices.Equal(live(o), []string{"v"}) {
				t.Fatalf("replica %s holds %q after a minute of maintenance", h, live(o))
			}
		}
	})
}

// writeKeys writes n keys, each through another node, each to all N
// replicas, and returns the writes and the keys.
func writeKeys(t *testing.T, c *cluster, n int) (acks []Ack, keys []string) {
	t.Helper()
	for i := range n {
		key := fmt.Sprintf("k%d", i)
		keys = append(keys, key)
		w, err := c.node(c.ids[i%len(c.ids)]).Put(context.Background(), []byte(key), vclock.VClock{}, []byte(key), c.q.N)
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, Ack{Key: key, Version: Version{Value: []byte(key)}, Dot: w.Dot})
	}
	return acks, keys
}

// A node replaced in the ring: ApplyRing streams every key
// to its new replicas, even keys whose old replicas all left their set,
// without waiting for anti-entropy.
func TestNodeRebalance(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 3}, func(t *testing.T, c *cluster, ctx context.Context) {
		acks, keys := writeKeys(t, c, 60)
		old := c.ring
		next, err := old.Without("n1").With(ring.Node{ID: "n6", Zone: "z0"})
		if err != nil {
			t.Fatal(err)
		}
		c.ring = next
		c.ids = append(c.ids, "n6")
		c.start("n6")
		sent := 0
		for _, id := range c.ids[:5] {
			k, err := c.node(id).ApplyRing(ctx, next)
			if err != nil {
				t.Fatal(err)
			}
			sent += k
			held, _ := c.stores[id].count()
			// Every key held was passed, those moved were counted as sent.
			if p := c.node(id).Progress().Rebalance; p.Runs != 1 || p.Failures != 0 || p.Keys != int64(k) || p.Done != int64(held) || p.Total != int64(held) {
				t.Fatalf("%s: rebalance progress %+v, after %d copies sent of %d keys held", id, p, k, held)
			}
		}
		if sent == 0 {
			t.Fatal("nothing streamed though n1 left and n6 joined")
		}
		if err := Check(acks, nil, c.replicas(keys)).Err(); err != nil {
			t.Fatalf("after rebalancing: %v", err)
		}
		if k, err := c.node("n2").ApplyRing(ctx, next); k != 0 || err != nil {
			t.Fatalf("rebalance without a ring change: %d, %v", k, err)
		}
		if k, err := c.node("n2").Rebalance(ctx, next); k != 0 || err != nil {
			t.Fatalf("rebalance from the current ring: %d, %v", k, err)
		}
	})
}

// A rebalance whose new replica is down gives its copies to fallbacks
// with hints, and goes on with the other keys; the hints reach the new
// replica when it is back.
func TestNodeRebalanceTargetDown(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 3}, func(t *testing.T, c *cluster, ctx context.Context) {
		acks, keys := writeKeys(t, c, 60)
		old := c.ring
		next, err := old.With(ring.Node{ID: "n6", Zone: "z0"})
		if err != nil {
			t.Fatal(err)
		}
		c.ring = next
		c.ids = append(c.ids, "n6")
		c.start("n6")
		c.crash("n6")
		sent := 0
		for _, id := range c.ids[:5] {
			k, err := c.node(id).ApplyRing(ctx, next)
			if err != nil {
				t.Fatalf("%s: rebalance with the new replica down: %v", id, err)
			}
			sent += k
		}
		hinted := 0
		for _, id := range c.ids[:5] {
			hinted += int(c.node(id).Stats().HintsStored)
		}
		if sent == 0 || hinted != sent || c.pendingHints() == 0 {
			t.Fatalf("%d copies sent, %d as hints, %d hints held; want every copy sent as a hint", sent, hinted, c.pendingHints())
		}
		c.start("n6")
		c.settled(ctx, acks, keys)
	})
}

// The context a write returns covers what its client read and the write,
// never a concurrent sibling its client did not see: B writes from c0, A
// writes from c0, then A writes again with the context its first write
// returned, and B's acknowledged value is still there.
func TestNodeWriteContextOwnOnly(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		key := []byte("k")
		_, other := homeAndOther(c, "k")
		n := c.node(other)
		w0, err := n.Put(ctx, key, vclock.VClock{}, []byte("c0"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Put(ctx, key, w0.Context, []byte("b"), 0); err != nil {
			t.Fatal(err)
		}
		a1, err := n.Put(ctx, key, w0.Context, []byte("a1"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Put(ctx, key, a1.Context, []byte("a2"), 0); err != nil {
			t.Fatal(err)
		}
		r, err := n.Get(ctx, key, 3)
		if err != nil {
			t.Fatal(err)
		}
		if got := values(r); !slices.Contains(got, "b") || slices.Contains(got, "c0") {
			t.Fatalf("after A's second write: %q; want b kept and c0 replaced", got)
		}
		// A write whose context covers everything it may replace answers
		// with that context and its own dot: the next write replaces both.
		w, err := n.Put(ctx, key, r.Context, []byte("resolved"), 0)
		if err != nil || !w.Context.Contains(w.Dot) {
			t.Fatalf("a resolving write: %v, context %v dot %v; want the dot covered", err, w.Context, w.Dot)
		}
		if _, err := n.Put(ctx, key, w.Context, []byte("last"), 3); err != nil {
			t.Fatal(err)
		}
		if r, err := n.Get(ctx, key, 3); err != nil || !slices.Equal(values(r), []string{"last"}) {
			t.Fatalf("after writes each with the last one's context: %q, %v; want [last]", values(r), err)
		}
	})
}

// A W=2 write acknowledged by its coordinator and a hint, then a join that
// takes the hint's target out of the key's replicas, then the loss of the
// coordinator's disk: handoff gives the hint to the key's current
// replicas, not to its old target, and the write survives.
func TestNodeHintRetargetedAfterJoin(t *testing.T) {
	inCluster(t, 4, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		next, err := c.ring.With(ring.Node{ID: "n5", Zone: "z1"})
		if err != nil {
			t.Fatal(err)
		}
		// A key whose second home replica leaves its home set as n5 joins.
		before, after := newPlacement(c.ring, c.q.N, DefaultFallbacks), newPlacement(next, c.q.N, DefaultFallbacks)
		var (
			key             string
			home, fallbacks []string
		)
		for i := 0; key == ""; i++ {
			k := fmt.Sprint("k", i)
			if h, f := before.of([]byte(k)); len(f) == 1 && !slices.Contains(after.home([]byte(k)), h[1]) {
				key, home, fallbacks = k, h, f
			}
		}
		c.crash(home[1])                  // down: the one fallback takes its copy as a hint
		c.net.partitioned[home[2]] = true // unreachable, no fallback left for it
		w, err := c.node(home[0]).Put(ctx, []byte(key), vclock.VClock{}, []byte("v"), 2)
		if err != nil {
			t.Fatalf("W=2 write with a hint: %v", err)
		}
		c.node(home[0]).Wait()
		if targets, err := c.stores[fallbacks[0]].Hints().Targets(); err != nil || !slices.Equal(targets, []string{home[1]}) {
			t.Fatalf("hints on the fallback for %v, %v; want one for %s", targets, err, home[1])
		}
		c.crash(home[0]) // before the join, so it streams nothing
		c.net.heal()
		c.ring = next
		c.ids = append(c.ids, "n5")
		c.start("n5")
		for _, id := range c.up() {
			if _, err := c.node(id).ApplyRing(ctx, next); err != nil {
				t.Fatal(err)
			}
		}
		c.start(home[0])
		c.wipe(home[0]) // the coordinator's disk is lost
		c.settled(ctx, []Ack{{Key: key, Version: Version{Value: []byte("v")}, Dot: w.Dot}}, []string{key})
	})
}

// Small refusals: a one-node ring refuses w=3 before writing anything,
// as a read of r=3 fails; a failed read gives no write advice; a data
// file locked by another process says so.
func TestNodeSmallRefusals(t *testing.T) {
	inCluster(t, 1, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		n := c.node("n1")
		if _, err := n.Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 3); !errors.Is(err, quorum.ErrNoQuorum) {
			t.Fatalf("w=3 on a one-node ring: %v, want ErrNoQuorum", err)
		}
		if _, found, _ := c.stores["n1"].Get([]byte("k")); found {
			t.Fatal("the refused write was applied")
		}
		rec := do(API(n, APIConfig{}), "GET", "/kv/k?r=3", "")
		if rec.Code != http.StatusServiceUnavailable || strings.Contains(rec.Body.String(), "Idempotency-Key") {
			t.Fatalf("GET r=3 on a one-node ring: %d %q; want 503 without write advice", rec.Code, rec.Body)
		}
		if _, err := Open(c.stores["n1"].Path(), StoreConfig{}); err == nil || !strings.Contains(err.Error(), "locked") {
			t.Fatalf("opening a data file in use: %v; want it to say locked", err)
		}
	})
}

// A forwarded write that never reached the key's first home replica (it
// is unreachable, though not yet believed down) goes to the next home
// replica at once, and succeeds there.
func TestNodeForwardFailsOver(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		home, other := homeAndOther(c, "k")
		c.net.partitioned[home[0]] = true
		w, err := c.node(other).Put(ctx, []byte("k"), vclock.VClock{}, []byte("v"), 0)
		if err != nil {
			t.Fatalf("write with the first home replica unreachable: %v", err)
		}
		if want := c.node(home[1]).Actor(); w.Dot.ID != want {
			t.Fatalf("coordinated by %s, want %s, the next home replica", w.Dot.ID, want)
		}
	})
}

// A write whose client gives up before its quorum is decided returns
// ErrNoQuorum at once, and its copies go on in the background: they
// reach every replica, and the node's Close waits for them.
func TestNodeWriteCopiesOutliveClient(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		home, _ := homeAndOther(c, "k")
		release := make(chan struct{})
		c.net.mu.Lock()
		c.net.serve = func(ctx context.Context, _ string, req []byte, n *Node) ([]byte, error) {
			<-release // every copy waits
			return n.Handle(ctx, req)
		}
		c.net.mu.Unlock()
		cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := c.node(home[0]).Put(cctx, []byte("k"), vclock.VClock{}, []byte("v"), 0)
		if !errors.Is(err, quorum.ErrNoQuorum) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a write whose client gave up: %v, want ErrNoQuorum for its deadline", err)
		}
		if took := time.Since(start); took != 100*time.Millisecond {
			t.Errorf("it returned %v after the write, want 100ms: at the client's deadline", took)
		}
		close(release)
		c.node(home[0]).Wait()
		for _, id := range home {
			if _, found, err := c.node(id).store.Get([]byte("k")); err != nil || !found {
				t.Errorf("replica %s: found %v, %v; want the write", id, found, err)
			}
		}
	})
}
