package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

// putOwn is put as the store's own actor, "n1.<epoch>", whose dots its
// reap floor counts.
func putOwn(t *testing.T, s *Store, key string, ctx vclock.VClock, v string) Object {
	t.Helper()
	o, err := s.Update([]byte(key), ctx, "n1."+s.Epoch(), Version{Value: []byte(v)})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// A replica reaps a dead key only with the object every replica agreed on
// and no hint held for it; the reap floor, kept across reopening, numbers
// the key's next write above every reaped dot, so a stale copy of a
// reaped version that arrives afterwards is superseded, not resurrected.
func TestStoreReap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s := openStore(t, path, StoreConfig{NoSync: true, Epoch: "e"})
	defer func() { s.Close() }()
	k := []byte("k")
	v1 := putOwn(t, s, "k", vclock.VClock{}, "v1")
	v2 := putOwn(t, s, "k", v1.Context(), "v2")
	if _, err := s.Reap(k, v2); err == nil {
		t.Fatal("Reap of a live object succeeded")
	}
	dead, err := s.Update(k, v2.Context(), "n1.e", Version{Deleted: true})
	if err != nil || !Dead(dead) {
		t.Fatalf("delete: %v, dead %v", err, Dead(dead))
	}
	if due, err := s.Tombstones(time.Now().Add(-time.Hour), nil, 10); err != nil || len(due) != 0 {
		t.Fatalf("Tombstones dead before an hour ago = %d, %v; want none", len(due), err)
	}
	if due, err := s.Tombstones(time.Now().Add(time.Hour), nil, 10); err != nil || len(due) != 1 || !sameObject(due[0].Object, dead) {
		t.Fatalf("Tombstones = %v, %v; want the dead key", due, err)
	}
	// Another object than the stored one, or a hint held for the key, and
	// nothing is reaped.
	var other Object
	other.Update(vclock.VClock{}, "n2", Version{Deleted: true})
	if ok, err := s.Reap(k, other); ok || err != nil {
		t.Fatalf("Reap of another object = %v, %v", ok, err)
	}
	if err := s.Hints().Add("n3", k, v1); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reapable(k, dead); ok || err != nil {
		t.Fatalf("Reapable with a hint held = %v, %v", ok, err)
	}
	if ok, err := s.Reap(k, dead); ok || err != nil {
		t.Fatalf("Reap with a hint held = %v, %v", ok, err)
	}
	if _, err := s.Hints().Drop("n3", k, v1); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Reap(k, dead); !ok || err != nil {
		t.Fatalf("Reap = %v, %v", ok, err)
	}
	if _, found, _ := s.Get(k); found {
		t.Fatal("the reaped key is still there")
	}
	if ok, err := s.Reapable(k, dead); !ok || err != nil {
		t.Fatalf("Reapable of an absent key = %v, %v; want true", ok, err)
	}
	if s.Trees().Tree("").Root() != 0 {
		t.Fatal("the tree still has the reaped key")
	}
	if due, _ := s.Tombstones(time.Now().Add(time.Hour), nil, 10); len(due) != 0 {
		t.Fatalf("%d tombstones left", len(due))
	}

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, path, StoreConfig{NoSync: true, Epoch: "e"})
	next := putOwn(t, s, "k", vclock.VClock{}, "v3") // a blind write
	if c := next.Context().Get("n1.e"); c != dead.Context().Get("n1.e")+1 {
		t.Fatalf("the first write after the reap got counter %d, want %d", c, dead.Context().Get("n1.e")+1)
	}
	got, err := s.Merge(k, v1) // a stale copy of a reaped version
	if err != nil || !slices.Equal(live(got), []string{"v3"}) {
		t.Fatalf("after a stale copy arrives: %q, %v; want [v3]", live(got), err)
	}
	// A key that was never reaped keeps its own numbering.
	if o := putOwn(t, s, "j", vclock.VClock{}, "x"); o.Context().Get("n1.e") != dead.Context().Get("n1.e")+1 {
		t.Fatalf("a fresh key under a floor of %d got counter %d", dead.Context().Get("n1.e"), o.Context().Get("n1.e"))
	}
	if o := putOwn(t, s, "j", vclock.VClock{}, "y"); len(live(o)) != 2 {
		t.Fatalf("a concurrent write to a key with a dot of n1 lost a sibling: %q", live(o))
	}
	// The key comes back through another replica's write whose context,
	// read before the reap, names n1's reaped dots: n1 holds no value of
	// its own, so its next write is still numbered above the floor.
	s2 := openStore(t, filepath.Join(t.TempDir(), "other.db"), StoreConfig{NoSync: true, Epoch: "e"})
	defer s2.Close()
	putOwn(t, s2, "s", vclock.VClock{}, "a")
	a2 := putOwn(t, s2, "s", vclock.VClock{}, "b") // n1:2
	gone, err := s2.Update([]byte("s"), a2.Context(), "n1.e", Version{Deleted: true})
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s2.Reap([]byte("s"), gone); !ok || err != nil {
		t.Fatalf("Reap = %v, %v", ok, err)
	}
	var elsewhere Object
	elsewhere.Update(v1.Context(), "n2", Version{Value: []byte("n2's")}) // context {n1:1}
	if _, err := s2.Merge([]byte("s"), elsewhere); err != nil {
		t.Fatal(err)
	}
	o, err := s2.Update([]byte("s"), vclock.VClock{}, "n1.e", Version{Value: []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if c := o.Context().Get("n1.e"); c <= gone.Context().Get("n1.e") {
		t.Fatalf("a write after the key came back with a stale context got n1:%d, reaped dots reach n1:%d", c, gone.Context().Get("n1.e"))
	}
}

// CheckReaped accepts a delete that was reaped and the writes it
// replaced, and catches a replaced value that is back.
func TestCheckReaped(t *testing.T) {
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a")})
	ctxA := o.Context()
	o.Update(ctxA, "n1", Version{Deleted: true})
	a := Ack{Key: "k", Version: Version{Value: []byte("a")}, Dot: vclock.Dot{ID: "n1", Counter: 1}}
	del := Ack{Key: "k", Version: Version{Deleted: true}, Context: ctxA, Dot: vclock.Dot{ID: "n1", Counter: 2}}
	gone := map[string][]Object{"k": {{}, {}, {}}}
	reaped := map[string]vclock.VClock{"k": o.Context()}

	if v := Check([]Ack{a, del}, nil, gone); len(v.Lost) != 2 {
		t.Fatalf("without the reaped history both writes look lost: %+v", v)
	}
	if err := CheckReaped([]Ack{a, del}, nil, gone, reaped).Err(); err != nil {
		t.Fatalf("a reaped delete: %v", err)
	}
	if err := CheckReaped([]Ack{a}, []Ack{del}, gone, reaped).Err(); err != nil {
		t.Fatalf("a reaped delete whose PUT failed: %v", err)
	}
	// A reap in progress: one replica still holds the reaped tombstone.
	if err := CheckReaped([]Ack{a, del}, nil, map[string][]Object{"k": {o, {}, {}}}, reaped).Err(); err != nil {
		t.Fatalf("a replica still holding the reaped tombstone: %v", err)
	}
	newer := o.Clone()
	newer.Update(o.Context(), "n2", Version{Deleted: true})
	if v := CheckReaped([]Ack{a, del}, nil, map[string][]Object{"k": {newer, {}, {}}}, reaped); len(v.Diverged) != 1 {
		t.Fatalf("a replica holding a newer tombstone than the reaped one: %+v", v)
	}
	// Two replicas still hold different dead objects within the reaped
	// history: both read as absent, but the replicas did not converge.
	var older Object
	older.Update(vclock.VClock{}, "n1", Version{Deleted: true})
	if v := CheckReaped([]Ack{a, del}, nil, map[string][]Object{"k": {o, older, {}}}, reaped); len(v.Diverged) != 1 {
		t.Fatalf("replicas holding different reaped tombstones: %+v", v)
	}
	var back Object
	back.Update(vclock.VClock{}, "n1", Version{Value: []byte("a")})
	v := CheckReaped([]Ack{a, del}, nil, map[string][]Object{"k": {back, back}}, reaped)
	if len(v.Resurrected) != 1 || !errors.Is(v.Err(), ErrResurrected) {
		t.Fatalf("a value back after its tombstone was reaped: %+v", v)
	}
}

// In a cluster, a delete is reaped from every replica once all of them
// hold it and no hint for the key is left, and a write afterwards starts
// a new history. A hint of the deleted value still held by a fallback
// holds the reap back until it is handed off: reaped earlier, the hint
// would bring the value back.
func TestClusterReap(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		reaped := map[string]vclock.VClock{}
		c.onReap = func(key []byte, o Object) {
			h := reaped[string(key)]
			h.Merge(o.Context())
			reaped[string(key)] = h
		}
		key := []byte("k")
		home, _ := homeAndOther(c, "k")
		c.crash(home[2])
		w, err := c.node(home[0]).Put(ctx, key, vclock.VClock{}, []byte("v"), 0)
		if err != nil {
			t.Fatal(err)
		}
		acks := []Ack{{Key: "k", Version: Version{Value: []byte("v")}, Dot: w.Dot}}
		c.node(home[0]).Wait()
		if c.pendingHints() != 1 {
			t.Fatalf("%d hints, want 1", c.pendingHints())
		}
		c.start(home[2])
		d, err := c.node(home[0]).Delete(ctx, key, w.Context, 3) // reaches all three
		if err != nil {
			t.Fatal(err)
		}
		acks = append(acks, Ack{Key: "k", Version: Version{Deleted: true}, Context: w.Context, Dot: d.Dot})
		c.node(home[0]).Wait()
		later := time.Now().Add(time.Hour)
		if k, err := c.node(home[0]).Reap(ctx, later); k != 0 || err != nil {
			t.Fatalf("Reap with a hint of the key pending = %d, %v; want 0", k, err)
		}
		for _, id := range c.ids {
			if k, err := c.node(id).Reap(ctx, later); id != home[0] && (k != 0 || err != nil) {
				t.Fatalf("%s, not the key's first home, reaped %d (%v)", id, k, err)
			}
		}
		c.converge(ctx) // hands the hint off
		if k, err := c.node(home[0]).Reap(ctx, later); k != 1 || err != nil {
			t.Fatalf("Reap = %d, %v; want 1", k, err)
		}
		reapedOn := 0
		for _, id := range c.ids {
			reapedOn += int(c.node(id).Stats().Reaped)
			if _, found, _ := c.stores[id].Get(key); found {
				t.Fatalf("%s still holds the key", id)
			}
		}
		if reapedOn != 3 {
			t.Fatalf("%d replicas reaped the key, want 3", reapedOn)
		}
		c.converge(ctx)
		if err := CheckReaped(acks, nil, c.replicas([]string{"k"}), reaped).Err(); err != nil {
			t.Fatal(err)
		}
		w2, err := c.node(home[1]).Put(ctx, key, vclock.VClock{}, []byte("v2"), 0)
		if err != nil {
			t.Fatal(err)
		}
		if reaped["k"].Contains(w2.Dot) || w2.Dot.Counter <= reaped["k"].Get(c.node(home[0]).Actor()) {
			t.Fatalf("the write after the reap reused dot %v", w2.Dot)
		}
		acks = append(acks, Ack{Key: "k", Version: Version{Value: []byte("v2")}, Dot: w2.Dot})
		c.converge(ctx)
		if err := CheckReaped(acks, nil, c.replicas([]string{"k"}), reaped).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// A key's grace period runs from the last change of its dead object, not
// from when it first died: a value written and deleted again late in the
// grace period (never live on the reaper) still has its replication in
// flight, and a reap that did not wait for it would let it come back.
func TestReapGraceFromLastChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const grace = time.Minute // the node's Timeout is a second
		c := newCluster(t, 1, 5, quorum.Config{N: 3, R: 2, W: 2})
		defer c.close()
		reaps := &reapLog{reaped: map[string]vclock.VClock{}}
		c.onReap = reaps.add
		ctx := context.Background()
		key := []byte("k")
		home, _ := homeAndOther(c, "k")
		a, b := c.node(home[0]), c.node(home[1])
		w1, err := a.Put(ctx, key, vclock.VClock{}, []byte("v1"), 3)
		if err != nil {
			t.Fatal(err)
		}
		d1, err := a.Delete(ctx, key, w1.Context, 3)
		if err != nil {
			t.Fatal(err)
		}
		acks := []Ack{
			{Key: "k", Version: Version{Value: []byte("v1")}, Dot: w1.Dot},
			{Key: "k", Version: Version{Deleted: true}, Context: w1.Context, Dot: d1.Dot},
		}
		time.Sleep(grace - 500*time.Millisecond) // virtual time (synctest)

		// b coordinates v2 with W = 1: applied on b, acknowledged, its
		// replication to the other home replicas still in flight.
		v2, err := c.stores[home[1]].Update(key, d1.Context, b.Actor(), Version{Value: []byte("v2")})
		if err != nil {
			t.Fatal(err)
		}
		v2Dot := vclock.Dot{ID: b.Actor(), Counter: v2.Context().Get(b.Actor())}
		acks = append(acks, Ack{Key: "k", Version: Version{Value: []byte("v2")}, Context: d1.Context, Dot: v2Dot})
		// A client reads v2 from b and deletes it; the delete overtakes
		// v2's replication.
		d2, err := b.Delete(ctx, key, v2.Context(), 3)
		if err != nil {
			t.Fatal(err)
		}
		b.Wait()
		acks = append(acks, Ack{Key: "k", Version: Version{Deleted: true}, Context: v2.Context(), Dot: d2.Dot})
		time.Sleep(600 * time.Millisecond)
		if k, err := a.Reap(ctx, time.Now().Add(-grace)); k != 0 || err != nil {
			t.Errorf("Reap %v after the key last changed = %d, %v; want 0", 600*time.Millisecond, k, err)
		}
		// v2's replication lands, 700ms after it was sent.
		for _, h := range []string{home[0], home[2]} {
			if _, err := c.stores[h].Merge(key, v2); err != nil {
				t.Fatal(err)
			}
		}
		c.converge(ctx)
		if err := CheckReaped(acks, nil, c.replicas([]string{"k"}), reaps.snapshot()).Err(); err != nil {
			t.Fatal(err)
		}
		// A grace period after the last change, the key goes.
		time.Sleep(grace)
		if k, err := a.Reap(ctx, time.Now().Add(-grace)); k != 1 || err != nil {
			t.Fatalf("Reap a grace period after the last change = %d, %v; want 1", k, err)
		}
		c.converge(ctx)
		if err := CheckReaped(acks, nil, c.replicas([]string{"k"}), reaps.snapshot()).Err(); err != nil {
			t.Fatal(err)
		}
	})
}

// A pass of Node.Reap takes at most reapBatch due keys, and goes on from
// where the last one stopped: keys that cannot be reaped (here, a hint
// for each is held on a home replica) do not starve the keys after them.
func TestReapNoStarvation(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		reaper := c.node("n1")
		var dead Object
		dead.Update(vclock.VClock{}, "x", Version{Deleted: true})
		var keys [][]byte
		for i := 0; len(keys) < reapBatch+10; i++ {
			if k := fmt.Appendf(nil, "k%05d", i); reaper.Home(k)[0] == "n1" {
				keys = append(keys, k)
			}
		}
		s := c.stores["n1"]
		slices.SortFunc(keys, func(a, b []byte) int { return bytes.Compare(s.dataKey(a), s.dataKey(b)) })
		last := keys[len(keys)-1] // the only key that can be reaped
		for _, k := range keys {
			home := reaper.Home(k)
			for _, h := range home {
				if _, err := c.stores[h].Merge(k, dead); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(k, last) {
				if err := c.stores[home[1]].Hints().Add(home[2], k, dead); err != nil {
					t.Fatal(err)
				}
			}
		}
		later := time.Now().Add(time.Hour)
		reaped := 0
		for range 2 {
			k, err := reaper.Reap(ctx, later)
			if err != nil {
				t.Fatal(err)
			}
			reaped += k
		}
		if _, found, _ := s.Get(last); reaped != 1 || found {
			t.Fatalf("two passes over %d due keys reaped %d (the reapable one still held: %v), want 1", len(keys), reaped, found)
		}
	})
}
