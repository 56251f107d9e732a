package saga

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/distkit/distkit/internal/frame"
)

// The FileLog format: the 8 bytes of fileMagic, then frames. A frame is a
// 12-byte header — the payload's length (uint32, little-endian), the
// CRC-32C of the payload, and the CRC-32C of those first 8 bytes — and the
// payload, one msgpack-encoded Record.
const (
	fileMagic   = "DKSAGA\x00\x01"
	frameHeader = frame.HeaderLen

	// MaxRecordSize is the largest encoded record a FileLog accepts, and
	// the largest length it believes when reading a file.
	MaxRecordSize = 16 << 20
)

var (
	// ErrCorrupt is wrapped by the *CorruptError of OpenFileLog and
	// FileLog.Records when the file is damaged other than by a torn
	// final write.
	ErrCorrupt = errors.New("saga: corrupt log file")
	// ErrTooLarge is returned by FileLog.Append for a record whose
	// encoding exceeds MaxRecordSize.
	ErrTooLarge = errors.New("saga: record too large")
	// ErrClosed is returned by the methods of a closed FileLog or
	// Orchestrator.
	ErrClosed = errors.New("saga: closed")
	// ErrLocked is wrapped by the error of OpenFileLog when another
	// FileLog, in this process or another, has the file open.
	ErrLocked = errors.New("saga: log file is in use by another FileLog")
)

// CorruptError locates the damage in a log file. It wraps [ErrCorrupt].
type CorruptError struct {
	Path   string
	Offset int64 // where the damaged frame starts
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("saga: corrupt log file %s at offset %d: %s", e.Path, e.Offset, e.Reason)
}

// Unwrap returns [ErrCorrupt].
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// FileLog is a [Log] in one append-only file: length-prefixed msgpack
// records, each checksummed with CRC-32C. Append returns only after the
// record is written and fsync'd. When many sagas append at once, their
// records share one write and one fsync (group commit): the first caller
// to find no flush running writes every record queued so far, the others
// wait for it. No goroutine runs in the background.
//
// The file grows until [FileLog.Compact] drops the finished sagas.
// FileLog keeps in memory the position of every record and the list of
// unfinished sagas, and reads records back from the file.
//
// A FileLog is safe for concurrent use. Its zero value is not usable:
// call [OpenFileLog]. At most one FileLog may have a file open at a time:
// it holds an exclusive flock on the file from OpenFileLog to Close, so
// a second OpenFileLog of the file, in this process or another (the next
// version of a service in a rolling deploy, say), fails with [ErrLocked]
// instead of interleaving its writes. (Where the system has no flock,
// nothing enforces this.)
type FileLog struct {
	f        *os.File
	path     string
	syncFile func(*os.File) error // (*os.File).Sync; tests replace it

	// fileMu lets Records read the file while Compact does not swap it
	// and Close does not close it.
	fileMu sync.RWMutex

	mu       sync.Mutex
	cond     sync.Cond // signalled when a flush ends
	size     int64     // the file's length, counting the batch being flushed
	pending  []byte    // frames queued for the next flush
	queued   []frameRef
	spare    []byte // the previous flush's buffer, reused
	batch    uint64 // the number of the batch pending joins
	synced   uint64 // batches up to this one are durable
	flushing bool
	err      error // a failed write or fsync: the log is unusable
	closed   bool
	sagas    map[string][]span
	open     map[string]int64 // unfinished sagas and the offset of their first record
}

// frameRef is a queued frame waiting to be indexed.
type frameRef struct {
	saga     string
	terminal bool
	at       span
}

// span is a frame's position in the file.
type span struct {
	off int64
	n   int // the payload's length
}

// OpenFileLog opens the log file at path, creating it if needed, and
// recovers it: it reads every record, and if the file ends in a torn
// write (a partial or unchecksummed frame after which no intact frame
// follows) it truncates the file before it. Damage followed by intact
// frames is not a torn write: OpenFileLog then returns a *[CorruptError]
// (wrapping [ErrCorrupt]) with the offset of the damaged frame and
// changes nothing, rather than drop records that were acknowledged. (A
// disk that persisted the end of one group-commit write but not its
// middle looks the same, and is refused too: truncating the file at the
// reported offset loses only unacknowledged records then.) Recovery reads
// the whole file once. If another FileLog has the file open, OpenFileLog
// returns an error wrapping [ErrLocked] that names the file.
func OpenFileLog(path string) (*FileLog, error) { return openFileLog(path, (*os.File).Sync) }

// openFileLog is OpenFileLog with syncFile in place of (*os.File).Sync,
// for files and their directory; tests that need no durability pass a
// no-op.
func openFileLog(path string, syncFile func(*os.File) error) (*FileLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("saga: open log: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s: %v", ErrLocked, path, err)
	}
	l := &FileLog{f: f, path: path, syncFile: syncFile, sagas: make(map[string][]span), open: make(map[string]int64)}
	l.cond.L = &l.mu
	if err := l.recover(); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// recover validates the file, truncates a torn tail and builds the index.
func (l *FileLog) recover() error {
	data, err := io.ReadAll(l.f)
	if err != nil {
		return fmt.Errorf("saga: read log: %w", err)
	}
	if len(data) < len(fileMagic) && fileMagic[:len(data)] == string(data) {
		// New, or torn while being created.
		if err := l.truncate(0); err != nil {
			return err
		}
		if _, err := l.f.WriteAt([]byte(fileMagic), 0); err != nil {
			return fmt.Errorf("saga: write log header: %w", err)
		}
		l.size = int64(len(fileMagic))
		if err := l.syncFile(l.f); err != nil {
			return fmt.Errorf("saga: sync log: %w", err)
		}
		return syncDir(filepath.Dir(l.path), l.syncFile)
	}
	if !bytes.HasPrefix(data, []byte(fileMagic)) {
		return &CorruptError{l.path, 0, "not a saga log (bad magic)"}
	}
	off := len(fileMagic)
	end, err := frame.Scan(data[off:], MaxRecordSize, func(at int, payload []byte) error {
		var r Record
		if err := r.UnmarshalMsgpack(payload); err != nil {
			return &CorruptError{l.path, int64(off + at), err.Error()}
		}
		l.index(frameRef{r.Saga, r.Kind.Terminal(), span{int64(off + at), len(payload)}})
		return nil
	})
	end += off
	if errors.Is(err, frame.ErrDamaged) {
		return &CorruptError{l.path, int64(end), err.Error()}
	}
	if err != nil {
		return err
	}
	if end < len(data) {
		if err := l.truncate(int64(end)); err != nil {
			return err
		}
	}
	l.size = int64(end)
	return nil
}

func (l *FileLog) truncate(size int64) error {
	if err := l.f.Truncate(size); err != nil {
		return fmt.Errorf("saga: truncate torn log tail: %w", err)
	}
	if err := l.syncFile(l.f); err != nil {
		return fmt.Errorf("saga: sync log: %w", err)
	}
	return nil
}

// syncDir makes a new file's directory entry durable with sync, which is
// (*os.File).Sync except in tests.
func syncDir(dir string, sync func(*os.File) error) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("saga: sync log directory: %w", err)
	}
	defer d.Close()
	if err := sync(d); err != nil {
		return fmt.Errorf("saga: sync log directory: %w", err)
	}
	return nil
}

// intactFrame reports whether b starts with a whole frame whose checksums
// match, and the length of its payload.
func intactFrame(b []byte) (int, bool) { return frame.Intact(b, MaxRecordSize) }

// appendFrame appends r's frame to b.
func appendFrame(b []byte, r Record) ([]byte, int, error) {
	b, start := frame.Begin(b)
	b = r.appendMsgpack(b)
	n := len(b) - start - frameHeader
	if n > MaxRecordSize {
		return b[:start], 0, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, n, MaxRecordSize)
	}
	frame.End(b, start)
	return b, n, nil
}

// index records a durable frame. l.mu is held, or l is not shared yet.
func (l *FileLog) index(f frameRef) {
	spans, seen := l.sagas[f.saga]
	l.sagas[f.saga] = append(spans, f.at)
	switch {
	case f.terminal:
		delete(l.open, f.saga)
	case !seen:
		l.open[f.saga] = f.at.off
	}
}

// Append writes r and fsyncs the file, sharing the write and the fsync
// with concurrent Appends. ctx is checked only before r is queued: once
// queued, r is written whatever happens to ctx.
//
// It returns an error wrapping [ErrTooLarge] for a record beyond
// [MaxRecordSize] or [ErrInvalidRecord] for one its encoding cannot carry
// (nothing is written then), [ErrClosed] after Close, and the
// error of a failed write or fsync. After a failed write or fsync the log
// fails every later Append with the same error (the state of the file is
// unknown until it is reopened and recovered).
func (l *FileLog) Append(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.check(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	start := len(l.pending)
	var n int
	var err error
	if l.pending, n, err = appendFrame(l.pending, r); err != nil {
		return err
	}
	l.queued = append(l.queued, frameRef{r.Saga, r.Kind.Terminal(), span{l.size + int64(start), n}})
	mine := l.batch
	for l.synced < mine+1 {
		switch {
		case l.err != nil:
			return l.err
		case l.flushing:
			l.cond.Wait()
		default:
			l.flush()
		}
	}
	return nil
}

// flush writes and fsyncs the pending batch. l.mu is held; flush releases
// it during the I/O.
func (l *FileLog) flush() {
	l.flushing = true
	buf, refs, at := l.pending, l.queued, l.size
	l.size += int64(len(buf))
	l.pending, l.queued = l.spare[:0], nil
	l.batch++
	done := l.batch
	l.mu.Unlock()
	_, err := l.f.WriteAt(buf, at)
	if err == nil {
		err = l.syncFile(l.f)
	}
	l.mu.Lock()
	l.flushing, l.spare = false, buf
	if err != nil {
		l.err = fmt.Errorf("saga: log write failed, reopen the log to recover: %w", err)
		l.pending, l.queued = l.pending[:0], nil // their Appends fail with l.err
	} else {
		for _, f := range refs {
			l.index(f)
		}
		l.synced = done
	}
	l.cond.Broadcast()
}

// Records reads the saga's records from the file. It returns a
// *[CorruptError] if a record no longer matches its checksum, and
// [ErrClosed] after Close.
func (l *FileLog) Records(ctx context.Context, saga string) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.fileMu.RLock()
	defer l.fileMu.RUnlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, ErrClosed
	}
	spans := slices.Clone(l.sagas[saga])
	l.mu.Unlock()
	out := make([]Record, len(spans))
	var buf []byte
	for i, s := range spans {
		buf = slices.Grow(buf[:0], frameHeader+s.n)[:frameHeader+s.n]
		if _, err := l.f.ReadAt(buf, s.off); err != nil {
			return nil, fmt.Errorf("saga: read log: %w", err)
		}
		if _, ok := intactFrame(buf); !ok {
			return nil, &CorruptError{l.path, s.off, "checksum mismatch on read"}
		}
		if err := out[i].UnmarshalMsgpack(buf[frameHeader:]); err != nil {
			return nil, &CorruptError{l.path, s.off, err.Error()}
		}
	}
	return out, nil
}

// Unfinished returns the sagas without a terminal record, oldest first.
// It returns [ErrClosed] after Close.
func (l *FileLog) Unfinished(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, ErrClosed
	}
	return slices.SortedFunc(maps.Keys(l.open), func(a, b string) int {
		return cmp.Compare(l.open[a], l.open[b])
	}), nil
}

// Compact rewrites the file with only the records of unfinished sagas,
// and returns how many finished sagas (Committed, Compensated or Stuck)
// it dropped. Afterwards the log has forgotten them: Records returns
// nothing for them, and an Orchestrator would run their IDs again. Call
// it when the file or the memory its index takes (a few words per
// record) has grown enough.
//
// The new file is written beside the old one (path + ".compact"),
// fsync'd and renamed over it, so a crash leaves either file, whole.
// Appends wait while Compact copies; Records and Unfinished do not. On
// error the log is unchanged, except after an error from the fsync of the
// directory, which comes after the rename: the compaction took place
// then. Compact returns [ErrClosed] after Close, and a *[CorruptError] if
// a record to copy no longer matches its checksum.
func (l *FileLog) Compact(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	// Own the file's tail: with flushing set, Appends queue and wait.
	l.mu.Lock()
	for l.flushing {
		l.cond.Wait()
	}
	if l.closed {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	if l.err != nil {
		l.mu.Unlock()
		return 0, l.err
	}
	l.flushing = true
	var keep []span
	for id := range l.open {
		keep = append(keep, l.sagas[id]...)
	}
	dropped := len(l.sagas) - len(l.open)
	l.mu.Unlock()

	slices.SortFunc(keep, func(a, b span) int { return cmp.Compare(a.off, b.off) })
	c, err := l.rewrite(keep)

	l.fileMu.Lock()
	l.mu.Lock()
	if c.f != nil { // the new file is in place
		l.f.Close()
		l.f, l.sagas, l.open = c.f, c.sagas, c.open
		for i := range l.queued { // queued while we copied: they go after the copy
			l.queued[i].at.off += c.size - l.size
		}
		l.size = c.size
	}
	l.flushing = false
	l.cond.Broadcast()
	l.mu.Unlock()
	l.fileMu.Unlock()
	if c.f == nil {
		return 0, err
	}
	return dropped, err
}

// compacted is a new log file and its index.
type compacted struct {
	f     *os.File // nil if the old file is still in place
	sagas map[string][]span
	open  map[string]int64
	size  int64
}

// rewrite copies the frames at keep, in order, to a new file and renames
// it over l's. Once the rename is done it returns the new file, with the
// error of the directory's fsync, if any.
func (l *FileLog) rewrite(keep []span) (compacted, error) {
	tmp := l.path + ".compact"
	fresh := &FileLog{sagas: make(map[string][]span), open: make(map[string]int64)}
	buf := []byte(fileMagic)
	for _, s := range keep {
		start := len(buf)
		buf = slices.Grow(buf, frameHeader+s.n)[:start+frameHeader+s.n]
		if _, err := l.f.ReadAt(buf[start:], s.off); err != nil {
			return compacted{}, fmt.Errorf("saga: compact: read log: %w", err)
		}
		var r Record
		if _, ok := intactFrame(buf[start:]); !ok || r.UnmarshalMsgpack(buf[start+frameHeader:]) != nil {
			return compacted{}, &CorruptError{l.path, s.off, "checksum mismatch on compaction"}
		}
		fresh.index(frameRef{r.Saga, false, span{int64(start), s.n}})
	}
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err == nil {
		// The new file takes the lock before it takes the path.
		if err = lockFile(f); err == nil {
			_, err = f.Write(buf)
		}
		if err == nil {
			if err = l.syncFile(f); err == nil {
				err = os.Rename(tmp, l.path)
			}
		}
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}
	if err != nil {
		return compacted{}, fmt.Errorf("saga: compact: %w", err)
	}
	return compacted{f, fresh.sagas, fresh.open, int64(len(buf))}, syncDir(filepath.Dir(l.path), (*os.File).Sync)
}

// Close waits for the Appends already queued and the Records calls
// already reading to finish, then closes the file. Later calls return
// [ErrClosed].
func (l *FileLog) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return ErrClosed
	}
	l.closed = true
	for l.flushing || len(l.pending) > 0 {
		l.cond.Wait()
	}
	l.mu.Unlock()
	// Records reads l.f under fileMu; the ones that started before closed
	// was set finish first.
	l.fileMu.Lock()
	defer l.fileMu.Unlock()
	return l.f.Close()
}
