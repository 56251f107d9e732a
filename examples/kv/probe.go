package kv

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrStorage wraps the errors of [Store.Probe]: this node's own disk
// failed a write or a read.
var ErrStorage = errors.New("kv: local storage failed")

// bucketProbe holds the record [Store.Probe] writes; nothing else reads it.
var bucketProbe = []byte("probe")

// Probe checks that the store's files take a write and give it back: it
// writes a fresh record to the data file and to the hint file, each
// committed and fsync'd as every write is, and reads each back, and it
// reports a failure of the write-ahead log, which fails every write
// until the store is reopened. Its errors wrap [ErrStorage]. It is for
// health checks: every call costs two commits.
func (s *Store) Probe() error {
	s.logMu.Lock()
	failed := s.failed
	s.logMu.Unlock()
	if failed != nil {
		return failed
	}
	for name, db := range map[string]*bolt.DB{"data": s.db, "hints": s.hints.db} {
		if err := probe(db); err != nil {
			return fmt.Errorf("%w: %s file %s: %w", ErrStorage, name, db.Path(), err)
		}
	}
	return nil
}

// probe writes a fresh record to db and reads it back.
func probe(db *bolt.DB) error {
	want := strconv.AppendInt(nil, time.Now().UnixNano(), 10)
	err := db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketProbe)
		if err != nil {
			return err
		}
		return b.Put(bucketProbe, want)
	})
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	var got []byte
	err = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketProbe); b != nil {
			got = slices.Clone(b.Get(bucketProbe))
		}
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("read: %w", err)
	case !bytes.Equal(got, want):
		return fmt.Errorf("read back %q after writing %q", got, want)
	}
	return nil
}

// isStorage reports whether err is a failure of this node's own storage:
// [ErrStorage], bbolt's refusals of a closed or read-only file, or an
// error of the file system or the disk.
func isStorage(err error) bool {
	var pe *fs.PathError
	return errors.Is(err, ErrStorage) || errors.As(err, &pe) ||
		errors.Is(err, bolterrors.ErrDatabaseNotOpen) || errors.Is(err, bolterrors.ErrDatabaseReadOnly) ||
		errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EROFS)
}
