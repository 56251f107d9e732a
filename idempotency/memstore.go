package idempotency

import (
	"bytes"
	"container/heap"
	"context"
	"fmt"
	"hash/maphash"
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
// shards nobody has touched since.
//
// The zero value is an empty, unbounded store on the system clock, ready
// to use. Set Clock and MaxKeys before first use and not after. MemStore
// is safe for concurrent use and must not be copied after first use.
type MemStore struct {
	// Clock is the time source for lock and retention deadlines;
	// nil means clock.System.
	Clock clock.Clock
	// MaxKeys bounds the number of records the store holds; Claim of a
	// new key beyond it returns ErrFull. Expired records are evicted to
	// make room; live ones, and in-progress claims in particular, never
	// are. Zero or negative means no bound.
	MaxKeys int

	init   sync.Once
	seed   maphash.Seed
	n      atomic.Int64  // records held across all shards
	tokens atomic.Uint64 // the last fencing token granted
	shards [memShards]memShard
}

var _ Store = (*MemStore)(nil)

type memShard struct {
	mu sync.Mutex
	m  map[string]*memEntry
	q  expiryHeap
	_  [64 - 40]byte // pad to a cache line: shards are locked by different cores
}

type memEntry struct {
	rec Record
	idx int // position in the shard's expiryHeap
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
	now := s.now()
	sh := s.shard(key)
	token, rec, err := s.claimIn(sh, key, fingerprint, now, now.Add(lock))
	if err == ErrFull {
		// Other shards may hold expired records: evict them and retry once.
		for i := range s.shards {
			s.sweep(&s.shards[i], now)
		}
		token, rec, err = s.claimIn(sh, key, fingerprint, now, now.Add(lock))
	}
	return token, rec, err
}

func (s *MemStore) claimIn(sh *memShard, key string, fingerprint []byte, now, until time.Time) (uint64, *Record, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepLocked(sh, now)
	if e, ok := sh.m[key]; ok { // every expired record was just swept
		return 0, e.rec.clone(), nil
	}
	if !s.reserve() {
		return 0, nil, ErrFull
	}
	// Taken inside the shard's lock, so a claim that returned before
	// another began has the smaller token.
	token := s.tokens.Add(1)
	e := &memEntry{rec: Record{
		Key:         key,
		Fingerprint: bytes.Clone(fingerprint),
		State:       InProgress,
		LockedUntil: until,
		Token:       token,
	}}
	sh.m[key] = e
	heap.Push(&sh.q, e)
	return token, nil, nil
}

// Complete implements [Store.Complete]. It returns an error wrapping
// ErrNotClaimed if key has no live in-progress claim under token, an
// error if retain is not positive, and ctx.Err() if ctx is done.
func (s *MemStore) Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error {
	if retain <= 0 {
		return fmt.Errorf("idempotency: Complete with non-positive retain %v", retain)
	}
	return s.onClaim(ctx, key, token, func(sh *memShard, e *memEntry, now time.Time) {
		e.rec.State = Done
		e.rec.Response = bytes.Clone(response)
		if e.rec.Response == nil {
			e.rec.Response = []byte{}
		}
		e.rec.ExpiresAt = now.Add(retain)
		heap.Fix(&sh.q, e.idx)
	})
}

// Release implements [Store.Release]. It returns an error wrapping
// ErrNotClaimed if key has no live in-progress claim under token, and
// ctx.Err() if ctx is done.
func (s *MemStore) Release(ctx context.Context, key string, token uint64) error {
	return s.onClaim(ctx, key, token, func(sh *memShard, e *memEntry, _ time.Time) {
		heap.Remove(&sh.q, e.idx)
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
		return fmt.Errorf("%w: %q under token %d", ErrNotClaimed, key, token)
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
	for len(sh.q) > 0 && !now.Before(sh.q[0].rec.deadline()) {
		e := heap.Pop(&sh.q).(*memEntry)
		delete(sh.m, e.rec.Key)
		s.n.Add(-1)
	}
}

func (s *MemStore) shard(key string) *memShard {
	s.init.Do(func() {
		s.seed = maphash.MakeSeed()
		for i := range s.shards {
			s.shards[i].m = make(map[string]*memEntry)
		}
	})
	return &s.shards[maphash.String(s.seed, key)%memShards]
}

func (s *MemStore) now() time.Time {
	if s.Clock == nil {
		return time.Now()
	}
	return s.Clock.Now()
}

// clone returns a deep copy of r, with both byte slices in one allocation.
func (r *Record) clone() *Record {
	c := *r
	buf := make([]byte, len(r.Fingerprint)+len(r.Response))
	n := copy(buf, r.Fingerprint)
	c.Fingerprint = buf[:n:n]
	if r.Response != nil {
		c.Response = buf[n:]
		copy(c.Response, r.Response)
	}
	return &c
}

// expiryHeap is a min-heap of entries by deadline (container/heap).
type expiryHeap []*memEntry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	return h[i].rec.deadline().Before(h[j].rec.deadline())
}
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*memEntry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
