package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/clock/clocktest"
)

// storeOnly hides that a Store is a MemStore, so a Guard reaches it
// through the Store interface alone.
type storeOnly struct{ Store }

// observation is everything a step of a history lets a caller see.
type observation struct {
	Out       []byte
	OutNil    bool
	Err       string
	Sentinels []bool // errors.Is(err, each of sentinels)
	Stored    [2]string
	Ran       bool
	Token     uint64 // FencingToken in fn
	TokenOK   bool
	Nested    string // fn's own call on its key, while it runs
	Panic     any
	Record    *Record // a Store.Claim by another process
	Len       int
}

var sentinels = []error{ErrInProgress, ErrMismatch, ErrMissingKey, ErrBadKey, ErrLockExpired,
	ErrNotClaimed, ErrCorrupt, ErrFull, context.Canceled, errRegistered}

var errRegistered = errors.New("registered failure")

type codedError struct{ code string }

func (e *codedError) Error() string { return "coded " + e.code }
func (e *codedError) Code() string  { return e.code }

// history is one side of TestDirectPathMatchesStorePath: a Guard, the
// MemStore under it, and how to move their clock on.
type history struct {
	g       *Guard
	s       *MemStore
	advance func(time.Duration)
	held    []uint64 // claims another process made and holds
}

// newHistory returns a history on a manual clock, or on the system clock
// (in a synctest bubble, where time.Sleep moves it), whose Guard reaches
// its store directly or through the Store interface alone.
func newHistory(system, direct bool, maxKeys int, lock, retain time.Duration) *history {
	h := &history{s: &MemStore{MaxKeys: maxKeys}, advance: time.Sleep}
	cfg := Config{Lock: lock, Retain: retain, Errors: map[string]error{"registered": errRegistered}}
	if !system {
		clk := clocktest.NewManual(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
		h.s.Clock, cfg.Clock, h.advance = clk, clk, clk.Advance
	}
	var s Store = h.s
	if !direct {
		s = storeOnly{h.s}
	}
	h.g = New(s, cfg)
	return h
}

// historyStep is one step of a history: a call, or another process's
// operation (see history.step), and how far the clock moves after it.
type historyStep struct {
	key     string
	fp      []byte
	kind    int
	size    int
	advance time.Duration
}

// randomHistory returns the lock, retention, MaxKeys and steps of the
// history of seed.
func randomHistory(seed uint64) (lock, retain time.Duration, maxKeys int, steps []historyStep) {
	keys := []string{"a", "b", "c", "d", strings.Repeat("k", MaxKeyBytes), "", "bad\nkey"}
	fingerprints := [][]byte{nil, []byte("x"), []byte("y"), bytes.Repeat([]byte{1}, 32),
		bytes.Repeat([]byte{2}, 32), bytes.Repeat([]byte{3}, 64), bytes.Repeat([]byte{4}, 65), bytes.Repeat([]byte{5}, 400)}
	sizes := []int{-1, 0, 1, 24, 200, 3000}
	r := rand.New(rand.NewPCG(seed, 23))
	lock = time.Duration(1+r.IntN(10)) * time.Minute
	retain = time.Duration(1+r.IntN(60)) * time.Minute
	maxKeys = []int{0, 0, 2, 3}[r.IntN(4)]
	for range 250 {
		steps = append(steps, historyStep{
			key:     keys[r.IntN(len(keys))],
			fp:      fingerprints[r.IntN(len(fingerprints))],
			kind:    r.IntN(12),
			size:    sizes[r.IntN(len(sizes))],
			advance: time.Duration(r.IntN(int(lock/time.Second)*2)) * time.Second,
		})
	}
	return lock, retain, maxKeys, steps
}

// run makes the steps of a history and returns what each saw, and any
// error checkShards found after it.
func (h *history) run(steps []historyStep, lock time.Duration) (seen []observation, broken []error) {
	for i, st := range steps {
		seen = append(seen, h.step(st.key, st.fp, st.kind, st.size, lock, fmt.Sprint("step ", i)))
		broken = append(broken, h.s.checkShards())
		h.advance(st.advance)
	}
	return seen, broken
}

// TestDirectPathMatchesStorePath runs random seeded histories through
// two Guards, one over a MemStore on its own clock (which it reaches
// directly, lending the store its clock readings, claiming or replaying
// in one hold of a shard's lock, replaying records in place and reusing
// entries) and one over an identical MemStore that it reaches through
// the Store interface alone, and requires the same observation at every
// step: results, errors, whether fn ran and under which token, the
// records another process reads, the store's size. Both stores' shards
// must be consistent after every step. The histories run on a manual
// clock, and on the system clock in synctest bubbles, which start at the
// same instant: there, a replay compares deadlines with the coarse clock,
// which reads the clock itself after a pause of more than two periods,
// and no time passes between a history's pauses.
func TestDirectPathMatchesStorePath(t *testing.T) {
	for seed := range uint64(40) {
		lock, retain, maxKeys, steps := randomHistory(seed)
		for _, system := range []bool{false, true} {
			var seen [2][]observation
			var broken [2][]error
			for i, direct := range []bool{true, false} {
				record := func() {
					h := newHistory(system, direct, maxKeys, lock, retain)
					seen[i], broken[i] = h.run(steps, lock)
					require.Equal(t, direct, h.g.mem != nil, "seed %d: the Guard took the store's fast path", seed)
				}
				if system {
					synctest.Test(t, func(*testing.T) { record() })
				} else {
					record()
				}
			}
			for step := range steps {
				where := fmt.Sprintf("seed %d, system clock %t, step %d", seed, system, step)
				require.Equal(t, seen[0][step], seen[1][step], where)
				require.NoError(t, broken[0][step], where)
				require.NoError(t, broken[1][step], where)
			}
		}
	}
}

// live returns the number of live records. The two stores hash keys to
// shards with different seeds, so they evict expired records at
// different times: both are swept before they are counted.
func (h *history) live() int {
	now := h.s.now()
	for i := range h.s.shards {
		h.s.sweep(&h.s.shards[i], now.ns)
	}
	return h.s.Len()
}

// step makes one call of a history and returns what it saw. kind picks
// what fn does, or an operation of another process on the store.
func (h *history) step(key string, fp []byte, kind, size int, lock time.Duration, where string) (o observation) {
	defer func() { o.Len = h.live() }()
	switch kind {
	case 9: // another process claims the key and holds it
		token, rec, err := h.s.Claim(context.Background(), key, fp, lock)
		o.Token, o.Record = token, rec
		o.observe(nil, err)
		if token != 0 {
			h.held = append(h.held, token)
		}
		return o
	case 10: // another process finishes (or fails to finish) a held claim
		if len(h.held) == 0 {
			return o
		}
		token := h.held[0]
		h.held = h.held[1:]
		err := h.s.Complete(context.Background(), key, token, []byte(where), time.Hour)
		if size > 100 {
			err = h.s.Release(context.Background(), key, token)
		}
		o.observe(nil, err)
		return o
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	defer func() { o.Panic = recover() }()
	out, err := h.g.Do(ctx, key, fp, func(ctx context.Context) ([]byte, error) {
		o.Ran = true
		o.Token, o.TokenOK = FencingToken(ctx)
		var result []byte
		if size >= 0 {
			result = bytes.Repeat([]byte{byte(size)}, size)
		}
		switch kind {
		case 1:
			return nil, errors.New(where)
		case 2:
			return nil, fmt.Errorf("%s: %w", where, &codedError{fmt.Sprint("c", size)})
		case 3:
			return nil, fmt.Errorf("%s: %w", where, errRegistered)
		case 4:
			return nil, Retryable(errors.New(where))
		case 5:
			panic(where)
		case 6: // the lock lapses while fn runs
			h.advance(lock)
			if size > 100 {
				return nil, errors.New(where)
			}
		case 7: // the caller leaves
			cancel()
			return nil, ctx.Err()
		case 8: // a retry arrives while fn runs
			_, nested := h.g.Do(context.Background(), key, fp, nil)
			o.Nested = fmt.Sprint(nested)
		case 11: // another process completes the claim with its token
			o.Nested = fmt.Sprint(h.s.Complete(context.Background(), key, o.Token, []byte(where), time.Hour))
		}
		return result, nil
	})
	o.observe(out, err)
	return o
}

func (o *observation) observe(out []byte, err error) {
	o.Out, o.OutNil = out, out == nil
	if err != nil {
		o.Err = err.Error()
	}
	for _, s := range sentinels {
		o.Sentinels = append(o.Sentinels, errors.Is(err, s))
	}
	if stored, ok := errors.AsType[*StoredError](err); ok {
		o.Stored = [2]string{stored.Code, stored.Message}
	}
}

// TestDirectPathConcurrent runs a Guard over a MemStore that shares its
// clock, which moves meanwhile, from many goroutines over a few keys,
// with other processes' claims and reads of the records: replays read
// entries without the shard's lock while others claim, complete, lapse,
// copy, evict and reuse them. Every result returned must be the one
// recorded under a token that the store granted for its key, and must
// keep its bytes to the end: an entry whose bytes were returned is never
// reused.
func TestDirectPathConcurrent(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	clk := clocktest.NewManual(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	s := &MemStore{Clock: clk}
	g := New(s, Config{Lock: time.Minute, Retain: time.Minute, Clock: clk})
	keys := []string{"a", "b", "c", "d"}
	var mu sync.Mutex
	granted := map[string]bool{} // "key token"
	var returned [8][][2][]byte  // by goroutine: each result, and a copy made when it was returned
	var wg sync.WaitGroup
	for w := range 8 {
		r := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			for range 2000 {
				if r.IntN(50) == 0 {
					clk.Advance(time.Duration(r.IntN(20)) * time.Second)
				}
				key := keys[r.IntN(len(keys))]
				if r.IntN(10) == 0 { // another process reads the record, or claims the key and leaves it
					if _, _, err := s.Claim(context.Background(), key, []byte("fp"), time.Minute); err != nil {
						t.Errorf("Claim(%q): %v", key, err)
						return
					}
					continue
				}
				out, err := g.Do(context.Background(), key, []byte("fp"), func(ctx context.Context) ([]byte, error) {
					token, _ := FencingToken(ctx)
					mu.Lock()
					granted[fmt.Sprint(key, " ", token)] = true
					mu.Unlock()
					return []byte(fmt.Sprint(key, " ", token)), nil
				})
				switch {
				case errors.Is(err, ErrInProgress), errors.Is(err, ErrLockExpired):
				case err != nil:
					t.Errorf("Do(%q): %v", key, err)
					return
				default:
					mu.Lock()
					ok := granted[string(out)] && strings.HasPrefix(string(out), key+" ")
					mu.Unlock()
					if !ok {
						t.Errorf("Do(%q) = %q: no claim on the key made it", key, out)
						return
					}
					returned[w] = append(returned[w], [2][]byte{out, bytes.Clone(out)})
				}
			}
		})
	}
	wg.Wait()
	for _, results := range returned {
		for _, r := range results {
			if !bytes.Equal(r[0], r[1]) {
				t.Fatalf("a result returned as %q reads %q since", r[1], r[0])
			}
		}
	}
}

// TestDirectPathEntrySizes: results that fit beside the fingerprint in
// the claim's entry, exactly or by a byte, and those that do not, are
// recorded whole and replayed whole, capped at their length.
func TestDirectPathEntrySizes(t *testing.T) {
	ctx := context.Background()
	g := New(&MemStore{}, Config{})
	for _, fpLen := range []int{0, 32, 88, 89, 90, 96, 97} {
		for outLen := range 100 {
			key := fmt.Sprint(fpLen, "-", outLen)
			fp := bytes.Repeat([]byte{byte(fpLen)}, fpLen)
			want := bytes.Repeat([]byte{byte(outLen)}, outLen)
			out, err := g.Do(ctx, key, fp, func(context.Context) ([]byte, error) { return bytes.Clone(want), nil })
			require.NoError(t, err, key)
			require.Equal(t, want, out, key)
			clear(out)
			for range 2 {
				out, err = g.Do(ctx, key, fp, nil)
				require.NoError(t, err, key)
				require.Equal(t, want, out, key)
				require.Equal(t, len(out), cap(out), key)
			}
			_, rec, err := g.mem.Claim(ctx, key, nil, time.Minute)
			require.NoError(t, err, key)
			require.Equal(t, fp, rec.Fingerprint, key)
		}
	}
}

// TestDirectPathReusesEntries: once it expires, the entry of a record
// that its claimant finished and that nobody read is reused for the next
// claim in its shard; the entry of a record that was replayed, read by
// Claim or by a call with another fingerprint, completed through the
// Store, released, or whose lock lapsed is not, and the bytes a replay
// returned keep their value.
func TestDirectPathReusesEntries(t *testing.T) {
	ctx := context.Background()
	fp := []byte("fp")
	result := func(s string) func(context.Context) ([]byte, error) {
		return func(context.Context) ([]byte, error) { return []byte(s), nil }
	}
	// Each case leaves a record of key or a claim of it behind, and
	// returns its entry, read while it held the key, and what a replay
	// returned.
	for _, tc := range []struct {
		name   string
		reused bool
		finish func(t *testing.T, h *history, key string) (e *memEntry, replayed []byte)
	}{
		{"unread", true, func(t *testing.T, h *history, key string) (*memEntry, []byte) {
			_, err := h.g.Do(ctx, key, fp, result("first"))
			require.NoError(t, err)
			return h.entry(key), nil
		}},
		{"replayed", false, func(t *testing.T, h *history, key string) (*memEntry, []byte) {
			_, err := h.g.Do(ctx, key, fp, result("first"))
			require.NoError(t, err)
			out, err := h.g.Do(ctx, key, fp, nil)
			require.NoError(t, err)
			return h.entry(key), out
		}},
		{"read by Claim", false, func(t *testing.T, h *history, key string) (*memEntry, []byte) {
			_, err := h.g.Do(ctx, key, fp, result("first"))
			require.NoError(t, err)
			_, rec, err := h.s.Claim(ctx, key, nil, time.Minute)
			require.NoError(t, err)
			require.NotNil(t, rec)
			return h.entry(key), nil
		}},
		{"mismatched", false, func(t *testing.T, h *history, key string) (*memEntry, []byte) {
			_, err := h.g.Do(ctx, key, fp, result("first"))
			require.NoError(t, err)
			_, err = h.g.Do(ctx, key, []byte("pf"), nil)
			require.ErrorIs(t, err, ErrMismatch)
			return h.entry(key), nil
		}},
		{"completed through the Store", false, func(t *testing.T, h *history, key string) (*memEntry, []byte) {
			token, _, err := h.s.Claim(ctx, key, fp, time.Minute)
			require.NoError(t, err)
			require.NoError(t, h.s.Complete(ctx, key, token, []byte("first"), time.Second))
			return h.entry(key), nil
		}},
		{"released", false, func(t *testing.T, h *history, key string) (e *memEntry, _ []byte) {
			_, err := h.g.Do(ctx, key, fp, func(context.Context) ([]byte, error) {
				e = h.entry(key)
				return nil, Retryable(errors.New("again"))
			})
			require.Error(t, err)
			return e, nil
		}},
		{"lapsed", false, func(t *testing.T, h *history, key string) (e *memEntry, _ []byte) {
			_, err := h.g.Do(ctx, key, fp, func(context.Context) ([]byte, error) {
				e = h.entry(key)
				h.advance(time.Minute)
				return []byte("late"), nil
			})
			require.ErrorIs(t, err, ErrLockExpired)
			return e, nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistory(false, true, 0, time.Minute, time.Second)
			keys := keysInOneShard(h.s, 2)
			old, replayed := tc.finish(t, h, keys[0])
			require.NotNil(t, old)
			h.advance(2 * time.Minute)
			_, err := h.g.Do(ctx, keys[1], fp, result("second"))
			require.NoError(t, err)
			require.NoError(t, h.s.checkShards())
			require.Equal(t, tc.reused, h.entry(keys[1]) == old, "the new record's entry is the old one's")
			if replayed != nil {
				require.Equal(t, "first", string(replayed))
			}
		})
	}
}

// entry returns key's entry in the history's store, or nil; reading it
// lends nothing.
func (h *history) entry(key string) *memEntry {
	sh, hash := h.s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.keys.find(sh.slots, hash, key)
}

// keysInOneShard returns n keys that s keeps in one shard.
func keysInOneShard(s *MemStore, n int) []string {
	var keys []string
	var first *memShard
	for i := 0; len(keys) < n; i++ {
		key := fmt.Sprint("key-", i)
		if sh, _ := s.shard(key); first == nil || sh == first {
			first = sh
			keys = append(keys, key)
		}
	}
	return keys
}
