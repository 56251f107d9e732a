package postgres_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/distkit/distkit/stores/postgres"
	"github.com/distkit/distkit/stores/servertest"
)

// Migrate may run at every start of every process at once.
func TestMigrateConcurrentAndRepeated(t *testing.T) {
	pool := servertest.Postgres(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := postgres.Migrate(ctx, pool); err != nil {
				t.Errorf("concurrent Migrate: %v", err)
			}
		})
	}
	wg.Wait()
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatalf("Migrate again: %v", err)
	}
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'distkit\\_%'").Scan(&n); err != nil || n != 4 {
		t.Fatalf("%d tables, %v; want 4", n, err)
	}
}

func TestSchemaSQL(t *testing.T) {
	sql, err := postgres.SchemaSQL("app_")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sql, "TABLE IF NOT EXISTS distkit_") || !strings.Contains(sql, "TABLE IF NOT EXISTS app_idempotency") {
		t.Fatalf("SchemaSQL(app_) does not rename every table:\n%s", sql)
	}
}
