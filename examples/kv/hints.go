package kv

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
)

// HintStore is the bounded, durable set of hints one node holds for
// others: writes it took as a fallback for a home replica that could not
// take them (sloppy quorum), one merged object per target and key. It
// lives in a bbolt file of its own next to the store's data (the data
// file's path with ".hints" appended), under a lock of its own, so that
// the fsync of a hint never holds up a write of the data, the store's
// trees or an anti-entropy exchange.
//
// A HintStore is safe for concurrent use. Get it from [Store.Hints]; it
// is usable while its Store is open.
type HintStore struct {
	db  *bolt.DB
	max int

	// mu serialises the changes of the set, so that the count below is
	// exact, and is held by [Store.Reap] across its check that no hint for
	// the key is held and its delete, so that no hint arrives between them.
	mu sync.Mutex
	// count is the hints held, across targets: changed under mu once a
	// change committed, read without it by [HintStore.Object], which
	// skips the file while it is 0.
	count  atomic.Int64
	since  map[string]time.Time // target → when its hints last went from none to some
	opened time.Time
}

// bucketHints holds one sub-bucket per target node: [key] → encoded
// Object. A data file written before hints had a file of their own keeps
// them in a bucket of the same name, moved to the hint file at Open.
var bucketHints = []byte("hints")

// openHints opens (creating if needed) the hint file at path and counts
// its hints.
func openHints(path string, cfg StoreConfig) (*HintStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, err
	}
	db.NoSync = cfg.NoSync
	h := &HintStore{db: db, max: cfg.MaxHints, opened: time.Now()}
	err = db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketHints)
		return err
	})
	if err == nil {
		err = h.recount()
	}
	if err != nil {
		return nil, errors.Join(err, db.Close())
	}
	return h, nil
}

// recount sets the count of hints from the file.
func (h *HintStore) recount() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHints).ForEachBucket(func(name []byte) error {
			n += tx.Bucket(bucketHints).Bucket(name).Stats().KeyN
			return nil
		})
	})
	h.count.Store(int64(n))
	return err
}

// adopt moves into the hint file the hints that the data file's write
// transaction from still holds, from before hints had a file of their
// own. A crash between the two commits leaves the hints in both files,
// and the next adopt merges them again, which changes nothing.
func (h *HintStore) adopt(from *bolt.Tx) error {
	if from.Bucket(bucketHints) == nil {
		return nil
	}
	if err := h.db.Update(func(to *bolt.Tx) error { return moveHints(from, to) }); err != nil {
		return err
	}
	return h.recount()
}

// moveHints moves the hints of an older data file's hint bucket, if it
// has one, from its transaction from into the hint file's transaction to,
// merging them with any held there.
func moveHints(from, to *bolt.Tx) error {
	old := from.Bucket(bucketHints)
	if old == nil {
		return nil
	}
	err := old.ForEachBucket(func(target []byte) error {
		b, err := to.Bucket(bucketHints).CreateBucketIfNotExists(target)
		if err != nil {
			return err
		}
		return old.Bucket(target).ForEach(func(k, v []byte) error {
			return putHint(b, k, v)
		})
	})
	if err != nil {
		return err
	}
	return from.DeleteBucket(bucketHints)
}

// putHint merges the encoded object v into the hint for k in the target
// bucket b.
func putHint(b *bolt.Bucket, k, v []byte) error {
	if old := b.Get(k); old != nil {
		cur, err := DecodeObject(old)
		if err != nil {
			return err
		}
		o, err := DecodeObject(v)
		if err != nil {
			return err
		}
		cur.Sync(o)
		if v, err = EncodeObject(cur); err != nil {
			return err
		}
	}
	return b.Put(k, v)
}

func (h *HintStore) close() error { return h.db.Close() }

func checkTarget(target string) error {
	if target == "" || len(target) > bolt.MaxKeySize || bytes.IndexByte([]byte(target), 0) >= 0 {
		return fmt.Errorf("%w: hint target %q", ErrBadKey, target)
	}
	return nil
}

// Add durably keeps o for key on behalf of the node target, which could
// not take the write (sloppy quorum), merging it with any hint already
// held for the same target and key. It returns [ErrHintsFull] when the
// hint would be a new one beyond [StoreConfig.MaxHints], and [ErrBadKey]
// for an invalid key or target.
func (h *HintStore) Add(target string, key []byte, o Object) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if err := checkTarget(target); err != nil {
		return err
	}
	enc, err := EncodeObject(o)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	added := false
	err = h.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.Bucket(bucketHints).CreateBucketIfNotExists([]byte(target))
		if err != nil {
			return err
		}
		if b.Get(key) == nil {
			if n := h.count.Load(); n >= int64(h.max) {
				return fmt.Errorf("%w: %d hints", ErrHintsFull, n)
			}
			added = true
		}
		return putHint(b, key, enc)
	})
	if err == nil && added {
		h.count.Add(1)
		h.noteHeld(target)
	}
	return err
}

// Len returns the number of hints held, across targets.
func (h *HintStore) Len() int { return int(h.count.Load()) }

// Targets returns the nodes hints are held for, sorted.
func (h *HintStore) Targets() ([]string, error) {
	var out []string
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHints).ForEachBucket(func(name []byte) error {
			if tx.Bucket(bucketHints).Bucket(name).Stats().KeyN > 0 {
				out = append(out, string(name))
			}
			return nil
		})
	})
	return out, err
}

// For returns up to limit hints held for target, in key order.
func (h *HintStore) For(target string, limit int) ([]Entry, error) {
	var out []Entry
	err := h.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHints).Bucket([]byte(target))
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, v := c.First(); k != nil && len(out) < limit; k, v = c.Next() {
			o, err := DecodeObject(v)
			if err != nil {
				return err
			}
			out = append(out, Entry{Key: slices.Clone(k), Object: o})
		}
		return nil
	})
	return out, err
}

// Object returns the merge of every hint held for key, whatever the
// target, and false if there is none: what this node knows of a key it
// holds only as a fallback.
func (h *HintStore) Object(key []byte) (Object, bool, error) {
	if h.count.Load() == 0 {
		return Object{}, false, nil // the read of every key skips the file
	}
	var (
		o     Object
		found bool
	)
	err := h.db.View(func(tx *bolt.Tx) error {
		return eachHint(tx, key, func(v []byte) error {
			ho, err := DecodeObject(v)
			if err != nil {
				return err
			}
			o.Sync(ho)
			found = true
			return nil
		})
	})
	return o, found, err
}

// holds reports whether a hint for key is held, for any target.
func (h *HintStore) holds(key []byte) (bool, error) {
	held := false
	err := h.db.View(func(tx *bolt.Tx) error {
		return eachHint(tx, key, func([]byte) error {
			held = true
			return errStop
		})
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return held, err
}

// errStop ends an iteration early.
var errStop = errors.New("stop")

// eachHint calls f with the encoded hint held for key for each target
// that has one, stopping at f's first error.
func eachHint(tx *bolt.Tx, key []byte, f func(v []byte) error) error {
	hb := tx.Bucket(bucketHints)
	return hb.ForEachBucket(func(name []byte) error {
		if v := hb.Bucket(name).Get(key); v != nil {
			return f(v)
		}
		return nil
	})
}

// Drop removes the hint for target and key once it was delivered, but
// only if it is still delivered, the object given: a hint that grew since
// is kept for the next delivery. It reports whether it removed the hint.
func (h *HintStore) Drop(target string, key []byte, delivered Object) (bool, error) {
	want, err := EncodeObject(delivered)
	if err != nil {
		return false, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	dropped := false
	var emptied []byte // the first key left for target; nil: none
	err = h.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHints).Bucket([]byte(target))
		if b == nil || !bytes.Equal(b.Get(key), want) {
			return nil
		}
		dropped = true
		if err := b.Delete(key); err != nil {
			return err
		}
		emptied, _ = b.Cursor().First()
		return nil
	})
	if err == nil && dropped {
		h.count.Add(-1)
		if emptied == nil {
			delete(h.since, target)
		}
	}
	return dropped, err
}

// noteHeld records that target holds hints from now on, unless it
// already did. h.mu must be held.
func (h *HintStore) noteHeld(target string) {
	if _, ok := h.since[target]; ok {
		return
	}
	if h.since == nil {
		h.since = map[string]time.Time{}
	}
	h.since[target] = time.Now()
}

// Pending is the hints held for one target. It is a plain value.
type Pending struct {
	Target string
	Count  int
	// Since is when the target's hints last went from none to some: an
	// upper bound on the time its oldest hint was taken (for hints
	// already in the file when it was opened, the time it was opened).
	Since time.Time
}

// Pending returns the hints held per target, in target order. It reads
// every target's count from the file: a cost proportional to the hints
// held (at most [StoreConfig.MaxHints]).
func (h *HintStore) Pending() ([]Pending, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []Pending
	err := h.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHints).ForEachBucket(func(name []byte) error {
			if k := tx.Bucket(bucketHints).Bucket(name).Stats().KeyN; k > 0 {
				since, ok := h.since[string(name)]
				if !ok {
					since = h.opened
				}
				out = append(out, Pending{Target: string(name), Count: k, Since: since})
			}
			return nil
		})
	})
	return out, err
}

// Path returns the path of the hint file.
func (h *HintStore) Path() string { return h.db.Path() }
