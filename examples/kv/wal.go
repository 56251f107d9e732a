package kv

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	bolt "go.etcd.io/bbolt"

	"github.com/distkit/distkit/internal/frame"
)

// The write-ahead log. A commit of a batch of writes appends one frame to
// the current segment of the log and fsyncs it (unless
// [StoreConfig.NoSync]); that is what makes the writes durable. The
// writes then go into the memory table, which serves reads and writes,
// and a checkpoint later applies them to the bbolt file in one
// transaction and deletes the segments they came from.
//
// A segment is the file "<data file>.log.<16 hex digits>", numbered in
// the order of writing. It starts with a header, logMagic followed by the
// store's epoch as a uvarint length and its bytes, and continues with
// frames of package internal/frame (a 12-byte header with the payload's
// length and CRC-32C and its own CRC-32C, then the payload) up to the
// zeros the segment was filled with. A payload is a sequence of records,
// the writes of a batch, each a record kind byte and its fields:
//
//	recPut:    uvarint len, data key; uvarint len, encoded object;
//	           uvarint tombstone time (Unix ns, 0: the object is live)
//	recDelete: uvarint len, data key (a reap)
//	recFloor:  uvarint reap floor
//
// Every record is an after-image (the whole object, the floor itself), so
// replaying a segment over a bbolt file that already holds some of it
// yields the same state: recovery is idempotent.
//
// Only the frames of the current commit are ever unacknowledged, and
// they end the last segment: a crash can tear them and nothing else.
// Recovery therefore cuts the last segment at its first frame that is
// not intact when nothing intact follows it; a bad frame followed by an
// intact one, a bad frame in any other segment, or an intact frame whose
// records do not parse is damage, and Open refuses the store rather than
// drop acknowledged writes.

// logMagic starts every segment.
const logMagic = "dkvlog\x00\x01"

// The kinds of record.
const (
	recPut    byte = 1
	recDelete byte = 2
	recFloor  byte = 3
)

// DefaultCheckpointBytes is the size of the log at which a checkpoint
// starts unless configured: LevelDB's default write buffer.
const DefaultCheckpointBytes = 4 << 20

// errBadLog is wrapped by the errors of a log that Open refuses.
var errBadLog = errors.New("kv: corrupt write-ahead log")

// record is one decoded record of the log.
type record struct {
	kind  byte
	dk    []byte // recPut, recDelete
	enc   []byte // recPut
	tomb  uint64 // recPut
	floor uint64 // recFloor
}

// appendPut appends a recPut record to buf.
func appendPut(buf, dk, enc []byte, tomb int64) []byte {
	buf = append(buf, recPut)
	buf = binary.AppendUvarint(buf, uint64(len(dk)))
	buf = append(buf, dk...)
	buf = binary.AppendUvarint(buf, uint64(len(enc)))
	buf = append(buf, enc...)
	return binary.AppendUvarint(buf, uint64(tomb))
}

// appendDelete appends a recDelete record to buf.
func appendDelete(buf, dk []byte) []byte {
	buf = append(buf, recDelete)
	buf = binary.AppendUvarint(buf, uint64(len(dk)))
	return append(buf, dk...)
}

// appendFloor appends a recFloor record to buf.
func appendFloor(buf []byte, floor uint64) []byte {
	return binary.AppendUvarint(append(buf, recFloor), floor)
}

// logHeader returns the header of a segment of the store of epoch.
func logHeader(epoch string) []byte {
	h := binary.AppendUvarint([]byte(logMagic), uint64(len(epoch)))
	return append(h, epoch...)
}

// readRecords calls f with each record of a frame's payload. Bytes that
// do not parse as records are an error wrapping errBadLog. The slices of
// a record point into payload.
func readRecords(payload []byte, f func(r record) error) error {
	for len(payload) > 0 {
		r := record{kind: payload[0]}
		payload = payload[1:]
		var ok bool
		switch r.kind {
		case recPut:
			if r.dk, payload, ok = readBytes(payload); !ok {
				break
			}
			if r.enc, payload, ok = readBytes(payload); !ok {
				break
			}
			r.tomb, payload, ok = readUvarint(payload)
		case recDelete:
			r.dk, payload, ok = readBytes(payload)
		case recFloor:
			r.floor, payload, ok = readUvarint(payload)
		default:
			return fmt.Errorf("%w: record kind %d", errBadLog, r.kind)
		}
		if !ok {
			return fmt.Errorf("%w: record of kind %d cut short", errBadLog, r.kind)
		}
		if err := f(r); err != nil {
			return err
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func readUvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

func readBytes(b []byte) ([]byte, []byte, bool) {
	n, b, ok := readUvarint(b)
	if !ok || n > uint64(len(b)) {
		return nil, b, false
	}
	return b[:n], b[n:], true
}

// segmentPath returns the path of segment seq of the log of the data
// file at path.
func segmentPath(path string, seq uint64) string {
	return fmt.Sprintf("%s.log.%016x", path, seq)
}

// segments returns the numbers of the log segments of the data file at
// path, in increasing order.
func segments(path string) ([]uint64, error) {
	dir, base := filepath.Split(path)
	ents, err := os.ReadDir(filepath.Clean(dir + "."))
	if err != nil {
		return nil, err
	}
	var seqs []uint64 // ReadDir sorts by name, and the numbers have 16 digits
	for _, e := range ents {
		hex, ok := strings.CutPrefix(e.Name(), base+".log.")
		if !ok || len(hex) != 16 {
			continue
		}
		if seq, err := strconv.ParseUint(hex, 16, 64); err == nil {
			seqs = append(seqs, seq)
		}
	}
	return seqs, nil
}

// readSegment reads the segment file at path of the store of epoch, calls
// f with each record of its intact frames, and returns whether its last
// frame was torn. A header that is cut short counts as torn (the crash
// came as the segment was created); a header of another store or format
// is an error.
func readSegment(path, epoch string, f func(r record) error) (torn bool, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	return parseSegment(b, path, epoch, f)
}

// parseSegment is readSegment of the bytes b of the segment at path.
func parseSegment(b []byte, path, epoch string, f func(r record) error) (torn bool, err error) {
	h := logHeader(epoch)
	if len(b) < len(h) {
		if string(b) != string(h[:len(b)]) {
			return false, fmt.Errorf("%w: %s: not a log segment of this store (epoch %q)", errBadLog, path, epoch)
		}
		return true, nil
	}
	if string(b[:len(h)]) != string(h) {
		return false, fmt.Errorf("%w: %s: not a log segment of this store (epoch %q): a log left from another data file?", errBadLog, path, epoch)
	}
	b = b[len(h):]
	end, err := frame.Scan(b, maxFrame, func(_ int, payload []byte) error { return readRecords(payload, f) })
	if errors.Is(err, frame.ErrDamaged) {
		return false, fmt.Errorf("%w: %s: %w", errBadLog, path, err)
	}
	if err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return !allZero(b[end:]), nil
}

// createSegment creates the segment file at path with its header and
// returns it with the offset of its first frame. Unless noSync, it fills
// the file with zeros to size bytes and syncs it with its directory: the
// segment exists after a crash, and a commit's sync writes data alone,
// no file size or block allocation, as long as the segment stays within
// size (PostgreSQL fills its WAL segments with zeros for the same
// reason).
func createSegment(path, epoch string, size int, noSync bool) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	if err != nil {
		return nil, 0, err
	}
	h := logHeader(epoch)
	_, err = f.Write(h)
	if err == nil && !noSync {
		zeros := make([]byte, 64<<10)
		for n := len(h); n < size && err == nil; n += len(zeros) {
			_, err = f.Write(zeros[:min(len(zeros), size-n)])
		}
		err = cmp.Or(err, f.Sync(), syncDir(filepath.Dir(path)))
	}
	if err != nil {
		return nil, 0, errors.Join(err, f.Close(), os.Remove(path))
	}
	return f, int64(len(h)), nil
}

// syncDir fsyncs the directory at dir, making the creation and removal of
// its files durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// memEntry is a key's state in the memory table: its object, decoded and
// encoded, or its reap. An entry is never changed once a batch stages it:
// a write stages a new one, so readers share entries without a lock.
type memEntry struct {
	obj Object
	enc []byte // nil: reaped
	// tomb is when the object last changed while dead (Unix ns), as the
	// tombstone record keeps it, and 0 while it has a live value.
	tomb int64
}

// lookup returns the entry of the data key dk: from the memory table, or
// read from the bbolt file (nil when absent from both). An entry whose
// enc is nil is a reaped key. The memory table is read before the file:
// a checkpoint commits its writes to the file before it drops them from
// memory, so a key missing from memory is up to date in the file.
func (s *Store) lookup(dk []byte) (*memEntry, error) {
	s.mu.RLock()
	e, ok := s.active[string(dk)]
	if !ok {
		e, ok = s.imm[string(dk)]
	}
	s.mu.RUnlock()
	if ok {
		return e, nil
	}
	return s.read(slices.Clone(dk)) // dk itself may be on the caller's stack
}

// read returns the entry of the data key dk in the bbolt file, nil when
// absent.
func (s *Store) read(dk []byte) (*memEntry, error) {
	var e *memEntry
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketData).Get(dk)
		if b == nil {
			return nil
		}
		o, err := DecodeObject(b)
		if err != nil {
			return fmt.Errorf("kv: stored object of %q: %w", dk[4:], err)
		}
		e = &memEntry{obj: o, enc: slices.Clone(b)}
		return nil
	})
	return e, err
}

// checkpoint applies the log's writes, as the memory table holds them, to
// the bbolt file in one transaction (synced unless NoSync), and then
// deletes the log segments they came from: the writes since the last
// checkpoint move from the log and memory to the file, while new writes
// go on into a new segment and memory table. It does nothing when the
// log holds no write. A failure of the file fails the store's later
// writes ([Store.fail]); the log keeps the writes for the next Open.
func (s *Store) checkpoint() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	imm, floor, old, err := s.rotate()
	if err != nil || imm == nil {
		return err
	}
	if err := s.apply(imm, floor); err != nil {
		return err
	}
	s.mu.Lock()
	s.imm = nil
	s.mu.Unlock()
	if err := s.removeSegment(old); err != nil {
		s.logMu.Lock()
		defer s.logMu.Unlock()
		return s.fail(err)
	}
	return nil
}

// removeSegment deletes segment seq and syncs the removal (unless
// NoSync) before any later segment can be removed: a segment left behind
// is replayed again by the next Open, which changes nothing only if
// every later segment is there too.
func (s *Store) removeSegment(seq uint64) error {
	err := os.Remove(segmentPath(s.path, seq))
	if err == nil && !s.cfg.NoSync {
		err = syncDir(filepath.Dir(s.path))
	}
	return err
}

// flush applies to the bbolt file, in one transaction, the writes
// committed since the last flush or checkpoint, and leaves them in the
// log and in memory: a scan of the file that follows sees every write
// committed before the flush, at the cost of a bbolt commit and without
// a new segment. Replaying the log over the file later changes nothing
// it holds, as the log's records are after-images. A failure of the
// file fails the store's later writes ([Store.fail]).
func (s *Store) flush() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.logMu.Lock()
	dirty, floor, err := s.dirty, s.floor, s.failed
	if err != nil || len(dirty) == 0 {
		// dirty is still s.dirty, which commits write under logMu.
		s.logMu.Unlock()
		return err
	}
	s.dirty = map[string]*memEntry{}
	s.logMu.Unlock()
	return s.apply(dirty, floor)
}

// apply writes entries, by data key, and the reap floor to the bbolt
// file in one transaction, synced unless NoSync. A failure fails the
// store.
func (s *Store) apply(entries map[string]*memEntry, floor uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		data, tombs, meta := tx.Bucket(bucketData), tx.Bucket(bucketTombs), tx.Bucket(bucketMeta)
		for _, dk := range slices.Sorted(maps.Keys(entries)) { // bbolt fills pages best in order
			if err := putEntry(data, tombs, []byte(dk), entries[dk].enc, entries[dk].tomb); err != nil {
				return err
			}
		}
		return raiseFloor(meta, floor)
	})
	if err != nil {
		s.logMu.Lock()
		defer s.logMu.Unlock()
		return s.fail(fmt.Errorf("checkpoint to %s: %w", s.path, err))
	}
	return nil
}

// rotate moves the memory table's entries to the table a checkpoint
// writes (imm) and the log to a new segment, and returns those entries,
// the reap floor and the number of the segment that holds their records.
// It returns nil entries when the log holds no write. The new segment is
// created before logMu is taken, so that commits go on meanwhile. s.ckptMu
// is held, so that the segment number is rotate's alone to change.
func (s *Store) rotate() (imm map[string]*memEntry, floor, old uint64, err error) {
	s.logMu.Lock()
	next, size, err := s.logSeq+1, s.logSize, s.failed
	s.logMu.Unlock()
	if err != nil || size == 0 {
		return nil, 0, 0, err
	}
	f, start, err := createSegment(segmentPath(s.path, next), s.origin, s.segmentBytes(), s.cfg.NoSync)
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if err != nil {
		return nil, 0, 0, s.fail(err)
	}
	if s.failed != nil {
		return nil, 0, 0, errors.Join(s.failed, f.Close(), os.Remove(f.Name()))
	}
	_ = s.log.Close() // every write in it was synced as it was committed
	old = s.logSeq
	s.log, s.logSeq, s.logStart, s.logSize = f, s.logSeq+1, start, 0
	s.mu.Lock()
	s.imm, s.active = s.active, map[string]*memEntry{}
	imm = s.imm
	s.mu.Unlock()
	clear(s.dirty) // imm holds them all
	return imm, s.floor, old, nil
}

// segmentBytes is the size segments are created with: room for the
// writes up to a checkpoint, and a little more for those that arrive
// while it starts.
func (s *Store) segmentBytes() int { return s.cfg.CheckpointBytes + s.cfg.CheckpointBytes/4 }

// putEntry writes a key's state to the data and tombstone buckets: its
// object enc (nil: reaped, deleted from both) and its tombstone time
// (0: none).
func putEntry(data, tombs *bolt.Bucket, dk, enc []byte, tomb int64) error {
	if enc == nil {
		return errors.Join(data.Delete(dk), tombs.Delete(dk))
	}
	if err := data.Put(dk, enc); err != nil {
		return err
	}
	if tomb == 0 {
		return tombs.Delete(dk)
	}
	return tombs.Put(dk, binary.BigEndian.AppendUint64(nil, uint64(tomb)))
}

// raiseFloor raises the reap floor kept in meta to floor.
func raiseFloor(meta *bolt.Bucket, floor uint64) error {
	if floor <= getUint64(meta, keyFloor) {
		return nil
	}
	return meta.Put(keyFloor, binary.BigEndian.AppendUint64(nil, floor))
}

// recover replays the log left by the last run (all of it, when the
// store was not closed) into the bbolt file in one transaction, deletes
// its segments and starts a new one. A segment torn by a crash is cut at
// its last intact frame; every other defect fails it with an error
// wrapping errBadLog (see the format above).
func (s *Store) recover() error {
	seqs, err := segments(s.path)
	if err != nil {
		return err
	}
	var next uint64 = 1
	if len(seqs) > 0 {
		err = s.db.Update(func(tx *bolt.Tx) error {
			for i, seq := range seqs {
				p := segmentPath(s.path, seq)
				torn, err := readSegment(p, s.origin, func(r record) error { return s.replay(tx, r) })
				if err != nil {
					return err
				}
				if torn && i < len(seqs)-1 {
					return fmt.Errorf("%w: %s: a bad frame in a segment followed by %d more", errBadLog, p, len(seqs)-1-i)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Oldest first, each removal synced before the next: should a crash
		// interrupt them, the segments left are the newest, which replay
		// over the file to the same state.
		for _, seq := range seqs {
			if err := s.removeSegment(seq); err != nil {
				return err
			}
		}
		next = seqs[len(seqs)-1] + 1
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		s.floor = getUint64(tx.Bucket(bucketMeta), keyFloor)
		return nil
	})
	if err != nil {
		return err
	}
	s.log, s.logStart, err = createSegment(segmentPath(s.path, next), s.origin, s.segmentBytes(), s.cfg.NoSync)
	s.logSeq = next
	return err
}

// replay applies one record of the log to the bbolt transaction tx,
// refusing one that the store could not have written: a data key of the
// wrong length or segment, an object that does not decode, a tombstone
// time past 2^63-1.
func (s *Store) replay(tx *bolt.Tx, r record) error {
	if r.kind == recFloor {
		return raiseFloor(tx.Bucket(bucketMeta), r.floor)
	}
	if len(r.dk) < 5 || len(r.dk) > 4+MaxKeyLen || !bytes.Equal(r.dk[:4], s.appendDataKey(nil, r.dk[4:])[:4]) {
		return fmt.Errorf("%w: a record of data key %q", errBadLog, r.dk)
	}
	if r.kind == recPut {
		if r.tomb > math.MaxInt64 {
			return fmt.Errorf("%w: tombstone time %d", errBadLog, r.tomb)
		}
		if _, err := DecodeObject(r.enc); err != nil {
			return fmt.Errorf("%w: the object of %q: %w", errBadLog, r.dk[4:], err)
		}
	}
	return putEntry(tx.Bucket(bucketData), tx.Bucket(bucketTombs), r.dk, r.enc, int64(r.tomb))
}
