//go:build linux

package kv

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"unsafe"

	"github.com/distkit/distkit/vclock"
)

// testRing returns a ring, skipping the test where the kernel refuses
// one.
func testRing(t *testing.T) *uring {
	t.Helper()
	r, err := newURing()
	if err != nil {
		t.Skipf("no io_uring here: %v", err)
	}
	t.Cleanup(func() { _ = r.close() })
	return r
}

func testLogFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func TestURingLayout(t *testing.T) {
	// struct io_uring_params, as the kernel lays it out.
	if n := unsafe.Sizeof(ringParams{}); n != 120 {
		t.Fatalf("ringParams is %d bytes, the kernel's struct 120", n)
	}
}

func TestURingSyncs(t *testing.T) {
	r := testRing(t)
	f := testLogFile(t, "log")
	for i := range 50 {
		if _, err := f.Write([]byte("record")); err != nil {
			t.Fatal(err)
		}
		if err := r.fdatasync(f.Fd()); err != nil {
			t.Fatalf("sync %d: %v", i, err)
		}
	}
	// A sync's own failure is fdatasync's error, and leaves the ring in
	// use: here, a descriptor that is not open.
	if err := r.fdatasync(1 << 30); !errors.Is(err, syscall.EBADF) || errors.Is(err, errRing) {
		t.Fatalf("sync of a closed descriptor: %v, want EBADF", err)
	}
	if err := r.fdatasync(f.Fd()); err != nil {
		t.Fatalf("sync after a failed one: %v", err)
	}
	// A failure that may be the ring's (EINVAL: for a descriptor that
	// cannot be synced, or an operation the kernel does not know) is
	// the ring's, and closes it: the caller syncs again without it.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if err := r.fdatasync(pw.Fd()); !errors.Is(err, errRing) || !errors.Is(err, syscall.EINVAL) {
		t.Fatalf("sync of a pipe: %v, want the ring's EINVAL", err)
	}
	if err := r.fdatasync(f.Fd()); !errors.Is(err, errRing) {
		t.Fatalf("sync on a ring closed by its failure: %v, want errRing", err)
	}
	if err := r.close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestURingNotSynced(t *testing.T) {
	// The failures a sync may not have run through: retried; the ones
	// that lose data: final.
	for _, e := range []syscall.Errno{syscall.EAGAIN, syscall.ECANCELED, syscall.EINVAL} {
		if !notSynced(e) {
			t.Errorf("%v: final, want retried", e)
		}
	}
	for _, e := range []syscall.Errno{syscall.EIO, syscall.ENOSPC, syscall.EDQUOT, syscall.EROFS, syscall.EBADF} {
		if notSynced(e) {
			t.Errorf("%v: retried, want final", e)
		}
	}
}

func TestURingConcurrentSyncs(t *testing.T) {
	r := testRing(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		f := testLogFile(t, "log"+string(rune('a'+g)))
		wg.Go(func() {
			for range 20 {
				if _, err := f.Write([]byte("record")); err != nil {
					errs <- err
					return
				}
				if err := r.fdatasync(f.Fd()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLogSyncerFallsBack(t *testing.T) {
	s := newLogSyncer()
	defer s.close()
	if !s.usesRing() {
		t.Skip("no io_uring here")
	}
	f := testLogFile(t, "log")
	if err := s.syncData(f); err != nil {
		t.Fatal(err)
	}
	// The ring fails (here: closed underneath): the sync goes on
	// without it, and so do the later ones.
	_ = s.ring.close()
	for range 2 {
		if err := s.syncData(f); err != nil {
			t.Fatalf("sync after the ring failed: %v", err)
		}
		if s.usesRing() {
			t.Fatal("a failed ring is still in use")
		}
	}
	// A sync's own failure is reported, through either path.
	_ = f.Close()
	if err := s.syncData(f); err == nil {
		t.Fatal("sync of a closed file succeeded")
	}
}

func TestStoreSyncsThroughURing(t *testing.T) {
	testRing(t) // skips where the kernel refuses one
	s, err := Open(filepath.Join(t.TempDir(), "db"), StoreConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.syncer.usesRing() {
		t.Fatal("the store syncs without the ring the kernel offers")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.syncer.usesRing() {
		t.Fatal("a closed store keeps its ring")
	}
}

func TestStoreCloseReleasesURing(t *testing.T) {
	testRing(t) // skips where the kernel refuses one
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skipf("no /proc/self/fd: %v", err)
		}
		return len(ents)
	}
	dir := t.TempDir()
	before := fds()
	const stores = 20
	var closed []*Store // reachable, so no finalizer closes what Close left open
	for i := range stores {
		s, err := Open(filepath.Join(dir, string(rune('a'+i))), StoreConfig{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Update([]byte("k"), vclock.VClock{}, "n1", Version{Value: []byte("v")}); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		closed = append(closed, s)
	}
	// A store leaking its ring would leave one descriptor per store.
	if after := fds(); after > before+2 {
		t.Fatalf("%d descriptors open after opening and closing %d stores, %d before", after, len(closed), before)
	}
}
