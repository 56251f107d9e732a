package kv

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// item is one entry of a page with the encoding of its object, as stored.
type item struct {
	Entry
	enc []byte
}

// size is what an item counts for against a page's limit.
func (it item) size() int { return len(it.Key) + len(it.enc) }

// page collects items up to a limit of bytes of keys and encoded objects:
// an item is added while the page is below the limit, so a page holds at
// least one item and passes the limit by at most its last one.
type page struct {
	limit int
	size  int
	items []item
	full  bool // the limit is reached: items may follow the last one
	// scanned counts the entries the page was read from: its items and
	// those before its last that it left out.
	scanned int
}

// add decodes and adds the object enc of key, both copied, and reports
// whether the page is now full.
func (p *page) add(key, enc []byte) (bool, error) {
	o, err := DecodeObject(enc)
	if err != nil {
		return false, fmt.Errorf("kv: stored object of %q: %w", key, err)
	}
	p.addItem(item{Entry{Key: slices.Clone(key), Object: o}, slices.Clone(enc)})
	return p.full, nil
}

// fill adds to p the pairs of c from the bucket key from on (nil: the
// first) while within holds for them and p is not full, skipping those
// whose key (the bucket key without its first strip bytes) keep rejects
// (nil: keeps all).
func fill(c *bolt.Cursor, from []byte, strip int, within, keep func(k []byte) bool, p *page) error {
	k, v := c.First()
	if from != nil {
		k, v = c.Seek(from)
	}
	for ; k != nil && !p.full && within(k); k, v = c.Next() {
		p.scanned++
		if keep != nil && !keep(k[strip:]) {
			continue
		}
		if _, err := p.add(k[strip:], v); err != nil {
			return err
		}
	}
	return nil
}

func always([]byte) bool { return true }

// scanPage returns the entries of group g in segments (increasing) whose
// keys come after the key after in segment and key order (nil: from the
// first), as one page of at most limit bytes: the page of an exchange.
// full says it ended at its limit, so that entries may follow its last.
// Every entry is read in one read transaction of the bbolt file, after
// the writes committed before the call are flushed to it.
func (s *Store) scanPage(g string, segments []int, after []byte, limit int) (page, error) {
	group := s.index.grouping()
	p := page{limit: limit}
	var start []byte
	if after != nil {
		start = s.after(after)
	}
	if err := s.flush(); err != nil {
		return p, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketData).Cursor()
		for _, seg := range segments {
			prefix := binary.BigEndian.AppendUint32(nil, uint32(seg))
			from := prefix
			if bytes.Compare(start, prefix) > 0 {
				if !bytes.HasPrefix(start, prefix) {
					continue // the segment lies wholly before start
				}
				from = start
			}
			within := func(k []byte) bool { return bytes.HasPrefix(k, prefix) }
			if err := fill(c, from, 4, within, func(key []byte) bool { return group(key) == g }, &p); err != nil || p.full {
				return err
			}
		}
		return nil
	})
	return p, err
}

// pageFrom returns the keys this node holds after the key after in
// segment and key order (nil: from the first) that keep accepts (nil:
// all), as one page of at most limit bytes: a page of a handover or a
// rebalance.
func (s *Store) pageFrom(after []byte, limit int, keep func(key []byte) bool) (page, error) {
	p := page{limit: limit}
	var start []byte
	if after != nil {
		start = s.after(after)
	}
	if err := s.flush(); err != nil {
		return p, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		return fill(tx.Bucket(bucketData).Cursor(), start, 4, always, keep, &p)
	})
	return p, err
}

// count returns how many keys the store holds.
func (s *Store) count() (int, error) {
	if err := s.flush(); err != nil {
		return 0, err
	}
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketData).Stats().KeyN
		return nil
	})
	return n, err
}

// MergeAll merges each entry's object into its key's object, as [Store.Merge]
// does, all in one commit with one fsync, and returns how many keys
// changed. An invalid key fails it before anything is written, and so
// does a failure of any entry: all or nothing is written.
func (s *Store) MergeAll(entries []Entry) (int, error) {
	for _, e := range entries {
		if err := checkKey(e.Key); err != nil {
			return 0, err
		}
	}
	s.writing.RLock()
	defer s.writing.RUnlock()
	var changes []change
	err := s.commits.update(func(b *batch) error {
		for _, e := range entries {
			_, c, changed, err := b.apply(s.dataKey(e.Key), e.Key, func(_ *batch, o *Object) error { o.Sync(e.Object); return nil }, Object{})
			if err != nil {
				return err
			}
			if changed {
				changes = append(changes, c)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, c := range changes {
		s.index.committed(c)
	}
	return len(changes), nil
}

// page returns the hints held for target whose keys come after the key
// after (nil: from the first), in key order, as one page of at most limit
// bytes.
func (h *HintStore) page(target string, after []byte, limit int) (page, error) {
	p := page{limit: limit}
	var start []byte
	if after != nil {
		start = append(slices.Clone(after), 0)
	}
	err := h.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHints).Bucket([]byte(target))
		if b == nil {
			return nil
		}
		return fill(b.Cursor(), start, 0, always, nil, &p)
	})
	return p, err
}

// inGroup reports whether id is one of the replicas of group g.
func inGroup(g, id string) bool { return slices.Contains(strings.Split(g, ","), id) }
