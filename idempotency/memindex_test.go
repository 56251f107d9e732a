package idempotency

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
)

// TestMemIndexModel runs random inserts and removes through a shard's
// index and checks every lookup against a map, across rebuilds and
// tombstones, with the index never more than half full.
func TestMemIndexModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	s := &MemStore{}
	sh := &s.shards[0]
	model := map[string]*memEntry{}
	for step := range 50_000 {
		key := fmt.Sprint(r.IntN(1 + step/100))
		k := s.key(key)
		if e, ok := model[key]; ok {
			if r.IntN(3) > 0 {
				s.remove(sh, e)
				delete(model, key)
			}
		} else {
			e := &memEntry{key: key}
			s.insert(sh, k, e)
			model[key] = e
		}
		probe := fmt.Sprint(r.IntN(1 + step/50))
		if got, want := sh.index.Load().find(s.key(probe)), model[probe]; got != want {
			t.Fatalf("seed %d step %d: find(%q) = %p, want %p", seed, step, probe, got, want)
		}
		index := sh.index.Load()
		if sh.used*2 > len(index.slots) || sh.n.Load() != int64(len(model)) {
			t.Fatalf("seed %d step %d: %d of %d slots used, %d entries counted for %d", seed, step, sh.used, len(index.slots), sh.n.Load(), len(model))
		}
	}
}

// TestMemIndexConcurrentFind: searches without the lock, while a writer
// with the lock inserts and removes other keys (filling tombstones and
// rebuilding the index), find every entry that stays in the index.
func TestMemIndexConcurrentFind(t *testing.T) {
	s := &MemStore{}
	sh := &s.shards[0]
	stable := make([]*memEntry, 64)
	for i := range stable {
		stable[i] = &memEntry{key: fmt.Sprint("stable-", i)}
		s.insert(sh, s.key(stable[i].key), stable[i])
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Go(func() {
		defer stop.Store(true)
		var churn []*memEntry
		for i := range 20_000 {
			sh.mu.Lock()
			e := &memEntry{key: fmt.Sprint("churn-", i)}
			s.insert(sh, s.key(e.key), e)
			churn = append(churn, e)
			if len(churn) > 200 || i%3 == 0 {
				s.remove(sh, churn[0])
				churn = churn[1:]
			}
			sh.mu.Unlock()
		}
	})
	for range 2 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				want := stable[i%len(stable)]
				if got := sh.index.Load().find(s.key(want.key)); got != want {
					t.Errorf("find(%q) = %p, want %p", want.key, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}
