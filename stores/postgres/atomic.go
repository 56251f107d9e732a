package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/distkit/distkit/idempotency"
)

// ErrNoTx is returned by [Tx] for a context that no [Guard] gave.
var ErrNoTx = errors.New("postgres: no atomic phase in this context (use Guard.Do or Guard.Middleware)")

// Guard is an [idempotency.Guard] over an [IdempotencyStore] whose
// functions run inside a transaction that also records their result:
// brandur's atomic phases. The function's writes and the Done record
// commit together, or neither does, so a crash can never leave the
// business write committed and the key claimable again, nor the key Done
// without the write.
//
// The phase runs as follows: the claim commits on its own (so concurrent
// duplicates see it and get [idempotency.ErrInProgress]); the function
// gets a transaction, begun on first use; the Guard's Complete runs its
// statement in that transaction and commits it. If the function fails,
// its transaction rolls back, and its error is recorded (or its claim
// released, for a [idempotency.Retryable] error) on its own. If the
// commit fails, the store then releases the claim, which succeeds only if
// the transaction did not commit: the key is free again at once, and the
// caller gets the error. If the connection died after the commit reached
// the server, the store finds the Done record and reports success.
//
// Guarantees, for one key while its record lives: the function's
// transaction commits at most once, and exactly when the key turns Done;
// a transaction whose claim lapsed or was taken over never commits (the
// Complete statement finds no live claim under its token and the
// transaction rolls back).
//
// A Guard is safe for concurrent use. Create it with [NewGuard].
type Guard struct {
	store *IdempotencyStore
	guard *idempotency.Guard
}

// NewGuard returns a Guard over s, configured like [idempotency.New]
// (give it the store's clock if the store has one). It panics if a
// duration in cfg is negative.
func NewGuard(s *IdempotencyStore, cfg idempotency.Config) *Guard {
	return &Guard{store: s, guard: idempotency.New(s, cfg)}
}

// Do runs fn at most once for key while the key's record lives, like
// [idempotency.Guard.Do], inside a transaction that commits with the
// recorded result. fn must do its database work on tx and must not
// commit or roll it back. If fn returns an error, tx rolls back: a
// failed function leaves no writes behind. Do returns the errors of
// [idempotency.Guard.Do].
func (g *Guard) Do(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context, tx pgx.Tx) ([]byte, error)) ([]byte, error) {
	ctx, end := g.begin(ctx)
	defer end()
	return g.guard.Do(ctx, key, fingerprint, func(ctx context.Context) ([]byte, error) {
		tx, err := Tx(ctx)
		if err != nil {
			return nil, idempotency.Retryable(err)
		}
		out, err := fn(ctx, tx)
		if err != nil {
			phaseIn(ctx).rollback(ctx)
		}
		return out, err
	})
}

// Middleware returns [idempotency.Middleware] over the Guard, whose
// handlers run in an atomic phase: a handler gets its transaction from
// [Tx](r.Context()). The transaction commits with a recorded response
// (2xx, 3xx and 4xx by default) and rolls back with a response that is
// not recorded (5xx, 408, 429: see MiddlewareOptions.Retryable); a
// handler that wants its writes discarded answers with one of those.
func (g *Guard) Middleware(opts idempotency.MiddlewareOptions) func(http.Handler) http.Handler {
	mw := idempotency.Middleware(g.guard, opts)
	return func(next http.Handler) http.Handler {
		inner := mw(next)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, end := g.begin(r.Context())
			defer end()
			inner.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

// Tx returns the transaction of the atomic phase ctx runs in, beginning
// it on the first call: the ctx a [Guard] gives its function, or the
// request context of a handler behind [Guard.Middleware]. It returns
// [ErrNoTx] for any other context.
func Tx(ctx context.Context) (pgx.Tx, error) {
	ph := phaseIn(ctx)
	token, ok := idempotency.FencingToken(ctx)
	if ph == nil || !ok {
		return nil, ErrNoTx
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	switch {
	case ph.ended:
		return nil, fmt.Errorf("%w: the phase has ended", ErrNoTx)
	case ph.tx != nil && ph.token != token:
		return nil, fmt.Errorf("%w: the phase belongs to another claim", ErrNoTx)
	case ph.tx != nil:
		return ph.tx, nil
	}
	tx, err := ph.store.db.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: begin: %w", err)
	}
	ph.tx, ph.token = tx, token
	return tx, nil
}

// phase is one atomic phase: the transaction of one claim's function.
type phase struct {
	store *IdempotencyStore
	mu    sync.Mutex
	tx    pgx.Tx // nil until the function asks for it, and once it ends
	token uint64 // the claim the transaction belongs to
	ended bool
}

type phaseKey struct{}

// begin starts a phase in ctx; end rolls back whatever it left open.
func (g *Guard) begin(ctx context.Context) (context.Context, func()) {
	ph := &phase{store: g.store}
	return context.WithValue(ctx, phaseKey{}, ph), func() {
		ph.rollback(context.WithoutCancel(ctx))
		ph.mu.Lock()
		ph.ended = true
		ph.mu.Unlock()
	}
}

func phaseIn(ctx context.Context) *phase {
	ph, _ := ctx.Value(phaseKey{}).(*phase)
	return ph
}

// phaseOf returns the phase in ctx if it has an open transaction of s
// for the claim under token, and takes the transaction out of it.
func phaseOf(ctx context.Context, s *IdempotencyStore, token uint64) pgx.Tx {
	ph := phaseIn(ctx)
	if ph == nil || ph.store != s {
		return nil
	}
	ph.mu.Lock()
	defer ph.mu.Unlock()
	if ph.tx == nil || ph.token != token {
		return nil
	}
	tx := ph.tx
	ph.tx = nil
	return tx
}

// rollback ends the phase's open transaction, if any.
func (ph *phase) rollback(ctx context.Context) {
	if ph == nil {
		return
	}
	ph.mu.Lock()
	tx := ph.tx
	ph.tx = nil
	ph.mu.Unlock()
	if tx != nil {
		tx.Rollback(context.WithoutCancel(ctx))
	}
}

// completeTx records the result in the function's transaction and
// commits it. If that fails, it settles the claim: see [Guard].
func (s *IdempotencyStore) completeTx(ctx context.Context, tx pgx.Tx, key string, token uint64, response []byte, retain time.Duration) error {
	err := s.completeIn(ctx, tx, key, token, response, retain)
	if err == nil {
		if s.beforeCommit != nil {
			s.beforeCommit(ctx, tx)
		}
		if err = tx.Commit(ctx); err == nil {
			return nil
		}
		err = fmt.Errorf("postgres: commit %q: %w", key, err)
	} else {
		tx.Rollback(ctx)
	}
	// Whatever happened to the transaction, the claim is in progress
	// under token if and only if it did not commit.
	rerr := s.Release(ctx, key, token)
	if rerr == nil {
		return err // fn's writes are gone and the key is free
	}
	if errors.Is(rerr, idempotency.ErrNotClaimed) {
		var done bool
		if qerr := s.db.QueryRow(ctx, s.finished, []byte(key), int64(token)).Scan(&done); qerr == nil && done {
			return nil // the commit went through; only its reply was lost
		}
	}
	return errors.Join(err, rerr)
}
