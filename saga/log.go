package saga

import (
	"context"
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
// survive the process. Append keeps r as it is: the caller must not
// modify r's slices afterwards.
//
// The zero MemLog is empty and ready to use. It is safe for concurrent
// use and must not be copied after first use.
type MemLog struct {
	mu    sync.Mutex
	sagas map[string][]Record
	order []string // saga IDs in the order of their first record
}

// Append adds r to the log. It fails only if ctx is done.
func (l *MemLog) Append(ctx context.Context, r Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.sagas == nil {
		l.sagas = make(map[string][]Record)
	}
	recs, ok := l.sagas[r.Saga]
	if !ok {
		l.order = append(l.order, r.Saga)
		recs = make([]Record, 0, 8) // a saga of three steps writes eight records
	}
	l.sagas[r.Saga] = append(recs, r)
	return nil
}

// Records returns a copy of the list of the saga's records.
func (l *MemLog) Records(ctx context.Context, saga string) ([]Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	recs := l.sagas[saga]
	return append([]Record(nil), recs...), nil
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
		if recs := l.sagas[id]; !recs[len(recs)-1].Kind.Terminal() {
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
	kept := l.order[:0]
	for _, id := range l.order {
		if recs := l.sagas[id]; recs[len(recs)-1].Kind.Terminal() {
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
