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
// It keeps three records in an [idempotency.Store]: "<key>/action" (held
// while the action's body runs, then its outcome), "<key>/pending" (held,
// for Retain, from the moment a body starts until its outcome is known)
// and "<key>/compensate".
//
// # Guarantee
//
// For one key, while its records are retained: the action's body runs to
// success at most once, and never after the compensation began; the
// compensation's body runs to success at most once, and runs whenever
// the action's body may have taken effect, which is when it succeeded or
// when a call of it started and neither its success nor its failure was
// recorded: the process crashed, or the body outlived Lock and its claim
// lapsed. Only if no call of the action's body may have taken effect
// does the compensation record a null compensation, which refuses every
// later action. What a store kept apart from the participant's data
// cannot give: a body that keeps running after its context ended (at
// Lock) may take effect after the compensation ran (its call then
// returns [ErrLapsed]), and a body that takes effect and then fails, or
// crashes before its first record, may run again on a retry. So the
// action's body must stop when its context ends and tolerate a repeat,
// and the compensation's body must accept compensating an action that
// did not take effect. The fully safe form keeps the barrier's records
// in the participant's own database, written in the same transaction as
// its change (dtm's design; the PostgreSQL barrier of the stores module
// does this): then neither window exists.
//
// A Barrier is safe for concurrent use if its Store is. Its zero value
// has no Store and panics on use; Lock and Retain may be left zero.
type Barrier struct {
	Store idempotency.Store
	// Lock is how long a call holds its key while fn runs; fn's context
	// ends then. 0: one minute.
	Lock time.Duration
	// Retain is how long outcomes are remembered, and how long a call
	// of the action that may have taken effect stays visible to the
	// compensation. It must exceed the longest time a late action can
	// take to arrive, or a late action after it is no longer refused.
	// 0: seven days.
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
	// ErrLapsed is returned by Barrier.Action when its body succeeded
	// after its claim lapsed and the compensation had found it
	// unfinished: the compensation ran, or is running, and the body's
	// effect may have come after it.
	ErrLapsed = errors.New("saga: action outlived its claim and was compensated")
)

// Outcomes kept in the records' Response.
var (
	barrierDone   = []byte("done")   // the action's body succeeded
	barrierNull   = []byte("null")   // a compensation came first: the action must never run
	barrierLapsed = []byte("lapsed") // a call of the action's body was unfinished when the compensation came
)

// Action runs fn once for key: a duplicate call after success returns
// nil without calling fn; a call after the key's compensation returns
// [ErrHanging]. If fn fails, the key is released and a later call runs
// fn again. It returns [ErrBusy] while another call holds the key,
// [ErrLapsed] if fn succeeded too late (see [Barrier]), and the store's
// errors wrapped.
func (b *Barrier) Action(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	action, pending := key+"/action", key+"/pending"
	ta, rec, err := b.claimAction(ctx, key)
	switch {
	case err != nil:
		return err
	case rec != nil && string(rec.Response) == string(barrierDone):
		return nil
	case rec != nil:
		return fmt.Errorf("%w: %q", ErrHanging, key)
	}
	// The key is ours. A pending record in progress is an earlier call
	// of fn whose outcome was never recorded: it may have taken effect.
	tp, prec, err := b.claim(ctx, pending, b.retain())
	stale := prec != nil && prec.State == idempotency.InProgress
	switch {
	case err != nil:
		return errors.Join(err, b.release(ctx, action, ta))
	case stale:
		tp = prec.Token // this call finishes the lapsed one's pending record
	case prec != nil: // the outcome of an earlier call, whose action record was lost
		if err := b.complete(ctx, action, ta, prec.Response); err != nil {
			return err
		}
		if string(prec.Response) == string(barrierDone) {
			return nil
		}
		return fmt.Errorf("%w: %q", ErrHanging, key)
	}
	err = b.call(ctx, fn)
	ctx = context.WithoutCancel(ctx) // record the outcome even if ctx ended
	if err != nil {
		if !stale { // this call had no effect, and no earlier call is unaccounted for
			err = errors.Join(err, b.release(ctx, pending, tp))
		}
		return errors.Join(err, b.release(ctx, action, ta))
	}
	if err := b.complete(ctx, pending, tp, barrierDone); err != nil {
		if errors.Is(err, idempotency.ErrNotClaimed) {
			return fmt.Errorf("%w: %q", ErrLapsed, key)
		}
		return err
	}
	return b.complete(ctx, action, ta, barrierDone)
}

// Compensate runs fn once for key, if the action of key may have taken
// effect (see [Barrier]): a duplicate call after success returns nil
// without calling fn. If no call of the action may have taken effect,
// Compensate calls nothing, records a null compensation that makes every
// later Action of key fail with [ErrHanging], and returns nil. If fn
// fails, a later call runs it again. It returns [ErrBusy] while the
// action or another compensation of key is running, and the store's
// errors wrapped.
func (b *Barrier) Compensate(ctx context.Context, key string, fn func(ctx context.Context) error) error {
	action, pending := key+"/action", key+"/pending"
	ta, rec, err := b.claimAction(ctx, key)
	switch {
	case err != nil:
		return err
	case rec != nil && string(rec.Response) == string(barrierNull):
		return nil
	case rec == nil:
		// No call of the action runs now: ask the pending record whether
		// one may have taken effect.
		tp, prec, err := b.claim(ctx, pending, b.retain())
		if err != nil {
			return errors.Join(err, b.release(ctx, action, ta))
		}
		outcome := barrierNull
		switch {
		case prec == nil:
		case prec.State == idempotency.InProgress: // a call lapsed unfinished: fence it off
			if err := b.complete(ctx, pending, prec.Token, barrierLapsed); err != nil {
				return errors.Join(err, b.release(ctx, action, ta))
			}
			outcome = barrierLapsed
		default:
			outcome = prec.Response
		}
		if err := b.complete(ctx, action, ta, outcome); err != nil {
			return err
		}
		if prec == nil {
			return b.release(ctx, pending, tp)
		}
	}
	tc, crec, err := b.claim(ctx, key+"/compensate", b.lock())
	switch {
	case err != nil:
		return err
	case crec != nil && crec.State == idempotency.InProgress:
		return fmt.Errorf("%w: %q", ErrBusy, key)
	case crec != nil:
		return nil
	}
	if err := b.call(ctx, fn); err != nil {
		return errors.Join(err, b.release(context.WithoutCancel(ctx), key+"/compensate", tc))
	}
	return b.complete(context.WithoutCancel(ctx), key+"/compensate", tc, barrierDone)
}

func (b *Barrier) lock() time.Duration   { return cmp.Or(b.Lock, DefaultBarrierLock) }
func (b *Barrier) retain() time.Duration { return cmp.Or(b.Retain, DefaultBarrierRetain) }

// claim claims key for lock: (its token, nil, nil) if the caller owns it
// now, or (0, the live record, nil).
func (b *Barrier) claim(ctx context.Context, key string, lock time.Duration) (uint64, *idempotency.Record, error) {
	if b.Store == nil {
		panic("saga: Barrier without a Store")
	}
	token, rec, err := b.Store.Claim(ctx, key, nil, lock)
	if err != nil {
		return 0, nil, fmt.Errorf("saga: barrier: claim %q: %w", key, err)
	}
	return token, rec, nil
}

// claimAction claims key's action record: (its token, nil, nil) if the
// caller owns it now, the finished record, or an error wrapping ErrBusy
// while another call holds it.
func (b *Barrier) claimAction(ctx context.Context, key string) (uint64, *idempotency.Record, error) {
	token, rec, err := b.claim(ctx, key+"/action", b.lock())
	if err == nil && rec != nil && rec.State == idempotency.InProgress {
		return 0, nil, fmt.Errorf("%w: %q", ErrBusy, key)
	}
	return token, rec, err
}

// complete records response as the outcome of the claim of key under
// token, for Retain.
func (b *Barrier) complete(ctx context.Context, key string, token uint64, response []byte) error {
	if err := b.Store.Complete(ctx, key, token, response, b.retain()); err != nil {
		return fmt.Errorf("saga: barrier: record the outcome of %q: %w", key, err)
	}
	return nil
}

// release gives up the claim of key under token.
func (b *Barrier) release(ctx context.Context, key string, token uint64) error {
	if err := b.Store.Release(ctx, key, token); err != nil {
		return fmt.Errorf("saga: barrier: release %q: %w", key, err)
	}
	return nil
}

// call runs fn with a context that ends at Lock.
func (b *Barrier) call(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, b.lock())
	defer cancel()
	return fn(ctx)
}
