package kv

import (
	"errors"
	"os"
	"runtime"
	"sync"
	"syscall"
)

// logSyncer makes the log's writes durable with fdatasync, as bbolt does
// on Linux: the file's size and blocks do not change on a commit into a
// zero-filled segment, so no metadata needs writing. It runs the sync
// through an io_uring where the kernel allows one ([uring]), and calls
// fdatasync itself where it does not, or once its ring failed. It is
// safe for concurrent use; the zero value calls fdatasync itself.
type logSyncer struct {
	mu   sync.Mutex
	ring *uring // nil: none
}

// newLogSyncer returns a syncer with a ring if one can be set up.
func newLogSyncer() *logSyncer {
	r, err := newURing()
	if err != nil {
		return &logSyncer{}
	}
	return &logSyncer{ring: r}
}

// syncData makes f's written data durable.
func (s *logSyncer) syncData(f *os.File) error {
	if r := s.current(); r != nil {
		err := r.fdatasync(f.Fd())
		runtime.KeepAlive(f) // open until the sync ended
		if !errors.Is(err, errRing) {
			return err
		}
		s.forget(r)
	}
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// usesRing reports whether syncs go through a ring.
func (s *logSyncer) usesRing() bool { return s.current() != nil }

func (s *logSyncer) current() *uring {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ring
}

// forget stops using r, which failed and closed itself.
func (s *logSyncer) forget(r *uring) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ring == r {
		s.ring = nil
	}
}

// close releases the ring; syncs after close call fdatasync themselves.
func (s *logSyncer) close() error {
	s.mu.Lock()
	r := s.ring
	s.ring = nil
	s.mu.Unlock()
	if r == nil {
		return nil
	}
	return r.close()
}
