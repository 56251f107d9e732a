package postgres

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultPrefix starts the names of the tables, indexes and sequences of
// the schema when a Config leaves Prefix empty.
const DefaultPrefix = "distkit_"

// MaxPrefixLen bounds a table prefix, so that every name stays within
// PostgreSQL's 63 bytes.
const MaxPrefixLen = 32

// MaxKeyLen bounds idempotency keys, saga IDs and barrier keys, in bytes,
// well within what a PostgreSQL B-tree index entry can hold.
const MaxKeyLen = 1024

// ErrKeyTooLong is returned for a key or saga ID longer than MaxKeyLen;
// nothing is written.
var ErrKeyTooLong = errors.New("postgres: key longer than MaxKeyLen")

// checkKey returns an error wrapping ErrKeyTooLong if key is too long.
func checkKey(key string) error {
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes", ErrKeyTooLong, len(key))
	}
	return nil
}

// ErrPrefix is returned for a table prefix that is not a lower-case SQL
// identifier of at most MaxPrefixLen bytes.
var ErrPrefix = errors.New("postgres: invalid table prefix")

//go:embed schema.sql
var schemaSQL string

// DB is what the stores need from a connection pool; *pgxpool.Pool
// implements it.
type DB interface {
	Begin(ctx context.Context) (pgx.Tx, error)
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// prefix returns p, or DefaultPrefix if p is empty, after checking it.
func prefix(p string) (string, error) {
	if p == "" {
		return DefaultPrefix, nil
	}
	ok := len(p) <= MaxPrefixLen && (p[0] == '_' || p[0] >= 'a' && p[0] <= 'z')
	for _, c := range []byte(p) {
		ok = ok && (c == '_' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9')
	}
	if !ok {
		return "", fmt.Errorf("%w: %q", ErrPrefix, p)
	}
	return p, nil
}

// named rewrites a statement written with DefaultPrefix for prefix p.
func named(p, sql string) string { return strings.ReplaceAll(sql, DefaultPrefix, p) }

// SchemaSQL returns the statements that create the schema with the given
// table prefix ("" for DefaultPrefix): the file schema.sql shipped with
// this package, renamed. Every statement is idempotent.
func SchemaSQL(tablePrefix string) (string, error) {
	p, err := prefix(tablePrefix)
	if err != nil {
		return "", err
	}
	return named(p, schemaSQL), nil
}

// Migrate creates the tables, indexes and sequences of every store in
// this package, with DefaultPrefix, if they do not exist yet. It is safe
// to call at every start and from several processes at once.
func Migrate(ctx context.Context, db DB) error { return MigratePrefix(ctx, db, "") }

// MigratePrefix is [Migrate] with the given table prefix ("" for
// DefaultPrefix). It returns an error wrapping [ErrPrefix] for an invalid
// prefix, and the database's errors wrapped.
func MigratePrefix(ctx context.Context, db DB, tablePrefix string) error {
	sql, err := SchemaSQL(tablePrefix)
	if err != nil {
		return err
	}
	tx, err := db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	defer tx.Rollback(ctx)
	// CREATE ... IF NOT EXISTS races with itself in another session; a
	// transaction-scoped advisory lock serialises migrations.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "distkit migrate "+tablePrefix); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}
