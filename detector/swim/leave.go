package swim

import (
	"math"
	"slices"
	"time"
)

// leaving is the state of a core's leave announcement: rounds of pings,
// each carrying the announcement, to the live members that have not
// acknowledged it yet.
type leaving struct {
	need      int // acknowledgements wanted: min(GossipNodes, live members)
	acked     int
	rounds    int         // rounds sent
	maxRounds int         // also the members pinged per round
	next      time.Time   // the next round
	pings     []leavePing // the pings to members that have not acknowledged
}

// leavePing is one ping of the announcement, to member m.
type leavePing struct {
	seq uint64
	m   *member
}

// done reports whether the announcement needs no further round: enough
// members acknowledged it, or every round was sent.
func (l *leaving) done() bool { return l.acked >= l.need || l.rounds >= l.maxRounds }

// ack records the acknowledgement of the ping seq; acknowledgements of
// unknown or already acknowledged pings count nothing.
func (l *leaving) ack(seq uint64) {
	if i := slices.IndexFunc(l.pings, func(p leavePing) bool { return p.seq == seq }); i >= 0 {
		m := l.pings[i].m
		l.pings = slices.DeleteFunc(l.pings, func(p leavePing) bool { return p.m == m })
		l.acked++
	}
}

// Leave marks the local node as left and returns packets that announce it
// to up to the retransmit limit of random live members. Each carries a
// ping, which a member acknowledges after it applied the announcement
// (updates are applied before pings are answered). While fewer than
// min(GossipNodes, live members) members acknowledged it, Tick repeats it
// every ProbeInterval to those that did not, at most retransmit-limit
// times in all (the times any update is piggybacked); [Core.LeaveStatus]
// reports the progress. After Leave the core takes no part in the
// protocol: Receive only counts acknowledgements. Leaving twice is a
// no-op.
func (c *Core) Leave(now time.Time) []Packet {
	c.out = c.out[:0]
	c.budget = math.MaxInt
	c.now = now
	if c.left {
		return c.out
	}
	c.left = true
	c.self.State = StateLeft
	c.self.changed = now
	limit := retransmitLimit(c.cfg.RetransmitMult, c.numLive)
	c.leave = leaving{need: min(c.cfg.GossipNodes, c.numLive-1), maxRounds: limit}
	c.leaveRound(now)
	return c.out
}

// leaveRound sends the announcement, with a ping, to up to the retransmit
// limit of random live members; after the first round, only to members
// that have not acknowledged it (a late acknowledgement of an earlier
// round counts too).
func (c *Core) leaveRound(now time.Time) {
	l := &c.leave
	first := l.rounds == 0
	l.rounds++
	l.next = now.Add(c.cfg.ProbeInterval)
	c.broadcast(c.self.ID, &message{kind: kindDead, inc: c.self.Incarnation, id: c.self.ID, from: c.self.ID})
	peers := c.randomPeers(l.maxRounds, func(m *member) bool {
		return m.State.live() && (first || slices.ContainsFunc(l.pings, func(p leavePing) bool { return p.m == m }))
	})
	for _, m := range peers {
		c.seq++
		l.pings = append(l.pings, leavePing{seq: c.seq, m: m})
		c.send(m.Addr, &message{kind: kindPing, seq: c.seq, id: m.ID})
	}
	c.release(peers)
}

// LeaveStatus reports, after Leave, how many members acknowledged the
// announcement, how many acknowledgements are wanted (min(GossipNodes,
// live members at the time of Leave)), and whether the core is done with
// it: enough acknowledged, or it was sent in every round.
func (c *Core) LeaveStatus() (acked, need int, done bool) {
	return c.leave.acked, c.leave.need, c.left && c.leave.done()
}
