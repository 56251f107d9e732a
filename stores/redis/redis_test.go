package redis_test

import (
	"context"
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/idempotencytest"
	"github.com/distkit/distkit/stores/redis"
	"github.com/distkit/distkit/stores/servertest"
)

func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }

var ctx = context.Background()

func TestIdempotencyStoreConformance(t *testing.T) {
	c := servertest.Redis(t)
	n := 0
	idempotencytest.TestStore(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		n++ // a fresh prefix per subtest: an empty store
		clk := clocktest.NewManual(time.Now())
		s := redis.New(c, redis.Config{Prefix: "t" + string(rune('a'+n)) + ":", Clock: clk})
		return s, clk.Advance
	})
}

// On the server's clock, deadlines are the server's time, and the key
// carries a TTL to its deadline.
func TestIdempotencyStoreServerClock(t *testing.T) {
	c := servertest.Redis(t)
	s := redis.New(c, redis.Config{})
	server, err := c.Time(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	token, _, err := s.Claim(ctx, "k", []byte("fp"), time.Hour)
	if err != nil || token == 0 {
		t.Fatalf("Claim = %d, %v", token, err)
	}
	_, rec, err := s.Claim(ctx, "k", nil, time.Hour)
	if err != nil || rec == nil {
		t.Fatalf("Claim of a live key = %v, %v", rec, err)
	}
	if d := rec.LockedUntil.Sub(server); d < time.Hour-time.Millisecond || d > time.Hour+time.Minute {
		t.Fatalf("LockedUntil is %v after the server's time, want an hour", d)
	}
	ttl, err := c.PTTL(ctx, redis.DefaultPrefix+"k:k").Result()
	if err != nil || ttl <= time.Hour-time.Minute || ttl > time.Hour {
		t.Fatalf("PTTL = %v, %v; want an hour", ttl, err)
	}
	if err := s.Complete(ctx, "k", token, []byte("r"), 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	if ttl, err := c.PTTL(ctx, redis.DefaultPrefix+"k:k").Result(); err != nil || ttl <= time.Hour {
		t.Fatalf("PTTL after Complete = %v, %v; want two hours", ttl, err)
	}
}

// A key that something else wrote is an error, never a panic or a
// made-up record.
func TestIdempotencyStoreForeignKey(t *testing.T) {
	c := servertest.Redis(t)
	s := redis.New(c, redis.Config{})
	if err := c.HSet(ctx, redis.DefaultPrefix+"k:k", "fp", "x", "done", "7", "token", "-1", "deadline", "99999999999999").Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim(ctx, "k", nil, time.Minute); err == nil {
		t.Fatal("Claim of a malformed record succeeded")
	}
	if err := c.Set(ctx, redis.DefaultPrefix+"k:s", "a string", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Claim(ctx, "s", nil, time.Minute); err == nil || errors.Is(err, idempotency.ErrNotClaimed) {
		t.Fatalf("Claim of a key of another type: %v, want the server's error", err)
	}
}

// Keys and fingerprints are bytes; forged tokens change nothing.
func TestIdempotencyStoreHostileInput(t *testing.T) {
	s := redis.New(servertest.Redis(t), redis.Config{})
	key := "a\x00\xff"
	tok, _, err := s.Claim(ctx, key, []byte{0, 0xff}, time.Minute)
	if err != nil || tok == 0 {
		t.Fatalf("Claim = %d, %v", tok, err)
	}
	for _, forged := range []uint64{0, tok + 1, 1 << 63, math.MaxUint64} {
		if err := s.Complete(ctx, key, forged, nil, time.Minute); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Complete under forged token %d: %v, want ErrNotClaimed", forged, err)
		}
		if err := s.Release(ctx, key, forged); !errors.Is(err, idempotency.ErrNotClaimed) {
			t.Fatalf("Release under forged token %d: %v, want ErrNotClaimed", forged, err)
		}
	}
	if err := s.Complete(ctx, key, tok, []byte{0}, time.Minute); err != nil {
		t.Fatal(err)
	}
	_, rec, err := s.Claim(ctx, key, nil, time.Minute)
	if err != nil || rec == nil || rec.Key != key || string(rec.Fingerprint) != "\x00\xff" || string(rec.Response) != "\x00" || rec.Token != tok {
		t.Fatalf("record = %+v, %v", rec, err)
	}
}
