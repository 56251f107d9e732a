package idempotency

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/distkit/distkit/clock"
)

var (
	// ErrInProgress is returned by Guard.Do while another call holds a
	// live claim on the key with the same fingerprint: in another
	// process, through another Guard, or through this one (unless
	// Config.Wait).
	ErrInProgress = errors.New("idempotency: key is in use by a request in progress")

	// ErrMismatch is returned by Guard.Do when the key is live with a
	// different fingerprint: the key was reused for another payload.
	ErrMismatch = errors.New("idempotency: key reused with a different payload")

	// ErrMissingKey is returned by Guard.Do for an empty key.
	ErrMissingKey = errors.New("idempotency: missing idempotency key")

	// ErrBadKey is returned by Guard.Do for a key longer than MaxKeyBytes
	// or holding a control character (a byte below 0x20, or 0x7f).
	ErrBadKey = errors.New("idempotency: malformed idempotency key")

	// ErrLockExpired is returned by Guard.Do, together with fn's result
	// and ErrNotClaimed, when fn returned after the store let the claim's
	// lock lapse: the result was not recorded, since another caller may
	// own the key by now, and a retry will run fn again.
	ErrLockExpired = errors.New("idempotency: lock lapsed before fn returned; result not recorded")
)

// Defaults for the zero fields of [Config].
const (
	DefaultLock   = time.Minute
	DefaultRetain = 24 * time.Hour
)

// MaxKeyBytes bounds the keys Guard.Do accepts, in bytes. Stores keep
// keys as they are given: a database column or a bbolt key holds it.
const MaxKeyBytes = 1024

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
	// Clock is the Guard's side of the lease: fn's context ends when Lock
	// has passed by this clock since before Claim. Whether the claim has
	// lapsed when fn returns is the store's to say, by its own clock.
	// Give it the store's clock (in tests, the same clocktest.Manual).
	// nil: clock.System.
	Clock clock.Clock
	// Wait makes a call that finds its key being executed through this
	// Guard, with the same fingerprint, wait for that execution and
	// return its result, until the call's own ctx ends. By default it
	// returns ErrInProgress at once, as it would from any other process:
	// the IETF draft asks for 409 while a request is in progress, and a
	// client behind a load balancer should not see two behaviours.
	Wait bool
	// Errors registers errors that fn may return, by codes of the API's
	// choosing, so that a replay of a recorded failure still matches
	// them: a replay of an error for which errors.Is(err, Errors[code])
	// held unwraps to Errors[code]. Codes are stored in records: keep
	// them stable across versions. An error that carries its own code
	// ([Coder]) is recorded with it. When several registered errors
	// match, the smallest code wins. New panics on an empty code or a
	// nil error. nil: none.
	Errors map[string]error
}

// Coder is implemented by errors that name their kind with a stable code
// (an API error's type, say "card_declined"). A Guard records the code
// of the first Coder in the chain of fn's error, and its replay is an
// error for which errors.Is(replay, target) holds for every Coder target
// with the same code. Give the type an Is method that compares codes to
// make errors.Is hold for the original error as well.
type Coder interface {
	error
	Code() string
}

// Guard executes functions at most once per idempotency key, recording
// their results in a [Store] and replaying them to duplicates.
//
// # Policy for failures
//
// A non-nil error from fn is an outcome like any other: it is recorded
// and replayed as a *StoredError, as Stripe replays the errors of
// requests that began executing, because a failure may come after side
// effects and running fn again could repeat them. Failures that are
// known to have had no effect, or that a retry may cure (timeouts talking
// to a dependency, overload), should be wrapped with [Retryable]: the
// claim is then released without a record, so the key stays usable and
// the next call runs fn again. A transient failure must not poison a key
// for the whole retention period.
//
// The claim is also released, and nothing recorded, when fn returns an
// error after its context ended (the caller left, or the lock lapsed) and
// when fn panics: these say nothing about the operation's outcome.
//
// # What a record holds
//
// For a success, the bytes fn returned. For a failure, the error's
// message (err.Error()) and its code: that of the first [Coder] in its
// chain, else the smallest registered code (Config.Errors) it matches,
// else none. Nothing else survives a replay: not the error's type, its
// fields or the errors it wraps. A replay is a *StoredError that unwraps
// to the error registered under its code with the replaying Guard, and
// matches every Coder with its code.
//
// The zero Guard is not usable; create one with [New]. A Guard is safe
// for concurrent use.
type Guard struct {
	store  Store
	mem    *MemStore // store, if it is a MemStore on clock (set by direct)
	direct sync.Once
	lock   time.Duration
	retain time.Duration
	clock  clock.Clock
	system bool      // clock is clock.System: its readings are real time
	base   time.Time // on the system clock, the origin of the Guard's timeline: see now
	wait   bool
	codes  []registered // Config.Errors, by code

	mu    sync.Mutex       // guards calls
	calls map[string]*call // with Wait: the executions running through this Guard
}

type registered struct {
	code string
	err  error
}

// New returns a Guard over s. It panics if s is nil, a duration in cfg is
// negative, or cfg.Errors registers an empty code or a nil error.
func New(s Store, cfg Config) *Guard {
	if s == nil {
		panic("idempotency: New with a nil Store")
	}
	if cfg.Lock < 0 || cfg.Retain < 0 {
		panic(fmt.Sprintf("idempotency: New with negative Lock %v or Retain %v", cfg.Lock, cfg.Retain))
	}
	g := &Guard{store: s, lock: cfg.Lock, retain: cfg.Retain, clock: cfg.Clock, wait: cfg.Wait}
	if g.lock == 0 {
		g.lock = DefaultLock
	}
	if g.retain == 0 {
		g.retain = DefaultRetain
	}
	if g.clock == nil {
		g.clock = clock.System{}
	}
	_, g.system = g.clock.(clock.System)
	g.base = time.Now()
	g.mem, _ = s.(*MemStore)
	for code, err := range cfg.Errors {
		if code == "" || err == nil {
			panic(fmt.Sprintf("idempotency: New with error %v registered under code %q", err, code))
		}
		g.codes = append(g.codes, registered{code, err})
	}
	slices.SortFunc(g.codes, func(a, b registered) int { return strings.Compare(a.code, b.code) })
	return g
}

// Retain returns how long the Guard keeps finished executions: the expiry
// policy an API that uses it must publish.
func (g *Guard) Retain() time.Duration { return g.retain }

// Do runs fn at most once for key while the key's record lives, and
// returns its result; later calls with the same key and fingerprint
// return the recorded result without running fn (a recorded error as a
// *StoredError; the first caller gets fn's error itself).
//
// A fingerprint is a digest of the call's payload, of one length for all
// calls with a key (a SHA-256 sum, say). A call that finds the key
// claimed and not finished returns ErrInProgress (with Config.Wait, a
// call that finds it executing through this Guard waits instead); one
// whose fingerprint differs from the key's record returns ErrMismatch; an
// empty key returns ErrMissingKey, and a key longer than MaxKeyBytes or
// holding a control character ErrBadKey.
//
// fn receives a context that ends when ctx does or when the claim's lock
// lapses, and that carries the claim's fencing token (see
// [FencingToken]). If the store let the claim lapse before fn returned,
// Do returns fn's result with an error wrapping ErrLockExpired and
// ErrNotClaimed.
//
// The result is read-only. Calls that wait for another's execution
// (Config.Wait) share its result slice, and a replay from a [MemStore]
// may return the record's own bytes, shared with every other replay of
// the key, rather than a copy per call. Its capacity is its length, so
// appending to it copies; writing into it would change what the key
// replays.
//
// Errors from the Store are returned wrapped. A record the Guard cannot trust gives an error
// wrapping ErrCorrupt: one that does not decode, that is for another key,
// or whose fingerprint has another length than the caller's (a store that
// truncated it would otherwise turn every retry into ErrMismatch). See
// [Guard] for which failures are recorded.
func (g *Guard) Do(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	if g.wait {
		return g.shared(ctx, key, fingerprint, fn)
	}
	return g.execute(ctx, key, fingerprint, fn)
}

// checkKey returns nil for a key Do accepts.
func checkKey(key string) error {
	if key == "" {
		return ErrMissingKey
	}
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrBadKey, len(key), MaxKeyBytes)
	}
	i := 0
	for ; i+8 <= len(key); i += 8 { // eight bytes a step while none is a control character
		if hasControl(word(key, i)) {
			break
		}
	}
	// The bytes after the whole words end the last eight.
	if i == len(key) || i > len(key)-8 && len(key) >= 8 && !hasControl(word(key, len(key)-8)) {
		return nil
	}
	for ; i < len(key); i++ { // name the first control character
		if c := key[i]; c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: control character %#x at byte %d", ErrBadKey, c, i)
		}
	}
	return nil
}

// word returns the eight bytes of s from i, the first the lowest.
func word(s string, i int) uint64 {
	s = s[i : i+8]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// hasControl reports whether one of the eight bytes of w is below 0x20 or
// is 0x7f. For each byte b, b - 0x20 borrows into its top bit exactly
// when b < 0x20 or a borrow came from the byte below, which itself had a
// control character; the mask ^w drops bytes of 0x80 and above. The same
// with b ^ 0x7f and 1 finds 0x7f. Borrows may flag a byte above one that
// was rightly flagged, never a word without one.
func hasControl(w uint64) bool {
	const ones, tops = 0x0101010101010101, 0x8080808080808080
	del := w ^ (0x7f * ones)
	return ((w-0x20*ones)&^w|(del-ones)&^del)&tops != 0
}

// call is an execution through a Guard with Wait, which calls with the
// same key and fingerprint wait for.
type call struct {
	fingerprint []byte
	done        chan struct{} // closed when out, err and abandoned are set
	out         []byte
	err         error
	abandoned   bool // it failed because its caller's ctx ended, or fn panicked
}

// shared is Do with Wait: the first call for a key executes, and the
// calls with its fingerprint that arrive meanwhile wait for it.
func (g *Guard) shared(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	for {
		g.mu.Lock()
		c, running := g.calls[key]
		if !running {
			c = &call{fingerprint: fingerprint, done: make(chan struct{}), abandoned: true}
			if g.calls == nil {
				g.calls = make(map[string]*call)
			}
			g.calls[key] = c
		}
		g.mu.Unlock()
		switch {
		case !running:
			return g.lead(ctx, key, c, fn)
		case !bytes.Equal(c.fingerprint, fingerprint):
			// Another payload: not ours to share. The store decides,
			// ErrMismatch as a rule.
			return g.execute(ctx, key, fingerprint, fn)
		}
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if !c.abandoned {
			return c.out, c.err
		}
		// Abandoned: claim the key ourselves, unless we are leaving too.
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// lead executes the call c for key and hands its result to the calls
// waiting for it; if fn panics, they find c abandoned.
func (g *Guard) lead(ctx context.Context, key string, c *call,
	fn func(ctx context.Context) ([]byte, error)) (out []byte, err error) {
	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(c.done)
	}()
	out, err = g.execute(ctx, key, c.fingerprint, fn)
	c.out, c.err, c.abandoned = out, err, err != nil && ctx.Err() != nil
	return out, err
}

// execute claims key and runs fn, or answers from the record it finds.
func (g *Guard) execute(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	g.direct.Do(func() { // the store's Clock is set by its first use
		if g.mem == nil {
			return
		}
		if !g.mem.readsClock(g.clock) {
			g.mem = nil
			return
		}
		// The Guard's timeline becomes the store's, so that a claim's
		// deadline in the store is its lease's.
		g.mem.init.Do(g.mem.setup)
		g.base = g.mem.base
	})
	if g.mem != nil {
		return g.executeMem(ctx, key, fingerprint, fn)
	}
	deadline := after(g.now(), g.lock)
	token, rec, err := g.store.Claim(ctx, key, fingerprint, g.lock)
	switch {
	case err != nil:
		return nil, fmt.Errorf("idempotency: claiming %q: %w", key, err)
	case rec != nil:
		return g.replay(key, fingerprint, rec)
	case token == 0:
		return nil, fmt.Errorf("%w: the store granted %q under token 0", ErrCorrupt, key)
	}
	return g.run(ctx, key, lease{token: token, deadline: deadline}, fn)
}

// executeMem is execute over a MemStore on the Guard's clock: the store
// and the Guard share one reading of the clock per step, and a replay
// reads the record in place instead of copying it.
func (g *Guard) executeMem(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("idempotency: claiming %q: %w", key, err)
	}
	var c memClaim
	sh, h := g.mem.shard(key)
	out, err := g.mem.claimDirect(sh, h, key, fingerprint, g.lock, &c)
	switch {
	case out != nil:
		return out, nil
	case err != nil:
		return nil, fmt.Errorf("idempotency: claiming %q: %w", key, err)
	case c.token == 0:
		live := c.e.view(c.done) // shares the entry's bytes, never written again
		return g.replay(key, fingerprint, &live)
	}
	return g.run(ctx, key, lease{token: c.token, deadline: c.due, mem: c}, fn)
}

// replay answers a call for key with fingerprint from rec, the key's live
// record.
func (g *Guard) replay(key string, fingerprint []byte, rec *Record) ([]byte, error) {
	switch {
	case rec.Key != key:
		return nil, fmt.Errorf("%w: the store returned the record of %q for %q", ErrCorrupt, rec.Key, key)
	case len(rec.Fingerprint) != len(fingerprint):
		return nil, fmt.Errorf("%w: the store returned a fingerprint of %d bytes for %q, want %d",
			ErrCorrupt, len(rec.Fingerprint), key, len(fingerprint))
	case !bytes.Equal(rec.Fingerprint, fingerprint):
		return nil, ErrMismatch
	case rec.State == InProgress:
		return nil, ErrInProgress
	case rec.State != Done:
		return nil, fmt.Errorf("%w: the store returned a record of %q in state %v", ErrCorrupt, key, rec.State)
	}
	out, stored, err := decodeOutcome(rec.Response)
	switch {
	case err != nil:
		return nil, fmt.Errorf("idempotency: the record of %q: %w", key, err)
	case stored != nil:
		stored.registered = g.registered(stored.Code)
		return nil, stored
	}
	return out[:len(out):len(out)], nil
}

// lease is a claim the Guard holds: its token, the time on the Guard's
// timeline when it lapses (Lock after a reading taken before it was
// granted), and, over a MemStore on the Guard's clock, the store's
// handle on it.
type lease struct {
	token    uint64
	deadline int64
	mem      memClaim
}

// now reads the Guard's clock on its timeline: nanoseconds since g.base
// on the system clock (the monotonic time elapsed, as a MemStore counts
// it), Unix nanoseconds on any other.
func (g *Guard) now() int64 {
	if g.system {
		return int64(time.Since(g.base))
	}
	return g.clock.Now().UnixNano()
}

// time returns ns, on the Guard's timeline, as a time on the system
// clock: read from the system clock, the instant at which the Guard's
// clock will read ns.
func (g *Guard) time(ns int64) time.Time {
	if g.system {
		return g.base.Add(time.Duration(ns))
	}
	return time.Now().Add(time.Unix(0, ns).Sub(g.clock.Now())) // Sub saturates
}

// run executes fn on the claim l of key and records or releases the
// claim.
func (g *Guard) run(ctx context.Context, key string, l lease,
	fn func(ctx context.Context) ([]byte, error)) (out []byte, err error) {
	token := l.token
	fctx := &runContext{parent: ctx, guard: g, token: token, deadline: l.deadline}
	// The store decides whether the claim is still ours: the token makes
	// a Complete or Release of a claim taken over since fail and change
	// nothing, whatever the Guard's clock says.
	returned := false
	defer func() {
		fctx.end()
		if !returned { // fn panicked or called runtime.Goexit
			_ = g.store.Release(detached(ctx), key, token)
		}
	}()
	out, err = fn(fctx)
	returned = true

	if err != nil && (isRetryable(err) || fctx.ended()) {
		if rerr := g.store.Release(detached(ctx), key, token); rerr != nil {
			err = errors.Join(err, fmt.Errorf("idempotency: releasing %q: %w", key, rerr))
		}
		return nil, err
	}
	var cerr error
	if l.mem.e != nil {
		// The store keeps the buffer: it is encoded in one of its own,
		// in the claim's entry when it fits.
		var rec []byte
		if err == nil {
			size := 7 + len(out) // two bytes and a bin header of at most five
			if rec = l.mem.e.spare(size); rec == nil {
				rec = make([]byte, 0, size)
			}
		}
		rec = appendOutcome(rec, out, err, g.code(err)) // an error's is grown as it is encoded
		outAt := 0
		if err == nil && out != nil { // a nil result replays as nil: see replay
			outAt = len(rec) - len(out)
		}
		cerr = g.mem.completeAt(l.mem, key, rec, outAt, g.mem.now(), g.retain)
	} else {
		buf := outcomeBuffers.Get().(*[]byte)
		*buf = appendOutcome((*buf)[:0], out, err, g.code(err))
		cerr = g.store.Complete(detached(ctx), key, token, *buf, g.retain)
		if cap(*buf) <= maxPooledOutcome {
			outcomeBuffers.Put(buf)
		}
	}
	if cerr != nil {
		if errors.Is(cerr, ErrNotClaimed) { // the store let the claim lapse
			cerr = fmt.Errorf("%w: key %q: %w", ErrLockExpired, key, cerr)
		} else {
			cerr = fmt.Errorf("idempotency: recording the result of %q: %w", key, cerr)
		}
		err = errors.Join(err, cerr)
	}
	return out, err
}

// detached returns ctx without its cancellation, for the store calls
// that must happen even if the caller has left. It is made where a call
// needs it: a first call that a MemStore records makes none.
func detached(ctx context.Context) context.Context {
	if ctx.Done() == nil {
		return ctx
	}
	return context.WithoutCancel(ctx)
}

// outcomeBuffers holds the buffers outcomes are encoded in for Complete,
// which copies them. Buffers above maxPooledOutcome are left to the
// garbage collector, so one large result does not stay pinned.
var outcomeBuffers = sync.Pool{New: func() any { return new([]byte) }}

const maxPooledOutcome = 64 << 10

// code returns the code err is recorded with: that of the first Coder in
// its chain, else the first registered error it matches, else "".
func (g *Guard) code(err error) string {
	if err == nil {
		return ""
	}
	if c, ok := errors.AsType[Coder](err); ok {
		return c.Code()
	}
	for _, r := range g.codes {
		if errors.Is(err, r.err) {
			return r.code
		}
	}
	return ""
}

// registered returns the error registered under code, or nil.
func (g *Guard) registered(code string) error {
	if code == "" {
		return nil
	}
	i, ok := slices.BinarySearchFunc(g.codes, code, func(r registered, code string) int { return strings.Compare(r.code, code) })
	if !ok {
		return nil
	}
	return g.codes[i].err
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

// runContext is the context fn runs with: its parent, bounded by the
// claim's lock, carrying the claim's fencing token. The context that ends
// at the lock's deadline (a context.WithDeadline, with its timer) is made
// the first time fn asks for anything but the token, so an fn that never
// looks at its context costs no timer; from then on runContext is that
// context. Its deadline is the lock's, by the Guard's clock, turned into
// system time when it is made (see Guard.time).
type runContext struct {
	parent   context.Context
	guard    *Guard
	token    uint64
	deadline int64                   // when the lock lapses, on the Guard's timeline
	bounded  atomic.Pointer[bounded] // nil until made, or fnReturned
}

// bounded is a runContext's parent with the lock's deadline.
type bounded struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// fnReturned stands in a runContext for a bounded context not made
// before fn returned: one made after is cancelled.
var fnReturned = new(bounded)

func (c *runContext) Deadline() (time.Time, bool) { return c.ctx().Deadline() }

func (c *runContext) Done() <-chan struct{} { return c.ctx().Done() }

func (c *runContext) Err() error { return c.ctx().Err() }

// Value returns the fencing token for its key, and otherwise the value
// the bounded context holds, which (but for the context package's own
// keys) is the parent's.
func (c *runContext) Value(key any) any {
	if _, ok := key.(tokenKey); ok {
		return c.token
	}
	if b := c.bounded.Load(); b != nil && b != fnReturned {
		return b.ctx.Value(key)
	}
	return c.parent.Value(key)
}

// ctx returns the bounded context, making it on first use.
func (c *runContext) ctx() context.Context {
	for {
		b := c.bounded.Load()
		if b != nil && b != fnReturned {
			return b.ctx
		}
		made := new(bounded)
		made.ctx, made.cancel = context.WithDeadline(c.parent, c.guard.time(c.deadline))
		if b == fnReturned {
			made.cancel()
		}
		if c.bounded.CompareAndSwap(b, made) {
			return made.ctx
		}
		made.cancel() // another call made it, or fn returned, meanwhile
	}
}

// ended reports whether the context has ended (its parent did, or the
// lock lapsed), without making the timer.
func (c *runContext) ended() bool {
	if b := c.bounded.Load(); b != nil && b != fnReturned {
		return b.ctx.Err() != nil
	}
	return c.parent.Err() != nil || c.guard.now() >= c.deadline
}

// end cancels the context: fn has returned.
func (c *runContext) end() {
	for {
		b := c.bounded.Load()
		if b == fnReturned {
			return
		}
		if b != nil {
			b.cancel()
			return
		}
		if c.bounded.CompareAndSwap(nil, fnReturned) {
			return
		}
	}
}

// StoredError is a recorded failure of fn, replayed: Do returns it,
// without running fn, for a key whose execution failed with an error that
// was not [Retryable]. See [Guard] for what a record keeps of an error.
type StoredError struct {
	// Code is the code the error was recorded with; "" if none.
	Code string
	// Message is the error's text.
	Message string

	registered error // the error the replaying Guard registered under Code
}

// Error returns the recorded message.
func (e *StoredError) Error() string { return e.Message }

// Unwrap returns the error registered under e.Code with the Guard that
// replayed e (Config.Errors), or nil.
func (e *StoredError) Unwrap() error { return e.registered }

// Is reports whether target is a [Coder] with e's code.
func (e *StoredError) Is(target error) bool {
	c, ok := target.(Coder)
	return ok && e.Code != "" && c.Code() == e.Code
}

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
	_, ok := errors.AsType[*retryableError](err)
	return ok
}
