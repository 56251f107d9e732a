package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/idempotencytest"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

var idemEpoch = time.Unix(1e9, 0)

// openIdem opens a store at path with its idempotency store on clk.
func openIdem(t testing.TB, path string, clk *clocktest.Manual) (*Store, *IdempotencyStore) {
	t.Helper()
	s, err := Open(path, StoreConfig{Tree: testTree, NoSync: true, MaxBatchDelay: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	is, err := NewIdempotencyStore(s, IdempotencyConfig{Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	return s, is
}

func TestIdempotencyStoreConformance(t *testing.T) {
	idempotencytest.TestStore(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		clk := clocktest.NewManual(idemEpoch)
		s, is := openIdem(t, filepath.Join(t.TempDir(), "kv.db"), clk)
		t.Cleanup(func() { s.Close() })
		return is, clk.Advance
	})
}

// reopening is an idempotency store whose bbolt file is closed and
// reopened before every call, so that every record the conformance suite
// reads has been through the file: a claim between Claim and Complete, a
// record after Complete or Release.
type reopening struct {
	t    testing.TB
	path string
	clk  *clocktest.Manual
	mu   sync.Mutex
	s    *Store
	is   *IdempotencyStore
}

func (r *reopening) reopen() {
	r.t.Helper()
	if err := r.s.Close(); err != nil {
		r.t.Error(err)
	}
	r.s, r.is = openIdem(r.t, r.path, r.clk)
}

func (r *reopening) Claim(ctx context.Context, key string, fp []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reopen()
	return r.is.Claim(ctx, key, fp, lock)
}

func (r *reopening) Complete(ctx context.Context, key string, token uint64, resp []byte, retain time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reopen()
	return r.is.Complete(ctx, key, token, resp, retain)
}

func (r *reopening) Release(ctx context.Context, key string, token uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reopen()
	return r.is.Release(ctx, key, token)
}

func TestIdempotencyStoreConformanceReopened(t *testing.T) {
	idempotencytest.TestStore(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		r := &reopening{t: t, path: filepath.Join(t.TempDir(), "kv.db"), clk: clocktest.NewManual(idemEpoch)}
		r.s, r.is = openIdem(t, r.path, r.clk)
		t.Cleanup(func() { r.s.Close() })
		return r, r.clk.Advance
	})
}

// A node killed between Claim and Complete (the store closed without
// Complete) restarts with the claim, as package idempotency defines a
// crashed executor's: a retry is told the key is in progress until the
// lock lapses, then takes it over; the crashed execution cannot complete
// it after that. A completed record survives the restart byte for byte.
func TestIdempotencyStoreCrash(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewManual(idemEpoch)
	path := filepath.Join(t.TempDir(), "kv.db")
	s, is := openIdem(t, path, clk)
	g := idempotency.New(is, idempotency.Config{Lock: 10 * time.Second, Clock: clk})
	out, err := g.Do(ctx, "done", []byte("fp"), func(context.Context) ([]byte, error) { return []byte("first"), nil })
	if err != nil || string(out) != "first" {
		t.Fatalf("Do: %q, %v", out, err)
	}
	crashed, rec, err := is.Claim(ctx, "crashed", []byte("fp"), 10*time.Second)
	if rec != nil || err != nil {
		t.Fatalf("Claim: %+v, %v", rec, err)
	}
	if err := s.Close(); err != nil { // the crash: no Complete, no Release
		t.Fatal(err)
	}
	s, is = openIdem(t, path, clk)
	defer func() { s.Close() }()
	g = idempotency.New(is, idempotency.Config{Lock: 10 * time.Second, Clock: clk})
	ran := 0
	fn := func(context.Context) ([]byte, error) { ran++; return []byte("again"), nil }
	if out, err := g.Do(ctx, "done", []byte("fp"), fn); err != nil || string(out) != "first" || ran != 0 {
		t.Fatalf("retry of a completed key after a restart: %q, %v, ran %d; want the first result replayed", out, err, ran)
	}
	if _, err := g.Do(ctx, "crashed", []byte("fp"), fn); !errors.Is(err, idempotency.ErrInProgress) || ran != 0 {
		t.Fatalf("retry of a crashed claim within its lock: %v, ran %d; want ErrInProgress", err, ran)
	}
	clk.Advance(10 * time.Second)
	if err := is.Complete(ctx, "crashed", crashed, []byte("late"), time.Hour); !errors.Is(err, idempotency.ErrNotClaimed) {
		t.Fatalf("Complete of the lapsed claim: %v, want ErrNotClaimed", err)
	}
	var takeover uint64
	fn = func(ctx context.Context) ([]byte, error) {
		ran++
		takeover, _ = idempotency.FencingToken(ctx)
		// The crashed execution wakes up: its token no longer names the claim.
		if err := is.Release(ctx, "crashed", crashed); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Errorf("Release under the crashed claim's token after the takeover: %v, want ErrNotClaimed", err)
		}
		return []byte("again"), nil
	}
	if out, err := g.Do(ctx, "crashed", []byte("fp"), fn); err != nil || string(out) != "again" || ran != 1 {
		t.Fatalf("takeover after the lock: %q, %v, ran %d", out, err, ran)
	}
	if takeover <= crashed {
		t.Fatalf("the takeover after a restart got token %d, not above the crashed claim's %d", takeover, crashed)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, is = openIdem(t, path, clk)
	_, rec, err = is.Claim(ctx, "crashed", []byte("other"), time.Second)
	if err != nil || rec == nil || rec.State != idempotency.Done || !bytes.Equal(rec.Fingerprint, []byte("fp")) || rec.Token != takeover {
		t.Fatalf("the takeover's record after another restart: %+v, %v", rec, err)
	}
}

// The token counter lives in the file: tokens go on increasing across a
// reopen, and a damaged or exhausted counter fails Claim with
// ErrMalformed instead of granting a token again.
func TestIdempotencyStoreTokenCounter(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewManual(idemEpoch)
	path := filepath.Join(t.TempDir(), "kv.db")
	s, is := openIdem(t, path, clk)
	var last uint64
	for i := range 6 {
		if i%2 == 0 {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, is = openIdem(t, path, clk)
		}
		token, _, err := is.Claim(ctx, fmt.Sprint("k", i), nil, time.Minute)
		if err != nil || token <= last {
			t.Fatalf("claim %d: token %d after %d, %v", i, token, last, err)
		}
		last = token
	}
	defer func() { s.Close() }()
	for name, v := range map[string][]byte{
		"short":     {1, 2, 3},
		"exhausted": binary.BigEndian.AppendUint64(nil, math.MaxUint64),
	} {
		if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketTokens).Put(keyLastToken, v) }); err != nil {
			t.Fatal(err)
		}
		if token, _, err := is.Claim(ctx, "new-"+name, nil, time.Minute); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s counter: Claim granted %d, %v; want ErrMalformed", name, token, err)
		}
	}
}

// Each Claim deletes up to idempotencySweep expired records, oldest first,
// so the bucket holds the live records and few expired ones.
func TestIdempotencyStoreSweep(t *testing.T) {
	ctx := context.Background()
	clk := clocktest.NewManual(idemEpoch)
	s, is := openIdem(t, filepath.Join(t.TempDir(), "kv.db"), clk)
	defer s.Close()
	const n = 100
	for i := range n {
		key := fmt.Sprint("old-", i)
		token, _, err := is.Claim(ctx, key, nil, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := is.Complete(ctx, key, token, []byte("r"), time.Hour+time.Duration(i)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	length := func() int {
		t.Helper()
		l, err := is.Len()
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	clk.Advance(time.Hour + n/2*time.Millisecond) // the first half expired
	for i := range 4 {
		if _, _, err := is.Claim(ctx, fmt.Sprint("new-", i), nil, time.Minute); err != nil {
			t.Fatal(err)
		}
		if got, want := length(), n-min((i+1)*idempotencySweep, n/2+1)+i+1; got != want {
			t.Fatalf("after %d claims: %d records, want %d", i+1, got, want)
		}
	}
	// The sweep took the oldest: the live half is all there.
	for i := n/2 + 1; i < n; i++ {
		if _, rec, err := is.Claim(ctx, fmt.Sprint("old-", i), nil, time.Minute); err != nil || rec == nil || rec.State != idempotency.Done {
			t.Fatalf("live record old-%d: %+v, %v", i, rec, err)
		}
	}
}

func TestIdempotencyRecordHostile(t *testing.T) {
	enc := func(fields ...any) []byte {
		b, err := msgpack.Marshal(fields)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good, err := encodeRecord(&idempotency.Record{Key: "k", State: idempotency.Done, Response: []byte("r"), ExpiresAt: idemEpoch, Token: 7})
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := decodeRecord("k", good); err != nil || rec.State != idempotency.Done || string(rec.Response) != "r" || !rec.ExpiresAt.Equal(idemEpoch) || rec.Token != 7 {
		t.Fatalf("decode: %+v, %v", rec, err)
	}
	for name, b := range map[string][]byte{
		"empty":                  nil,
		"trailing":               append(good[:len(good):len(good)], 0),
		"truncated":              good[:len(good)-1],
		"unknown state":          enc(2, 0, []byte{}, []byte{}, 1),
		"in progress, response":  enc(0, 0, []byte{}, []byte("r"), 1),
		"no token":               enc(1, 0, []byte{}, []byte{}),
		"huge fingerprint":       {0x95, 0x01, 0x00, 0xc6, 0x7f, 0xff, 0xff, 0xff},
		"string for a deadline:": enc(1, "x", []byte{}, []byte{}, 1),
		"string for a token":     enc(1, 0, []byte{}, []byte{}, "x"),
	} {
		if _, err := decodeRecord("k", b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// FuzzIdempotencyRecord: decoding a stored record never panics, and what
// decodes re-encodes to the same bytes' meaning.
func FuzzIdempotencyRecord(f *testing.F) {
	for _, rec := range []*idempotency.Record{
		{Key: "k", Fingerprint: []byte("fp"), LockedUntil: idemEpoch, Token: 1},
		{Key: "k", State: idempotency.Done, Response: []byte{}, ExpiresAt: idemEpoch.Add(-time.Hour), Token: math.MaxUint64},
	} {
		b, _ := encodeRecord(rec)
		f.Add(b)
	}
	f.Add([]byte{0x95, 0x01, 0x00, 0xc0, 0xc0, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord("k", b)
		if err != nil {
			return
		}
		enc, err := encodeRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRecord("k", enc)
		if err != nil {
			t.Fatalf("re-decoding %x: %v", enc, err)
		}
		if enc2, _ := encodeRecord(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("unstable encoding %x vs %x", enc, enc2)
		}
	})
}

func TestUpdateOnce(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), StoreConfig{Tree: testTree, NoSync: true, MaxBatchDelay: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	key := []byte("k")
	v := Version{Value: []byte("v"), IdempotencyKey: "K"}
	_, dot, applied, err := s.UpdateOnce(key, vclock.VClock{}, "a", v)
	if err != nil || !applied || dot != (vclock.Dot{ID: "a", Counter: 1}) {
		t.Fatalf("first write: %v %v %v", dot, applied, err)
	}
	// A concurrent write by another actor, then the retry of the first.
	if _, _, _, err := s.UpdateOnce(key, vclock.VClock{}, "b", Version{Value: []byte("w")}); err != nil {
		t.Fatal(err)
	}
	o, dot, applied, err := s.UpdateOnce(key, vclock.VClock{}, "b", v)
	if err != nil || applied || dot != (vclock.Dot{ID: "a", Counter: 1}) || o.Len() != 2 {
		t.Fatalf("retry: dot %v applied %v, %d siblings, %v; want the first dot, not applied, 2 siblings", dot, applied, o.Len(), err)
	}
	if o.Context().Get("b") != 1 {
		t.Fatalf("retry returned context %v, want the current one", o.Context())
	}
	// The key with another payload: refused, nothing written.
	for _, other := range []Version{{Value: []byte("x"), IdempotencyKey: "K"}, {Deleted: true, IdempotencyKey: "K"}} {
		if _, _, _, err := s.UpdateOnce(key, vclock.VClock{}, "b", other); !errors.Is(err, ErrKeyReused) {
			t.Fatalf("reuse with %+v: %v, want ErrKeyReused", other, err)
		}
	}
	if got, _, _ := s.Get(key); got.Len() != 2 || got.Context().Get("b") != 1 {
		t.Fatalf("a refused write changed the object: %v", got.Values())
	}
	// Once a write that read the sibling replaced it, the key is forgotten:
	// a late retry applies again (documented on Node.Write).
	if _, _, _, err := s.UpdateOnce(key, o.Context(), "a", Version{Value: []byte("z")}); err != nil {
		t.Fatal(err)
	}
	if _, dot, applied, err = s.UpdateOnce(key, vclock.VClock{}, "a", v); err != nil || !applied || dot.Counter != 3 {
		t.Fatalf("retry after the sibling was superseded: %v %v %v", dot, applied, err)
	}
}

// Concurrent writes with one idempotency key on one store apply once.
func TestUpdateOnceConcurrent(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "kv.db"), StoreConfig{Tree: testTree, NoSync: true, MaxBatchDelay: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var applied atomic.Int32
	var wg sync.WaitGroup
	dots := make([]vclock.Dot, 8)
	for i := range dots {
		wg.Go(func() {
			_, d, ok, err := s.UpdateOnce([]byte("k"), vclock.VClock{}, fmt.Sprint("n", i%2), Version{Value: []byte("v"), IdempotencyKey: "K"})
			if err != nil {
				t.Error(err)
			}
			if ok {
				applied.Add(1)
			}
			dots[i] = d
		})
	}
	wg.Wait()
	o, _, _ := s.Get([]byte("k"))
	if applied.Load() != 1 || o.Len() != 1 {
		t.Fatalf("%d writes applied, %d siblings; want 1 and 1", applied.Load(), o.Len())
	}
	for _, d := range dots {
		if d != dots[0] {
			t.Fatalf("dots %v differ", dots)
		}
	}
}

// holding returns how many of ids' stores hold a sibling with dot d of
// key, and the siblings of each.
func holding(t *testing.T, c *cluster, ids []string, key string, d vclock.Dot) (n int, siblings []int) {
	t.Helper()
	for _, id := range ids {
		o, _, err := c.stores[id].Get([]byte(key))
		if err != nil {
			t.Fatal(err)
		}
		for dot := range o.Dotted() {
			if dot == d {
				n++
			}
		}
		siblings = append(siblings, o.Len())
	}
	return n, siblings
}

// A PUT whose quorum failed (503) and that is retried with its
// Idempotency-Key through other nodes applies once: every retry answers
// with the first attempt's dot, succeeds once W replicas hold it, and the
// key ends with exactly one sibling. The key with another value is
// refused with 422.
func TestAPIRetryThroughAnotherNode(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
		home, other := homeAndOther(c, "k")
		api := map[string]http.Handler{}
		for _, id := range c.ids {
			is, err := NewIdempotencyStore(c.stores[id], IdempotencyConfig{})
			if err != nil {
				t.Fatal(err)
			}
			api[id] = API(c.node(id), APIConfig{Guard: idempotency.New(is, idempotency.Config{})})
		}
		key := []string{idempotency.KeyHeader, `"put-k-1"`}

		c.net.partitioned[home[0]] = true
		rec := do(api[home[0]], "PUT", "/kv/k", "v", key...)
		first := rec.Header().Get(HeaderDot)
		if rec.Code != http.StatusServiceUnavailable || first == "" {
			t.Fatalf("PUT from a partitioned coordinator: %d %q %s", rec.Code, first, rec.Body)
		}
		d, err := DecodeDot(first)
		if err != nil {
			t.Fatal(err)
		}
		c.net.partitioned[home[0]] = false

		// Through another home replica (which never saw the first attempt:
		// the write goes to the first live home replica), then through a
		// node that is not a home replica.
		for _, via := range []string{home[1], other} {
			rec := do(api[via], "PUT", "/kv/k", "v", key...)
			if rec.Code != http.StatusNoContent || rec.Header().Get(HeaderDot) != first {
				t.Fatalf("retry via %s: %d, dot %q, want 204 with the first dot %q: %s", via, rec.Code, rec.Header().Get(HeaderDot), first, rec.Body)
			}
			if n, _ := holding(t, c, home, "k", d); n < c.q.W {
				t.Fatalf("retry via %s succeeded with %d replicas holding the write, want W = %d", via, n, c.q.W)
			}
		}
		for _, id := range c.ids {
			c.node(id).Wait()
		}
		if n, siblings := holding(t, c, home, "k", d); n != len(home) || !slices.Equal(siblings, []int{1, 1, 1}) {
			t.Fatalf("%d home replicas hold the write, siblings %v; want all of them and one sibling each", n, siblings)
		}
		// The same node replays its record; a reused key is refused everywhere.
		if rec := do(api[other], "PUT", "/kv/k", "v", key...); rec.Code != http.StatusNoContent || rec.Header().Get(idempotency.ReplayedHeader) != "true" {
			t.Fatalf("second retry via %s: %d %v, want a replay", other, rec.Code, rec.Header())
		}
		for _, id := range c.ids {
			if rec := do(api[id], "PUT", "/kv/k", "другое", key...); rec.Code != http.StatusUnprocessableEntity {
				t.Fatalf("key reused with another value via %s: %d %s, want 422", id, rec.Code, rec.Body)
			}
		}
		if rec := do(api[home[2]], "DELETE", "/kv/k", "", append(key, HeaderContext, EncodeContext(vclock.VClock{}))...); rec.Code != http.StatusUnprocessableEntity {
			t.Fatalf("key reused for a delete: %d %s, want 422", rec.Code, rec.Body)
		}
		if _, siblings := holding(t, c, home, "k", d); !slices.Equal(siblings, []int{1, 1, 1}) {
			t.Fatalf("refused writes changed the key: siblings %v", siblings)
		}
	})
}

// What the coordinator deduplicates depends on what it holds: a retry
// whose coordinator received the first attempt by replication applies
// once; one whose coordinator never saw it applies again, as a sibling
// (Node.Write documents both).
func TestNodeRetryCoordinatorChanged(t *testing.T) {
	for _, replicated := range []bool{true, false} {
		t.Run(fmt.Sprint("replicated=", replicated), func(t *testing.T) {
			inCluster(t, 5, quorum.Config{N: 3, R: 2, W: 2}, func(t *testing.T, c *cluster, ctx context.Context) {
				all := c.ring.Replicas([]byte("k"), c.q.N+DefaultFallbacks, nil)
				home, _ := homeAndOther(c, "k")
				cut := all[2:] // the third home replica and the fallbacks
				if !replicated {
					cut = all[1:]
				}
				for _, id := range cut {
					c.net.partitioned[id] = true
				}
				v := Version{Value: []byte("v"), IdempotencyKey: "K"}
				w1, err := c.node(home[0]).Write(ctx, []byte("k"), vclock.VClock{}, v, 3)
				if !errors.Is(err, quorum.ErrNoQuorum) {
					t.Fatalf("write: %v, want ErrNoQuorum", err)
				}
				c.node(home[0]).Wait()
				c.crash(home[0]) // the next live home replica coordinates the retry
				clear(c.net.partitioned)
				w2, err := c.node(home[2]).Write(ctx, []byte("k"), vclock.VClock{}, v, 2)
				if err != nil {
					t.Fatal(err)
				}
				if (w2.Dot == w1.Dot) != replicated {
					t.Fatalf("retry got dot %v, first attempt %v; want equal: %v", w2.Dot, w1.Dot, replicated)
				}
				c.converge(ctx)
				want := 1
				if !replicated {
					want = 2
				}
				if _, siblings := holding(t, c, home, "k", w1.Dot); !slices.Equal(siblings, []int{want, want, want}) {
					t.Fatalf("siblings %v, want %d on each home replica", siblings, want)
				}
			})
		})
	}
}

// BenchmarkIdempotencyStore is one guarded request's record: a Claim and
// a Complete of a new key (with the sweep of the key that expired), with
// and without fsync.
func BenchmarkIdempotencyStore(b *testing.B) {
	withFsync(b, func(b *testing.B, s *Store) {
		clk := clocktest.NewManual(idemEpoch)
		is, err := NewIdempotencyStore(s, IdempotencyConfig{Clock: clk})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		fp, resp := make([]byte, 32), make([]byte, 200)
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			key := fmt.Sprint("key-", i)
			i++
			clk.Advance(time.Millisecond) // records expire after 1000 requests
			token, _, err := is.Claim(ctx, key, fp, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			if err := is.Complete(ctx, key, token, resp, time.Second); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkUpdateOnce is a coordinator's keyed write of a 100-byte value
// without fsync: a new write, and a retry found among three siblings.
func BenchmarkUpdateOnce(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "kv.db"), StoreConfig{NoSync: true, MaxBatchDelay: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	v := Version{Value: make([]byte, 100), IdempotencyKey: "01J9Z8Q4M6W3"}
	b.Run("new", func(b *testing.B) {
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			key := fmt.Appendf(nil, "k%d", i%1000)
			i++
			o, _, _ := s.Get(key)
			if _, _, _, err := s.UpdateOnce(key, o.Context(), "n1.e", v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("retry", func(b *testing.B) {
		for _, actor := range []string{"n1.e", "n2.e"} {
			if _, _, _, err := s.UpdateOnce([]byte("r"), vclock.VClock{}, actor, Version{Value: make([]byte, 100)}); err != nil {
				b.Fatal(err)
			}
		}
		if _, _, _, err := s.UpdateOnce([]byte("r"), vclock.VClock{}, "n3.e", v); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, _, applied, err := s.UpdateOnce([]byte("r"), vclock.VClock{}, "n1.e", v); err != nil || applied {
				b.Fatal(applied, err)
			}
		}
	})
}

// A server stopped hard (as close to SIGKILL as a process can do to
// itself) and restarted on its directory still knows the Idempotency-Keys
// it answered: a retry is replayed, not applied again.
func TestServerRestartKeepsIdempotencyKeys(t *testing.T) {
	dir := t.TempDir()
	start := func() *Server {
		t.Helper()
		s, err := StartServer(ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: dir,
			Quorum: quorum.Config{N: 1, R: 1, W: 1}, Store: StoreConfig{NoSync: true}})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	put := func(s *Server, body string) *http.Response {
		t.Helper()
		req, err := http.NewRequest("PUT", "http://"+s.Addr()+"/kv/k", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set(idempotency.KeyHeader, `"restart-1"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	s := start()
	first := put(s, "v")
	if first.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT: %d", first.StatusCode)
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(done); err != nil {
		t.Log(err) // a hard stop may report the connections it cut
	}
	s = start()
	defer s.Shutdown(context.Background())
	again := put(s, "v")
	if again.StatusCode != http.StatusNoContent || again.Header.Get(idempotency.ReplayedHeader) != "true" ||
		again.Header.Get(HeaderDot) != first.Header.Get(HeaderDot) {
		t.Fatalf("retry after a restart: %d %v, want a replay of %v", again.StatusCode, again.Header, first.Header)
	}
	if o, _, err := s.Node().Local([]byte("k")); err != nil || o.Len() != 1 {
		t.Fatalf("after the retry: %d siblings, %v; want 1", o.Len(), err)
	}
	if reused := put(s, "w"); reused.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("key reused after a restart: %d, want 422", reused.StatusCode)
	}
}
