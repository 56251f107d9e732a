// Package idempotencytest checks implementations of [idempotency.Store]
// against the contract written in that interface's documentation, the way
// testing/fstest checks file systems.
//
// # Usage
//
//	func TestMyStore(t *testing.T) {
//		idempotencytest.TestStore(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
//			clk := clocktest.NewManual(time.Unix(1e9, 0))
//			s := mystore.Open(t, mystore.Options{Clock: clk}) // empty
//			return s, clk.Advance
//		})
//	}
//
// # Guarantees
//
// A store that passes satisfies, under its own clock:
//
//   - exactly one of any number of concurrent Claims of a free key owns
//     it, and at no time do two callers own one key;
//   - Claim of a live key returns a copy of its record, whatever the
//     fingerprint, and changes nothing;
//   - a claim lapses exactly at LockedUntil = claim time + lock and a Done
//     record exactly at ExpiresAt = completion time + retain, after which
//     the key is free (a crashed executor's claim can be taken over);
//   - every Claim that grants ownership returns a fencing token that is
//     not 0, differs from every other token the store granted, on any
//     key and from any goroutine, and is greater than every token granted
//     before the Claim began; the record keeps it, through Complete;
//   - Complete and Release act only on a live in-progress claim under
//     the token they are given and otherwise change nothing and return
//     an error wrapping idempotency.ErrNotClaimed: in particular a caller
//     whose claim lapsed and was taken over cannot complete or release
//     its successor's claim;
//   - records are copies in both directions: callers' slices are never
//     retained or shared;
//   - every method fails with an error wrapping context.Canceled on a
//     cancelled context;
//   - random seeded histories of Claim, Complete, Release and clock moves
//     match a reference model exactly.
package idempotencytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/idempotency"
)

// The durations the suite uses; a store must support at least this
// resolution (one millisecond).
const (
	lock   = 10 * time.Second
	retain = time.Hour
)

// TestStore runs the conformance suite. newStore is called once per
// subtest and returns an empty store and advance, a function that moves
// the store's clock forward by d. The store's clock must not move by
// itself, since the suite checks deadlines exactly; a store on a database
// clock should take its time from a clock it is given, for this test.
func TestStore(t *testing.T, newStore func(t *testing.T) (idempotency.Store, func(d time.Duration))) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"ClaimFree", testClaimFree},
		{"ClaimLive", testClaimLive},
		{"ClaimRace", testClaimRace},
		{"MutualExclusion", testMutualExclusion},
		{"Tokens", testTokens},
		{"Complete", testComplete},
		{"CompleteUnclaimed", testCompleteUnclaimed},
		{"Release", testRelease},
		{"ReleaseUnclaimed", testReleaseUnclaimed},
		{"WrongToken", testWrongToken},
		{"LockExpiry", testLockExpiry},
		{"Takeover", testTakeover},
		{"LateOwner", testLateOwner},
		{"Retention", testRetention},
		{"Copies", testCopies},
		{"Canceled", testCanceled},
		{"Model", testModel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, advance := newStore(t)
			s := &suite{t: t, store: store, advance: advance}
			s.start = s.probeNow()
			tt.fn(t, s)
		})
	}
}

// suite holds one subtest's store, tracks the store's clock as start
// plus the total advanced, once probeNow has measured start, and the
// last token the store granted to the suite's sequential claims.
type suite struct {
	t       *testing.T
	store   idempotency.Store
	advance func(time.Duration)
	start   time.Time
	elapsed time.Duration
	last    uint64
}

var ctx = context.Background()

func (s *suite) now() time.Time { return s.start.Add(s.elapsed) }

func (s *suite) move(d time.Duration) {
	s.advance(d)
	s.elapsed += d
}

// probeNow measures the store's clock from the LockedUntil of a claim on
// a key no test uses, and releases it.
func (s *suite) probeNow() time.Time {
	s.t.Helper()
	const probe = "idempotencytest-probe"
	token := s.mustOwn(probe, nil)
	rec := s.claim(probe, nil)
	if rec.State != idempotency.InProgress {
		s.t.Fatalf("Claim of a claimed key: got %+v, want the in-progress record", rec)
	}
	if err := s.store.Release(ctx, probe, token); err != nil {
		s.t.Fatalf("Release of a claimed key: %v", err)
	}
	return rec.LockedUntil.Add(-lock)
}

// claim claims a key that must be live and returns its record.
func (s *suite) claim(key string, fp []byte) *idempotency.Record {
	s.t.Helper()
	token, rec, err := s.store.Claim(ctx, key, fp, lock)
	switch {
	case err != nil:
		s.t.Fatalf("Claim(%q): %v", key, err)
	case rec == nil:
		s.t.Fatalf("Claim(%q) of a live key granted ownership under token %d, want the live record", key, token)
	case token != 0:
		s.t.Fatalf("Claim(%q) of a live key returned token %d with the record, want 0", key, token)
	}
	return rec
}

// mustOwn claims a key that must be free and returns the claim's token,
// checking that it is greater than every token granted before.
func (s *suite) mustOwn(key string, fp []byte) uint64 {
	s.t.Helper()
	token, rec, err := s.store.Claim(ctx, key, fp, lock)
	switch {
	case err != nil:
		s.t.Fatalf("Claim(%q): %v", key, err)
	case rec != nil:
		s.t.Fatalf("Claim(%q) of a free key returned %+v, want ownership", key, rec)
	case token == 0:
		s.t.Fatalf("Claim(%q) granted ownership under token 0", key)
	case token <= s.last:
		s.t.Fatalf("Claim(%q) granted token %d after token %d: tokens must increase", key, token, s.last)
	}
	s.last = token
	return token
}

func (s *suite) complete(key string, token uint64, resp []byte) {
	s.t.Helper()
	if err := s.store.Complete(ctx, key, token, resp, retain); err != nil {
		s.t.Fatalf("Complete(%q, %d) of a claimed key: %v", key, token, err)
	}
}

// refused checks that Complete and Release of key under token both fail
// with ErrNotClaimed and that key's record, if any, is then still want.
func (s *suite) refused(key string, token uint64, want *record, why string) {
	s.t.Helper()
	if err := s.store.Complete(ctx, key, token, []byte("stale"), retain); !errors.Is(err, idempotency.ErrNotClaimed) {
		s.t.Fatalf("Complete(%q, %d) %s: %v, want ErrNotClaimed", key, token, why, err)
	}
	if err := s.store.Release(ctx, key, token); !errors.Is(err, idempotency.ErrNotClaimed) {
		s.t.Fatalf("Release(%q, %d) %s: %v, want ErrNotClaimed", key, token, why, err)
	}
	if want != nil {
		s.check(s.claim(key, nil), *want, key)
	}
}

// check compares a record with the expected one, looking only at the
// deadline that the state makes meaningful.
func (s *suite) check(got *idempotency.Record, want record, key string) {
	s.t.Helper()
	if err := want.diff(got, key); err != nil {
		s.t.Fatal(err)
	}
}

// record is the reference model's record.
type record struct {
	fp       []byte
	done     bool
	resp     []byte
	deadline time.Time
	token    uint64
}

func (want record) diff(got *idempotency.Record, key string) error {
	if got == nil {
		return fmt.Errorf("key %q: got ownership, want the live record %+v", key, want)
	}
	state, deadline := idempotency.InProgress, got.LockedUntil
	if want.done {
		state, deadline = idempotency.Done, got.ExpiresAt
	}
	switch {
	case got.Key != key:
		return fmt.Errorf("key %q: record has Key %q", key, got.Key)
	case got.State != state:
		return fmt.Errorf("key %q: State %v, want %v", key, got.State, state)
	case !bytes.Equal(got.Fingerprint, want.fp):
		return fmt.Errorf("key %q: Fingerprint %q, want %q", key, got.Fingerprint, want.fp)
	case want.done && !bytes.Equal(got.Response, want.resp):
		return fmt.Errorf("key %q: Response %q, want %q", key, got.Response, want.resp)
	case !deadline.Equal(want.deadline):
		return fmt.Errorf("key %q: deadline %v, want %v", key, deadline, want.deadline)
	case got.Token != want.token:
		return fmt.Errorf("key %q: Token %d, want %d", key, got.Token, want.token)
	}
	return nil
}

func testClaimFree(t *testing.T, s *suite) {
	s.mustOwn("a", []byte("fp"))
	s.mustOwn("b", []byte("fp")) // keys are independent
}

func testClaimLive(t *testing.T, s *suite) {
	token := s.mustOwn("k", []byte("fp1"))
	want := record{fp: []byte("fp1"), deadline: s.now().Add(lock), token: token}
	s.move(time.Second)
	s.check(s.claim("k", []byte("fp1")), want, "k")
	// Another fingerprint gets the record too, unchanged: the Guard decides.
	s.check(s.claim("k", []byte("fp2")), want, "k")
	s.check(s.claim("k", nil), want, "k")
}

// testClaimRace has goroutines race for keys: exactly one owns each, and
// no two claims anywhere get the same token.
func testClaimRace(t *testing.T, s *suite) {
	const goroutines, keys = 16, 32
	var owners [keys]atomic.Int32
	var mu sync.Mutex
	tokens := map[uint64]string{}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for g := range goroutines {
		wg.Go(func() {
			<-start
			for k := range keys {
				k := (k + g) % keys // different orders, all contending
				key := fmt.Sprint("race-", k)
				token, rec, err := s.store.Claim(ctx, key, []byte{byte(g)}, lock)
				if err != nil {
					t.Errorf("Claim: %v", err)
					return
				}
				if rec != nil {
					continue
				}
				owners[k].Add(1)
				mu.Lock()
				if other, dup := tokens[token]; dup {
					t.Errorf("token %d granted for %q and for %q", token, other, key)
				}
				tokens[token] = key
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	for k := range owners {
		if n := owners[k].Load(); n != 1 {
			t.Errorf("key %d: %d of %d concurrent Claims owned it, want exactly 1", k, n, goroutines)
		}
	}
}

// testMutualExclusion runs claim-release cycles on a few keys from many
// goroutines and checks that no two ever own one key at once, and that
// every claim a goroutine wins has a greater token than its last one.
func testMutualExclusion(t *testing.T, s *suite) {
	const goroutines, keys, rounds = 8, 4, 200
	var holders [keys]atomic.Int32
	var wins atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			var last uint64
			for range rounds {
				k := r.IntN(keys)
				key := fmt.Sprint("mutex-", k)
				token, rec, err := s.store.Claim(ctx, key, nil, lock)
				if err != nil || rec != nil {
					if err != nil {
						t.Errorf("Claim: %v", err)
					}
					continue
				}
				wins.Add(1)
				if token <= last {
					t.Errorf("token %d after this goroutine's %d: tokens must increase", token, last)
				}
				last = token
				if n := holders[k].Add(1); n != 1 {
					t.Errorf("key %d owned by %d callers at once", k, n)
				}
				holders[k].Add(-1)
				if err := s.store.Release(ctx, key, token); err != nil {
					t.Errorf("Release by the owner: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if wins.Load() == 0 {
		t.Error("no Claim ever succeeded")
	}
}

// testTokens checks that tokens increase across keys, across a release
// and a re-claim of one key, and that the record keeps its claim's token.
func testTokens(t *testing.T, s *suite) {
	seen := map[uint64]bool{}
	for i := range 20 {
		key := fmt.Sprint("tok-", i%5)
		token := s.mustOwn(key, nil) // checks the increase
		if seen[token] {
			t.Fatalf("token %d granted twice", token)
		}
		seen[token] = true
		s.check(s.claim(key, nil), record{deadline: s.now().Add(lock), token: token}, key)
		if i%2 == 0 {
			if err := s.store.Release(ctx, key, token); err != nil {
				t.Fatalf("Release(%q, %d): %v", key, token, err)
			}
			continue
		}
		s.complete(key, token, []byte("r"))
		s.check(s.claim(key, nil), record{done: true, resp: []byte("r"), deadline: s.now().Add(retain), token: token}, key)
		s.move(retain) // forget it, so the key is claimed again
	}
}

func testComplete(t *testing.T, s *suite) {
	token := s.mustOwn("k", []byte("fp"))
	s.move(time.Second)
	s.complete("k", token, []byte("response"))
	want := record{fp: []byte("fp"), done: true, resp: []byte("response"), deadline: s.now().Add(retain), token: token}
	s.check(s.claim("k", []byte("fp")), want, "k")
	s.check(s.claim("k", []byte("other")), want, "k")
	s.refused("k", token, &want, "of a Done key") // not twice, nor released

	// An empty response is a response.
	token = s.mustOwn("empty", nil)
	s.complete("empty", token, nil)
	rec := s.claim("empty", nil)
	if rec.State != idempotency.Done || len(rec.Response) != 0 {
		t.Fatalf("Claim after Complete with no response: %+v, want Done and empty", rec)
	}
}

func testCompleteUnclaimed(t *testing.T, s *suite) {
	for _, token := range []uint64{0, 1, s.last + 1, math.MaxUint64} {
		if err := s.store.Complete(ctx, "never", token, []byte("x"), retain); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Complete of an unclaimed key under token %d: %v, want ErrNotClaimed", token, err)
		}
	}
	s.mustOwn("never", nil) // and it created nothing
}

func testRelease(t *testing.T, s *suite) {
	token := s.mustOwn("k", []byte("fp1"))
	if err := s.store.Release(ctx, "k", token); err != nil {
		t.Fatalf("Release of a claimed key: %v", err)
	}
	s.refused("k", token, nil, "after Release")
	token = s.mustOwn("k", []byte("fp2"))
	s.check(s.claim("k", nil), record{fp: []byte("fp2"), deadline: s.now().Add(lock), token: token}, "k")
}

func testReleaseUnclaimed(t *testing.T, s *suite) {
	for _, token := range []uint64{0, 1, s.last + 1, math.MaxUint64} {
		if err := s.store.Release(ctx, "never", token); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Release of an unclaimed key under token %d: %v, want ErrNotClaimed", token, err)
		}
	}
	s.mustOwn("never", nil)
}

// testWrongToken: Complete and Release under a token other than the
// claim's — another key's, one never granted, 0 — change nothing.
func testWrongToken(t *testing.T, s *suite) {
	other := s.mustOwn("other", []byte("o"))
	token := s.mustOwn("k", []byte("fp"))
	want := record{fp: []byte("fp"), deadline: s.now().Add(lock), token: token}
	for _, wrong := range []uint64{0, other, token + 1, token - 1, math.MaxUint64} {
		s.refused("k", wrong, &want, fmt.Sprintf("of a claim under token %d", token))
	}
	s.complete("k", token, []byte("r"))
	s.complete("other", other, []byte("o"))
}

func testLockExpiry(t *testing.T, s *suite) {
	token := s.mustOwn("k", []byte("fp"))
	want := record{fp: []byte("fp"), deadline: s.now().Add(lock), token: token}
	s.move(lock - time.Millisecond)
	s.check(s.claim("k", []byte("fp")), want, "k")
	s.move(time.Millisecond) // now == LockedUntil: lapsed
	s.refused("k", token, nil, "of a lapsed claim")
	s.mustOwn("k", []byte("fp"))
}

// testTakeover: an executor claims and crashes; after its lock lapses
// another takes the key over with another payload and completes it.
func testTakeover(t *testing.T, s *suite) {
	s.mustOwn("k", []byte("crashed"))
	s.move(lock)
	token := s.mustOwn("k", []byte("second"))
	s.complete("k", token, []byte("ok"))
	want := record{fp: []byte("second"), done: true, resp: []byte("ok"), deadline: s.now().Add(retain), token: token}
	s.check(s.claim("k", []byte("crashed")), want, "k")
}

// testLateOwner: an executor's lock lapses while it runs and another
// takes the key over; the late owner's Complete and Release, before and
// after its successor's Complete, are refused and change nothing.
func testLateOwner(t *testing.T, s *suite) {
	late := s.mustOwn("k", []byte("fp"))
	s.move(lock + time.Second)
	token := s.mustOwn("k", []byte("fp")) // greater than late: checked
	want := record{fp: []byte("fp"), deadline: s.now().Add(lock), token: token}
	s.refused("k", late, &want, "by the owner of a lapsed claim taken over")
	s.complete("k", token, []byte("successor"))
	want = record{fp: []byte("fp"), done: true, resp: []byte("successor"), deadline: s.now().Add(retain), token: token}
	s.refused("k", late, &want, "by the owner of a lapsed claim, after its successor's Complete")
}

func testRetention(t *testing.T, s *suite) {
	token := s.mustOwn("k", []byte("fp"))
	s.complete("k", token, []byte("r"))
	want := record{fp: []byte("fp"), done: true, resp: []byte("r"), deadline: s.now().Add(retain), token: token}
	s.move(retain - time.Millisecond)
	s.check(s.claim("k", nil), want, "k")
	s.move(time.Millisecond) // now == ExpiresAt: forgotten
	s.mustOwn("k", []byte("new"))
}

func testCopies(t *testing.T, s *suite) {
	fp := []byte("fp")
	token := s.mustOwn("k", fp)
	fp[0] = 'X' // the store must have copied it
	resp := []byte("response")
	s.complete("k", token, resp)
	resp[0] = 'X'
	want := record{fp: []byte("fp"), done: true, resp: []byte("response"), deadline: s.now().Add(retain), token: token}
	got := s.claim("k", nil)
	s.check(got, want, "k")
	got.Fingerprint[0], got.Response[0] = 'Y', 'Y' // nor share its own
	s.check(s.claim("k", nil), want, "k")
}

func testCanceled(t *testing.T, s *suite) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := s.store.Claim(cctx, "k", nil, lock); !errors.Is(err, context.Canceled) {
		t.Errorf("Claim with a cancelled context: %v, want context.Canceled", err)
	}
	token := s.mustOwn("k", nil)
	if err := s.store.Complete(cctx, "k", token, nil, retain); !errors.Is(err, context.Canceled) {
		t.Errorf("Complete with a cancelled context: %v, want context.Canceled", err)
	}
	if err := s.store.Release(cctx, "k", token); !errors.Is(err, context.Canceled) {
		t.Errorf("Release with a cancelled context: %v, want context.Canceled", err)
	}
	s.check(s.claim("k", nil), record{deadline: s.now().Add(lock), token: token}, "k") // untouched
}

// testModel runs random histories against a reference model. Complete
// and Release go half the time under the key's latest token and half
// under a stale or foreign one.
func testModel(t *testing.T, s *suite) {
	const seeds, steps, keys = 8, 300, 4
	for seed := range uint64(seeds) {
		r := rand.New(rand.NewPCG(seed, 0x1de))
		model := map[string]record{}
		latest := map[string]uint64{}            // the last token granted per key, live or not
		prefix := fmt.Sprintf("model-%d-", seed) // fresh keys per seed
		for step := range steps {
			key := fmt.Sprint(prefix, r.IntN(keys))
			fail := func(format string, args ...any) {
				t.Helper()
				t.Fatalf("seed %d step %d: %s", seed, step, fmt.Sprintf(format, args...))
			}
			live, ok := model[key]
			if ok && !s.now().Before(live.deadline) {
				ok = false
				delete(model, key)
			}
			token := latest[key]
			if r.IntN(2) == 0 {
				token = r.Uint64N(s.last + 2) // most likely another claim's, or none
			}
			owner := ok && !live.done && token == live.token
			switch op := r.IntN(10); {
			case op < 4: // Claim
				fp := []byte{byte(r.IntN(2))}
				got, rec, err := s.store.Claim(ctx, key, fp, lock)
				if err != nil {
					fail("Claim: %v", err)
				}
				if !ok {
					if rec != nil || got <= s.last {
						fail("Claim of a free key returned token %d (last %d) and %+v", got, s.last, rec)
					}
					s.last, latest[key] = got, got
					model[key] = record{fp: fp, deadline: s.now().Add(lock), token: got}
				} else if err := live.diff(rec, key); err != nil {
					fail("%v", err)
				}
			case op < 6: // Complete
				resp := []byte(fmt.Sprint("resp-", step))
				err := s.store.Complete(ctx, key, token, resp, retain)
				if owner {
					if err != nil {
						fail("Complete of a live claim under its token: %v", err)
					}
					model[key] = record{fp: live.fp, done: true, resp: resp, deadline: s.now().Add(retain), token: token}
				} else if !errors.Is(err, idempotency.ErrNotClaimed) {
					fail("Complete without a live claim under token %d: %v, want ErrNotClaimed", token, err)
				}
			case op < 8: // Release
				err := s.store.Release(ctx, key, token)
				if owner {
					if err != nil {
						fail("Release of a live claim under its token: %v", err)
					}
					delete(model, key)
				} else if !errors.Is(err, idempotency.ErrNotClaimed) {
					fail("Release without a live claim under token %d: %v, want ErrNotClaimed", token, err)
				}
			default: // the clock moves, by up to 1.5 locks, sometimes onto a deadline
				d := time.Duration(r.Int64N(int64(lock*3/2)/int64(time.Millisecond))) * time.Millisecond
				if ok && r.IntN(3) == 0 {
					d = live.deadline.Sub(s.now())
				}
				s.move(d)
			}
		}
	}
}
