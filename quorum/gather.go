package quorum

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/distkit/distkit/clock"
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
	tracker     *Tracker
	prefer      Selection
	hedgeQ      float64 // HedgeAt's quantile; 0: not set
	budget      float64
	clock       clock.Clock
	keepWinners bool
	cleanup     any   // a func(Reply[T]) for Gather[T]
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

// Selection is the order in which [Gather] calls replicas; [Prefer] sets
// it.
type Selection int

const (
	// InOrder calls replicas in the order given, the default: put the
	// preferred ones first.
	InOrder Selection = iota
	// Shuffled calls them in a random order, so that hedged reads spread
	// over the replicas instead of all going to the first.
	Shuffled
	// LeastLoaded calls first the replicas with the fewest calls in flight
	// and then the lowest recent latency (an exponentially weighted mean,
	// weight 1/8 to the latest) in the [Tracker] given with [Track], as
	// least-outstanding-requests balancers and Cassandra's dynamic snitch
	// do; replicas it has no latency for come first among equals, so that
	// they get measured. Ties keep the order given.
	LeastLoaded
)

// Prefer makes [Gather] call replicas in the order s chooses; the replies
// stay in the order of replicas. LeastLoaded needs [Track]; without it, or
// with an unknown Selection, Gather fails with [ErrInvalid].
func Prefer(s Selection) Option {
	return func(o *options) {
		if s < InOrder || s > LeastLoaded {
			o.invalid("unknown selection %d", s)
		}
		o.prefer = s
	}
}

// Track makes [Gather] record into t the calls it has in flight and the
// latency of each call, measured on the clock of [Clock]: the latency of a
// success, and for a call that returns after its context was cancelled the
// time it ran (a lower bound, so that a replica that is always cut short
// still looks slow). Failures record no latency. A nil t tracks nothing.
func Track(t *Tracker) Option {
	return func(o *options) { o.tracker = t }
}

// HedgeAt is adaptive hedging, Cassandra's speculative_retry = 99p with
// q = 0.99: [Gather] starts only need calls at first and one more for each
// failure, as with [Hedge], and starts one more call whenever the calls
// have run for the longest q-quantile of the recent latencies, in the
// [Tracker] given with [Track], of the replicas called first; again after
// as long, while replicas remain uncalled. The extra load is capped as "The
// Tail at Scale" recommends: each Gather with HedgeAt adds budget to the
// Tracker's allowance and each timed hedge spends 1 of it, so that over any
// run of Gathers sharing the Tracker the timed hedges number at most budget
// times the Gathers, plus [HedgeBurst]; a hedge the allowance cannot pay
// for is not started. Replacements of failed calls are not hedges and are not capped.
//
// Until every replica called first has [MinSamples] latencies, the delay
// of [Hedge] applies if it was given, and no timed hedge starts otherwise.
// HedgeAt needs Track; without it, or with q outside (0, 1] or budget
// outside [0, 1], Gather fails with [ErrInvalid].
func HedgeAt(q, budget float64) Option {
	return func(o *options) {
		if !(q > 0 && q <= 1) {
			o.invalid("hedge quantile %v, want one in (0, 1]", q)
		}
		if !(budget >= 0 && budget <= 1) {
			o.invalid("hedge budget %v, want one in [0, 1]", budget)
		}
		o.hedge, o.hedgeQ, o.budget = true, q, budget
	}
}

// Timers is a clock that can also wake a goroutine: After returns a channel
// that receives once d has passed on the clock. [Gather] uses it for its
// hedge timer when the clock given with [Clock] implements it.
type Timers interface {
	clock.Clock
	After(d time.Duration) <-chan time.Time
}

// Clock makes [Gather] read c to time calls for [Track] and, if c
// implements [Timers], wait on c for its hedges; otherwise hedges wait on
// the runtime's timers. A nil c means the system clock.
func Clock(c clock.Clock) Option {
	return func(o *options) { o.clock = c }
}

// KeepWinners makes [Gather] leave running the contexts of the calls whose
// successful replies it returns, so that what those replies hold open (a
// stream, a response body) stays usable after Gather returns: each call
// then runs under a context of its own, a child of ctx, and the winners'
// contexts end with ctx. Cancel ctx when done with the replies. The other
// calls' contexts are cancelled when Gather returns, as without it.
func KeepWinners() Option {
	return func(o *options) { o.keepWinners = true }
}

// Cleanup makes [Gather] pass to release every successful reply that
// arrives after it returned, which would otherwise be dropped (dskit's
// DoUntilQuorum cleanup function), so that the caller can release what the
// reply holds. release runs on a goroutine that Gather leaves behind when
// calls are in flight as it returns; the goroutine ends when the last of
// them returns. Cleanup must be given for the T of the Gather it is passed
// to; otherwise Gather fails with [ErrInvalid]. A nil release is ignored.
func Cleanup[T any](release func(Reply[T])) Option {
	return func(o *options) {
		if release != nil {
			o.cleanup = release
		}
	}
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
// a nil Err; the replies of calls still in flight are dropped (or passed
// to the function of [Cleanup]), and later successes do not count. On failure the error is, in this order of
// precedence:
//
//   - an error wrapping [ErrInvalid] when need < 1, call is nil, a replica
//     is listed twice (it would count twice) or an option is invalid (or
//     needs [Track] without it); no call is made;
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
// it cancels their context (a child of ctx; with [KeepWinners], the
// winners' contexts are left to end with ctx) and returns, so those goroutines
// end when their calls react to the cancellation. A call that ignores its
// context keeps its goroutine until it returns by itself. Gather starts no
// call after it returned, and the hedging timer is stopped by then. With
// [Cleanup], one more goroutine receives the late replies; it ends when
// the last call returns.
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
	var release func(Reply[T])
	if o.cleanup != nil {
		var ok bool
		if release, ok = o.cleanup.(func(Reply[T])); !ok {
			return nil, fmt.Errorf("%w: cleanup of %T for a Gather of %T", ErrInvalid, o.cleanup, *new(T))
		}
	}
	if o.tracker == nil && (o.prefer == LeastLoaded || o.hedgeQ > 0) {
		return nil, fmt.Errorf("%w: LeastLoaded and HedgeAt need Track", ErrInvalid)
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
		tracker: o.tracker,
		clock:   o.clock,
	}
	if o.hedge {
		f.want = need
	}
	if o.maxInFlight > 0 {
		f.limit = o.maxInFlight
	}
	if o.tracker != nil && o.clock == nil {
		f.clock = clock.System{}
	}
	if o.prefer != InOrder {
		f.order = make([]int, n)
		for i := range f.order {
			f.order[i] = i
		}
		if o.prefer == Shuffled {
			rand.Shuffle(n, func(i, j int) { f.order[i], f.order[j] = f.order[j], f.order[i] })
		} else {
			o.tracker.order(replicas, f.order)
		}
	}
	if o.keepWinners {
		f.parent = ctx
		f.cancels = make([]context.CancelFunc, n)
		f.won = make([]bool, n)
		defer f.cancelLosers()
	}
	if release != nil {
		defer func() { f.drain(release) }()
	}
	h := hedger{delay: o.hedgeDelay}
	if o.hedgeQ > 0 {
		o.tracker.earn(o.budget)
		h.budget = o.tracker
		first := make([]string, need)
		for k := range first {
			first[k] = replicas[f.index(k)]
		}
		if d, ok := o.tracker.hedgeDelay(first, o.hedgeQ); ok {
			h.delay = d
		}
	}
	if o.hedge && h.delay > 0 && need < n {
		h.arm(o.clock)
		defer h.stop()
	}
	f.start()
	for {
		select {
		case <-ctx.Done():
			return f.collect(done), f.stopped(ctx, need)
		case <-h.c:
			h.c = nil
			if h.budget != nil && !h.budget.spend() {
				continue // over budget: no more timed hedges
			}
			if f.want++; f.want < n {
				h.arm(o.clock)
			}
		case g := <-f.results:
			f.inFlight--
			done[g.i] = true
			f.replies[g.i] = Reply[T]{Replica: replicas[g.i], Value: g.v, Err: g.err}
			switch {
			case g.err == nil:
				if f.won != nil {
					f.won[g.i] = true
				}
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

// hedger is Gather's hedge timer.
type hedger struct {
	delay  time.Duration
	budget *Tracker // HedgeAt's allowance; nil: unlimited
	c      <-chan time.Time
	timer  *time.Timer
}

// arm makes h.c receive once delay has passed, on c if it implements
// Timers and on a runtime timer otherwise.
func (h *hedger) arm(c clock.Clock) {
	if t, ok := c.(Timers); ok {
		h.c = t.After(h.delay)
		return
	}
	if h.timer == nil {
		h.timer = time.NewTimer(h.delay)
	} else {
		h.timer.Reset(h.delay)
	}
	h.c = h.timer.C
}

// stop releases the runtime timer, if any.
func (h *hedger) stop() {
	if h.timer != nil {
		h.timer.Stop()
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

	order   []int       // the k-th call goes to replicas[order[k]]; nil: in order
	tracker *Tracker    // nil: not tracked
	clock   clock.Clock // times tracked calls

	// With KeepWinners, each call i runs under a child of parent of its
	// own, cancelled by cancels[i].
	parent  context.Context
	cancels []context.CancelFunc
	won     []bool // the calls whose successes Gather returns

	started, inFlight int // calls started in all; not yet returned
	succeeded, failed int // returned calls, by outcome
	want, limit       int // calls to start in all (at most len(replicas)); at once
}

// index returns the index in replicas of the k-th call.
func (f *fanout[T]) index(k int) int {
	if f.order == nil {
		return k
	}
	return f.order[k]
}

// start starts calls, in the order chosen, up to want in all and limit at
// once.
func (f *fanout[T]) start() {
	ctx, call, replicas, results, tr, clk := f.ctx, f.call, f.replicas, f.results, f.tracker, f.clock
	for ; f.started < min(f.want, len(replicas)) && f.inFlight < f.limit; f.started++ {
		f.inFlight++
		i := f.index(f.started)
		callCtx := ctx
		if f.cancels != nil {
			callCtx, f.cancels[i] = context.WithCancel(f.parent)
		}
		if tr != nil {
			tr.begin(replicas[i])
		}
		go func() {
			var t0 time.Time
			if tr != nil {
				t0 = clk.Now()
			}
			v, err := call(callCtx, replicas[i])
			if tr != nil {
				tr.end(replicas[i], clk.Now().Sub(t0), err == nil || callCtx.Err() != nil)
			}
			results <- gathered[T]{i: i, v: v, err: err}
		}()
	}
}

// cancelLosers cancels the context of every call started, except those
// whose successful replies Gather returns.
func (f *fanout[T]) cancelLosers() {
	for i, c := range f.cancels {
		if c != nil && !f.won[i] {
			c()
		}
	}
}

// drain passes the successes of the calls still in flight to release as
// they arrive, on a goroutine of its own.
func (f *fanout[T]) drain(release func(Reply[T])) {
	late, results, replicas := f.inFlight, f.results, f.replicas
	if late == 0 {
		return
	}
	go func() {
		for range late {
			if g := <-results; g.err == nil {
				release(Reply[T]{Replica: replicas[g.i], Value: g.v})
			}
		}
	}()
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
	replies := make([][]Reply[T], len(req.Zones))
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	// With KeepWinners, a success leaves the zones' context to end with
	// the caller's, so that the winners' contexts, its children, live on.
	keep := applyOptions(opts).keepWinners
	defer func() {
		if first != nil || !keep {
			cancel()
		}
	}()
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
