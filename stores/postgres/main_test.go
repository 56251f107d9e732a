package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/distkit/distkit/stores/postgres"
	"github.com/distkit/distkit/stores/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

var ctx = context.Background()

// migrated returns a pool on a new database with the schema.
func migrated(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool := servertest.Postgres(t)
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return pool
}
