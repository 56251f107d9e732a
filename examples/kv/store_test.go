package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/distkit/distkit/merkle"
	"github.com/distkit/distkit/vclock"
)

func openStore(t testing.TB, path string, cfg StoreConfig) *Store {
	t.Helper()
	s, err := Open(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func live(o Object) []string {
	var out []string
	for _, v := range Live(o) {
		out = append(out, string(v))
	}
	return out
}

func put(t *testing.T, s *Store, key string, ctx vclock.VClock, v string) Object {
	t.Helper()
	o, err := s.Update([]byte(key), ctx, "n1", Version{Value: []byte(v)})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func get(t *testing.T, s *Store, key string) Object {
	t.Helper()
	o, _, err := s.Get([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// One replica: overwrite with a context, siblings without, delete as a
// tombstone that keeps the history, and all of it after a reopen.
func TestStoreLocalSemantics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s := openStore(t, path, StoreConfig{})
	if _, found, err := s.Get([]byte("k")); found || err != nil {
		t.Fatalf("Get of an absent key: found %v, err %v", found, err)
	}
	o := put(t, s, "k", vclock.VClock{}, "v1")
	ctx := o.Context()
	put(t, s, "k", ctx, "v2")
	if got := live(get(t, s, "k")); !slices.Equal(got, []string{"v2"}) {
		t.Fatalf("after overwrite: %q", got)
	}
	o = put(t, s, "k", ctx, "v3") // had not seen v2
	if got := live(o); !slices.Equal(got, []string{"v3", "v2"}) {
		t.Fatalf("concurrent write: %q, want siblings [v3 v2]", got)
	}
	o, err := s.Update([]byte("k"), o.Context(), "n1", Version{Deleted: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := live(o); len(got) != 0 || o.Len() != 1 {
		t.Fatalf("after delete: live %q, %d versions; want only a tombstone", got, o.Len())
	}
	before := o.Context()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path, StoreConfig{})
	defer s.Close()
	o = get(t, s, "k")
	if o.Len() != 1 || !o.Values()[0].Deleted || o.Context().Compare(before) != vclock.Equal {
		t.Fatalf("after reopen: %v %v, want the tombstone with context %v", o.Values(), o.Context(), before)
	}
	// A write that had not seen the delete survives it as a sibling.
	o = put(t, s, "k", ctx, "late")
	if got := live(o); !slices.Equal(got, []string{"late"}) || o.Len() != 2 {
		t.Fatalf("write concurrent with the delete: live %q of %d versions", got, o.Len())
	}
}

func TestStoreBadInput(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "kv.db"), StoreConfig{})
	defer s.Close()
	for _, key := range [][]byte{nil, {}, bytes.Repeat([]byte("x"), MaxKeyLen+1)} {
		if _, err := s.Update(key, vclock.VClock{}, "n1", Version{}); !errors.Is(err, ErrBadKey) {
			t.Errorf("Update(%d-byte key) = %v, want ErrBadKey", len(key), err)
		}
		if _, _, err := s.Get(key); !errors.Is(err, ErrBadKey) {
			t.Errorf("Get(%d-byte key) = %v, want ErrBadKey", len(key), err)
		}
	}
	for _, target := range []string{"", "a\x00b"} {
		if err := s.Hints().Add(target, []byte("k"), Object{}); !errors.Is(err, ErrBadKey) {
			t.Errorf("AddHint(%q) = %v, want ErrBadKey", target, err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.db"), StoreConfig{Tree: merkle.Config{Branches: 3}}); !errors.Is(err, merkle.ErrConfig) {
		t.Errorf("Open with 3 branches = %v, want merkle.ErrConfig", err)
	}
}

// The store against a reference model over seeded random histories of
// coordinated writes, deletes, syncs from another replica and reaps of
// dead keys, reopening the file at random points: every key reads as the
// model says (a write to a key this replica holds no value of its own of
// is numbered above the reap floor), and the trees equal trees built from the model.
func TestStoreModel(t *testing.T) {
	reaps := 0
	defer func() {
		if reaps == 0 {
			t.Error("no key was reaped")
		}
	}()
	for seed := range uint64(8) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 13))
			path := filepath.Join(t.TempDir(), "kv.db")
			group := func(k []byte) string { return string(k[:1]) }
			// A log of a few writes: checkpoints run in the background
			// all along the history.
			cfg := StoreConfig{Tree: merkle.Config{Branches: 16, SegmentsPerBranch: 16}, Group: group, NoSync: true, MaxBatchDelay: time.Nanosecond, Epoch: "e", CheckpointBytes: 1 << 10}
			s := openStore(t, path, cfg)
			defer func() { s.Close() }()
			model := map[string]Object{}  // this replica
			remote := map[string]Object{} // another replica, written by "n2"
			var floor uint64              // the largest counter of this replica's own in a reaped object
			actor := "n1." + s.Epoch()    // a new incarnation's after a crash
			keys := []string{"a1", "a2", "b1", "b2", "c1"}
			for i := range 300 {
				k := keys[rng.IntN(len(keys))]
				var got Object
				var err error
				switch op := rng.IntN(11); {
				case op == 10: // reap the key, on both replicas, if it is dead
					o, ok := model[k]
					reaped, err := s.Reap([]byte(k), o)
					if err != nil && Dead(o) || reaped != (ok && Dead(o)) {
						t.Fatalf("seed %d step %d: Reap of %v = %v, %v", seed, i, o.Values(), reaped, err)
					}
					if reaped {
						reaps++                                    // across seeds
						floor = max(floor, o.Context().Get(actor)) // its own dots only
						delete(model, k)
						delete(remote, k)
					}
					continue
				case op < 5: // write with the context of a read of this replica, or blind
					var ctx vclock.VClock
					if rng.IntN(3) > 0 {
						ctx = model[k].Context()
					}
					v := Version{Value: fmt.Appendf(nil, "v%d", i), Deleted: op == 0}
					if v.Deleted {
						v.Value = nil
					}
					m := model[k].Clone()
					if !holdsValueOf(m, actor) && floor > ctx.Get(actor) {
						ctx = ctx.Clone()
						ctx.Add(vclock.Dot{ID: actor, Counter: floor})
					}
					m.Update(ctx, actor, v)
					model[k] = m
					got, err = s.Update([]byte(k), ctx, actor, v)
				case op < 8: // the other replica writes
					r := remote[k].Clone()
					r.Update(r.Context(), "n2", Version{Value: fmt.Appendf(nil, "r%d", i)})
					remote[k] = r
					continue
				default: // sync from the other replica
					m := model[k].Clone()
					m.Sync(remote[k])
					model[k] = m
					if rng.IntN(2) == 0 {
						got, err = s.Merge([]byte(k), remote[k])
					} else { // as a replica merges what it decoded: in place
						got, err = s.mergeOwned([]byte(k), remote[k].Clone())
					}
				}
				if err != nil {
					t.Fatalf("seed %d step %d: %v", seed, i, err)
				}
				if !sameObject(got, model[k]) {
					t.Fatalf("seed %d step %d: store returned %v, model %v", seed, i, got.Values(), model[k].Values())
				}
				if o := get(t, s, k); !sameObject(o, model[k]) {
					t.Fatalf("seed %d step %d: Get returned %v, model %v", seed, i, o.Values(), model[k].Values())
				}
				switch rng.IntN(100) {
				case 0: // a clean restart
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					s = openStore(t, path, cfg)
				case 1: // a crash: the log's writes since the last checkpoint are replayed
					crash(t, s)
					s = openStore(t, path, cfg)
					if next := "n1." + s.Epoch(); next == actor {
						t.Fatalf("seed %d step %d: the actor after a crash is %s, as before it", seed, i, next)
					} else {
						actor = next
					}
				case 2:
					if err := s.checkpoint(); err != nil {
						t.Fatal(err)
					}
				case 3: // every scan, at any point of the history
					checkAgainstModel(t, s, cfg, model)
				}
			}
			checkAgainstModel(t, s, cfg, model)
			var dead []string
			for k, o := range model {
				if Dead(o) {
					dead = append(dead, k)
				}
			}
			due, err := s.Tombstones(time.Now().Add(time.Hour), nil, len(keys))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range due {
				got = append(got, string(e.Key))
			}
			if slices.Sort(dead); !slices.Equal(slices.Sorted(slices.Values(got)), dead) {
				t.Fatalf("seed %d: Tombstones = %q, want the dead keys %q", seed, got, dead)
			}
		})
	}
}

func sameObject(a, b Object) bool {
	ea, err1 := EncodeObject(a)
	eb, err2 := EncodeObject(b)
	return err1 == nil && err2 == nil && bytes.Equal(ea, eb)
}

// checkAgainstModel checks every key of model, and the trees of every
// group, including Scan over all segments.
func checkAgainstModel(t *testing.T, s *Store, cfg StoreConfig, model map[string]Object) {
	t.Helper()
	want := map[string]*merkle.Tree{}
	for k, o := range model {
		if got := get(t, s, k); !sameObject(got, o) {
			t.Errorf("key %q: %v, model %v", k, got.Values(), o.Values())
		}
		enc, _ := EncodeObject(o)
		g := cfg.Group([]byte(k))
		if want[g] == nil {
			want[g] = merkle.New(cfg.Tree)
		}
		want[g].Add([]byte(k), hashBytes(enc))
	}
	if got, wantGroups := s.Trees().Groups(), slices.Sorted(maps.Keys(want)); !slices.Equal(got, wantGroups) {
		t.Errorf("Groups() = %q, want %q", got, wantGroups)
	}
	all := make([]int, cfg.Tree.Branches*cfg.Tree.SegmentsPerBranch)
	for i := range all {
		all[i] = i
	}
	for g, w := range want {
		if err := merkle.Verify(s.Trees().Tree(g), w); err != nil {
			t.Errorf("group %q: %v", g, err)
		}
		es := scanPages(t, s, g, all)
		n := 0
		for k := range model {
			if cfg.Group([]byte(k)) == g {
				n++
			}
		}
		if len(es) != n {
			t.Errorf("Scan(%q, all) = %d entries, want %d", g, len(es), n)
		}
		for _, e := range es {
			if !sameObject(e.Object, model[string(e.Key)]) {
				t.Errorf("Scan(%q): key %q differs from the model", g, e.Key)
			}
		}
	}
}

// Concurrent writers share fsyncs through the group commit; every write
// is applied once and the tree matches the data, while readers, scans and
// checkpoints (a log of a few writes) run alongside: a read sees a key's
// siblings grow, never shrink.
func TestStoreConcurrentWrites(t *testing.T) {
	cfg := StoreConfig{Tree: merkle.Config{Branches: 16, SegmentsPerBranch: 16}, Group: func(k []byte) string { return string(k[:1]) }, CheckpointBytes: 1 << 10}
	s := openStore(t, filepath.Join(t.TempDir(), "kv.db"), cfg)
	defer s.Close()
	var wg sync.WaitGroup
	const writers, writes = 8, 20
	for w := range writers {
		wg.Go(func() {
			for i := range writes {
				key := fmt.Appendf(nil, "%c%d", 'a'+w%3, i%5)
				if _, err := s.Update(key, vclock.VClock{}, "n1", Version{Value: fmt.Appendf(nil, "%d/%d", w, i)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for r := range 2 {
		wg.Go(func() {
			seen := map[string]int{}
			for i := range writers * writes {
				key := fmt.Sprintf("%c%d", 'a'+(r+i)%3, i%5)
				o, _, err := s.Get([]byte(key))
				if err != nil {
					t.Error(err)
					return
				}
				if o.Len() < seen[key] {
					t.Errorf("%s: %d siblings after %d", key, o.Len(), seen[key])
				}
				seen[key] = o.Len()
			}
		})
	}
	wg.Go(func() { // scans checkpoint as they go
		for range 5 {
			allPages(t, s)
		}
	})
	wg.Go(func() { // a regroup in the middle must not lose or double a write
		if err := s.Regroup(cfg.Group); err != nil {
			t.Error(err)
		}
	})
	wg.Wait()
	model := map[string]Object{}
	total := 0
	for _, e := range allPages(t, s) {
		model[string(e.Key)] = e.Object
		total += e.Object.Len()
	}
	if total != writers*writes { // blind writes: every one is a sibling
		t.Fatalf("%d values stored, want %d", total, writers*writes)
	}
	checkAgainstModel(t, s, cfg, model)
}

func TestStoreHints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	cfg := StoreConfig{MaxHints: 3}
	s := openStore(t, path, cfg)
	var a, b Object
	a.Update(vclock.VClock{}, "n1", Version{Value: []byte("a")})
	b.Update(vclock.VClock{}, "n2", Version{Value: []byte("b")})
	for _, h := range []struct {
		target, key string
		o           Object
	}{{"n4", "k1", a}, {"n4", "k2", a}, {"n5", "k1", b}, {"n4", "k1", b}} { // the last merges
		if err := s.Hints().Add(h.target, []byte(h.key), h.o); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Hints().Add("n5", []byte("k9"), a); !errors.Is(err, ErrHintsFull) {
		t.Fatalf("fourth hint: %v, want ErrHintsFull", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, path, cfg)
	defer s.Close()
	if s.Hints().Len() != 3 {
		t.Fatalf("after reopen: %d hints, want 3", s.Hints().Len())
	}
	if got, err := s.Hints().Targets(); err != nil || !slices.Equal(got, []string{"n4", "n5"}) {
		t.Fatalf("HintTargets() = %q, %v", got, err)
	}
	hs, err := s.Hints().For("n4", 10)
	if err != nil || len(hs) != 2 || string(hs[0].Key) != "k1" || string(hs[1].Key) != "k2" {
		t.Fatalf("HintsFor(n4) = %v, %v", hs, err)
	}
	if got := live(hs[0].Object); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("merged hint: %q, want [a b]", got)
	}
	if o, found, err := s.Hints().Object([]byte("k1")); err != nil || !found || !slices.Equal(live(o), []string{"a", "b"}) {
		t.Fatalf("HintedObject(k1) = %q, %v, %v", live(o), found, err)
	}
	// A stale delivery does not drop a hint that grew; a current one does.
	if ok, err := s.Hints().Drop("n4", []byte("k1"), a); ok || err != nil {
		t.Fatalf("DropHint of an outdated hint = %v, %v", ok, err)
	}
	if ok, err := s.Hints().Drop("n4", []byte("k1"), hs[0].Object); !ok || err != nil {
		t.Fatalf("DropHint = %v, %v", ok, err)
	}
	if s.Hints().Len() != 2 {
		t.Fatalf("%d hints after a drop, want 2", s.Hints().Len())
	}
	if err := s.Hints().Add("n5", []byte("k9"), a); err != nil {
		t.Fatalf("hint after room was made: %v", err)
	}
}

// Two replicas that missed each other's writes find the differing keys
// with a merkle exchange per group and repair exactly those.
func TestStoreExchange(t *testing.T) {
	cfg := StoreConfig{Tree: merkle.Config{Branches: 16, SegmentsPerBranch: 16}, Group: func(k []byte) string { return string(k[:1]) }, NoSync: true}
	a := openStore(t, filepath.Join(t.TempDir(), "a.db"), cfg)
	defer a.Close()
	b := openStore(t, filepath.Join(t.TempDir(), "b.db"), cfg)
	defer b.Close()
	for i := range 100 {
		o, err := a.Update(fmt.Appendf(nil, "x%d", i), vclock.VClock{}, "a", Version{Value: []byte("v")})
		if err != nil {
			t.Fatal(err)
		}
		if i%10 != 0 { // b misses every tenth write
			if _, err := b.Merge(fmt.Appendf(nil, "x%d", i), o); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := b.Update([]byte("y1"), vclock.VClock{}, "b", Version{Value: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"x", "y"} {
		res, err := merkle.Diff(context.Background(), a.Trees().Tree(g), merkle.PeerFunc(func(_ context.Context, req []byte) ([]byte, error) {
			return b.Trees().Serve(g, req)
		}))
		if err != nil {
			t.Fatal(err)
		}
		fromA, fromB := scanPages(t, a, g, res.Segments), scanPages(t, b, g, res.Segments)
		for _, e := range fromA {
			if _, err := b.Merge(e.Key, e.Object); err != nil {
				t.Fatal(err)
			}
		}
		for _, e := range fromB {
			if _, err := a.Merge(e.Key, e.Object); err != nil {
				t.Fatal(err)
			}
		}
		if g == "y" && (len(fromA) != 0 || len(fromB) != 1) {
			t.Errorf("group y: scanned %d and %d keys, want 0 and 1", len(fromA), len(fromB))
		}
		if err := merkle.Verify(a.Trees().Tree(g), b.Trees().Tree(g)); err != nil {
			t.Errorf("group %s after repair: %v", g, err)
		}
	}
}

// The hints live under a lock and in a file of their own: while a hint's
// commit holds the hint store (its fsync), writes of the data, their
// trees and anti-entropy serves go on.
func TestStoreHintsDoNotBlockData(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "kv.db"), StoreConfig{Tree: testTree})
	defer s.Close()
	s.hints.mu.Lock() // as an Add holds it through its commit
	defer s.hints.mu.Unlock()
	o := put(t, s, "k", vclock.VClock{}, "v")
	if _, err := s.Merge([]byte("k2"), o); err != nil {
		t.Fatal(err)
	}
	if s.Trees().Tree("").Root() == 0 {
		t.Fatal("the writes are not in the tree")
	}
	res, err := merkle.Diff(context.Background(), merkle.New(testTree), merkle.PeerFunc(func(_ context.Context, req []byte) ([]byte, error) {
		return s.Trees().Serve("", req)
	}))
	if err != nil || len(res.Segments) == 0 {
		t.Fatalf("an exchange against the store: %+v, %v", res, err)
	}
}

// A data file from before hints had a file of their own keeps its hints
// in a bucket of its own: Open moves them to the hint file, merged with
// any held there, once.
func TestStoreAdoptsHints(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	var a Object
	a.Update(vclock.VClock{}, "n1", Version{Value: []byte("a")})
	enc, err := EncodeObject(a)
	if err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketHints)
		if err != nil {
			return err
		}
		for _, target := range []string{"n2", "n3"} {
			tb, err := b.CreateBucket([]byte(target))
			if err != nil {
				return err
			}
			if err := tb.Put([]byte("k"), enc); err != nil {
				return err
			}
		}
		return nil
	})
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		s := openStore(t, path, StoreConfig{})
		if n := s.Hints().Len(); n != 2 {
			t.Fatalf("%d hints after Open, want 2", n)
		}
		if o, found, err := s.Hints().Object([]byte("k")); err != nil || !found || !slices.Equal(live(o), []string{"a"}) {
			t.Fatalf("hinted object %q, %v, %v", live(o), found, err)
		}
		err := s.db.View(func(tx *bolt.Tx) error {
			if tx.Bucket(bucketHints) != nil {
				return errors.New("the data file still has its hint bucket")
			}
			return nil
		})
		if err := errors.Join(err, s.Close()); err != nil {
			t.Fatal(err)
		}
	}
}
