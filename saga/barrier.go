package saga

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/idempotency"
)

// Barrier is dtm's sub-transaction barrier for a saga's participant: the
// service a step calls. It wraps the participant's action (what Do asks
// for) and its compensation (what Undo asks for), keyed by the caller's
// [Exec.IdempotencyKey], so that the participant stays correct under the
// three anomalies of a network that retries, reorders and times out:
//
//   - duplicate: an action or compensation that already succeeded does
//     nothing and succeeds again;
//   - null compensation: a compensation that arrives before its action
//     (the action timed out on the way) does nothing, succeeds, and
//     records that it happened;
//   - hanging action: an action that arrives after its compensation is
//     refused with [ErrHanging], so it never reserves a resource no one
//     will release.
//
// It keeps two records in an [idempotency.Store]: "<key>/action" and
// "<key>/compensate". Like dtm's barrier, whose insert shares a local
// transaction with the business change, it is exact only if the store
// and the participant's data change together: with a separate store, a
// crash after fn's change and before the record is written lets a retry
// run fn again once Lock has passed, so fn must still tolerate a repeat.
//
// A Barrier is safe for concurrent use if its Store is. Its zero value
// has no Store and panics on use; Lock and Retain may be left zero.
type Barrier struct {
	Store idempotency.Store
	// Lock is how long a call holds its key while fn runs; fn's context
	// ends then. 0: one minute.
	Lock time.Duration
	// Retain is how long outcomes are remembered. It must exceed the
	// longest time a late action can take to arrive, or a late action
	// after it is no longer refused. 0: seven days.
	Retain time.Duration
}

// Defaults of [Barrier].
const (
	DefaultBarrierLock   = time.Minute
	DefaultBarrierRetain = 7 * 24 * time.Hour
)

var (
	// ErrHanging is returned by Barrier.Action when the compensation of
	// the same key already ran: the action arrived too late and must not
	// take effect.
	ErrHanging = errors.New("saga: action refused: its compensation already ran")
	// ErrBusy is returned by Barrier.Action and Barrier.Compensate while
	// another call holds the key (the same action or compensation running
	// elsewhere, or a compensation waiting for its action to finish); try
	// again later.
	ErrBusy = errors.New("saga: barrier key is busy")
)

// Outcomes kept in the action record's Response.
var (
	barrierDone = []byte("done") // the action ran and succeeded
	barrierNull = []byte("null") // a compensation came first: the action must never run
)

// Action runs fn once for key: a duplicate call after success returns
// nil without calling fn; a call after the key's compensation returns
// [ErrHanging]. If fn fails, the key is released and a later call runs
// fn again. It returns [ErrBusy] while another call holds the key, and
// the store's errors wrapped.
func (b *Barrier) Action(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	rec, err := b.once(ctx, key+"/action", barrierDone, fn)
	if err == nil && rec != nil && string(rec.Response) == string(barrierNull) {
		return fmt.Errorf("%w: %q", ErrHanging, key)
	}
	return err
}

// Compensate runs fn once for key, if the action of key ran: a duplicate
// call after success returns nil without calling fn. If the action never
// ran, Compensate calls nothing, records a null compensation that makes
// every later Action of key fail with [ErrHanging], and returns nil. If
// fn fails, a later call runs it again. It returns [ErrBusy] while the
// action or another compensation of key is running, and the store's
// errors wrapped.
func (b *Barrier) Compensate(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	// Claiming the action's key succeeds only if the action never ran;
	// the null compensation then keeps the key for good.
	rec, err := b.once(ctx, key+"/action", barrierNull, nil)
	if err != nil || rec == nil || string(rec.Response) == string(barrierNull) {
		return err
	}
	_, err = b.once(ctx, key+"/compensate", barrierDone, fn)
	return err
}

// once claims key and, if the caller now owns it, calls fn (if not nil)
// and records response on success or releases the key on failure,
// returning (nil, fn's error). If key has a finished record it returns
// the record; if its claim is in progress, an error wrapping ErrBusy.
func (b *Barrier) once(ctx context.Context, key string, response []byte, fn func(context.Context) error) (*idempotency.Record, error) {
	if b.Store == nil {
		panic("saga: Barrier without a Store")
	}
	lock := cmp.Or(b.Lock, DefaultBarrierLock)
	token, rec, err := b.Store.Claim(ctx, key, nil, lock)
	switch {
	case err != nil:
		return nil, fmt.Errorf("saga: barrier: claim %q: %w", key, err)
	case rec != nil && rec.State == idempotency.InProgress:
		return nil, fmt.Errorf("%w: %q", ErrBusy, key)
	case rec != nil:
		return rec, nil
	}
	if fn != nil {
		fctx, cancel := context.WithTimeout(ctx, lock)
		err = fn(fctx)
		cancel()
	}
	ctx = context.WithoutCancel(ctx) // record the outcome even if ctx ended
	if err != nil {
		if rerr := b.Store.Release(ctx, key, token); rerr != nil {
			err = errors.Join(err, fmt.Errorf("saga: barrier: release %q: %w", key, rerr))
		}
		return nil, err
	}
	if err := b.Store.Complete(ctx, key, token, response, cmp.Or(b.Retain, DefaultBarrierRetain)); err != nil {
		return nil, fmt.Errorf("saga: barrier: %q succeeded but its record was not kept: %w", key, err)
	}
	return nil, nil
}
