package idempotency

import (
	"bytes"
	"context"
	"fmt"
	"github.com/distkit/distkit/internal/minheap"
	"hash/maphash"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
)

// memShards is the number of independently locked shards of a MemStore.
const memShards = 32

// MemStore is an in-memory [Store] for a single process: tests, and
// services that run one instance. It is sharded by key so that claims on
// different keys rarely contend.
//
// Expired records are removed incrementally: every operation on a shard
// first drops that shard's records whose deadline has passed (a min-heap
// by deadline makes this O(log n) per removed record and O(1) when there
// is none), so memory tracks the live records plus the expired records of
// shards nobody has touched since. The heap is lazy: Complete and Release
// leave an entry's old deadline in it, to be skipped when it comes up or
// dropped when such stale items are most of the heap.
//
// On the system clock, the store measures time on the monotonic clock,
// as comparisons of time.Time values do: a record's times are the wall
// time of the store's first use plus the monotonic time elapsed since, so
// a step of the wall clock (a manual change, an NTP step) moves no
// deadline.
//
// A [Guard] over a MemStore on the Guard's own clock (the same
// clock.Clock value, or both the system clock) reads the clock once per
// step and lends it to the store, and answers a replay from the record
// in place instead of a copy; other Guards use the Store methods.
//
// The zero value is an empty, unbounded store on the system clock, ready
// to use. Set Clock and MaxKeys before first use and not after. MemStore
// is safe for concurrent use and must not be copied after first use.
type MemStore struct {
	// Clock is the time source for lock and retention deadlines;
	// nil means clock.System (see above for how it is read).
	Clock clock.Clock
	// MaxKeys bounds the number of records the store holds; Claim of a
	// new key beyond it returns ErrFull. Expired records are evicted to
	// make room; live ones, and in-progress claims in particular, never
	// are. Zero or negative means no bound.
	MaxKeys int

	init   sync.Once
	seed   maphash.Seed
	base   time.Time     // when the system clock is read: see now
	n      atomic.Int64  // records held across all shards
	tokens atomic.Uint64 // the last fencing token granted
	shards [memShards]memShard
}

var _ Store = (*MemStore)(nil)

type memShard struct {
	mu    sync.Mutex
	m     map[string]*memEntry
	q     minheap.Heap[expiryItem]
	stale int           // items in q known to be stale
	_     [64 - 48]byte // pad to a cache line: shards are locked by different cores
}

type memEntry struct {
	rec  Record
	due  int64    // rec's deadline in Unix nanoseconds
	gone bool     // released or evicted: no longer in the shard's map
	fp   [64]byte // rec.Fingerprint when it fits (a SHA-512 sum does), saving an allocation
}

// Claim implements [Store.Claim]. Tokens count up from 1 across the
// whole store. It returns ErrFull if key is new and the store already
// holds MaxKeys live records, an error if lock is not positive, and
// ctx.Err() if ctx is done.
func (s *MemStore) Claim(ctx context.Context, key string, fingerprint []byte, lock time.Duration) (uint64, *Record, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if lock <= 0 {
		return 0, nil, fmt.Errorf("idempotency: Claim with non-positive lock %v", lock)
	}
	c, err := s.claimAt(key, fingerprint, s.now(), lock)
	if err != nil || c.e != nil {
		return c.token, nil, err
	}
	return 0, c.live.clone(), nil
}

// memClaim is the outcome of a claimAt: either a new claim (token and
// its shard and entry, for completeAt) or the live record, a shallow
// copy whose slices share the entry's bytes. Those bytes are never
// written again once the entry holds them, so the copy may be read
// without the shard's lock, but not written.
type memClaim struct {
	token uint64
	sh    *memShard
	e     *memEntry
	live  Record
}

// claimAt is Claim at the time now, read from the store's clock, for a
// positive lock.
func (s *MemStore) claimAt(key string, fingerprint []byte, now time.Time, lock time.Duration) (memClaim, error) {
	sh := s.shard(key)
	c, err := s.claimIn(sh, key, fingerprint, now, now.Add(lock))
	if err == ErrFull {
		// Other shards may hold expired records: evict them and retry once.
		for i := range s.shards {
			s.sweep(&s.shards[i], now)
		}
		c, err = s.claimIn(sh, key, fingerprint, now, now.Add(lock))
	}
	return c, err
}

func (s *MemStore) claimIn(sh *memShard, key string, fingerprint []byte, now, until time.Time) (memClaim, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepLocked(sh, now)
	if e, ok := sh.m[key]; ok { // every expired record was just swept
		return memClaim{live: e.rec}, nil
	}
	if !s.reserve() {
		return memClaim{}, ErrFull
	}
	// Taken inside the shard's lock, so a claim that returned before
	// another began has the smaller token.
	token := s.tokens.Add(1)
	e := &memEntry{rec: Record{
		Key:         key,
		State:       InProgress,
		LockedUntil: until,
		Token:       token,
	}, due: until.UnixNano()}
	if n := len(fingerprint); n <= len(e.fp) {
		e.rec.Fingerprint = e.fp[:n:n]
		copy(e.rec.Fingerprint, fingerprint)
	} else {
		e.rec.Fingerprint = bytes.Clone(fingerprint)
	}
	sh.m[key] = e
	sh.q.Push(expiryItem{e.due, e})
	return memClaim{token: token, sh: sh, e: e}, nil
}

// Complete implements [Store.Complete]. It returns an error wrapping
// ErrNotClaimed if key has no live in-progress claim under token, an
// error if retain is not positive, and ctx.Err() if ctx is done.
func (s *MemStore) Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error {
	if retain <= 0 {
		return fmt.Errorf("idempotency: Complete with non-positive retain %v", retain)
	}
	return s.onClaim(ctx, key, token, func(sh *memShard, e *memEntry, now time.Time) {
		kept := bytes.Clone(response)
		if kept == nil {
			kept = []byte{}
		}
		complete(sh, e, kept, now, retain)
	})
}

// completeAt is Complete, at the time now read from the store's clock,
// of the claim c that claimAt made, for a positive retain. The store
// keeps response itself, not a copy: the caller must not write to it
// again.
func (s *MemStore) completeAt(c memClaim, key string, response []byte, now time.Time, retain time.Duration) error {
	c.sh.mu.Lock()
	defer c.sh.mu.Unlock()
	s.sweepLocked(c.sh, now)
	// An entry leaves the map for good (gone) or stays with its token.
	if c.e.gone || c.e.rec.State != InProgress {
		return notClaimed(key, c.token)
	}
	complete(c.sh, c.e, response, now, retain)
	return nil
}

// complete turns e, a live claim, into a Done record holding response,
// which is not nil and never written again; sh.mu is held.
func complete(sh *memShard, e *memEntry, response []byte, now time.Time, retain time.Duration) {
	e.rec.State = Done
	e.rec.Response = response
	e.rec.ExpiresAt = now.Add(retain)
	e.due = e.rec.ExpiresAt.UnixNano()
	sh.q.Push(expiryItem{e.due, e})
	sh.dropped() // the claim's item
}

func notClaimed(key string, token uint64) error {
	return fmt.Errorf("%w: %q under token %d", ErrNotClaimed, key, token)
}

// Release implements [Store.Release]. It returns an error wrapping
// ErrNotClaimed if key has no live in-progress claim under token, and
// ctx.Err() if ctx is done.
func (s *MemStore) Release(ctx context.Context, key string, token uint64) error {
	return s.onClaim(ctx, key, token, func(sh *memShard, e *memEntry, _ time.Time) {
		e.gone = true
		sh.dropped() // its item
		delete(sh.m, key)
		s.n.Add(-1)
	})
}

// Len returns the number of records the store holds, counting expired
// records that have not been evicted yet.
func (s *MemStore) Len() int { return int(s.n.Load()) }

// onClaim runs fn, with key's shard locked, on key's live in-progress
// entry claimed under token, or returns ErrNotClaimed.
func (s *MemStore) onClaim(ctx context.Context, key string, token uint64, fn func(sh *memShard, e *memEntry, now time.Time)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepLocked(sh, now)
	e, ok := sh.m[key]
	if !ok || e.rec.State != InProgress || e.rec.Token != token {
		return notClaimed(key, token)
	}
	fn(sh, e, now)
	return nil
}

// reserve counts one more record, unless the store is at MaxKeys.
func (s *MemStore) reserve() bool {
	if s.MaxKeys <= 0 {
		s.n.Add(1)
		return true
	}
	for {
		n := s.n.Load()
		if n >= int64(s.MaxKeys) {
			return false
		}
		if s.n.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

func (s *MemStore) sweep(sh *memShard, now time.Time) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepLocked(sh, now)
}

// sweepLocked evicts the shard's records whose deadline is at or before
// now; sh.mu is held.
func (s *MemStore) sweepLocked(sh *memShard, now time.Time) {
	t := now.UnixNano()
	for len(sh.q) > 0 && sh.q[0].due <= t {
		it := sh.q.Pop()
		if it.e.gone || it.e.due != it.due {
			sh.stale = max(sh.stale-1, 0)
			continue
		}
		it.e.gone = true
		delete(sh.m, it.e.rec.Key)
		s.n.Add(-1)
	}
}

func (s *MemStore) shard(key string) *memShard {
	s.init.Do(s.setup)
	return &s.shards[maphash.String(s.seed, key)%memShards]
}

func (s *MemStore) setup() {
	s.seed = maphash.MakeSeed()
	for i := range s.shards {
		s.shards[i].m = make(map[string]*memEntry)
	}
	s.base = time.Now()
}

// now reads the store's clock. The system clock is read as s.base plus
// the monotonic time elapsed since: half the cost of time.Now, and
// deadlines that a step of the wall clock does not move.
func (s *MemStore) now() time.Time {
	switch s.Clock.(type) {
	case nil, clock.System:
		s.init.Do(s.setup)
		return s.base.Add(time.Since(s.base))
	}
	return s.Clock.Now()
}

// readsClock reports whether the store's clock is c: clock.System for a
// nil Clock, or a Clock equal to c.
func (s *MemStore) readsClock(c clock.Clock) bool {
	mine := s.Clock
	if mine == nil {
		mine = clock.System{}
	}
	t := reflect.TypeOf(mine)
	return t == reflect.TypeOf(c) && t.Comparable() && mine == c
}

// clone returns a deep copy of r. A record of up to 384 bytes of
// fingerprint and response is allocated together with them; a larger one
// takes the record and one buffer for both slices.
func (r *Record) clone() *Record {
	var c *Record
	var buf []byte
	switch n := len(r.Fingerprint) + len(r.Response); {
	case n <= 64:
		b := new(recordWith64)
		c, buf = &b.Record, b.buf[:n]
	case n <= 128:
		b := new(recordWith128)
		c, buf = &b.Record, b.buf[:n]
	case n <= 384:
		b := new(recordWith384)
		c, buf = &b.Record, b.buf[:n]
	default:
		c, buf = new(Record), make([]byte, n)
	}
	*c = *r
	n := copy(buf, r.Fingerprint)
	c.Fingerprint = buf[:n:n]
	if r.Response != nil {
		c.Response = buf[n:len(buf):len(buf)]
		copy(c.Response, r.Response)
	}
	return c
}

// A Record (128 bytes) and the bytes its slices point to, in one
// allocation of a size class: 192, 256 and 512 bytes.
type (
	recordWith64 struct {
		Record
		buf [64]byte
	}
	recordWith128 struct {
		Record
		buf [128]byte
	}
	recordWith384 struct {
		Record
		buf [384]byte
	}
)

// dropped counts one more stale item in the shard's heap, and compacts
// the heap once stale items are most of it: the heap holds at most about
// twice the shard's records, and compaction, O(n), is paid for by the n/2
// operations that made items stale since the last one.
func (sh *memShard) dropped() {
	sh.stale++
	if sh.stale <= 32 || sh.stale*2 <= len(sh.q) {
		return
	}
	live := sh.q[:0]
	for _, it := range sh.q {
		if !it.e.gone && it.e.due == it.due {
			live = append(live, it)
		}
	}
	clear(sh.q[len(live):])
	sh.q = live
	sh.q.Init()
	sh.stale = 0
}

// expiryItem is a deadline in a shard's heap. It is stale, and skipped
// when it comes up, once its entry's deadline has changed or the entry
// has left the shard.
type expiryItem struct {
	due int64
	e   *memEntry
}

// Before orders a shard's heap by due time; it reads the items alone,
// never the entries they point to.
func (a expiryItem) Before(b expiryItem) bool { return a.due < b.due }
