package swim

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"maps"
	"time"
)

// Push-pull and address validation.
//
// The full state is the one reply that can be much larger than the
// request that asks for it, so it goes only to an address that has shown
// it receives packets sent there, as DNS cookies (RFC 7873) and QUIC's
// Retry do. A request that wants the state back is answered with a
// cookie, a MAC under a random per-core secret of the request's source
// address and a coarse time bucket, in a packet smaller than 4 times the
// request's bytes. The requester echoes the cookie in a small pull
// request, which gets the state. The core stores nothing per cookie: it
// recomputes the MAC, for the current bucket and the one before. A
// spoofed request therefore costs its victim at most a cookie, and a
// cookie is worth nothing at another address or after two buckets.
//
// The requester's side, as a DNS client cookie: each request carries a
// random token, which the cookie message echoes, and a core answers only
// a cookie that echoes the token of a request it made and has not yet
// answered, with one pull to the address the cookie came from. Matching
// by token rather than by address lets a node join through a seed named
// by a host name (the cookie comes from its IP), and an attacker who
// does not see the request can neither make the node pull from a victim
// nor spend its request with a forged cookie.

// cookieLen is the length of an address validation cookie: a truncated
// HMAC-SHA256.
const cookieLen = 16

// tokenLen is the length of a requester's token: random bits.
const tokenLen = 8

// cookieBucket is the life of a cookie bucket, in probe intervals: a
// cookie is accepted in the bucket it was issued in and the next.
const cookieBucket = pushPullGap

// pushPullGap is the least time, in probe intervals, between two
// push-pull replies to one sender address; a validated request within it
// is merged but not answered. A joining node resends its request every
// probe interval, so a lost reply delays its join by at most this long.
const pushPullGap = 5

// maxPushPullSenders bounds the sender addresses whose last push-pull
// reply is remembered; when it is full of senders still within their gap,
// requests from new senders are not answered.
const maxPushPullSenders = 1024

// pushPulls is a core's push-pull bookkeeping.
type pushPulls struct {
	mac hash.Hash // HMAC-SHA256 under the core's cookie secret
	sum []byte
	// replied maps a sender address to the time it may get its next
	// state (see mayReplyState).
	replied map[string]time.Time
	// asked maps the tokens of this core's state requests whose cookie
	// has not come, until it is due, to the flags of the pull that
	// answers it. Only the core's own requests add to it.
	asked map[[tokenLen]byte]askedPull
}

type askedPull struct {
	until time.Time
	flags uint64
}

func newPushPulls() pushPulls {
	secret := make([]byte, 32)
	rand.Read(secret) // never fails (crypto/rand)
	return pushPulls{mac: hmac.New(sha256.New, secret), replied: map[string]time.Time{}, asked: map[[tokenLen]byte]askedPull{}}
}

// pushPull sends the full state to one random live member and to one
// random dead member (which may be alive on the other side of a healed
// partition).
func (c *Core) pushPull(now time.Time) {
	c.nextPushPull = now.Add(pushPullScale(c.cfg.PushPullInterval, c.numLive))
	for _, want := range []State{StateAlive, StateDead} {
		peers := c.randomPeers(1, func(m *member) bool { return m.State == want })
		for _, m := range peers {
			c.requestState(now, m.Addr, ppWantReply)
		}
		c.release(peers)
	}
}

// requestState pushes the full state to addr and asks for its state in
// return: addr answers with a cookie, which handleCookie echoes.
func (c *Core) requestState(now time.Time, addr string, flags uint64) {
	maps.DeleteFunc(c.pp.asked, func(_ [tokenLen]byte, a askedPull) bool { return now.After(a.until) })
	var token [tokenLen]byte
	rand.Read(token[:]) // never fails (crypto/rand)
	c.pp.asked[token] = askedPull{until: now.Add(c.cookieLife()), flags: flags}
	c.sendState(addr, flags, token[:])
}

// handlePushPull merges a push-pull message from the address from and
// answers a request for the state: with the state when the request
// echoes a valid cookie for from (at most once per pushPullGap), else with
// a cookie.
func (c *Core) handlePushPull(now time.Time, from string, m *message) {
	c.merge(now, m.id, m.states)
	c.mergeState(m)
	switch {
	case m.flags&ppWantReply == 0:
	case m.cookie == nil:
		c.sendCookie(now, from, m.token)
	case !c.validCookie(now, from, m.cookie):
		c.stats.BadCookies++
	case c.mayReplyState(now, from):
		c.sendState(from, m.flags&ppJoin, nil)
	}
}

// handleCookie answers a cookie that echoes the token of one of this
// core's unanswered state requests with a pull request that echoes the
// cookie, to the address the cookie came from; any other cookie is
// refused.
func (c *Core) handleCookie(now time.Time, from string, m *message) {
	var token [tokenLen]byte
	copy(token[:], m.token)
	a, ok := c.pp.asked[token]
	if !ok || len(m.token) != tokenLen || now.After(a.until) {
		c.stats.BadCookies++
		return
	}
	delete(c.pp.asked, token)
	c.send(from, &message{kind: kindPushPull, id: c.self.ID, flags: a.flags, cookie: m.cookie})
}

// sendCookie answers a state request from the address from, which
// carried token, with a cookie for from. The cookie packet is at most 33
// bytes (37 more sealed), a request that decodes at least 12 (37 more
// sealed), so the reply is within replyFactor of the request with room
// to spare, which send fills with piggybacked updates up to the budget.
func (c *Core) sendCookie(now time.Time, from string, token []byte) {
	c.stats.Cookies++
	c.send(from, &message{kind: kindCookie, token: token, cookie: c.cookie(now, from, 0)})
}

// cookieLife is how long a cookie stays valid at least: one bucket.
func (c *Core) cookieLife() time.Duration { return cookieBucket * c.cfg.ProbeInterval }

// cookie returns the cookie of addr for the bucket of now, less back
// buckets. The result is valid until the next call.
func (c *Core) cookie(now time.Time, addr string, back int64) []byte {
	var bucket [8]byte
	binary.BigEndian.PutUint64(bucket[:], uint64(now.UnixNano()/int64(c.cookieLife())-back))
	h := c.pp.mac
	h.Reset()
	h.Write(bucket[:])
	h.Write([]byte(addr))
	c.pp.sum = h.Sum(c.pp.sum[:0])
	return c.pp.sum[:cookieLen]
}

// validCookie reports whether cookie is the cookie of addr for the
// bucket of now or the one before.
func (c *Core) validCookie(now time.Time, addr string, cookie []byte) bool {
	return hmac.Equal(cookie, c.cookie(now, addr, 0)) || hmac.Equal(cookie, c.cookie(now, addr, 1))
}

// mayReplyState reports whether a validated push-pull request from the
// address from may be answered with the full state at now, and if so
// records the reply: at most one per sender per pushPullGap probe
// intervals, for at most maxPushPullSenders senders at a time. Refusals
// are counted.
func (c *Core) mayReplyState(now time.Time, from string) bool {
	if next, ok := c.pp.replied[from]; ok && now.Before(next) {
		c.stats.RateLimited++
		return false
	}
	if len(c.pp.replied) >= maxPushPullSenders {
		maps.DeleteFunc(c.pp.replied, func(_ string, next time.Time) bool { return !now.Before(next) })
		if len(c.pp.replied) >= maxPushPullSenders {
			c.stats.RateLimited++
			return false
		}
	}
	c.pp.replied[from] = now.Add(pushPullGap * c.cfg.ProbeInterval)
	return true
}

// sendState sends every known member to addr in as many push-pull packets
// as the MTU requires; only the first carries flags, the request's token
// (nil for a reply) and the user state.
func (c *Core) sendState(addr string, flags uint64, token []byte) {
	states := c.states[:0]
	for _, m := range c.all {
		states = append(states, m.Member)
	}
	head := message{kind: kindPushPull, id: c.self.ID, flags: flags, token: token, state: c.localState(flags&ppJoin != 0)}
	for rest, first := states, true; first || len(rest) > 0; first = false {
		// Room for the states in this packet: the MTU less the packet
		// header, the empty push-pull message and the growth of its array
		// header. The ID, address and meta limits make one state fit in
		// MinMTU, so every packet but the first (which carries the user
		// state) carries at least one.
		c.tmp = c.enc.encodeMsg(c.tmp[:0], &head)
		room := c.mtu - headerLen - len(c.tmp) - 2
		n, size := 0, 0
		for n < len(rest) {
			c.tmp = c.enc.encodeState(c.tmp[:0], &rest[n])
			if size+len(c.tmp) > room {
				break
			}
			size += len(c.tmp)
			n++
		}
		head.states = rest[:n]
		c.send(addr, &head)
		rest = rest[n:]
		head = message{kind: kindPushPull, id: c.self.ID}
	}
	clear(states)
	c.states = states[:0]
}

// sealing is the bytes sealing adds to a packet.
func (c *Core) sealing() int {
	if c.cfg.Keyring != nil {
		return sealOverhead
	}
	return 0
}
