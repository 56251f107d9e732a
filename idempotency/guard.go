package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/distkit/distkit/clock"
)

var (
	// ErrInProgress is returned by Guard.Do while another caller, in
	// another process or through another Guard, holds a live claim on the
	// key with the same fingerprint.
	ErrInProgress = errors.New("idempotency: key is in use by a request in progress")

	// ErrMismatch is returned by Guard.Do when the key is live with a
	// different fingerprint: the key was reused for another payload.
	ErrMismatch = errors.New("idempotency: key reused with a different payload")

	// ErrMissingKey is returned by Guard.Do for an empty key.
	ErrMissingKey = errors.New("idempotency: missing idempotency key")

	// ErrLockExpired is returned by Guard.Do, together with fn's result,
	// when fn returned after the claim's lock had lapsed, by the Guard's
	// clock or by the store's (then the error also wraps ErrNotClaimed):
	// the result was not recorded, since another caller may own the key
	// by now, and a retry will run fn again.
	ErrLockExpired = errors.New("idempotency: lock lapsed before fn returned; result not recorded")
)

// Defaults for the zero fields of [Config].
const (
	DefaultLock   = time.Minute
	DefaultRetain = 24 * time.Hour
)

// Config configures a [Guard]. Zero fields mean the documented defaults.
type Config struct {
	// Lock is how long a claim holds a key while fn runs. fn's context
	// ends when the lock lapses, and a claim whose executor crashed lapses
	// then, so that another caller can take the key over. Choose it above
	// fn's longest run. 0: DefaultLock (one minute).
	Lock time.Duration
	// Retain is how long a finished execution is remembered and replayed.
	// 0: DefaultRetain (24 hours, as Stripe keeps its keys).
	Retain time.Duration
	// Clock is the Guard's side of the lease: the lock is timed from
	// before Claim by this clock, and the Guard stops acting on a claim
	// once Lock has passed by it. Give it the store's clock (in tests, the
	// same clocktest.Manual). nil: clock.System.
	Clock clock.Clock
}

// Guard executes functions at most once per idempotency key, recording
// their results in a [Store] and replaying them to duplicates.
//
// # Policy for failures
//
// A non-nil error from fn is an outcome like any other: it is recorded
// (its message) and replayed as a *StoredError, as Stripe replays the
// errors of requests that began executing, because a failure may come
// after side effects and running fn again could repeat them. Failures
// that are known to have had no effect, or that a retry may cure
// (timeouts talking to a dependency, overload), should be wrapped with
// [Retryable]: the claim is then released without a record, so the key
// stays usable and the next call runs fn again. A transient failure must
// not poison a key for the whole retention period.
//
// The claim is also released, and nothing recorded, when fn returns an
// error after its context ended (the caller left, or the lock lapsed) and
// when fn panics: these say nothing about the operation's outcome.
//
// The zero Guard is not usable; create one with [New]. A Guard is safe
// for concurrent use.
type Guard struct {
	store   Store
	lock    time.Duration
	retain  time.Duration
	clock   clock.Clock
	flights singleflight.Group
}

// New returns a Guard over s. It panics if s is nil or a duration in cfg
// is negative.
func New(s Store, cfg Config) *Guard {
	if s == nil {
		panic("idempotency: New with a nil Store")
	}
	if cfg.Lock < 0 || cfg.Retain < 0 {
		panic(fmt.Sprintf("idempotency: New with negative Lock %v or Retain %v", cfg.Lock, cfg.Retain))
	}
	g := &Guard{store: s, lock: cfg.Lock, retain: cfg.Retain, clock: cfg.Clock}
	if g.lock == 0 {
		g.lock = DefaultLock
	}
	if g.retain == 0 {
		g.retain = DefaultRetain
	}
	if g.clock == nil {
		g.clock = clock.System{}
	}
	return g
}

// Retain returns how long the Guard keeps finished executions: the expiry
// policy an API that uses it must publish.
func (g *Guard) Retain() time.Duration { return g.retain }

// Do runs fn at most once for key while the key's record lives, and
// returns its result; later calls with the same key and fingerprint
// return the recorded result without running fn (a recorded error as a
// *StoredError carrying its message; the first caller gets fn's error
// itself).
//
// Concurrent calls for one key through the same Guard share one
// execution. A call that finds the key claimed elsewhere returns
// ErrInProgress; one whose fingerprint differs from the key's record
// returns ErrMismatch; an empty key returns ErrMissingKey. fn receives a
// context that ends when ctx does or when the claim's lock lapses, and
// that carries the claim's fencing token (see [FencingToken]). If fn
// returns after the lock lapsed, Do returns its result with an error
// wrapping ErrLockExpired. Errors from the Store are returned wrapped;
// an undecodable record gives an error wrapping ErrCorrupt. See [Guard]
// for which failures are recorded.
//
// A caller waiting on another's execution waits for it to end even if
// its own ctx ends first; if the execution was abandoned because the
// first caller's context ended, the waiters try again themselves.
func (g *Guard) Do(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if key == "" {
		return nil, ErrMissingKey
	}
	for {
		ran := false
		v, _, _ := g.flights.Do(key, func() (any, error) {
			ran = true
			return g.execute(ctx, key, fingerprint, fn), nil
		})
		f := v.(*flight)
		if ran || !f.abandoned && bytes.Equal(f.fingerprint, fingerprint) {
			return f.out, f.err
		}
		// Not our result: another payload's, or abandoned. Claim ourselves.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// flight is the result of one execution, shared by concurrent callers.
type flight struct {
	out         []byte
	err         error
	fingerprint []byte // the caller's that ran it
	abandoned   bool   // it failed because that caller's ctx ended
}

func (g *Guard) execute(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) *flight {
	f := &flight{fingerprint: fingerprint}
	deadline := g.clock.Now().Add(g.lock)
	token, rec, err := g.store.Claim(ctx, key, fingerprint, g.lock)
	switch {
	case err != nil:
		f.err = fmt.Errorf("idempotency: claiming %q: %w", key, err)
	case rec == nil:
		f.out, f.err = g.run(ctx, key, token, deadline, fn)
	case !bytes.Equal(rec.Fingerprint, fingerprint):
		f.err = ErrMismatch
	case rec.State == InProgress:
		f.err = ErrInProgress
	default:
		f.out, f.err = decodeOutcome(rec.Response)
	}
	f.abandoned = f.err != nil && ctx.Err() != nil
	return f
}

// run executes fn on the claim of key under token that lapses at
// deadline, and records or releases the claim.
func (g *Guard) run(ctx context.Context, key string, token uint64, deadline time.Time,
	fn func(ctx context.Context) ([]byte, error)) (out []byte, err error) {
	fctx, cancel := context.WithTimeout(context.WithValue(ctx, tokenKey{}, token), deadline.Sub(g.clock.Now()))
	defer cancel()
	// The store calls below must happen even if the caller has left.
	bg := context.WithoutCancel(ctx)
	returned := false
	defer func() {
		// fn panicked or called runtime.Goexit; once the claim lapsed,
		// another caller may own the key: leave the store alone.
		if !returned && g.clock.Now().Before(deadline) {
			_ = g.store.Release(bg, key, token)
		}
	}()
	out, err = fn(fctx)
	returned = true

	switch {
	case !g.clock.Now().Before(deadline):
		// The claim lapsed: another caller may own the key by now, so
		// leave the store alone.
		if err == nil {
			err = fmt.Errorf("%w: key %q", ErrLockExpired, key)
		}
		return out, err
	case err != nil && (isRetryable(err) || fctx.Err() != nil):
		if rerr := g.store.Release(bg, key, token); rerr != nil {
			err = errors.Join(err, fmt.Errorf("idempotency: releasing %q: %w", key, rerr))
		}
		return nil, err
	}
	if cerr := g.store.Complete(bg, key, token, encodeOutcome(out, err), g.retain); cerr != nil {
		if errors.Is(cerr, ErrNotClaimed) { // the store let the claim lapse
			cerr = fmt.Errorf("%w: key %q: %w", ErrLockExpired, key, cerr)
		} else {
			cerr = fmt.Errorf("idempotency: recording the result of %q: %w", key, cerr)
		}
		err = errors.Join(err, cerr)
	}
	return out, err
}

// tokenKey is the context key of the fencing token fn runs under.
type tokenKey struct{}

// FencingToken returns the fencing token of the claim that a function run
// by [Guard.Do] executes under, from the context Do gave it, and false for
// any other context. Pass it to downstream systems that can refuse writes
// from a stale owner: tokens of later claims, on any key of the same
// store, are greater.
func FencingToken(ctx context.Context) (uint64, bool) {
	t, ok := ctx.Value(tokenKey{}).(uint64)
	return t, ok
}

// StoredError is a recorded failure of fn, replayed: Do returns it,
// without running fn, for a key whose execution failed with an error that
// was not [Retryable]. Message is that error's text.
type StoredError struct {
	Message string
}

// Error returns the recorded message.
func (e *StoredError) Error() string { return e.Message }

// Retryable marks err as a failure that a retry may cure and that had no
// effect worth remembering: a Guard releases the claim instead of
// recording it, so the next call with the key runs fn again.
// Retryable(nil) is nil. The result unwraps to err.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

func isRetryable(err error) bool {
	var r *retryableError
	return errors.As(err, &r)
}
