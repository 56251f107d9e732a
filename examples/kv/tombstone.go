package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Dead reports whether o is a deleted key: it has versions and every one
// is a tombstone. Only dead objects are reaped.
func Dead(o Object) bool {
	dead := o.Len() > 0
	eachValue(o, func(v Version) bool {
		dead = v.Deleted
		return dead
	})
	return dead
}

// eachValue calls f with each value of o, in no particular order, until f
// returns false. It allocates nothing for an object without anonymous
// values, as every object built with Update and Sync is.
func eachValue(o Object, f func(v Version) bool) {
	dotted := 0
	for _, v := range o.Dotted() {
		if !f(v) {
			return
		}
		dotted++
	}
	if anon := o.Len() - dotted; anon > 0 {
		for _, v := range o.Values()[:anon] { // the anonymous values come first
			if !f(v) {
				return
			}
		}
	}
}

// getUint64 reads a big-endian uint64 from b, 0 when absent.
func getUint64(b *bolt.Bucket, key []byte) uint64 {
	if v := b.Get(key); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// Tombstones returns up to limit keys with their objects that have been
// dead ([Dead]) and unchanged on this replica since before the time
// before, in segment and key order, leaving out the keys keep rejects
// (nil: keep all).
func (s *Store) Tombstones(before time.Time, keep func(key []byte) bool, limit int) ([]Entry, error) {
	out, _, err := s.tombstonesFrom(nil, before, keep, limit)
	return out, err
}

// tombstonesFrom is Tombstones starting at the data key from (nil: the
// first) and wrapping around to the keys before it, so that passes that
// each take limit keys visit every due key in turn. next is where the
// following pass starts: after the last key returned when limit keys
// were, and nil when the scan went all the way round.
func (s *Store) tombstonesFrom(from []byte, before time.Time, keep func(key []byte) bool, limit int) (out []Entry, next []byte, err error) {
	if err := s.flush(); err != nil {
		return nil, nil, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		data, c := tx.Bucket(bucketData), tx.Bucket(bucketTombs).Cursor()
		dk, at := c.First()
		if from != nil {
			dk, at = c.Seek(from)
		}
		for wrapped := from == nil; len(out) < limit; dk, at = c.Next() {
			if dk == nil && !wrapped {
				wrapped = true
				dk, at = c.First()
			}
			if dk == nil || wrapped && from != nil && bytes.Compare(dk, from) >= 0 {
				return nil // all the way round
			}
			if len(at) != 8 || int64(binary.BigEndian.Uint64(at)) >= before.UnixNano() {
				continue
			}
			if keep != nil && !keep(dk[4:]) {
				continue
			}
			o, err := DecodeObject(data.Get(dk))
			if err != nil {
				return err
			}
			out = append(out, Entry{Key: slices.Clone(dk[4:]), Object: o})
		}
		if len(out) > 0 {
			next = s.after(out[len(out)-1].Key)
		}
		return nil
	})
	return out, next, err
}

// after returns the first data key after key's.
func (s *Store) after(key []byte) []byte { return append(s.dataKey(key), 0) }

// ownFloor returns the largest counter in o's history of an actor of
// this store, "<node ID>.<epoch>" with this store's epoch: the dots it
// numbered itself. Other writers' counters, which a peer or a client
// may have chosen, never raise the floor.
func (s *Store) ownFloor(o Object) uint64 {
	var floor uint64
	for id, c := range o.Context().All() {
		if strings.HasSuffix(id, "."+s.epoch) {
			floor = max(floor, c)
		}
	}
	return floor
}

// errNotReapable fails a reap that must not happen.
var errNotReapable = errors.New("not reapable")

// reapable reports whether key, whose entry is cur (nil: absent), may be
// reaped with the dead object whose encoding is want: this store holds
// no hint for key, and its object for key is absent or encodes to want.
// present reports whether it holds the object.
func (s *Store) reapable(cur *memEntry, key, want []byte) (ok, present bool, err error) {
	present = cur != nil && cur.enc != nil
	if present && !bytes.Equal(cur.enc, want) {
		return false, true, nil
	}
	hinted, err := s.hints.holds(key)
	return !hinted && err == nil, present, err
}

// Reapable reports whether [Store.Reap] of key with o would not be
// refused: o is dead, this store holds no hint for key, and its object
// for key is absent or equal to o.
func (s *Store) Reapable(key []byte, o Object) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	want, err := EncodeObject(o)
	if err != nil || !Dead(o) {
		return false, err
	}
	cur, err := s.lookup(s.dataKey(key))
	if err != nil {
		return false, err
	}
	ok, _, err := s.reapable(cur, key, want)
	return ok, err
}

// Reap deletes key's dead object o, the tombstone every replica of the
// key holds, from this store: it is a compare-and-delete that happens
// only if the stored object still equals o and no hint for key is held
// here, and that raises the store's reap floor to the largest counter of
// this store's own actors in o ([Store.ownFloor]) in the same commit.
// When [Store.Update] writes as an actor of which
// the key's object holds no value, it numbers the new dot above the floor
// and lets the write's context cover the floor: its dots are not reused
// after a reap, and a late copy of a reaped version the same actor wrote
// is superseded by that write instead of coming back as its sibling
// (copies of other actors' versions are kept out by [Node.Reap]'s
// conditions alone; see the package documentation for what they cannot
// see). It reports whether it deleted the key; a key already absent is
// not an error.
func (s *Store) Reap(key []byte, o Object) (bool, error) {
	if err := checkKey(key); err != nil {
		return false, err
	}
	if !Dead(o) {
		return false, fmt.Errorf("kv: reap of %q: the object has live values", key)
	}
	want, err := EncodeObject(o)
	if err != nil {
		return false, err
	}
	floor := s.ownFloor(o)
	dk := s.dataKey(key)
	s.writing.RLock()
	defer s.writing.RUnlock()
	// No hint for key may arrive between the check and the delete.
	s.hints.mu.Lock()
	defer s.hints.mu.Unlock()
	err = s.commits.update(func(b *batch) error {
		cur, err := b.lookup(dk)
		if err != nil {
			return err
		}
		ok, present, err := s.reapable(cur, key, want)
		if err != nil || !ok || !present {
			return cmp.Or(err, errNotReapable)
		}
		b.raiseFloor(floor)
		b.put(dk, &memEntry{})
		return nil
	})
	if errors.Is(err, errNotReapable) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("kv: reap of %q: %w", key, err)
	}
	s.index.committed(change{key: key, old: hashBytes(want), existed: true})
	return true, nil
}
