package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
)

// SetBeforeCommit makes f run between an atomic phase's Complete
// statement and its commit.
func SetBeforeCommit(s *IdempotencyStore, f func(ctx context.Context, tx pgx.Tx)) { s.beforeCommit = f }
