package postgres

import (
	"cmp"
	"context"
	"fmt"
	"sync"

	"github.com/distkit/distkit/saga"
)

// SagaConfig configures a [SagaLog]. The zero value is ready to use.
type SagaConfig struct {
	// Prefix starts the names of the log's tables; "": DefaultPrefix.
	// It must match the prefix given to MigratePrefix.
	Prefix string
	// Writers bounds the batches written at once, each on its own
	// connection. While that many are in flight, Appends queue for the
	// next one. Several writers let PostgreSQL's own group commit share
	// one WAL flush among their commits; give the pool at least this many
	// connections. 0: DefaultSagaWriters.
	Writers int
}

// DefaultSagaWriters is the batches a SagaLog writes at once when
// SagaConfig.Writers is 0.
const DefaultSagaWriters = 16

// SagaLog is a [saga.Log] in PostgreSQL: every record is a row holding
// its canonical msgpack encoding (see [saga.Record]), so the log keeps
// whatever kinds of record the orchestrator writes, and one row per saga
// says where it started and whether it has a terminal record.
//
// Appends are group-committed: Append returns once its record is
// committed, and the records appended while batches are being written
// queue up and go together in the next one — one statement and one commit
// for the whole batch. A caller writes the queued batch itself when no
// batch is being written, or when it holds at least eight records and
// fewer than SagaConfig.Writers batches are being written; no goroutine
// runs in the background. A record appended after another returned is in
// a later batch (batches are numbered by a sequence when their statement
// starts), so each saga's records keep their order.
//
// A SagaLog is safe for concurrent use. Create it with [NewSagaLog] over
// a schema made by [Migrate]; several SagaLogs (processes) may share the
// tables, as long as one orchestrator writes each saga.
type SagaLog struct {
	db      DB
	insert  string
	records string
	open    string
	compact string

	writers int

	mu       sync.Mutex
	cond     sync.Cond
	next     *sagaBatch // the records waiting for the next write
	flushing int        // batches being written
	// seen caches the open sagas this log has appended to, whose row in
	// the saga table exists: their records that are not terminal need not
	// touch it. It is only a cache: a saga missing from it is upserted
	// (and nothing changes if its row exists). It is cleared when it holds
	// maxSeen sagas, so abandoned sagas cannot grow it without bound.
	seen map[string]struct{}
}

// minBatch is the records a batch needs before a second concurrent
// writer takes it.
const minBatch = 8

// maxSeen bounds SagaLog.seen.
const maxSeen = 1 << 16

var _ saga.Log = (*SagaLog)(nil)

// sagaBatch is one group commit: the records of many Appends and the
// outcome they all share.
type sagaBatch struct {
	sagas    [][]byte
	records  [][]byte
	terminal []bool
	touch    []bool
	done     bool
	err      error
}

// NewSagaLog returns a log on db's tables with cfg.Prefix. It returns an
// error wrapping [ErrPrefix] for an invalid prefix, and an error for
// negative Writers.
func NewSagaLog(db DB, cfg SagaConfig) (*SagaLog, error) {
	p, err := prefix(cfg.Prefix)
	if err != nil {
		return nil, err
	}
	if cfg.Writers < 0 {
		return nil, fmt.Errorf("postgres: negative SagaConfig.Writers %d", cfg.Writers)
	}
	l := &SagaLog{
		db:      db,
		writers: cmp.Or(cfg.Writers, DefaultSagaWriters),
		// One statement writes a batch: its records, in order, and for
		// the sagas it may start or end (touch), their first position
		// (if new) and whether they have ended.
		insert: named(p, `
WITH b AS (SELECT nextval('distkit_saga_batch') AS id),
x AS (SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::boolean[], $4::boolean[]) WITH ORDINALITY AS x(saga, record, terminal, touch, ord)),
r AS (INSERT INTO distkit_saga_record (saga, batch, ord, record) SELECT x.saga, b.id, x.ord, x.record FROM x, b)
INSERT INTO distkit_saga AS s (saga, batch, ord, finished)
SELECT x.saga, (SELECT id FROM b), min(x.ord), bool_or(x.terminal) FROM x WHERE x.touch GROUP BY x.saga
ON CONFLICT (saga) DO UPDATE SET finished = true WHERE excluded.finished AND NOT s.finished`),
		records: named(p, `SELECT record FROM distkit_saga_record WHERE saga = $1 ORDER BY batch, ord`),
		open:    named(p, `SELECT saga FROM distkit_saga WHERE NOT finished ORDER BY batch, ord`),
		compact: named(p, `
WITH d AS (DELETE FROM distkit_saga WHERE finished RETURNING saga),
r AS (DELETE FROM distkit_saga_record WHERE saga IN (SELECT saga FROM d))
SELECT count(*) FROM d`),
	}
	l.cond.L = &l.mu
	l.seen = make(map[string]struct{})
	return l, nil
}

// Append commits r. ctx is checked only before r is queued: once queued,
// r is written with its batch whatever happens to ctx. It returns an
// error wrapping [saga.ErrTooLarge] for a record whose encoding exceeds
// [saga.MaxRecordSize] and one wrapping [ErrKeyTooLong] for a saga ID
// beyond MaxKeyLen (nothing is written), and the database's error,
// wrapped, for a batch that failed: its records are then all stored or
// none (the commit of a batch whose connection died may still have
// happened), and the log stays usable.
func (l *SagaLog) Append(ctx context.Context, r saga.Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	enc, err := r.MarshalMsgpack()
	if err != nil {
		return fmt.Errorf("postgres: saga log: encode: %w", err)
	}
	if err := checkKey(r.Saga); err != nil {
		return err
	}
	if len(enc) > saga.MaxRecordSize {
		return fmt.Errorf("%w: %d bytes, at most %d", saga.ErrTooLarge, len(enc), saga.MaxRecordSize)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.next == nil {
		l.next = new(sagaBatch)
	}
	b := l.next
	terminal := r.Kind.Terminal()
	_, seen := l.seen[r.Saga]
	b.sagas = append(b.sagas, []byte(r.Saga))
	b.records = append(b.records, enc)
	b.terminal = append(b.terminal, terminal)
	b.touch = append(b.touch, terminal || !seen)
	for !b.done {
		// A writer takes the batch at once if none is writing; the other
		// writers wait for it to fill up a little, so that commits carry
		// several records each.
		if b == l.next && (l.flushing == 0 || l.flushing < l.writers && len(b.sagas) >= minBatch) {
			l.flush(ctx)
		} else {
			l.cond.Wait()
		}
	}
	return b.err
}

// flush writes the pending batch. l.mu is held; flush releases it during
// the write.
func (l *SagaLog) flush(ctx context.Context) {
	b := l.next
	l.next = nil
	l.flushing++
	l.mu.Unlock()
	_, err := l.db.Exec(context.WithoutCancel(ctx), l.insert, b.sagas, b.records, b.terminal, b.touch)
	l.mu.Lock()
	if err != nil {
		err = fmt.Errorf("postgres: saga log: append: %w", err)
	} else {
		for i, id := range b.sagas {
			switch {
			case b.terminal[i]:
				delete(l.seen, string(id))
			case len(l.seen) >= maxSeen:
				clear(l.seen)
			default:
				l.seen[string(id)] = struct{}{}
			}
		}
	}
	b.done, b.err = true, err
	l.flushing--
	l.cond.Broadcast()
}

// Records returns the saga's records in append order. A row that does not
// decode gives an error wrapping [saga.ErrDecode].
func (l *SagaLog) Records(ctx context.Context, id string) ([]saga.Record, error) {
	if len(id) > MaxKeyLen {
		return nil, nil // never appended
	}
	rows, err := l.db.Query(ctx, l.records, []byte(id))
	if err != nil {
		return nil, fmt.Errorf("postgres: saga log: records: %w", err)
	}
	defer rows.Close()
	var out []saga.Record
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, fmt.Errorf("postgres: saga log: records: %w", err)
		}
		var r saga.Record
		if err := r.UnmarshalMsgpack(raw); err != nil {
			return nil, fmt.Errorf("postgres: saga log: record %d of saga %q: %w", len(out), id, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: saga log: records: %w", err)
	}
	return out, nil
}

// Unfinished returns the sagas without a terminal record, in the order
// their first records were appended.
func (l *SagaLog) Unfinished(ctx context.Context) ([]string, error) {
	rows, err := l.db.Query(ctx, l.open)
	if err != nil {
		return nil, fmt.Errorf("postgres: saga log: unfinished: %w", err)
	}
	var ids []string
	for rows.Next() {
		var id []byte
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("postgres: saga log: unfinished: %w", err)
		}
		ids = append(ids, string(id))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("postgres: saga log: unfinished: %w", err)
	}
	return ids, nil
}

// Compact deletes the records of the finished sagas (Committed,
// Compensated or Stuck) in one statement, and returns how many sagas it
// dropped. Afterwards the log has forgotten them, as after
// [saga.FileLog.Compact]: an orchestrator would run their IDs again.
func (l *SagaLog) Compact(ctx context.Context) (int, error) {
	var n int
	if err := l.db.QueryRow(ctx, l.compact).Scan(&n); err != nil {
		return 0, fmt.Errorf("postgres: saga log: compact: %w", err)
	}
	return n, nil
}
