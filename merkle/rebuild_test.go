package merkle_test

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/merkle"
)

// TestRebuildConcurrentWriters runs writers against a store while a
// rebuild scans a snapshot of it, pausing the scan every 50 entries for a
// batch of writes: the rebuilt tree equals the live one and a Build of
// the store at the end, while a plain Build of the snapshot misses the
// writes.
func TestRebuildConcurrentWriters(t *testing.T) {
	for seed := range uint64(5) {
		rnd := rand.New(rand.NewPCG(seed, 14))
		var mu sync.Mutex // the store's write lock
		store := model{}
		live := merkle.New(small)
		for i := range 3000 {
			k, v := fmt.Sprint("k", i), rnd.Uint64()
			store[k] = v
			live.Toggle([]byte(k), v)
		}

		mu.Lock()
		snapshot := maps.Clone(store)
		rb := merkle.NewRebuild(small)
		mu.Unlock()

		pause, resume := make(chan struct{}), make(chan struct{})
		var writers sync.WaitGroup
		writes := 0
		for w := range 3 {
			wr := rand.New(rand.NewPCG(seed, uint64(w)))
			writers.Go(func() {
				for range pause {
					for range 20 {
						k := fmt.Sprint("k", wr.IntN(4000))
						mu.Lock()
						old, ok := store[k]
						switch v := wr.Uint64(); {
						case ok && wr.IntN(4) == 0: // delete
							delete(store, k)
							live.Toggle([]byte(k), old)
							rb.Toggle([]byte(k), old)
						case ok: // overwrite
							store[k] = v
							live.Update([]byte(k), old, v)
							rb.Update([]byte(k), old, v)
						default: // insert
							store[k] = v
							live.Toggle([]byte(k), v)
							rb.Toggle([]byte(k), v)
						}
						writes++
						mu.Unlock()
					}
					resume <- struct{}{}
				}
			})
		}
		// The scan, split in two parts, lets a writer run every 50 entries.
		n := 0
		scan := func(part int) func(func([]byte, uint64) bool) {
			return func(yield func([]byte, uint64) bool) {
				for k, v := range snapshot {
					if len(k)%2 != part {
						continue
					}
					if n++; n%50 == 0 {
						pause <- struct{}{}
						<-resume
					}
					if !yield([]byte(k), v) {
						return
					}
				}
			}
		}
		rb.Scan(scan(0))
		rb.Scan(scan(1))
		close(pause)
		writers.Wait()

		mu.Lock()
		rebuilt := rb.Finish()
		require.NoError(t, merkle.Verify(live, rebuilt), "seed %d: %d writes during the scan", seed, writes)
		require.True(t, rebuilt.Equal(merkle.Build(small, store.all())))
		require.Error(t, merkle.Verify(live, merkle.Build(small, snapshot.all())), "a plain rebuild misses the writes")
		mu.Unlock()
		require.Positive(t, writes)
		require.Panics(t, func() { rb.Toggle([]byte("late"), 1) })
	}
}
