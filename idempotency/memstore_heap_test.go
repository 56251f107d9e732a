package idempotency

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/distkit/distkit/clock/clocktest"
)

// TestMemStoreHeapBounded: the heaps hold one item per record, whatever
// claims were released or completed, and the slots no more than the most
// records a shard held at once.
func TestMemStoreHeapBounded(t *testing.T) {
	ctx := t.Context()
	s := &MemStore{}
	for i := range 100_000 {
		key := []string{"a", "b", "c"}[i%3]
		token, _, err := s.Claim(ctx, key, nil, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			err = s.Release(ctx, key, token)
		} else {
			err = s.Complete(ctx, key, token, nil, time.Nanosecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	items, slots := 0, 0
	for i := range s.shards {
		items += len(s.shards[i].q)
		slots += len(s.shards[i].slots)
	}
	if items != s.Len() || slots > 3 {
		t.Fatalf("%d heap items and %d slots for %d records", items, slots, s.Len())
	}
	if err := s.checkShards(); err != nil {
		t.Fatal(err)
	}
}

// TestMemStoreLayout: the counters every claim writes share no cache
// line with the fields every call reads, nor with a shard, and each shard
// has cache lines of its own in a MemStore that starts on one.
func TestMemStoreLayout(t *testing.T) {
	var s MemStore
	read := unsafe.Offsetof(s.base) + unsafe.Sizeof(s.base)
	if unsafe.Offsetof(s.tokens)/64 == (read-1)/64 {
		t.Errorf("tokens at %d shares a cache line with the fields read before %d", unsafe.Offsetof(s.tokens), read)
	}
	if unsafe.Offsetof(s.n)/64 == unsafe.Offsetof(s.shards)/64 {
		t.Errorf("n at %d shares a cache line with the shards at %d", unsafe.Offsetof(s.n), unsafe.Offsetof(s.shards))
	}
	if unsafe.Offsetof(s.shards)%64 != 0 || unsafe.Sizeof(s.shards[0])%64 != 0 {
		t.Errorf("shards at %d, %d bytes each: not whole cache lines each", unsafe.Offsetof(s.shards), unsafe.Sizeof(s.shards[0]))
	}
	if size := unsafe.Sizeof(s); size%64 != 0 {
		t.Errorf("a MemStore takes %d bytes, not a multiple of a cache line", size)
	}
}

// checkShards returns an error if a shard of s breaks an invariant of
// its index, heap, slots and free list: every record indexed once, under
// its key's hash (see index.check); one heap item per record, in heap
// order, at the index its slot names, with the record's deadline; every
// slot either holds an indexed record or is on the free list exactly
// once; an entry kept on the free list is gone, was finished by its
// claimant, never lent, refers to no key, response or fingerprint
// outside itself, and is at most one of maxFree; and the records counted
// are the records held.
func (s *MemStore) checkShards() error {
	held := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		err := sh.check(s)
		held += sh.keys.n
		sh.mu.Unlock()
		if err != nil {
			return fmt.Errorf("shard %d: %w", i, err)
		}
	}
	if held != s.Len() {
		return fmt.Errorf("%d records held, %d counted", held, s.Len())
	}
	return nil
}

func (sh *memShard) check(s *MemStore) error {
	x := &sh.keys
	if err := x.check(sh.slots); err != nil {
		return err
	}
	for ti := 0; x.tables != nil && ti < indexTables; ti++ {
		for i, c := range x.tables[ti].cells {
			if c.hash == 0 {
				continue
			}
			if e := sh.slots[c.slot].e; e.gone || tag(s.hash(e.key)) != c.hash {
				return fmt.Errorf("table %d, cell %d holds %#x for %q, a record gone (%t) or hashed otherwise", ti, i, c.hash, e.key, e.gone)
			}
		}
	}
	if len(sh.q) != x.n {
		return fmt.Errorf("%d heap items for %d records", len(sh.q), x.n)
	}
	for k, it := range sh.q {
		if k > 0 && sh.q[(k-1)/2].due > it.due {
			return fmt.Errorf("heap item %d due %d before its parent's %d", k, it.due, sh.q[(k-1)/2].due)
		}
		if int(it.slot) >= len(sh.slots) || sh.slots[it.slot].at != int32(k) {
			return fmt.Errorf("heap item %d names slot %d, which does not name it back", k, it.slot)
		}
		e := sh.slots[it.slot].e
		switch {
		case e == nil || e.gone || e.slot != it.slot || x.find(sh.slots, s.hash(e.key), e.key) != e:
			return fmt.Errorf("heap item %d: slot %d holds no indexed record", k, it.slot)
		case e.due != it.due:
			return fmt.Errorf("heap item %d due %d, its record %d", k, it.due, e.due)
		}
	}
	free := make(map[int32]bool)
	kept := 0
	for i := sh.free; i != 0; i = sh.slots[i-1].next {
		if free[i-1] || len(free) > len(sh.slots) {
			return fmt.Errorf("slot %d is on the free list twice", i-1)
		}
		free[i-1] = true
		if e := sh.slots[i-1].e; e != nil {
			kept++
			if !e.gone || !e.finished || e.lent || e.slot != i-1 || e.key != "" || e.response != nil || len(e.fingerprint) > len(e.buf) {
				return fmt.Errorf("free slot %d keeps an entry that may not be reused: %+v", i-1, e)
			}
		}
	}
	if kept != int(sh.nfree) || kept > maxFree {
		return fmt.Errorf("%d entries kept for reuse, %d counted (at most %d)", kept, sh.nfree, maxFree)
	}
	if len(free)+x.n != len(sh.slots) {
		return fmt.Errorf("%d slots: %d free, %d records", len(sh.slots), len(free), x.n)
	}
	return nil
}

// check returns an error unless every cell in use names a slot with an
// entry, is in the table its hash chooses and is reached from its home
// cell without an empty cell on the way, the counts count them, and at
// most three quarters of a table's cells are used.
func (x *index) check(slots []slot) error {
	if x.tables == nil {
		if x.n != 0 {
			return fmt.Errorf("%d records counted, no tables", x.n)
		}
		return nil
	}
	total := 0
	for ti := range x.tables {
		t := &x.tables[ti]
		used, mask := 0, len(t.cells)-1
		for i, c := range t.cells {
			if c.hash == 0 {
				continue
			}
			used++
			if int(c.slot) >= len(slots) || slots[c.slot].e == nil {
				return fmt.Errorf("table %d, cell %d names slot %d, which holds no entry", ti, i, c.slot)
			}
			if x.table(c.hash) != t {
				return fmt.Errorf("table %d, cell %d holds %#x, of another table", ti, i, c.hash)
			}
			for j := t.home(c.hash); j != i; j = (j + 1) & mask {
				if t.cells[j].hash == 0 {
					return fmt.Errorf("table %d, cell %d is past an empty cell %d from its home", ti, i, j)
				}
			}
		}
		if used != t.n || 4*t.n > 3*len(t.cells) {
			return fmt.Errorf("table %d: %d cells of %d in use, %d counted", ti, used, len(t.cells), t.n)
		}
		total += used
	}
	if total != x.n {
		return fmt.Errorf("%d cells in use, %d counted", total, x.n)
	}
	return nil
}

// TestMemStoreManyRecords: tens of thousands of records, claimed,
// completed and released through the Store and through a Guard, with
// random locks and retentions on a clock that moves, keep every shard's
// index, heap and slots consistent as the indexes grow and records
// expire in bulk; once all have expired, a claim in each shard leaves
// only itself, and no shard keeps more slots than it held records at
// once.
func TestMemStoreManyRecords(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	ctx := t.Context()
	clk := clocktest.NewManual(time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC))
	s := &MemStore{Clock: clk}
	g := New(s, Config{Lock: time.Minute, Retain: time.Hour, Clock: clk})
	peak := map[*memShard]int{} // the most records each shard held at once
	for i := range 40_000 {
		n := r.IntN(15_000)
		key := fmt.Sprint("store-", n) // a Guard's records are its own
		switch d := time.Duration(1+r.IntN(120)) * time.Second; r.IntN(4) {
		case 0: // a Guard's call, replayed when the key is live
			key = fmt.Sprint("guard-", n)
			if _, err := g.Do(ctx, key, nil, func(context.Context) ([]byte, error) { return []byte(key), nil }); err != nil && !errors.Is(err, ErrInProgress) {
				t.Fatal(err)
			}
		case 1: // a claim left to lapse
			if _, _, err := s.Claim(ctx, key, nil, d); err != nil {
				t.Fatal(err)
			}
		default: // a claim completed or released
			token, _, err := s.Claim(ctx, key, nil, d)
			if err != nil {
				t.Fatal(err)
			}
			if token != 0 && r.IntN(2) == 0 {
				err = s.Complete(ctx, key, token, []byte(key), d)
			} else if token != 0 {
				err = s.Release(ctx, key, token)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		sh, _ := s.shard(key) // the one shard the step touched
		peak[sh] = max(peak[sh], sh.keys.n)
		if r.IntN(100) == 0 {
			clk.Advance(time.Duration(r.IntN(60)) * time.Second)
		}
		if i%5000 == 0 {
			if err := s.checkShards(); err != nil {
				t.Fatalf("after %d steps: %v", i, err)
			}
		}
	}
	clk.Advance(2 * time.Hour)
	swept := map[*memShard]bool{}
	for i := 0; len(swept) < memShards; i++ { // a claim in every shard sweeps it
		key := fmt.Sprint("sweep-", i)
		sh, _ := s.shard(key)
		if swept[sh] {
			continue
		}
		swept[sh] = true
		if _, _, err := s.Claim(ctx, key, nil, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.checkShards(); err != nil {
		t.Fatal(err)
	}
	if s.Len() != memShards {
		t.Fatalf("%d records left, want the %d claims that swept", s.Len(), memShards)
	}
	for i := range s.shards {
		// Counted between steps: a step that claims and releases holds
		// one record more in between.
		if sh := &s.shards[i]; len(sh.slots) > peak[sh]+1 {
			t.Fatalf("shard %d: %d slots for at most %d records held at once", i, len(sh.slots), peak[sh]+1)
		}
	}
}
