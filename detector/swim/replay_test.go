package swim

import (
	"encoding/binary"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// keyed returns a core with keyring 1 and label "prod", and a function
// that seals a plaintext packet as a member would at a given time.
func keyed(t *testing.T, id string, cfg Config) (*Core, func(at time.Time, p []byte) []byte) {
	kr, err := NewKeyring(key(1))
	require.NoError(t, err)
	cfg.Keyring, cfg.Label = kr, "prod"
	c := attackTargetWith(t, cfg)
	return c, func(at time.Time, p []byte) []byte { return kr.seal(nil, append(stamp(nil, at), p...), []byte("prod")) }
}

// receiveDropped checks that p is dropped as a replay: an error wrapping
// ErrReplay, no reply, no change of membership, no event.
func receiveDropped(t *testing.T, c *Core, now time.Time, p []byte, msg string) {
	t.Helper()
	before := c.Members(nil)
	out, err := c.Receive(now, "member-01:7946", p)
	require.ErrorIs(t, err, ErrReplay, msg)
	require.Empty(t, out, msg)
	require.Equal(t, before, c.Members(nil), msg)
	require.Empty(t, c.PopEvents(nil), msg)
}

// TestReplayWithinWindow: a captured packet replayed within the window
// (an alive message and a ping) is dropped and counted, however often;
// the original was applied once.
func TestReplayWithinWindow(t *testing.T) {
	c, seal := keyed(t, "a", Config{})
	captured := seal(t0, packet(message{kind: kindAlive, inc: 1, id: "member-01", addr: "member-01:7946", meta: []byte("v1")},
		message{kind: kindPing, seq: 7, id: "a"}))
	out, err := c.Receive(t0, "member-01:7946", captured)
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Len(t, c.PopEvents(nil), 1)
	for i := range 2000 {
		receiveDropped(t, c, t0.Add(time.Duration(i)*time.Millisecond), captured, "replay")
	}
	require.Equal(t, 2000, c.Stats().Replayed)
	require.Zero(t, c.Stats().Stale)
	require.Len(t, c.seen.byAge, 1)
}

// TestReplayOutsideWindow: a captured alive message of a member, replayed
// after the member was declared dead and forgotten, does not bring it
// back; nor does a packet stamped further ahead than the window, nor
// stamps at 2^63 and 2^64-1.
func TestReplayOutsideWindow(t *testing.T) {
	c, seal := keyed(t, "a", Config{DeadRetention: time.Minute})
	captured := seal(t0, packet(message{kind: kindAlive, inc: 5, id: "member-01", addr: "member-01:7946"}))
	_, err := c.Receive(t0, "member-01:7946", captured)
	require.NoError(t, err)
	c.dead(t0, 5, "member-01", "a")
	later := t0.Add(2 * time.Minute)
	c.reap(later)
	c.PopEvents(nil)
	_, known := c.Member("member-01")
	require.False(t, known, "forgotten")
	receiveDropped(t, c, later, captured, "replayed after the member was forgotten")
	_, known = c.Member("member-01")
	require.False(t, known, "not resurrected")

	window := c.cfg.ReplayWindow
	ping := packet(message{kind: kindPing, seq: 1, id: "a"})
	receiveDropped(t, c, later, seal(later.Add(window+1), ping), "from beyond the window")
	receiveDropped(t, c, later, seal(later.Add(-window-1), ping), "from before the window")
	for _, at := range []uint64{1 << 63, math.MaxUint64} {
		p := seal(t0, ping)
		c.cfg.Keyring.mu.RLock()
		aead := c.cfg.Keyring.keys[0].aead
		c.cfg.Keyring.mu.RUnlock()
		plain, err := aead.Open(nil, p[1:1+nonceSize], p[1+nonceSize:], []byte("prod"))
		require.NoError(t, err)
		binary.BigEndian.PutUint64(plain, at)
		forged := aead.Seal(append([]byte(nil), p[:1+nonceSize]...), p[1:1+nonceSize], plain, []byte("prod"))
		receiveDropped(t, c, later, forged, fmt.Sprint("stamped ", at))
	}
	require.Equal(t, 5, c.Stats().Stale)
	require.Zero(t, c.Stats().Replayed)
}

func TestReplayWindowConfig(t *testing.T) {
	for _, w := range []time.Duration{-1, 24*time.Hour + 1, math.MaxInt64} {
		_, err := New(Config{ID: "a", Addr: "a", ReplayWindow: w}, t0)
		require.ErrorIs(t, err, ErrConfig, w)
	}
	c, err := New(Config{ID: "a", Addr: "a"}, t0)
	require.NoError(t, err)
	require.Equal(t, 30*time.Second, c.cfg.ReplayWindow)
}

// TestReplaySkewedSender: a member whose clock is off by less than the
// window, either way, is heard; further off, it is not.
func TestReplaySkewedSender(t *testing.T) {
	c, seal := keyed(t, "a", Config{ReplayWindow: 10 * time.Second})
	for i, skew := range []time.Duration{9 * time.Second, -9 * time.Second, 10 * time.Second, -10 * time.Second} {
		out, err := c.Receive(t0, "member-01:7946", seal(t0.Add(skew), packet(message{kind: kindPing, seq: uint64(i), id: "a"})))
		require.NoError(t, err, skew)
		require.Len(t, out, 1, skew)
	}
	for _, skew := range []time.Duration{10*time.Second + 1, -10*time.Second - 1} {
		receiveDropped(t, c, t0, seal(t0.Add(skew), packet(message{kind: kindPing, seq: 1, id: "a"})), fmt.Sprint(skew))
	}
	// Two cores whose clocks differ by 9s exchange packets both ways.
	kr := c.cfg.Keyring
	b := newCore(t, "b", Config{Keyring: kr, Label: "prod", ReplayWindow: 10 * time.Second})
	out, err := b.Receive(t0.Add(9*time.Second), "a", c.sealedPing(t, "b"))
	require.NoError(t, err)
	require.Len(t, out, 1)
	_, err = c.Receive(t0, "b", out[0].Data)
	require.NoError(t, err)
}

// TestReplayCacheBounded: the cache holds at most replayCacheSize nonces;
// past that it forgets the oldest and refuses everything sealed at or
// before it, so a replay of a forgotten packet is still refused, while
// newer packets are accepted. A receiver's clock that steps back does
// not let a forgotten packet in either.
func TestReplayCacheBounded(t *testing.T) {
	c, seal := keyed(t, "a", Config{})
	ping := packet(message{kind: kindPing, seq: 1, id: "a"})
	var first [][]byte
	for i := range replayCacheSize + 100 {
		p := seal(t0.Add(time.Duration(i)), ping)
		if i < 100 {
			first = append(first, p)
		}
		_, err := c.Receive(t0, "member-01:7946", p)
		require.NoError(t, err)
	}
	require.Len(t, c.seen.seen, replayCacheSize)
	require.Len(t, c.seen.byAge, replayCacheSize)
	for _, p := range first {
		receiveDropped(t, c, t0, p, "forgotten, below the floor")
	}
	_, err := c.Receive(t0, "member-01:7946", seal(t0.Add(time.Hour/1e6), ping))
	require.NoError(t, err, "newer than the floor")

	// The window passes, the cache empties; the clock steps back.
	d, seal := keyed(t, "a", Config{})
	old := seal(t0, ping)
	_, err = d.Receive(t0, "member-01:7946", old)
	require.NoError(t, err)
	_, err = d.Receive(t0.Add(time.Minute), "member-01:7946", seal(t0.Add(time.Minute), ping))
	require.NoError(t, err)
	require.Len(t, d.seen.byAge, 1, "the first one expired")
	receiveDropped(t, d, t0, old, "after the clock stepped back")
}

// sealedReceiver returns a core with a keyring and a function that
// seals a ping to it, fresh each time (a microsecond later), and has the
// core receive it: open, replay check, decode, and the sealed ack.
func sealedReceiver(tb testing.TB) (*Core, func()) {
	kr, err := NewKeyring(key(1))
	require.NoError(tb, err)
	c := newCore(tb, "a", Config{Keyring: kr})
	ping := packet(message{kind: kindPing, seq: 1, id: "a"})
	var plain, sealed []byte
	now := t0
	return c, func() {
		now = now.Add(time.Microsecond)
		plain = append(stamp(plain[:0], now), ping...)
		sealed = kr.seal(sealed[:0], plain, nil)
		if _, err := c.Receive(now, "b", sealed); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkReceiveSealed receives sealed pings (see sealedReceiver),
// sealing included, the replay cache full after the first 8192.
func BenchmarkReceiveSealed(b *testing.B) {
	_, receive := sealedReceiver(b)
	b.ReportAllocs()
	for b.Loop() {
		receive()
	}
}

// TestReceiveSealedAllocs: receiving a sealed ping, with the replay cache
// full, allocates only the sealed ack's bytes, which the caller owns.
func TestReceiveSealedAllocs(t *testing.T) {
	c, receive := sealedReceiver(t)
	for range replayCacheSize + 100 {
		receive()
	}
	require.Len(t, c.seen.byAge, replayCacheSize)
	require.Equal(t, 1.0, testing.AllocsPerRun(1000, receive))
}
