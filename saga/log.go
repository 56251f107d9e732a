package saga

import (
	"context"
	"encoding/binary"
	"sync"
)

// Log is the durable, append-only record of saga progress that an
// [Orchestrator] writes and recovers from. [MemLog] and [FileLog]
// implement it; a database table can too.
//
// An implementation must be safe for concurrent use. One orchestrator at a
// time may write a log.
type Log interface {
	// Append stores r durably: when it returns nil, r survives a crash
	// and Records returns it after every record of the same saga appended
	// before. If it returns an error, r may or may not have been stored.
	Append(ctx context.Context, r Record) error
	// Records returns the records of one saga in append order; none for
	// an unknown saga. The caller must not modify them.
	Records(ctx context.Context, saga string) ([]Record, error)
	// Unfinished returns the IDs of the sagas that have records but no
	// terminal one (Committed, Compensated or Stuck), in the order they
	// started.
	Unfinished(ctx context.Context) ([]string, error)
}

var (
	_ Log = (*MemLog)(nil)
	_ Log = (*FileLog)(nil)
)

// MemLog is a [Log] in memory, for tests and for sagas that need not
// survive the process. It keeps each saga's records encoded, one after
// the other, in one byte slice (a few dozen bytes per record, with no
// pointers for the garbage collector to follow), and Records decodes
// them: the records it returns are copies.
//
// The zero MemLog is empty and ready to use. It is safe for concurrent
// use and must not be copied after first use.
type MemLog struct {
	mu    sync.Mutex
	sagas map[string]*memSaga
	order []string // saga IDs in the order of their first record
	// last is the saga of the last append, found again without hashing
	// its ID: a saga appends its records one after the other.
	lastID string
	last   *memSaga
}

// memSaga is one saga's records: each a 4-byte big-endian length and the
// record's msgpack encoding.
type memSaga struct {
	buf      []byte
	n        int
	terminal bool
}

// Append adds r to the log. It fails only if ctx is done, or with an
// error wrapping [ErrInvalidRecord] (see [Record]) if the record cannot
// be encoded faithfully.
func (l *MemLog) Append(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := r.check(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sagas == nil {
		l.sagas = make(map[string]*memSaga)
	}
	s := l.last
	if s == nil || l.lastID != r.Saga {
		var ok bool
		if s, ok = l.sagas[r.Saga]; !ok {
			s = &memSaga{buf: make([]byte, 0, 256)} // room for a short saga's records
			l.sagas[r.Saga] = s
			l.order = append(l.order, r.Saga)
		}
		l.lastID, l.last = r.Saga, s
	}
	start := len(s.buf)
	s.buf = r.appendMsgpack(append(s.buf, 0, 0, 0, 0))
	binary.BigEndian.PutUint32(s.buf[start:], uint32(len(s.buf)-start-4))
	s.n++
	s.terminal = r.Kind.Terminal()
	return nil
}

// Records returns copies of the saga's records.
func (l *MemLog) Records(ctx context.Context, saga string) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	s, ok := l.sagas[saga]
	var buf []byte
	var n int
	if ok {
		buf, n = s.buf, s.n // appends never change the bytes already there
	}
	l.mu.Unlock()
	if !ok {
		return nil, nil
	}
	out := make([]Record, n)
	for i := range out {
		size := binary.BigEndian.Uint32(buf)
		if err := out[i].UnmarshalMsgpack(buf[4 : 4+size]); err != nil {
			return nil, err // a bug: Append checked the record
		}
		buf = buf[4+size:]
	}
	return out, nil
}

// Unfinished returns the sagas without a terminal record, oldest first.
func (l *MemLog) Unfinished(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, id := range l.order {
		if !l.sagas[id].terminal {
			out = append(out, id)
		}
	}
	return out, nil
}

// Compact forgets the finished sagas (Committed, Compensated or Stuck)
// and returns how many it dropped, like [FileLog.Compact].
func (l *MemLog) Compact(ctx context.Context) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lastID, l.last = "", nil
	kept := l.order[:0]
	for _, id := range l.order {
		if l.sagas[id].terminal {
			delete(l.sagas, id)
		} else {
			kept = append(kept, id)
		}
	}
	dropped := len(l.order) - len(kept)
	clear(l.order[len(kept):])
	l.order = kept
	return dropped, nil
}
