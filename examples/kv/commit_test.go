package kv

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/vclock"
)

// openCommits returns a store without fsync and a counter of its
// commits (log appends).
func openCommits(t *testing.T) (*Store, *atomic.Int64) {
	t.Helper()
	var commits atomic.Int64
	s := openStore(t, filepath.Join(t.TempDir(), "kv.db"), StoreConfig{NoSync: true, OnCommit: func(time.Duration) { commits.Add(1) }})
	t.Cleanup(func() { s.Close() })
	return s, &commits
}

// putKey is a blind write of key's own name to key.
func putKey(k string) func(*batch, *Object) error {
	return func(_ *batch, o *Object) error {
		o.Update(vclock.VClock{}, "n1", Version{Value: []byte(k)})
		return nil
	}
}

// write is s.write of f to key k, for the tests of the group commit.
func write(s *Store, k string, f func(*batch, *Object) error) error {
	_, err := s.write([]byte(k), f, Object{}, nil)
	return err
}

// TestGroupCommitBatches checks that the writes arriving while a commit
// runs share the next one: one commit for the first write, one for the
// twenty queued behind it, each write in the store, one failing write
// failing alone and leaving nothing.
func TestGroupCommitBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, commits := openCommits(t)
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			err := write(s, "first", func(b *batch, o *Object) error {
				<-release // hold the first commit open
				return putKey("first")(b, o)
			})
			if err != nil {
				t.Error(err)
			}
		})
		synctest.Wait() // the first write leads, inside its batch
		errBad := errors.New("refused")
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() {
				k := fmt.Sprint("k", i)
				fn := putKey(k)
				if i == 7 {
					k = "bad"
					fn = func(b *batch, o *Object) error {
						_ = putKey("bad")(b, o)
						b.raiseFloor(99)
						return errBad
					}
				}
				errs[i] = write(s, k, fn)
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
		if got := commits.Load(); got != 2 {
			t.Errorf("%d commits, want 2", got)
		}
		for i := range 20 {
			if _, found, err := s.Get(fmt.Append(nil, "k", i)); i != 7 && (!found || err != nil) {
				t.Errorf("k%d: found %v, %v", i, found, err)
			}
		}
		if _, found, _ := s.Get([]byte("bad")); found {
			t.Error("the failed write's object is in the store")
		}
		if s.floor != 0 {
			t.Errorf("the failed write raised the floor to %d", s.floor)
		}
	})
}

// TestCommitVisibleOnceDurable checks that a write is visible to reads
// only once its batch is in the log: not while its batch runs, nor
// between the log's write and sync and OnCommit's report of them.
func TestCommitVisibleOnceDurable(t *testing.T) {
	var (
		s       *Store
		visible []bool
	)
	s = openStore(t, filepath.Join(t.TempDir(), "kv.db"), StoreConfig{OnCommit: func(time.Duration) {
		_, found, _ := s.Get([]byte("k"))
		visible = append(visible, found)
	}})
	defer s.Close()
	put(t, s, "k", vclock.VClock{}, "v")
	if len(visible) != 1 || visible[0] {
		t.Fatalf("the write is visible when its commit is reported: %v", visible)
	}
	synctest.Test(t, func(t *testing.T) {
		s, _ := openCommits(t)
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := write(s, "held", func(b *batch, o *Object) error { <-release; return putKey("held")(b, o) }); err != nil {
				t.Error(err)
			}
		})
		var other error
		synctest.Wait() // the first write holds its batch open
		wg.Go(func() { other = write(s, "queued", putKey("queued")) })
		synctest.Wait()
		for _, k := range []string{"held", "queued"} {
			if _, found, _ := s.Get([]byte(k)); found {
				t.Errorf("%s is visible before its commit", k)
			}
		}
		size := s.logSize
		close(release)
		wg.Wait()
		if other != nil {
			t.Fatal(other)
		}
		if s.logSize <= size {
			t.Fatal("the writes were not logged")
		}
		for _, k := range []string{"held", "queued"} {
			if _, found, _ := s.Get([]byte(k)); !found {
				t.Errorf("%s is not visible after its commit", k)
			}
		}
	})
}

// TestGroupCommitNoWriteNoCommit checks that a batch in which nothing
// changed is not logged: no append, no fsync.
func TestGroupCommitNoWriteNoCommit(t *testing.T) {
	s, commits := openCommits(t)
	o := put(t, s, "k", vclock.VClock{}, "v")
	if got := commits.Load(); got != 1 {
		t.Fatalf("%d commits after a write, want 1", got)
	}
	size := s.logSize
	if _, err := s.Merge([]byte("k"), o); err != nil {
		t.Fatal(err)
	}
	if got := commits.Load(); got != 1 || s.logSize != size {
		t.Errorf("%d commits and %d log bytes after a merge that changed nothing, want 1 and %d", got, s.logSize, size)
	}
}

// TestGroupCommitPanic checks that a function's panic reaches its
// leader, fails the other writes of its batch with an error, and leaves
// the store usable.
func TestGroupCommitPanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := openCommits(t)
		release := make(chan struct{})
		var wg sync.WaitGroup
		var recovered any
		wg.Go(func() {
			defer func() { recovered = recover() }()
			_ = write(s, "p", func(*batch, *Object) error {
				<-release
				panic("boom")
			})
		})
		synctest.Wait()
		var other error
		wg.Go(func() { other = write(s, "a", putKey("a")) })
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
		if err := write(s, "b", putKey("b")); err != nil {
			t.Fatalf("write after the panic: %v", err)
		}
	})
}

// TestGroupCommitPanicInBatch checks that the other writes of the batch
// a function panicked in fail with an error naming the panic, and that
// none of the batch is written.
func TestGroupCommitPanicInBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _ := openCommits(t)
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = write(s, "first", func(b *batch, o *Object) error { <-release; return putKey("first")(b, o) })
		})
		synctest.Wait()
		var recovered any
		var other error
		wg.Go(func() {
			defer func() { recovered = recover() }()
			_ = write(s, "p", func(*batch, *Object) error { panic("boom") })
		})
		synctest.Wait() // queued first: it leads the second batch
		wg.Go(func() { other = write(s, "second", putKey("second")) })
		synctest.Wait()
		close(release)
		wg.Wait()
		if recovered != "boom" {
			t.Errorf("recovered %v, want the panic", recovered)
		}
		if other == nil || !strings.Contains(other.Error(), "panicked") {
			t.Errorf("write in the panicking batch: %v, want an error naming the panic", other)
		}
		if _, found, _ := s.Get([]byte("second")); found {
			t.Error("a write of the panicking batch is in the store")
		}
		if err := write(s, "third", putKey("third")); err != nil {
			t.Fatalf("write after the panic: %v", err)
		}
	})
}
