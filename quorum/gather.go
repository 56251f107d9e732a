package quorum

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrNoQuorum is returned, wrapped, by [Gather] when need calls can no
// longer succeed: too many replicas failed, there are fewer replicas than
// need, or the parent context ended first.
var ErrNoQuorum = errors.New("quorum: no quorum")

// Reply is the outcome of one call [Gather] made: the replica it called
// and what the call returned. It is a plain value.
type Reply[T any] struct {
	Replica string
	Value   T
	Err     error
}

// Option configures [Gather]: [Hedge], [MaxInFlight], [Terminal]. A nil
// Option is ignored. Options are plain functions, safe to share between
// goroutines and calls.
type Option func(*options)

type options struct {
	hedge       bool
	hedgeDelay  time.Duration
	maxInFlight int // 0: no limit
	terminal    func(error) bool
	err         error // the first invalid option
}

func (o *options) invalid(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}

// Hedge makes [Gather] start only need calls at first, as dskit's
// MinimizeRequests, and one more for each call that fails. With delay > 0
// it also starts one more at delay, 2·delay, 3·delay, ... after Gather
// began, for as long as it has not decided and replicas remain uncalled:
// the hedged requests of "The Tail at Scale" and Cassandra's speculative
// retry. A delay of 0 hedges on failures only; a negative delay makes
// Gather fail with [ErrInvalid].
func Hedge(delay time.Duration) Option {
	return func(o *options) {
		if delay < 0 {
			o.invalid("hedge delay %v is negative", delay)
		}
		o.hedge, o.hedgeDelay = true, delay
	}
}

// MaxInFlight makes [Gather] run at most n calls at once; a call that would
// exceed the limit starts when an earlier one returns. Successes count
// towards need whenever they arrive, so any n >= 1 can reach a quorum; n < 1
// makes Gather fail with [ErrInvalid].
func MaxInFlight(n int) Option {
	return func(o *options) {
		if n < 1 {
			o.invalid("max in flight %d, want at least 1", n)
		}
		o.maxInFlight = n
	}
}

// Terminal marks errors that no other replica can do better on, such as a
// rejected request: when isTerminal returns true for a call's error,
// [Gather] fails at once with that error, calls no further replica and
// cancels the calls in flight. isTerminal runs on Gather's goroutine. A nil
// isTerminal treats no error as terminal.
func Terminal(isTerminal func(err error) bool) Option {
	return func(o *options) { o.terminal = isTerminal }
}

// applyOptions returns the options opts set. It is separate from Gather so
// that the options escape to the heap only when there are some.
func applyOptions(opts []Option) options {
	o := new(options)
	for _, opt := range opts {
		if opt != nil {
			opt(o)
		}
	}
	return *o
}

// gathered carries one call's result to Gather.
type gathered[T any] struct {
	i   int // index into replicas
	v   T
	err error
}

// Gather calls replicas until need calls succeed, then cancels the rest; it
// fails as soon as need successes became impossible, with every error joined.
//
// By default Gather calls every replica at once; [Hedge] and [MaxInFlight]
// change when calls start (replicas are called in the order given, so put
// the preferred ones first), and [Terminal] stops at errors not worth
// retrying elsewhere. call must be safe for concurrent use and should
// return promptly once its context is done.
//
// Gather returns the replies of every call that returned before it
// decided, in the order of replicas. On success exactly need of them have
// a nil Err; the replies of calls still in flight are dropped, and later
// successes do not count. On failure the error is, in this order of
// precedence:
//
//   - an error wrapping [ErrInvalid] when need < 1, call is nil, a replica
//     is listed twice (it would count twice) or an option is invalid; no call
//     is made;
//   - an error wrapping [ErrNoQuorum] when need > len(replicas); no call is
//     made;
//   - an error wrapping [ErrNoQuorum] and context.Cause(ctx) when ctx ends
//     before the quorum (at once if it already has), joined with the errors of
//     the calls that failed before;
//   - the terminal error, wrapped with its replica's name, when [Terminal]
//     recognises one;
//   - an error wrapping [ErrNoQuorum] and every call's error, each wrapped
//     with its replica's name, once more than len(replicas) - need calls
//     failed.
//
// # Goroutines
//
// Gather runs each call on a goroutine of its own that ends as soon as the
// call returns: its reply goes into a buffer with room for every call, so
// it never blocks. Gather does not wait for calls in flight when it decides;
// it cancels their context (a child of ctx) and returns, so those goroutines
// end when their calls react to the cancellation. A call that ignores its
// context keeps its goroutine until it returns by itself. Gather starts no
// call after it returned, and the hedging timer is stopped by then.
func Gather[T any](ctx context.Context, replicas []string, need int,
	call func(ctx context.Context, replica string) (T, error), opts ...Option) ([]Reply[T], error) {
	var o options
	if len(opts) > 0 {
		o = applyOptions(opts)
	}
	n := len(replicas)
	switch {
	case o.err != nil:
		return nil, o.err
	case need < 1:
		return nil, fmt.Errorf("%w: need %d, want at least 1", ErrInvalid, need)
	case call == nil:
		return nil, fmt.Errorf("%w: nil call", ErrInvalid)
	}
	for i, r := range replicas {
		if slices.Contains(replicas[:i], r) {
			return nil, fmt.Errorf("%w: replica %q listed twice", ErrInvalid, r)
		}
	}
	if need > n {
		return nil, fmt.Errorf("%w: need %d replies from %d replicas", ErrNoQuorum, need, n)
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w before any call", ErrNoQuorum, context.Cause(ctx))
	}

	callCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make([]bool, n) // done[i]: f.replies[i] holds a reply; on the stack for up to 32 replicas
	f := fanout[T]{
		ctx: callCtx, replicas: replicas, call: call,
		results: make(chan gathered[T], n),
		replies: make([]Reply[T], n),
		want:    n,
		limit:   n,
	}
	if o.hedge {
		f.want = need
	}
	if o.maxInFlight > 0 {
		f.limit = o.maxInFlight
	}
	var hedges <-chan time.Time
	if o.hedge && o.hedgeDelay > 0 && need < n {
		t := time.NewTicker(o.hedgeDelay)
		defer t.Stop()
		hedges = t.C
	}
	f.start()
	for {
		select {
		case <-ctx.Done():
			return f.collect(done), f.stopped(ctx, need)
		case <-hedges:
			if f.want++; f.want >= n {
				hedges = nil
			}
		case g := <-f.results:
			f.inFlight--
			done[g.i] = true
			f.replies[g.i] = Reply[T]{Replica: replicas[g.i], Value: g.v, Err: g.err}
			switch {
			case g.err == nil:
				if f.succeeded++; f.succeeded == need {
					return f.collect(done), nil
				}
			case ctx.Err() != nil: // the call most likely failed because ctx ended
				return f.collect(done), f.stopped(ctx, need)
			case o.terminal != nil && o.terminal(g.err):
				return f.collect(done), fmt.Errorf("quorum: replica %q: %w", replicas[g.i], g.err)
			default:
				f.failed++
				f.errs = append(f.errs, fmt.Errorf("replica %q: %w", replicas[g.i], g.err))
				if f.failed > n-need {
					return f.collect(done), f.noQuorum(fmt.Errorf("%d of %d replicas succeeded, need %d", f.succeeded, n, need))
				}
				f.want++ // hedging: replace the failed call
			}
		}
		f.start()
	}
}

// fanout is the state of one Gather. Only Gather's goroutine touches it;
// the calls' goroutines only send on results.
type fanout[T any] struct {
	ctx      context.Context // the calls' context, cancelled when Gather returns
	replicas []string
	call     func(ctx context.Context, replica string) (T, error)
	results  chan gathered[T] // room for every call, so no send blocks
	replies  []Reply[T]       // by replica index until collect
	errs     []error          // the failed calls' errors, in arrival order

	started, inFlight int // calls started in all; not yet returned
	succeeded, failed int // returned calls, by outcome
	want, limit       int // calls to start in all (at most len(replicas)); at once
}

// start starts calls, in replica order, up to want in all and limit at
// once.
func (f *fanout[T]) start() {
	ctx, call, replicas, results := f.ctx, f.call, f.replicas, f.results
	for ; f.started < min(f.want, len(replicas)) && f.inFlight < f.limit; f.started++ {
		f.inFlight++
		i := f.started
		go func() {
			v, err := call(ctx, replicas[i])
			results <- gathered[T]{i: i, v: v, err: err}
		}()
	}
}

// collect returns the replies received, those whose done flag is set, in
// replica order.
func (f *fanout[T]) collect(done []bool) []Reply[T] {
	k := 0
	for i, d := range done {
		if d {
			f.replies[k] = f.replies[i]
			k++
		}
	}
	clear(f.replies[k:])
	return f.replies[:k:k]
}

// stopped returns the error for a parent context that ended before the
// quorum.
func (f *fanout[T]) stopped(parent context.Context, need int) error {
	return f.noQuorum(fmt.Errorf("%w after %d of %d needed successes", context.Cause(parent), f.succeeded, need))
}

// noQuorum returns ErrNoQuorum for reason, joined with the calls' errors.
func (f *fanout[T]) noQuorum(reason error) error {
	return errors.Join(append([]error{fmt.Errorf("%w: %w", ErrNoQuorum, reason)}, f.errs...)...)
}

// GatherFor is [Gather] for a consistency level: it calls the replicas req
// counts and succeeds once the successful replies satisfy req (see
// [Requirement.Satisfied]).
//
// For ONE, TWO, THREE, QUORUM and ALL it is Gather(ctx, req.Replicas(),
// req.Min(), call, opts...). For LOCAL_ONE and LOCAL_QUORUM it gathers from
// the local zone, and for EACH_QUORUM it runs one Gather per zone, each on a
// goroutine of its own, with each zone's Acks as need; options apply to each
// zone separately (MaxInFlight(2) allows two calls per zone). It succeeds
// when every zone did and fails as soon as one zone fails, cancelling the
// others; the error is that zone's, wrapped with the zone's name, so it
// matches [ErrNoQuorum] (or the terminal error) as Gather's would.
//
// The replies are those of each zone's Gather, zones in name order. The
// per-zone goroutines have ended when GatherFor returns; each returns as
// soon as its zone is decided, and the calls' goroutines end as documented
// for Gather. A zero req fails with [ErrInvalid].
func GatherFor[T any](ctx context.Context, req Requirement,
	call func(ctx context.Context, replica string) (T, error), opts ...Option) ([]Reply[T], error) {
	switch len(req.Zones) {
	case 0:
		return Gather(ctx, req.replicas, req.Min(), call, opts...)
	case 1:
		return gatherZone(ctx, req.Zones[0], call, opts)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	replies := make([][]Reply[T], len(req.Zones))
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i, z := range req.Zones {
		wg.Go(func() {
			var err error
			replies[i], err = gatherZone(ctx, z, call, opts)
			if err != nil {
				once.Do(func() {
					first = err
					cancel()
				})
			}
		})
	}
	wg.Wait()
	return slices.Concat(replies...), first
}

// gatherZone gathers z's acknowledgements and names z in the error.
func gatherZone[T any](ctx context.Context, z ZoneNeed,
	call func(ctx context.Context, replica string) (T, error), opts []Option) ([]Reply[T], error) {
	rs, err := Gather(ctx, z.Replicas, z.Acks, call, opts...)
	if err != nil {
		err = fmt.Errorf("zone %q: %w", z.Zone, err)
	}
	return rs, err
}
