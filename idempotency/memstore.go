package idempotency

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"math"
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
// by deadline, with one item per record, makes this O(log n) per removed
// record and O(1) when there is none), so memory tracks the live records
// plus the expired records of shards nobody has touched since. Like a Go
// map, a shard does not shrink: its index by key (hash tables of 16-byte
// cells, at most three quarters full) and its table of 16-byte slots,
// one per record, keep the size of the most records it held at once,
// and it keeps up to 64 entries of records that expired without being
// read (192 bytes each) for later records.
//
// On the system clock, the store measures time on the monotonic clock,
// as comparisons of time.Time values do: a record's times are the wall
// time of the store's first use plus the monotonic time elapsed since, so
// a step of the wall clock (a manual change, an NTP step) moves no
// deadline.
//
// A [Guard] over a MemStore on the Guard's own clock (the same
// clock.Clock value, or both the system clock) reads the clock once per
// step and lends it to the store, claims a key or replays its record in
// one hold of its shard's lock, records a result that fits beside the
// fingerprint (96 bytes for both, in their recorded form: a SHA-256
// fingerprint and a result of up to 57 bytes) in the claim's own entry,
// and replays a recorded success by returning the record's bytes, with
// no allocation; other Guards use the Store methods. Only the entries of
// records that such a Guard finished, and whose bytes nobody was given,
// are reused.
//
// Such a replay on the system clock reads no clock either: reading it
// would cost as much as the rest of the replay. It compares the record's
// deadline with a reading that a timer refreshes every millisecond while
// replays come, and that stops when they do. A finished record may
// therefore be replayed for up to a millisecond after its deadline (more
// only if the runtime runs the timer late), never before it; through the
// Store methods, and for every other decision (a new claim, a lapsed
// lock, a mismatch), deadlines are exact. Nothing runs while the store is
// idle. A deadline beyond what the store's timeline can count (a duration
// of centuries) is kept as the last instant it can.
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

	// Read by every call.
	init   sync.Once
	seed   maphash.Seed
	system bool      // Clock is nil or clock.System: see now
	base   time.Time // when the system clock is read: see now
	coarse coarseClock

	// Written by every claim: kept off the cache lines of the fields
	// above, which would otherwise move between cores with them, and of
	// the shards, which start on a cache line of their own (a MemStore,
	// 4352 bytes, is allocated in the size class of 4864, whose objects
	// start on one).
	_      [64]byte
	tokens atomic.Uint64 // the last fencing token granted
	n      atomic.Int64  // with MaxKeys: records held across all shards
	_      [80]byte

	shards [memShards]memShard
}

var _ Store = (*MemStore)(nil)

type memShard struct {
	mu    sync.Mutex
	keys  index          // the records by key: see index.go
	q     []expiryItem   // the records by deadline: see expiry.go
	slots []slot         // the entries, by slot
	free  int32          // the first free slot plus one; 0: none
	nfree int32          // the free slots that keep an entry for reuse
	_     [128 - 80]byte // two cache lines: shards are locked by different cores
}

// memEntry is the record of one key. key, fingerprint and token never
// change while the entry holds the key; response is set once, when done
// turns true, and never written again; done, due, gone, lent and
// finished change with the shard's lock held. Once gone, an entry may be
// reused for another key (see memShard.release).
type memEntry struct {
	key         string
	fingerprint []byte
	response    []byte // once done: the bytes of Complete
	token       uint64
	due         int64 // LockedUntil while in progress, ExpiresAt once done, on the store's timeline (see instant)
	outAt       int32 // once done, if the Guard recorded a success: where fn's bytes start in response (after a header of at most 7 bytes)
	slot        int32 // its slot in the shard, for life
	done        bool
	gone        bool     // released or evicted: no longer in the shard's index
	lent        bool     // its bytes were handed out of the store without a copy: a replay, or a record read outside the lock
	finished    bool     // completed by its claimant through completeAt, which holds it no more
	buf         [96]byte // fingerprint when it fits, then room for the claimant's response: see spare
}

// spare returns room for a response of up to n bytes in the entry's
// buffer, after the fingerprint, or nil if it does not fit: a SHA-256
// fingerprint and a result of up to 57 bytes (as a Guard records it)
// make one allocation. Only the claimant, which alone knows the entry,
// writes there, once, before it passes the bytes to completeAt; nothing
// reads them before that.
func (e *memEntry) spare(n int) []byte {
	used := len(e.fingerprint)
	if used+n > len(e.buf) {
		return nil
	}
	return e.buf[used : used : used+n]
}

// view returns the entry as a Record in the state done, without its
// deadline, whose slices share the entry's bytes. Without the shard's
// lock, done must be the state read under it, since a response is only
// read once done.
func (e *memEntry) view(done bool) Record {
	r := Record{Key: e.key, Fingerprint: e.fingerprint, State: InProgress, Token: e.token}
	if done {
		r.State, r.Response = Done, e.response
	}
	return r
}

// record returns the entry as a Record whose slices share its bytes,
// read at now; the shard's lock is held.
func (s *MemStore) record(e *memEntry, now instant) Record {
	r := e.view(e.done)
	if e.done {
		r.ExpiresAt = s.timeAt(now, e.due)
	} else {
		r.LockedUntil = s.timeAt(now, e.due)
	}
	return r
}

// instant is a reading of the store's clock. ns is on the store's
// timeline: nanoseconds since s.base on the system clock, Unix
// nanoseconds on any other; t is the reading itself on any other.
type instant struct {
	ns int64
	t  time.Time
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
	var live Record
	sh, h := s.shard(key)
	c, err := s.claimAt(sh, h, key, fingerprint, s.now(), lock, &live)
	if err != nil || c.token != 0 {
		return c.token, nil, err
	}
	return 0, live.clone(), nil
}

// memClaim is the outcome of a claimAt: the key's entry e, and either a
// new claim on it (token, its shard, and the claim's LockedUntil, for
// completeAt) or, with token 0, whether the live record was done. The
// entry's key, fingerprint and, once done, response are never written
// again, so they may be read without the shard's lock, but not written.
type memClaim struct {
	token uint64
	sh    *memShard
	e     *memEntry
	due   int64 // the claim's LockedUntil on the store's timeline
	done  bool
}

// claimAt is Claim, in key's shard sh, where its hash is h, at the time
// now, read from the store's clock, for a positive lock. If key is live
// and snap is not nil, *snap is set to its record, sharing its bytes.
func (s *MemStore) claimAt(sh *memShard, h uint64, key string, fingerprint []byte, now instant, lock time.Duration, snap *Record) (memClaim, error) {
	c, err := s.claimIn(sh, h, key, fingerprint, now, lock, snap)
	if err == ErrFull {
		c, err = s.claimFull(sh, h, key, fingerprint, now, lock, snap)
	}
	return c, err
}

// claimFull retries, once, a claim that found the store full, after
// evicting the expired records of every shard.
func (s *MemStore) claimFull(sh *memShard, h uint64, key string, fingerprint []byte, now instant, lock time.Duration, snap *Record) (memClaim, error) {
	for i := range s.shards {
		s.sweep(&s.shards[i], now.ns)
	}
	return s.claimIn(sh, h, key, fingerprint, now, lock, snap)
}

func (s *MemStore) claimIn(sh *memShard, h uint64, key string, fingerprint []byte, now instant, lock time.Duration, snap *Record) (memClaim, error) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return s.claimLocked(sh, h, sh.keys.find(sh.slots, h, key), key, fingerprint, now, lock, snap)
}

// claimLocked is claimIn with sh.mu held, where e is key's entry in sh
// before the shard is swept, or nil.
func (s *MemStore) claimLocked(sh *memShard, h uint64, e *memEntry, key string, fingerprint []byte, now instant, lock time.Duration, snap *Record) (memClaim, error) {
	s.sweepLocked(sh, now.ns)
	if e != nil && !e.gone { // live: every expired record was just swept
		e.lent = true // its bytes are read after the lock is released
		if snap != nil {
			*snap = s.record(e, now)
		}
		return memClaim{e: e, done: e.done}, nil
	}
	if !s.reserve() {
		return memClaim{}, ErrFull
	}
	e = sh.reuse()
	// Taken inside the shard's lock, so a claim that returned before
	// another began has the smaller token.
	e.key, e.token, e.due = key, s.tokens.Add(1), after(now.ns, lock)
	if n := len(fingerprint); n <= len(e.buf) {
		e.fingerprint = e.buf[:n:n]
		copy(e.fingerprint, fingerprint)
	} else {
		e.fingerprint = bytes.Clone(fingerprint)
	}
	sh.keys.add(h, e.slot)
	sh.queue(e)
	return memClaim{token: e.token, sh: sh, e: e, due: e.due}, nil
}

// claimDirect is a Guard's claim of key, in its shard sh, over a
// MemStore on the Guard's clock. In one hold of the shard's lock, it
// replays a success that a Guard recorded for key under fingerprint and
// that is live by the replay clock (on the system clock, the coarse
// clock: see coarseNow), and otherwise claims key as claimAt does,
// reading the store's clock only then, into *c. A replayed result is the
// record's own bytes, never written again, capped at their length, and
// never nil; out is nil for anything else, which the caller reads from
// *c as it reads claimAt's, mismatches included. sh and h are key's
// shard and hash.
func (s *MemStore) claimDirect(sh *memShard, h uint64, key string, fingerprint []byte, lock time.Duration, c *memClaim) (out []byte, err error) {
	var now instant
	var replayAt int64
	if s.system {
		replayAt = s.coarseNow()
	} else {
		now = s.now()
		replayAt = now.ns
	}
	sh.mu.Lock()
	e := sh.keys.find(sh.slots, h, key)
	if e != nil && e.done && e.outAt != 0 && e.due > replayAt && bytes.Equal(e.fingerprint, fingerprint) {
		if !e.lent {
			e.lent = true
		}
		out = e.response[e.outAt:]
		sh.mu.Unlock()
		return out[:len(out):len(out)], nil
	}
	if s.system {
		now = s.now()
	}
	*c, err = s.claimLocked(sh, h, e, key, fingerprint, now, lock, nil)
	sh.mu.Unlock()
	if err == ErrFull {
		*c, err = s.claimFull(sh, h, key, fingerprint, now, lock, nil)
	}
	return nil, err
}

// Complete implements [Store.Complete]. It returns an error wrapping
// ErrNotClaimed if key has no live in-progress claim under token, an
// error if retain is not positive, and ctx.Err() if ctx is done.
func (s *MemStore) Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error {
	if retain <= 0 {
		return fmt.Errorf("idempotency: Complete with non-positive retain %v", retain)
	}
	return s.onClaim(ctx, key, token, func(sh *memShard, e *memEntry, now instant) {
		kept := bytes.Clone(response)
		if kept == nil {
			kept = []byte{}
		}
		s.complete(sh, e, kept, now, retain)
	})
}

// completeAt is Complete, at the time now read from the store's clock,
// of the claim c that claimAt made, for a positive retain. The store
// keeps response itself, not a copy: the caller must not write to it
// again. A positive outAt says that response records a success whose
// bytes start there, so that a replay need not decode it.
func (s *MemStore) completeAt(c memClaim, key string, response []byte, outAt int, now instant, retain time.Duration) error {
	c.sh.mu.Lock()
	defer c.sh.mu.Unlock()
	s.sweepLocked(c.sh, now.ns)
	// An entry leaves the index for good (gone) or stays with its token.
	if c.e.gone || c.e.done {
		return notClaimed(key, c.token)
	}
	c.e.outAt = int32(outAt)
	c.e.finished = true
	s.complete(c.sh, c.e, response, now, retain)
	return nil
}

// complete turns e, a live claim, into a Done record holding response,
// which is not nil and never written again; sh.mu is held.
func (s *MemStore) complete(sh *memShard, e *memEntry, response []byte, now instant, retain time.Duration) {
	e.done = true
	e.response = response
	e.due = after(now.ns, retain)
	sh.requeue(e)
}

func notClaimed(key string, token uint64) error {
	return fmt.Errorf("%w: %q under token %d", ErrNotClaimed, key, token)
}

// Release implements [Store.Release]. It returns an error wrapping
// ErrNotClaimed if key has no live in-progress claim under token, and
// ctx.Err() if ctx is done.
func (s *MemStore) Release(ctx context.Context, key string, token uint64) error {
	return s.onClaim(ctx, key, token, func(sh *memShard, e *memEntry, _ instant) {
		s.remove(sh, e)
	})
}

// Len returns the number of records the store holds, counting expired
// records that have not been evicted yet.
func (s *MemStore) Len() int {
	if s.MaxKeys > 0 {
		return int(s.n.Load())
	}
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += sh.keys.n
		sh.mu.Unlock()
	}
	return n
}

// onClaim runs fn, with key's shard locked, on key's live in-progress
// entry claimed under token, or returns ErrNotClaimed.
func (s *MemStore) onClaim(ctx context.Context, key string, token uint64, fn func(sh *memShard, e *memEntry, now instant)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := s.now()
	sh, h := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepLocked(sh, now.ns)
	e := sh.keys.find(sh.slots, h, key)
	if e == nil || e.done || e.token != token {
		return notClaimed(key, token)
	}
	fn(sh, e, now)
	return nil
}

// reserve counts one more record, unless the store is at MaxKeys.
// Without MaxKeys, records are counted by the shards' indexes, so that
// claims on different shards share no counter but the tokens.
func (s *MemStore) reserve() bool {
	if s.MaxKeys <= 0 {
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

// remove takes e out of sh and counts one record less; sh.mu is held.
func (s *MemStore) remove(sh *memShard, e *memEntry) {
	e.gone = true
	sh.keys.remove(s.hash(e.key), e.slot)
	sh.unqueue(e)
	sh.release(e)
	if s.MaxKeys > 0 {
		s.n.Add(-1)
	}
}

func (s *MemStore) sweep(sh *memShard, now int64) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	s.sweepLocked(sh, now)
}

// sweepLocked evicts the shard's records whose deadline is at or before
// now, on the store's timeline; sh.mu is held.
func (s *MemStore) sweepLocked(sh *memShard, now int64) {
	for len(sh.q) > 0 && sh.q[0].due <= now {
		s.remove(sh, sh.slots[sh.q[0].slot].e)
	}
}

// shard returns key's shard and its hash, which the shard's index files
// it under.
func (s *MemStore) shard(key string) (*memShard, uint64) {
	s.init.Do(s.setup)
	h := s.hash(key)
	return &s.shards[h%memShards], h
}

func (s *MemStore) hash(key string) uint64 { return maphash.String(s.seed, key) }

func (s *MemStore) setup() {
	s.seed = maphash.MakeSeed()
	switch s.Clock.(type) {
	case nil, clock.System:
		s.system = true
	}
	s.base = time.Now()
}

// now reads the store's clock. The system clock is read as the monotonic
// time elapsed since s.base, which is all a deadline needs: a third of
// the cost of time.Now, and deadlines that a step of the wall clock does
// not move.
func (s *MemStore) now() instant {
	s.init.Do(s.setup)
	if s.system {
		return instant{ns: int64(time.Since(s.base))}
	}
	t := s.Clock.Now()
	return instant{ns: t.UnixNano(), t: t}
}

// after returns the time d after now, on a timeline of nanoseconds (the
// store's, or a Guard's). The timeline saturates, so that a huge d cannot
// wrap a deadline into the past.
func after(now int64, d time.Duration) int64 {
	due := now + int64(d)
	if due < now {
		due = math.MaxInt64
	}
	return due
}

// timeAt returns due, on the store's timeline, as a time.Time, given now,
// a reading at or before it: on the system clock, s.base plus due, with
// its monotonic reading; on any other, the reading moved on to due, in
// its location.
func (s *MemStore) timeAt(now instant, due int64) time.Time {
	if s.system {
		return s.base.Add(time.Duration(due))
	}
	if d := due - now.ns; d >= 0 {
		return now.t.Add(time.Duration(d))
	}
	return time.Unix(0, due).In(now.t.Location()) // due - now.ns overflowed
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
