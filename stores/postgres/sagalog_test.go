package postgres_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/distkit/distkit/saga"
	"github.com/distkit/distkit/saga/sagatest"
	"github.com/distkit/distkit/stores/postgres"
)

func TestSagaLogConformance(t *testing.T) {
	sagatest.TestLog(t, func(t *testing.T) sagatest.Subject {
		pool := migrated(t)
		open := func(t *testing.T) saga.Log {
			l, err := postgres.NewSagaLog(pool, postgres.SagaConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		exec := func(t *testing.T, sql string) {
			if _, err := pool.Exec(ctx, sql); err != nil {
				t.Fatalf("%s: %v", sql, err)
			}
		}
		return sagatest.Subject{
			Log: open(t),
			Reopen: func(t *testing.T) saga.Log {
				exec(t, "DROP TRIGGER IF EXISTS crash ON distkit_saga_record")
				return open(t)
			},
			// The server kills the connection in the middle of the
			// batch's statement, as a crash of the database or of the
			// network would.
			Fail: func(t *testing.T) {
				exec(t, `CREATE OR REPLACE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS
					'BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END'`)
				exec(t, "CREATE TRIGGER crash BEFORE INSERT ON distkit_saga_record FOR EACH STATEMENT EXECUTE FUNCTION crash()")
			},
		}
	})
}

func TestSagaLogPrefix(t *testing.T) {
	pool := migrated(t)
	if err := postgres.MigratePrefix(ctx, pool, "other_"); err != nil {
		t.Fatal(err)
	}
	a, err := postgres.NewSagaLog(pool, postgres.SagaConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := postgres.NewSagaLog(pool, postgres.SagaConfig{Prefix: "other_"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Append(ctx, saga.Record{Kind: saga.KindStarted, Saga: "s", Def: "d"}); err != nil {
		t.Fatal(err)
	}
	if recs, err := b.Records(ctx, "s"); err != nil || len(recs) != 0 {
		t.Fatalf("a log under another prefix sees %v, %v", recs, err)
	}
	for _, p := range []string{"Upper_", "1x", "a-b", "x; DROP TABLE y", "abcdefghijklmnopqrstuvwxyz0123456"} {
		if _, err := postgres.NewSagaLog(pool, postgres.SagaConfig{Prefix: p}); !errors.Is(err, postgres.ErrPrefix) {
			t.Errorf("prefix %q: %v, want ErrPrefix", p, err)
		}
		if err := postgres.MigratePrefix(ctx, pool, p); !errors.Is(err, postgres.ErrPrefix) {
			t.Errorf("MigratePrefix(%q): %v, want ErrPrefix", p, err)
		}
	}
}

func TestSagaLogTooLarge(t *testing.T) {
	l, err := postgres.NewSagaLog(migrated(t), postgres.SagaConfig{})
	if err != nil {
		t.Fatal(err)
	}
	r := saga.Record{Kind: saga.KindStarted, Saga: "big", Input: make([]byte, saga.MaxRecordSize)}
	if err := l.Append(ctx, r); !errors.Is(err, saga.ErrTooLarge) {
		t.Fatalf("Append of a record beyond MaxRecordSize: %v, want ErrTooLarge", err)
	}
	if recs, err := l.Records(ctx, "big"); err != nil || len(recs) != 0 {
		t.Fatalf("Records after a refused Append = %v, %v", recs, err)
	}
}

// A row that is not a record's encoding (damage, or a hand-made row) is
// an error, never a panic or a made-up record.
func TestSagaLogCorruptRow(t *testing.T) {
	pool := migrated(t)
	l, err := postgres.NewSagaLog(pool, postgres.SagaConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "INSERT INTO distkit_saga_record VALUES ('x', 1, 1, '\\x9aff')"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Records(ctx, "x"); !errors.Is(err, saga.ErrDecode) {
		t.Fatalf("Records of a damaged row: %v, want ErrDecode", err)
	}
}

// Saga IDs are bytes; an oversized one is refused and writes nothing.
func TestSagaLogHostileIDs(t *testing.T) {
	l, err := postgres.NewSagaLog(migrated(t), postgres.SagaConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a\x00b", "\xff", strings.Repeat("s", postgres.MaxKeyLen)} {
		if err := l.Append(ctx, saga.Record{Kind: saga.KindStarted, Saga: id, Def: "d"}); err != nil {
			t.Fatalf("Append(%q): %v", id, err)
		}
		if recs, err := l.Records(ctx, id); err != nil || len(recs) != 1 || recs[0].Saga != id {
			t.Fatalf("Records(%q) = %v, %v", id, recs, err)
		}
	}
	long := strings.Repeat("s", postgres.MaxKeyLen+1)
	if err := l.Append(ctx, saga.Record{Kind: saga.KindStarted, Saga: long}); !errors.Is(err, postgres.ErrKeyTooLong) {
		t.Fatalf("Append of an oversized saga ID: %v, want ErrKeyTooLong", err)
	}
	if ids, err := l.Unfinished(ctx); err != nil || len(ids) != 3 || ids[0] != "a\x00b" {
		t.Fatalf("Unfinished = %q, %v", ids, err)
	}
}

func TestSagaLogCompact(t *testing.T) {
	l, err := postgres.NewSagaLog(migrated(t), postgres.SagaConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []saga.Record{
		{Kind: saga.KindStarted, Saga: "done", Def: "d"},
		{Kind: saga.KindStarted, Saga: "open", Def: "d"},
		{Kind: saga.KindCommitted, Saga: "done"},
	} {
		if err := l.Append(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := l.Compact(ctx); err != nil || n != 1 {
		t.Fatalf("Compact = %d, %v; want 1", n, err)
	}
	if recs, _ := l.Records(ctx, "done"); len(recs) != 0 {
		t.Fatalf("a compacted saga still has %d records", len(recs))
	}
	if recs, _ := l.Records(ctx, "open"); len(recs) != 1 {
		t.Fatalf("an open saga has %d records after Compact, want 1", len(recs))
	}
}
