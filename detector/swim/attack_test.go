package swim

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// attackTarget returns a core that knows 20 members with 40 bytes of
// metadata each (its full state takes two packets) and has updates
// queued to piggyback.
func attackTarget(t *testing.T) *Core { return attackTargetWith(t, Config{}) }

// attackTargetWith is attackTarget with cfg (sealing packets with its
// Keyring, if any).
func attackTargetWith(t *testing.T, cfg Config) *Core {
	c := newCore(t, "a", cfg)
	for i := range 20 {
		id := fmt.Sprintf("member-%02d", i)
		c.alive(t0, 0, id, id+":7946", bytes.Repeat([]byte{'m'}, 40))
	}
	c.PopEvents(nil)
	return c
}

// amplification feeds packets from one sender to c and returns the bytes
// received, the bytes sent in response (to anyone), and the packets sent
// to each address.
func amplification(t *testing.T, c *Core, from string, packets ...[]byte) (in, out int, to map[string]int) {
	to = map[string]int{}
	for _, p := range packets {
		in += len(p)
		reply, _ := c.Receive(t0, from, p)
		for _, r := range reply {
			out += len(r.Data)
			to[r.Addr]++
		}
	}
	return in, out, to
}

// ratio is bytes out per byte in.
func ratio(in, out int) float64 { return float64(out) / float64(in) }

// TestAttackPackedPacket: a packet that packs many primary messages (200
// push-pull requests, the 168x amplifier of a decoder that acted on them
// all; 2000 ping-reqs, which made 1024 pings to an address of the
// sender's choice) or more than MaxUpdates updates is rejected whole and
// counted as malformed: nothing is sent and nothing changes.
func TestAttackPackedPacket(t *testing.T) {
	pushPulls := make([]message, 200)
	for i := range pushPulls {
		pushPulls[i] = message{kind: kindPushPull, id: "evil", flags: ppWantReply}
	}
	pingReqs := make([]message, 2000)
	for i := range pingReqs {
		pingReqs[i] = message{kind: kindPingReq, seq: uint64(i), id: "member-01", addr: "member-01:7946"}
	}
	updates := make([]message, MaxUpdates+1)
	for i := range updates {
		id := fmt.Sprint("new-", i)
		updates[i] = message{kind: kindAlive, id: id, addr: id}
	}
	for name, p := range map[string][]byte{
		"200 push-pulls":  packet(pushPulls...),
		"2000 ping-reqs":  packet(pingReqs...),
		"ping and ack":    packet(message{kind: kindPing, seq: 1, id: "a"}, message{kind: kindAck, seq: 1}),
		"129 updates":     packet(updates...),
		"seq at 2^63":     packet(message{kind: kindPing, seq: 1 << 63, id: "a"}),
		"nack seq at max": packet(message{kind: kindNack, seq: math.MaxUint64}),
	} {
		c := attackTarget(t)
		before := c.Members(nil)
		in, out, _ := amplification(t, c, "victim:1", p)
		_, err := c.Receive(t0, "victim:1", p)
		require.ErrorIs(t, err, ErrMalformed, name)
		require.Zero(t, out, name)
		require.Equal(t, before, c.Members(nil), name)
		require.Equal(t, 2, c.Stats().Malformed, name)
		t.Logf("%s in one packet (%d bytes): rejected, %d bytes out", name, in, out)
	}
	// At the limits, a packet is accepted.
	_, err := attackTarget(t).Receive(t0, "x", packet(append(updates[:MaxUpdates], message{kind: kindPing, seq: 1<<63 - 1, id: "a"})...))
	require.NoError(t, err)
}

// TestAttackPushPullFlood: 200 push-pull requests, each in its own packet
// and echoing a valid cookie, from one sender address get one reply (the
// state, two packets): the rest are rate-limited and counted. The sender
// gets its next reply after pushPullGap probe intervals.
func TestAttackPushPullFlood(t *testing.T) {
	c := attackTarget(t)
	var ps [][]byte
	for range 200 {
		ps = append(ps, c.pullRequest(t0, "victim:1"))
	}
	in, out, to := amplification(t, c, "victim:1", ps...)
	t.Logf("200 push-pull requests with a cookie, one a packet: %d bytes in, %d bytes in %d packets out: %.2fx", in, out, to["victim:1"], ratio(in, out))
	require.Equal(t, 2, to["victim:1"], "one reply of two packets")
	require.Equal(t, 199, c.Stats().RateLimited)
	require.LessOrEqual(t, ratio(in, out), 1.0)
	next := t0.Add(pushPullGap * time.Second)
	out1, err := c.Receive(next.Add(-time.Nanosecond), "victim:1", ps[0])
	require.NoError(t, err)
	require.Empty(t, out1)
	out1, err = c.Receive(next, "victim:1", c.pullRequest(next, "victim:1"))
	require.NoError(t, err)
	require.Len(t, out1, 2)

	// The table of senders is bounded: when it is full of senders within
	// their gap, a new sender gets no reply.
	for i := range maxPushPullSenders {
		from := fmt.Sprint("s", i)
		_, err := c.Receive(next, from, c.pullRequest(next, from))
		require.NoError(t, err)
	}
	require.Len(t, c.pp.replied, maxPushPullSenders)
	out1, err = c.Receive(next, "one-more", c.pullRequest(next, "one-more"))
	require.NoError(t, err)
	require.Empty(t, out1)
	later := next.Add(pushPullGap * time.Second)
	out1, err = c.Receive(later, "one-more", c.pullRequest(later, "one-more"))
	require.NoError(t, err)
	require.Len(t, out1, 2, "answered once the others' gaps have passed")
}

// pullRequest returns a push-pull request that echoes c's cookie for the
// address from at now, as a requester sends it after c's cookie reached
// it.
func (c *Core) pullRequest(now time.Time, from string) []byte {
	return packet(message{kind: kindPushPull, id: "evil", flags: ppWantReply, cookie: bytes.Clone(c.cookie(now, from, 0))})
}

// TestAttackPingReq: ping-reqs, each in its own packet, for a target that
// is not a member, or for a member at an address of the sender's choice,
// make no ping: only a nack back to the sender, within replyFactor of the
// request's bytes. For a known member, each makes one ping to the address
// the node knows it by, again within replyFactor, until maxRelays are in
// flight.
func TestAttackPingReq(t *testing.T) {
	for _, tc := range []struct {
		name, id, addr string
		pings          int
	}{
		{"unknown target", "x", "victim:2", 0},
		{"member at another address", "member-01", "victim:2", 0},
		{"the node itself", "a", "a", 0},
		{"member at its address", "member-01", "member-01:7946", maxRelays}, // one a request, maxRelays in flight
	} {
		c := attackTarget(t)
		var ps [][]byte
		for i := range 2000 {
			ps = append(ps, packet(message{kind: kindPingReq, seq: uint64(i), id: tc.id, addr: tc.addr, nack: true}))
		}
		in, out, to := amplification(t, c, "evil:1", ps...)
		t.Logf("2000 ping-reqs for %s, one a packet: %d bytes in, %d bytes out, %d pings to %s: %.2fx",
			tc.name, in, out, to[tc.addr], tc.addr, ratio(in, out))
		require.Equal(t, tc.pings, to[tc.addr], tc.name)
		require.Zero(t, to["victim:2"], tc.name)
		require.LessOrEqual(t, ratio(in, out), float64(replyFactor), tc.name)
		if tc.pings == 0 {
			require.Equal(t, 2000, c.Stats().UnknownTargets, tc.name)
			require.Equal(t, 2000, to["evil:1"], "a nack each")
		}
	}
}

// TestAttackPing: pings to a node with updates queued get acks whose
// piggybacked updates are cut to replyFactor times the ping's bytes (the
// acks carried up to the MTU: 14.8x), and the refutation of a suspicion
// that rides on a ping (the buddy system) still fits.
func TestAttackPing(t *testing.T) {
	c := attackTarget(t)
	var ps [][]byte
	for i := range 100 {
		ps = append(ps, packet(message{kind: kindPing, seq: uint64(i), id: "a"}))
	}
	in, out, to := amplification(t, c, "victim:1", ps...)
	t.Logf("100 pings, one a packet: %d bytes in, %d bytes in %d packets out: %.2fx", in, out, to["victim:1"], ratio(in, out))
	require.Equal(t, 100, to["victim:1"])
	require.LessOrEqual(t, ratio(in, out), float64(replyFactor))
	reply, err := c.Receive(t0, "b", packet(message{kind: kindPing, seq: 1, id: "a"}, message{kind: kindSuspect, id: "a", from: "b"}))
	require.NoError(t, err)
	require.Contains(t, decodeAll(t, reply), message{kind: kindAlive, inc: 1, id: "a", addr: "a"})
}
