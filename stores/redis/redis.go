package redis

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/idempotency"
)

// DefaultPrefix starts the names of the store's keys when Config leaves
// Prefix empty.
const DefaultPrefix = "distkit:idempotency:"

// Config configures an [IdempotencyStore]. The zero value is ready to
// use.
type Config struct {
	// Prefix starts the names of the store's keys: Prefix + "k:" + key
	// for a record and Prefix + "token" for the token counter. "":
	// DefaultPrefix. On a Redis Cluster, every key of a script must be
	// in one slot: give the prefix a hash tag, such as "{idem}:".
	Prefix string
	// Clock, if not nil, replaces the server's clock for deadlines: tests
	// that move time by hand use it. Keys still expire by the server's
	// clock, after the same durations. Leave it nil in production, so that
	// every process shares the server's clock.
	Clock clock.Clock
}

// IdempotencyStore is an [idempotency.Store] in Redis: a hash per key,
// fencing tokens from a counter (INCR), and every method a Lua script,
// atomic on the server, that reads the time from the server's clock
// (TIME) and gives the key a TTL to its deadline, so that Redis forgets a
// lapsed claim or an expired result by itself and the processes sharing
// the store agree on deadlines whatever their own clocks say. Deadlines
// have a resolution of one millisecond; lock and retain are rounded up
// to it.
//
// Durability is Redis's: without AOF and appendfsync always, a crash of
// the server forgets recent records (and, in the worst case, lets a key
// run twice); replicas are asynchronous, and a failover can do the same.
//
// An IdempotencyStore is safe for concurrent use, by any number of
// processes. Create it with [New].
type IdempotencyStore struct {
	c       goredis.Scripter
	clock   clock.Clock
	records string
	counter string
}

var _ idempotency.Store = (*IdempotencyStore)(nil)

var (
	//go:embed claim.lua
	claimSrc string
	//go:embed settle.lua
	settleSrc string

	claimScript  = goredis.NewScript(claimSrc)
	settleScript = goredis.NewScript(settleSrc)
)

// New returns a store on c (a *goredis.Client, a *goredis.ClusterClient
// or any Scripter).
func New(c goredis.Scripter, cfg Config) *IdempotencyStore {
	p := cfg.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return &IdempotencyStore{c: c, clock: cfg.Clock, records: p + "k:", counter: p + "token"}
}

// now returns the store's clock as a script argument, in milliseconds
// since the Unix epoch: "" for the server's.
func (s *IdempotencyStore) now() string {
	if s.clock == nil {
		return ""
	}
	return strconv.FormatInt(s.clock.Now().UnixMilli(), 10)
}

// millis converts a positive duration to milliseconds, rounding up.
func millis(d time.Duration) int64 { return int64((d + time.Millisecond - 1) / time.Millisecond) }

// Claim implements [idempotency.Store.Claim] in one script. It returns an
// error if lock is not positive, ctx.Err() if ctx is done, and the
// server's errors wrapped.
func (s *IdempotencyStore) Claim(ctx context.Context, key string, fingerprint []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	if lock <= 0 {
		return 0, nil, fmt.Errorf("redis: Claim with non-positive lock %v", lock)
	}
	res, err := claimScript.Run(ctx, s.c, []string{s.records + key, s.counter}, fingerprint, millis(lock), s.now()).Slice()
	if err != nil {
		return 0, nil, fmt.Errorf("redis: claim %q: %w", key, err)
	}
	if len(res) == 1 {
		token, ok := res[0].(int64)
		if !ok || token <= 0 {
			return 0, nil, fmt.Errorf("redis: claim %q: bad token %v", key, res[0])
		}
		return uint64(token), nil, nil
	}
	rec, err := record(key, res)
	if err != nil {
		return 0, nil, fmt.Errorf("redis: claim %q: %w", key, err)
	}
	return 0, rec, nil
}

// errReply is wrapped by the errors for a record the script returned in
// an unexpected shape (a key written by something else).
var errReply = errors.New("malformed record")

// record decodes the live record the claim script returned.
func record(key string, res []any) (*idempotency.Record, error) {
	if len(res) != 6 {
		return nil, fmt.Errorf("%w: %d fields", errReply, len(res))
	}
	var f [5]string
	for i := range f {
		v, ok := res[i+1].(string)
		if !ok {
			return nil, fmt.Errorf("%w: field %d is %T", errReply, i, res[i+1])
		}
		f[i] = v
	}
	token, err1 := strconv.ParseUint(f[2], 10, 64)
	ms, err2 := strconv.ParseInt(f[3], 10, 64)
	if err1 != nil || err2 != nil || f[1] != "0" && f[1] != "1" {
		return nil, fmt.Errorf("%w: token %q, deadline %q, done %q", errReply, f[2], f[3], f[1])
	}
	rec := &idempotency.Record{Key: key, Fingerprint: []byte(f[0]), Token: token}
	if f[1] == "1" {
		rec.State, rec.ExpiresAt, rec.Response = idempotency.Done, time.UnixMilli(ms), []byte(f[4])
	} else {
		rec.State, rec.LockedUntil = idempotency.InProgress, time.UnixMilli(ms)
	}
	return rec, nil
}

// Complete implements [idempotency.Store.Complete] in one script. It
// returns an error wrapping [idempotency.ErrNotClaimed] if key has no
// live claim under token, an error if retain is not positive, ctx.Err()
// if ctx is done, and the server's errors wrapped.
func (s *IdempotencyStore) Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error {
	if retain <= 0 {
		return fmt.Errorf("redis: Complete with non-positive retain %v", retain)
	}
	return s.settle(ctx, "complete", key, token, response, millis(retain))
}

// Release implements [idempotency.Store.Release] in one script. It
// returns an error wrapping [idempotency.ErrNotClaimed] if key has no
// live claim under token, ctx.Err() if ctx is done, and the server's
// errors wrapped.
func (s *IdempotencyStore) Release(ctx context.Context, key string, token uint64) error {
	return s.settle(ctx, "release", key, token, nil, 0)
}

func (s *IdempotencyStore) settle(ctx context.Context, op, key string, token uint64, response []byte, retain int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if response == nil {
		response = []byte{}
	}
	n, err := settleScript.Run(ctx, s.c, []string{s.records + key},
		strconv.FormatUint(token, 10), s.now(), op, response, retain).Int()
	if err != nil {
		return fmt.Errorf("redis: %s %q: %w", op, key, err)
	}
	if n == 0 {
		return fmt.Errorf("%w: %q under token %d", idempotency.ErrNotClaimed, key, token)
	}
	return nil
}
