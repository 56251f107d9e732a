package kv

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	bolt "go.etcd.io/bbolt"
)

// openCommit returns a group commit over a fresh bbolt file with one
// bucket, "b".
func openCommit(t *testing.T) *groupCommit {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "c.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("b")); return err }); err != nil {
		t.Fatal(err)
	}
	return &groupCommit{db: db}
}

// txid returns the ID of the last committed transaction.
func txid(t *testing.T, db *bolt.DB) int {
	t.Helper()
	tx, err := db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	return tx.ID()
}

func putKey(k string) func(*bolt.Tx) (bool, error) {
	return func(tx *bolt.Tx) (bool, error) {
		return true, tx.Bucket([]byte("b")).Put([]byte(k), []byte(k))
	}
}

// TestGroupCommitBatches checks that the writes arriving while a commit
// runs share the next one: one commit for the first write, one for the
// twenty queued behind it, each write in the file, one failing write
// failing alone.
func TestGroupCommitBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := openCommit(t)
		before := txid(t, g.db)
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			err := g.update(func(tx *bolt.Tx) (bool, error) {
				<-release // hold the first commit open
				return putKey("first")(tx)
			})
			if err != nil {
				t.Error(err)
			}
		})
		synctest.Wait() // the first write leads, inside its transaction
		errBad := errors.New("refused")
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() {
				fn := putKey(fmt.Sprint("k", i))
				if i == 7 {
					fn = func(tx *bolt.Tx) (bool, error) {
						_, _ = putKey("bad")(tx)
						return false, errBad
					}
				}
				errs[i] = g.update(fn)
			})
		}
		synctest.Wait() // all twenty queued
		close(release)
		wg.Wait()
		for i, err := range errs {
			if want := error(nil); i == 7 {
				if !errors.Is(err, errBad) {
					t.Errorf("write 7: %v, want its own error", err)
				}
			} else if err != want {
				t.Errorf("write %d: %v", i, err)
			}
		}
		// One commit for the first, one for the nineteen good ones (the
		// batch with the bad one rolled back and went again without it).
		if got := txid(t, g.db) - before; got != 2 {
			t.Errorf("%d commits, want 2", got)
		}
		_ = g.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket([]byte("b"))
			if n := b.Stats().KeyN; n != 20 {
				t.Errorf("%d keys, want 20", n)
			}
			if b.Get([]byte("bad")) != nil {
				t.Error("the failed write's put is in the file")
			}
			return nil
		})
	})
}

// TestGroupCommitNoWriteNoCommit checks that a batch in which nothing
// wrote is rolled back: no transaction is committed (no fsync).
func TestGroupCommitNoWriteNoCommit(t *testing.T) {
	g := openCommit(t)
	before := txid(t, g.db)
	if err := g.update(func(*bolt.Tx) (bool, error) { return false, nil }); err != nil {
		t.Fatal(err)
	}
	if got := txid(t, g.db); got != before {
		t.Errorf("txid %d after a write that wrote nothing, want %d", got, before)
	}
	if err := g.update(putKey("k")); err != nil {
		t.Fatal(err)
	}
	if got := txid(t, g.db); got != before+1 {
		t.Errorf("txid %d after a write, want %d", got, before+1)
	}
}

// TestGroupCommitPanic checks that a function's panic reaches its
// leader, fails the other writes of its batch with an error, and leaves
// the commit usable.
func TestGroupCommitPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := openCommit(t)
		release := make(chan struct{})
		var wg sync.WaitGroup
		var recovered any
		wg.Go(func() {
			defer func() { recovered = recover() }()
			_ = g.update(func(*bolt.Tx) (bool, error) {
				<-release
				panic("boom")
			})
		})
		synctest.Wait()
		var other error
		wg.Go(func() { other = g.update(putKey("a")) })
		synctest.Wait()
		close(release)
		wg.Wait()
		if recovered != "boom" {
			t.Errorf("leader recovered %v, want the panic", recovered)
		}
		// The queued write led the next batch after the panic.
		if other != nil {
			t.Errorf("queued write: %v", other)
		}
		if err := g.update(putKey("b")); err != nil {
			t.Fatalf("write after the panic: %v", err)
		}
	})
}

// TestGroupCommitPanicInBatch checks that the other writes of the batch
// a function panicked in fail with an error naming the panic.
func TestGroupCommitPanicInBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := openCommit(t)
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = g.update(func(tx *bolt.Tx) (bool, error) { <-release; return putKey("first")(tx) })
		})
		synctest.Wait()
		var recovered any
		var other error
		wg.Go(func() {
			defer func() { recovered = recover() }()
			_ = g.update(func(*bolt.Tx) (bool, error) { panic("boom") })
		})
		synctest.Wait() // queued first: it leads the second batch
		wg.Go(func() { other = g.update(putKey("second")) })
		synctest.Wait()
		close(release)
		wg.Wait()
		if recovered != "boom" {
			t.Errorf("recovered %v, want the panic", recovered)
		}
		if other == nil || !strings.Contains(other.Error(), "panicked") {
			t.Errorf("write in the panicking batch: %v, want an error naming the panic", other)
		}
		if err := g.update(putKey("third")); err != nil {
			t.Fatalf("write after the panic: %v", err)
		}
	})
}
