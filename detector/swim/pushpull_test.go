package swim

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAttackSpoofedPushPulls: push-pull requests from 2000 spoofed
// sender addresses, one a packet, cost the node at most replyFactor times
// their bytes in replies: without proof that a sender receives at its
// address, a request gets at most a cookie back, never the full state.
func TestAttackSpoofedPushPulls(t *testing.T) {
	c := attackTarget(t)
	p := packet(message{kind: kindPushPull, id: "evil", flags: ppWantReply})
	var in, out int
	for i := range 2000 {
		n, o, _ := amplification(t, c, fmt.Sprintf("victim-%d:1", i), p)
		in, out = in+n, out+o
	}
	t.Logf("2000 push-pull requests from spoofed addresses: %d bytes in, %d bytes out: %.2fx", in, out, ratio(in, out))
	require.LessOrEqual(t, ratio(in, out), float64(replyFactor))
	require.Equal(t, 2000, c.Stats().Cookies, "a cookie each, nothing else")
	require.Zero(t, c.Stats().RateLimited)

	// The shortest request that decodes (12 bytes), to a node with small
	// updates queued: each reply, its cookie and the piggybacked updates
	// that fit, within replyFactor of the request's bytes.
	small := newCore(t, "a", Config{})
	for i := range 50 {
		small.alive(t0, 0, fmt.Sprint(i), fmt.Sprint(i), nil)
	}
	short := packet(message{kind: kindPushPull, id: "e", flags: ppWantReply})
	require.Len(t, short, 12)
	for i := range 100 {
		out, err := small.Receive(t0, fmt.Sprintf("victim-%d:1", i), short)
		require.NoError(t, err)
		require.Len(t, out, 1)
		require.LessOrEqual(t, len(out[0].Data), replyFactor*len(short))
		require.Greater(t, len(out[0].Data), 24, "with updates piggybacked")
	}

}

// TestCookies: the state goes to an address that echoes its own cookie
// from the current or the previous bucket; a forged cookie, one issued
// to another address, one two buckets old, and a cookie nobody asked for
// get nothing and are counted. Cookies and tokens longer than theirs do
// not decode.
func TestCookies(t *testing.T) {
	c := attackTarget(t)
	life := c.cookieLife()
	want := func(now time.Time, from string, p []byte, packets int) {
		t.Helper()
		out, err := c.Receive(now, from, p)
		require.NoError(t, err)
		require.Len(t, out, packets)
		clear(c.pp.replied)
	}
	want(t0, "b:1", c.pullRequest(t0, "b:1"), 2)
	want(t0.Add(life), "b:1", c.pullRequest(t0, "b:1"), 2)
	want(t0.Add(2*life), "b:1", c.pullRequest(t0, "b:1"), 0)
	want(t0, "b:1", c.pullRequest(t0, "a:1"), 0)
	forged := bytes.Repeat([]byte{7}, cookieLen)
	want(t0, "b:1", packet(message{kind: kindPushPull, id: "b", flags: ppWantReply, cookie: forged}), 0)
	want(t0, "b:1", packet(message{kind: kindCookie, cookie: forged}), 0)
	require.Equal(t, 4, c.Stats().BadCookies)
	// Every flag set: a request, of a joining node, without a cookie.
	want(t0, "b:1", packet(message{kind: kindPushPull, id: "b", flags: math.MaxUint64}), 1)
	require.Equal(t, 1, c.Stats().Cookies)
	for _, n := range []int{cookieLen + 1, 1 << 16} {
		for _, m := range []message{
			{kind: kindCookie, cookie: make([]byte, n)},
			{kind: kindCookie, token: make([]byte, n)},
			{kind: kindPushPull, id: "b", flags: ppWantReply, cookie: make([]byte, n)},
			{kind: kindPushPull, id: "b", flags: ppWantReply, token: make([]byte, n)},
		} {
			_, err := c.Receive(t0, "b:1", packet(m))
			require.ErrorIs(t, err, ErrMalformed)
		}
	}
	// A cookie that echoes the token of a request this core made is
	// answered, once, with a pull to the address it came from (the seed's
	// IP, where the request went to its host name); a cookie with another
	// token, or after the request's time, is refused.
	token := func() []byte {
		c.out = c.out[:0]
		c.requestState(t0, "seed.example:7946", ppWantReply)
		return decodeAll(t, c.out[:1])[0].token
	}
	tok := token()
	require.Len(t, tok, tokenLen)
	cookie := packet(message{kind: kindCookie, token: tok, cookie: forged})
	out, err := c.Receive(t0, "10.0.0.2:7946", cookie)
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, "10.0.0.2:7946", out[0].Addr)
	require.Equal(t, message{kind: kindPushPull, id: "a", flags: ppWantReply, cookie: forged, states: []Member{}}, decodeAll(t, out)[0])
	want(t0, "10.0.0.2:7946", cookie, 0)
	other := append(bytes.Clone(token()), 0)[1:]
	want(t0, "10.0.0.2:7946", packet(message{kind: kindCookie, token: other, cookie: forged}), 0)
	want(t0, "10.0.0.2:7946", packet(message{kind: kindCookie, token: tok[:4], cookie: forged}), 0)
	want(t0.Add(life+1), "10.0.0.2:7946", packet(message{kind: kindCookie, token: token(), cookie: forged}), 0)
	require.Equal(t, 8, c.Stats().BadCookies)
	require.Len(t, c.pp.asked, 2, "unanswered requests, until they expire")
	c.requestState(t0.Add(life+1), "b:1", ppWantReply)
	require.Len(t, c.pp.asked, 1)
}

// exchange delivers packets between cores (addressed by ID) until none
// is left, and returns how many it delivered.
func exchange(t *testing.T, now time.Time, from string, out []Packet, cores ...*Core) int {
	byAddr := map[string]*Core{}
	for _, c := range cores {
		byAddr[c.Local().Addr] = c
	}
	type inflight struct {
		from string
		p    Packet
	}
	var queue []inflight
	for _, p := range out {
		queue = append(queue, inflight{from, p})
	}
	n := 0
	for ; len(queue) > 0; n++ {
		f := queue[0]
		queue = queue[1:]
		c := byAddr[f.p.Addr]
		if c == nil {
			continue
		}
		reply, err := c.Receive(now, f.from, f.p.Data)
		require.NoError(t, err)
		for _, p := range reply {
			queue = append(queue, inflight{c.Local().Addr, Packet{p.Addr, bytes.Clone(p.Data)}})
		}
	}
	return n
}

// TestPushPullExchange: anti-entropy between two members still ends with
// both knowing every member either knew, through the cookie round trip:
// the request (the requester's state), the cookie, the pull, the state.
func TestPushPullExchange(t *testing.T) {
	a := newCore(t, "a", Config{GossipInterval: -1})
	b := newCore(t, "b", Config{GossipInterval: -1})
	for i := range 40 {
		id := fmt.Sprint("a-", i)
		a.alive(t0, 1, id, id, bytes.Repeat([]byte{'m'}, 30))
		id = fmt.Sprint("b-", i)
		b.alive(t0, 1, id, id, nil)
	}
	a.alive(t0, 0, "b", "b", nil)
	a.queue = broadcastQueue{}
	a.out = a.out[:0]
	a.requestState(t0, "b", ppWantReply)
	n := exchange(t, t0, "a", slices.Clone(a.out), a, b)
	require.Len(t, a.Members(nil), 82)
	require.Equal(t, a.Members(nil), b.Members(nil))
	require.Equal(t, 1, b.Stats().Cookies)
	t.Logf("%d packets exchanged", n)
}

// joinFresh converges n nodes, then boots one more that joins through
// n000, and returns the protocol periods until it knows every node
// (learnt) and until every node sees every other alive (converged).
func joinFresh(t *testing.T, seed uint64, n int, cfg Config) (learnt, converged float64) {
	c := newCluster(t, seed, n, cfg, lan)
	c.waitConverged(time.Minute)
	c.runFor(10 * time.Second)
	nc := cfg
	nc.ID = fmt.Sprintf("n%03d", n)
	nc.Addr, nc.RandSeed, nc.Seeds = nc.ID, seed<<16|uint64(n), []string{"n000"}
	sn := &simNode{c: c, cfg: nc}
	c.nodes = append(c.nodes, sn)
	c.sim.Add(nc.Addr, sn)
	start := c.net.Now()
	c.boot(sn)
	since := func() float64 { return float64(c.net.Now().Sub(start)) / float64(c.period()) }
	require.True(t, c.runUntil(start.Add(time.Minute), func() bool { return sn.core.NumLive() == n+1 }))
	learnt = since()
	c.waitConverged(time.Minute)
	return learnt, since()
}

// TestJoinFresh: a fresh node joins a converged cluster of 16 through
// one seed, without and with a keyring; the periods until everyone sees
// everyone are logged.
func TestJoinFresh(t *testing.T) {
	kr, err := NewKeyring(key(1))
	require.NoError(t, err)
	for _, cfg := range []Config{{}, {Keyring: kr, Label: "prod"}} {
		var learnt, converged []float64
		for _, seed := range seeds(5) {
			l, c := joinFresh(t, seed, 16, cfg)
			learnt, converged = append(learnt, l), append(converged, c)
		}
		slices.Sort(learnt)
		slices.Sort(converged)
		t.Logf("a fresh node joins 16 (keyring %v), %d seeds: it knows all after %.3f to %.3f periods (median %.3f); all converged after %.3f to %.3f (median %.3f)",
			cfg.Keyring != nil, len(learnt), learnt[0], learnt[len(learnt)-1], quantile(learnt, 0.5),
			converged[0], converged[len(converged)-1], quantile(converged, 0.5))
	}
}
