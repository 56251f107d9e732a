package swim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// Packet is a datagram to send: Data to the transport address Addr. It is
// a plain value; the zero Packet is empty.
type Packet struct {
	Addr string
	Data []byte
}

// Stats counts a core's traffic and dropped events. It is a plain value
// (a snapshot); the zero Stats counts nothing.
type Stats struct {
	PacketsSent, PacketsReceived int
	BytesSent, BytesReceived     int
	Malformed                    int // packets Receive rejected
	// Unopened counts packets dropped because no key of the Keyring
	// opened them (wrong key or label, altered, truncated or unsealed).
	Unopened      int
	Probes        int    // probes started
	FailedProbes  int    // probes that ended without an ack
	Implausible   int    // updates ignored for an implausible incarnation (see maxIncarnationJump)
	DroppedEvents uint64 // events dropped because the queue was full (see EventResync)
	// UnknownTargets counts ping-reqs refused because their target is not
	// a known member at the address given: a node probes only members.
	UnknownTargets int
	// RateLimited counts push-pull requests whose reply was refused by
	// the per-sender rate limit (see pushPullGap); their state was merged.
	RateLimited int
	// Conflicts counts alive messages refused because they would have
	// moved a member to another address (see EventConflict).
	Conflicts int
	UserStats
	// Cookies counts push-pull requests answered with an address
	// validation cookie instead of the state; BadCookies counts cookies
	// refused: echoed by another address or too late, forged, or not
	// asked for (see the package doc's guarantees).
	Cookies, BadCookies int
	// Replayed counts sealed packets dropped because they were accepted
	// before; Stale those sealed further than Config.ReplayWindow from the
	// receiver's clock, or older than its replay cache remembers (see
	// ErrReplay).
	Replayed, Stale int
	// OversizedStates counts user states above Config.MaxStateLen,
	// local ones not sent and remote ones not merged.
	OversizedStates int
}

// maxRelays bounds the ping-reqs a node serves at once; more are ignored.
const maxRelays = 1024

// replyFactor bounds the bytes a node sends in response to a received
// packet: at most replyFactor times the packet's bytes, its piggybacked
// updates cut to fit. The primary reply (an ack, a nack, the one ping of a
// ping-req, a forwarded ack) is always sent, and it is smaller than any
// request that causes it. The exception is the full state a push-pull
// request asks for, which goes only to a sender address that proved it
// receives there, at most once per pushPullGap.
const replyFactor = 4

// Core is the SWIM state machine of one node. It does no I/O, starts no
// goroutines and never reads the clock: the caller passes the time to every
// call and sends the packets the calls return. Create it with [New]; the
// zero value is not usable. It is not safe for concurrent use (a [Node]
// serialises access for its own users).
type Core struct {
	cfg  Config
	rng  *rand.Rand
	self *member
	byID map[string]*member
	all  []*member // every known member, self included, in the order learnt

	probeList []*member // this round's shuffled probe order
	probeIdx  int
	probe     probeState
	nextProbe time.Time
	seq       uint64
	relays    []relay
	awareness int // Lifeguard's local health score, in [0, AwarenessMaxMultiplier)

	suspects []*member
	queue    broadcastQueue
	events   []Event
	queued   uint64 // events and user messages queued so far, for Node
	user     userState
	numLive  int // alive and suspect members, self included

	nextGossip   time.Time
	nextPushPull time.Time
	nextJoin     time.Time
	left         bool

	enc     *encoder
	dec     *decoder
	msgs    []message
	scratch []*member
	states  []Member // sendState's snapshot
	tmp     []byte   // sendState's sizing buffer
	body    []byte
	out     []Packet
	budget  int // bytes the current call may still send (see replyFactor)
	mtu     int // the bytes of a packet before sealing
	label   []byte
	opened  []byte // Receive's buffer for an opened packet
	plain   []byte // send's buffer for a packet to seal
	stats   Stats

	pp    pushPulls   // push-pull address validation and rate limits
	seen  replayCache // sealed packets accepted within the ReplayWindow
	now   time.Time   // the latest call's time, which stamps sealed packets
	leave leaving     // after Leave
}

// probeState is the probe of the current protocol period.
type probeState struct {
	active       bool
	target       *member
	seq          uint64
	timeoutAt    time.Time // direct ack deadline: then ask for indirect probes
	endAt        time.Time // end of the period: then fail the probe
	indirect     bool      // ping-reqs sent
	acked        bool
	nackExpected int
	nacks        int
}

// relay is a ping-req this node serves: it pinged the target with seq and
// forwards the ack to origAddr as origSeq, or a nack at nackAt.
type relay struct {
	seq, origSeq uint64
	origAddr     string
	nackAt       time.Time
	expireAt     time.Time
	wantNack     bool
}

// New returns the core of a node that is alive at cfg.Incarnation and knows
// no other member. The first Tick sends join requests to cfg.Seeds.
//
// New returns an error wrapping [ErrConfig] if cfg is invalid.
func New(cfg Config, now time.Time) (*Core, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Core{
		cfg:  cfg,
		rng:  rand.New(rand.NewPCG(cfg.RandSeed, 0x5717_1f3)),
		byID: make(map[string]*member),
		enc:  newEncoder(),
		dec:  newDecoder(),
		pp:   newPushPulls(),
	}
	c.mtu, c.label = cfg.MTU, []byte(cfg.Label)
	if cfg.Keyring != nil {
		c.mtu -= sealOverhead
	}
	c.self = &member{Member: Member{ID: cfg.ID, Addr: cfg.Addr, Incarnation: cfg.Incarnation, Meta: cfg.Meta}, changed: now}
	c.byID[cfg.ID] = c.self
	c.dec.known = c.byID
	c.all = append(c.all, c.self)
	c.numLive = 1
	c.nextProbe = now
	if cfg.PushPullInterval > 0 {
		// A random phase keeps nodes started together from pushing in step.
		c.nextPushPull = now.Add(time.Duration(c.rng.Int64N(int64(cfg.PushPullInterval))) + 1)
	}
	c.nextJoin = now
	c.nextGossip = now
	c.user.epoch = epochAt(now)
	c.broadcastAlive(c.self)
	return c, nil
}

// ErrMetaSize is returned (wrapped) by [Core.UpdateMeta] for metadata
// longer than MaxMetaLen bytes.
var ErrMetaSize = errors.New("swim: metadata too large")

// UpdateMeta replaces the local node's metadata and disseminates it at a
// new incarnation, from the next Tick on (Deadline says when); other
// members report EventUpdated. The core keeps meta: do not modify it
// afterwards. After Leave it does nothing.
//
// UpdateMeta returns an error wrapping [ErrMetaSize] if meta is too long.
func (c *Core) UpdateMeta(meta []byte) error {
	if len(meta) > MaxMetaLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMetaSize, len(meta), MaxMetaLen)
	}
	if c.left {
		return nil
	}
	c.self.Meta = meta
	c.self.Incarnation++
	c.broadcastAlive(c.self)
	return nil
}

// Local returns the local member.
func (c *Core) Local() Member { return c.self.Member }

// Member returns the member with the given ID, if known (dead and left
// members are known for Config.DeadRetention).
func (c *Core) Member(id string) (Member, bool) {
	m, ok := c.byID[id]
	if !ok {
		return Member{}, false
	}
	return m.Member, true
}

// Members appends every known member, the local one and dead and left ones
// included, to dst in ID order and returns it.
func (c *Core) Members(dst []Member) []Member {
	start := len(dst)
	for _, m := range c.all {
		dst = append(dst, m.Member)
	}
	slices.SortFunc(dst[start:], func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return dst
}

// NumLive returns the number of alive and suspect members, the local one
// included.
func (c *Core) NumLive() int { return c.numLive }

// Health returns Lifeguard's local health score, from 0 (healthy) to
// AwarenessMaxMultiplier-1. Probe intervals and timeouts are multiplied by
// Health()+1.
func (c *Core) Health() int { return c.awareness }

// Stats returns the traffic counters so far.
func (c *Core) Stats() Stats { return c.stats }

// PopEvents appends the queued membership events to dst in the order they
// happened, empties the queue, and returns dst. The queue holds at most
// Config.MaxEvents events and never blocks the protocol: when it is full
// the oldest are dropped and an EventResync heads the queue (see
// [EventResync] for what the consumer must do).
func (c *Core) PopEvents(dst []Event) []Event {
	dst = append(dst, c.events...)
	clear(c.events)
	c.events = c.events[:0]
	return dst
}

// Deadline returns the latest time by which Tick must be called next for
// the protocol to run on time; it may lie in the past (a confirmation
// shortened a suspicion), which means now. Calling Tick earlier, or more
// often, is harmless. After Leave it is the time of the next round of the
// announcement, and the zero time once the core is done with it.
func (c *Core) Deadline() time.Time {
	if c.left {
		if c.leave.done() {
			return time.Time{}
		}
		return c.leave.next
	}
	d := c.nextProbe
	p := &c.probe
	if p.active {
		d = p.endAt
		if !p.acked && !p.indirect {
			d = p.timeoutAt
		}
	}
	earlier := func(t time.Time) {
		if !t.IsZero() && t.Before(d) {
			d = t
		}
	}
	for i := range c.relays {
		r := &c.relays[i]
		if r.wantNack {
			earlier(r.nackAt)
		}
		earlier(r.expireAt)
	}
	for _, m := range c.suspects {
		earlier(m.susp.deadline())
	}
	if c.gossiping() {
		earlier(c.nextGossip)
	}
	earlier(c.nextPushPull)
	if c.joining() {
		earlier(c.nextJoin)
	}
	return d
}

// Tick runs the timers due at now: it starts and finishes probes, sends
// ping-reqs and nacks, declares suspects dead, joins through the seeds and
// runs anti-entropy. It returns the packets to send; the slice is reused by
// the next call on c, the packets' Data are the caller's.
func (c *Core) Tick(now time.Time) []Packet {
	c.out = c.out[:0]
	c.budget = math.MaxInt
	c.now = now
	if c.left {
		if !c.leave.done() && !now.Before(c.leave.next) {
			c.leaveRound(now)
		}
		return c.out
	}
	c.tickRelays(now)
	c.tickProbe(now)
	for i := 0; i < len(c.suspects); {
		m := c.suspects[i]
		if now.Before(m.susp.deadline()) || c.verify(now, m) {
			i++
			continue
		}
		c.dead(now, m.Incarnation, m.ID, c.self.ID) // removes m from suspects
	}
	if c.joining() && !now.Before(c.nextJoin) {
		for _, addr := range c.cfg.Seeds {
			if addr != c.self.Addr {
				c.requestState(now, addr, ppWantReply|ppJoin)
			}
		}
		c.nextJoin = now.Add(c.cfg.ProbeInterval)
	}
	if c.gossiping() && !now.Before(c.nextGossip) {
		c.gossip(now)
	}
	if c.cfg.PushPullInterval > 0 && !now.Before(c.nextPushPull) {
		c.pushPull(now)
	}
	return c.out
}

// gossiping reports whether a gossip round is due at nextGossip.
func (c *Core) gossiping() bool { return c.cfg.GossipInterval > 0 && c.disseminating() }

// gossip sends the queued updates and user broadcasts to GossipNodes
// random live members.
func (c *Core) gossip(now time.Time) {
	c.nextGossip = now.Add(c.cfg.GossipInterval)
	peers := c.randomPeers(c.cfg.GossipNodes, func(m *member) bool { return m.State.live() })
	for _, m := range peers {
		if !c.disseminating() {
			break
		}
		c.send(m.Addr)
	}
	c.release(peers)
}

// randomPeers returns up to k random members other than self that satisfy
// ok, in a scratch slice to give back with release.
func (c *Core) randomPeers(k int, ok func(*member) bool) []*member {
	peers := c.scratch[:0]
	for _, m := range c.all {
		if m != c.self && ok(m) {
			peers = append(peers, m)
		}
	}
	k = min(k, len(peers))
	for i := range k {
		j := i + c.rng.IntN(len(peers)-i)
		peers[i], peers[j] = peers[j], peers[i]
	}
	return peers[:k]
}

// release returns a slice from randomPeers.
func (c *Core) release(peers []*member) {
	clear(peers[:cap(peers)])
	c.scratch = peers[:0]
}

// joining reports whether the node still looks for a cluster through its
// seeds.
func (c *Core) joining() bool { return c.numLive == 1 && len(c.cfg.Seeds) > 0 }

// scale applies Lifeguard's local health multiplier to d.
func (c *Core) scale(d time.Duration) time.Duration {
	return d * time.Duration(c.awareness+1)
}

// adjustHealth adds delta to the local health score, within bounds.
func (c *Core) adjustHealth(delta int) {
	if c.cfg.DisableLifeguard {
		return
	}
	c.awareness = min(max(c.awareness+delta, 0), c.cfg.AwarenessMaxMultiplier-1)
}

func (c *Core) tickRelays(now time.Time) {
	kept := c.relays[:0]
	for _, r := range c.relays {
		if r.wantNack && !now.Before(r.nackAt) {
			r.wantNack = false
			c.send(r.origAddr, &message{kind: kindNack, seq: r.origSeq})
		}
		if now.Before(r.expireAt) {
			kept = append(kept, r)
		}
	}
	clear(c.relays[len(kept):])
	c.relays = kept
}

func (c *Core) tickProbe(now time.Time) {
	p := &c.probe
	if p.active {
		if !p.acked && !p.indirect && !now.Before(p.timeoutAt) {
			c.pingReq(p)
		}
		if now.Before(p.endAt) {
			return
		}
		c.finishProbe(now, p)
	}
	if now.Before(c.nextProbe) {
		return
	}
	c.reap(now)
	target := c.nextTarget()
	if target == nil {
		c.nextProbe = now.Add(c.cfg.ProbeInterval)
		return
	}
	c.seq++
	*p = probeState{
		active:    true,
		target:    target,
		seq:       c.seq,
		timeoutAt: now.Add(c.scale(c.cfg.ProbeTimeout)),
		endAt:     now.Add(c.scale(c.cfg.ProbeInterval)),
	}
	c.nextProbe = p.endAt
	c.stats.Probes++
	ping := message{kind: kindPing, seq: p.seq, id: target.ID}
	if target.State == StateSuspect && !c.cfg.DisableLifeguard {
		// Buddy system: tell the suspect directly, so it can refute at once.
		buddy := message{kind: kindSuspect, inc: target.Incarnation, id: target.ID, from: c.self.ID}
		c.send(target.Addr, &ping, &buddy)
		return
	}
	c.send(target.Addr, &ping)
}

// pingReq asks up to IndirectChecks random alive members to probe p.target.
func (c *Core) pingReq(p *probeState) {
	p.indirect = true
	helpers := c.randomPeers(c.cfg.IndirectChecks, func(m *member) bool { return m != p.target && m.State == StateAlive })
	for _, h := range helpers {
		c.send(h.Addr, &message{kind: kindPingReq, seq: p.seq, id: p.target.ID, addr: p.target.Addr, nack: !c.cfg.DisableLifeguard})
	}
	if !c.cfg.DisableLifeguard {
		p.nackExpected = len(helpers)
	}
	c.release(helpers)
}

// verify is distkit's addition to Lifeguard: a suspicion that expires with
// fewer than k independent confirmations (weak evidence: the local node
// may simply have missed the refutation) is verified before the member is
// declared dead. The node pings the suspect directly with the suspicion
// attached, up to verifyPings times, a scaled ProbeTimeout apart; a live
// suspect answers with its refutation (see accused). verify reports
// whether it sent a ping, postponing the verdict.
func (c *Core) verify(now time.Time, m *member) bool {
	s := m.susp
	if c.cfg.DisableLifeguard || s.verifies >= verifyPings || s.k > 0 && len(s.confirmers) >= s.k {
		return false
	}
	s.verifies++
	s.verifyAt = now.Add(c.scale(c.cfg.ProbeTimeout))
	c.seq++
	c.send(m.Addr, &message{kind: kindPing, seq: c.seq, id: m.ID},
		&message{kind: kindSuspect, inc: m.Incarnation, id: m.ID, from: c.self.ID})
	return true
}

// nackTimeout is how long a ping-req helper waits for the target's ack
// before it sends the prober a nack: 80% of the time the prober waits for
// indirect acks (ProbeInterval - ProbeTimeout, unscaled: a prober's
// health only lengthens its wait), so that a nack sent at the deadline
// still reaches the prober before its period ends, with a fifth of the
// window (100ms with the defaults) left for the round trip between
// prober and helper. A nack that cannot arrive in time would count as
// missed and make every failed probe raise the prober's health score.
func (c *Core) nackTimeout() time.Duration {
	return (c.cfg.ProbeInterval - c.cfg.ProbeTimeout) * 4 / 5
}

// finishProbe ends the period's probe: an unacknowledged target becomes
// suspect, and the local health score grows by the nacks that did not
// come. Only they are evidence about the local node (its helpers are
// alive, yet it did not hear from them, so it is probably the slow one);
// a failed probe whose nacks all came, or that had no helper, says
// nothing about the local node (Lifeguard's LHA).
func (c *Core) finishProbe(now time.Time, p *probeState) {
	p.active = false
	if p.acked {
		return
	}
	c.stats.FailedProbes++
	c.adjustHealth(max(p.nackExpected-p.nacks, 0))
	if t := p.target; !t.reaped && t.State.live() {
		c.suspect(now, t.Incarnation, t.ID, c.self.ID, true)
	}
}

// nextTarget returns the next member to probe in this round's order,
// starting a new shuffled round when the current one is exhausted, or nil
// when there is no other live member.
func (c *Core) nextTarget() *member {
	for range 2 {
		for c.probeIdx < len(c.probeList) {
			m := c.probeList[c.probeIdx]
			c.probeIdx++
			if !m.reaped && m != c.self && m.State.live() {
				return m
			}
		}
		clear(c.probeList)
		c.probeList = c.probeList[:0]
		for _, m := range c.all {
			if m != c.self && m.State.live() {
				c.probeList = append(c.probeList, m)
			}
		}
		c.rng.Shuffle(len(c.probeList), func(i, j int) {
			c.probeList[i], c.probeList[j] = c.probeList[j], c.probeList[i]
		})
		c.probeIdx = 0
	}
	return nil
}

// reap forgets dead and left members older than DeadRetention.
func (c *Core) reap(now time.Time) {
	c.all = slices.DeleteFunc(c.all, func(m *member) bool {
		if m.State.live() || now.Sub(m.changed) < c.cfg.DeadRetention {
			return false
		}
		m.reaped = true
		delete(c.byID, m.ID)
		return true
	})
}

// send queues a packet to addr that carries prims and as many piggybacked
// updates as fit under the MTU and in the call's budget, then as many user
// broadcasts as fit in the space left.
func (c *Core) send(addr string, prims ...*message) {
	body := c.body[:0]
	for _, m := range prims {
		body = c.enc.encodeMsg(body, m)
	}
	sealing := c.sealing()
	room := min(c.mtu, c.budget-sealing) - headerLen - len(body)
	limit := retransmitLimit(c.cfg.RetransmitMult, c.numLive)
	start := len(body)
	body, n := c.queue.fill(body, room, limit)
	body, u := c.user.queue.fill(body, room-(len(body)-start), limit, MaxUpdates-n) // in the space left
	n += u
	var data []byte
	if kr := c.cfg.Keyring; kr != nil {
		c.plain = append(c.enc.packetHeader(stamp(c.plain[:0], c.now), len(prims)+n), body...)
		data = kr.seal(make([]byte, 0, len(c.plain)+sealing), c.plain, c.label)
	} else {
		data = append(c.enc.packetHeader(make([]byte, 0, headerLen+len(body)), len(prims)+n), body...)
	}
	c.body = body
	c.out = append(c.out, Packet{Addr: addr, Data: data})
	c.budget -= len(data)
	c.stats.PacketsSent++
	c.stats.BytesSent += len(data)
}

// Receive handles a packet that arrived from the transport address from at
// now, and returns the packets to send in response (see Tick). A packet is
// applied whole or not at all: Receive returns an error wrapping
// [ErrMalformed] or [ErrVersion], and changes nothing, when the packet does
// not decode (see the wire format's rules).
//
// With a Keyring, a packet that none of its keys opens is dropped with an
// error wrapping [ErrSealed], counted in [Stats].Unopened, and causes no
// change and no reply; so is a packet that opens but was sealed more than
// ReplayWindow away from now, or was accepted before, with an error
// wrapping [ErrReplay], counted in [Stats].Stale or [Stats].Replayed.
//
// The packet and its sender address are not authenticated, so what
// Receive sends in response is bounded: at most 4 times the packet's
// bytes, one probe at most, except a push-pull request's reply, which
// only a sender address that echoed its cookie gets, at most once per 5
// probe intervals.
func (c *Core) Receive(now time.Time, from string, packet []byte) ([]Packet, error) {
	c.out = c.out[:0]
	c.budget = replyFactor * len(packet)
	c.now = now
	c.stats.PacketsReceived++
	c.stats.BytesReceived += len(packet)
	if c.cfg.Keyring != nil {
		opened, err := c.cfg.Keyring.open(c.opened[:0], packet, c.label)
		if err != nil {
			c.stats.Unopened++
			return c.out, err
		}
		if err := c.fresh(now, packet, opened); err != nil {
			return c.out, err
		}
		c.opened, packet = opened, opened[stampLen:]
	}
	msgs, err := c.dec.decodePacket(packet, c.msgs)
	c.msgs = msgs[:0]
	if err != nil {
		c.stats.Malformed++
		return c.out, err
	}
	if c.left { // only acks of the announcement still count
		for i := range msgs {
			if msgs[i].kind == kindAck {
				c.leave.ack(msgs[i].seq)
			}
		}
		clear(msgs)
		return c.out, nil
	}
	// Updates first: a suspect learns of its suspicion (the buddy system)
	// before it answers the ping that carried it, so the answer carries
	// the refutation. The decoder let at most one primary message through.
	var primary *message
	for i := range msgs {
		if msgs[i].kind.update() {
			c.handle(now, from, &msgs[i])
		} else {
			primary = &msgs[i]
		}
	}
	if primary != nil {
		c.handle(now, from, primary)
	}
	clear(msgs)
	return c.out, nil
}

func (c *Core) handle(now time.Time, from string, m *message) {
	switch m.kind {
	case kindPing:
		if m.id == c.self.ID { // a ping for a previous owner of this address is ignored
			c.send(from, &message{kind: kindAck, seq: m.seq})
		}
	case kindPingReq:
		c.servePingReq(now, from, m)
	case kindAck:
		if i := slices.IndexFunc(c.relays, func(r relay) bool { return r.seq == m.seq }); i >= 0 {
			r := c.relays[i]
			c.relays = slices.Delete(c.relays, i, i+1)
			c.send(r.origAddr, &message{kind: kindAck, seq: r.origSeq})
			return
		}
		if p := &c.probe; p.active && p.seq == m.seq && !p.acked {
			p.acked = true
			if now.Before(p.timeoutAt) {
				c.adjustHealth(-1)
			}
		}
	case kindNack:
		if p := &c.probe; p.active && p.seq == m.seq {
			p.nacks++
		}
	case kindAlive:
		c.alive(now, m.inc, m.id, m.addr, m.meta)
	case kindSuspect:
		c.suspect(now, m.inc, m.id, m.from, true)
	case kindDead:
		c.dead(now, m.inc, m.id, m.from)
	case kindBroadcast:
		c.receiveBroadcast(now, m)
	case kindUserMsg:
		c.receiveUserMsg(now, from, m)
	case kindPushPull:
		c.handlePushPull(now, from, m)
	case kindCookie:
		c.handleCookie(now, from, m)
	}
}

// servePingReq serves a ping-req from the address from: one ping to the
// target, a known member other than the local node, at the address the
// local node knows it by. A request for any other target is refused,
// since probing it on a stranger's word would let anyone aim the node's
// pings; a nack, if asked for, still tells the prober that this helper is
// up (Lifeguard counts missed nacks against the prober).
func (c *Core) servePingReq(now time.Time, from string, m *message) {
	t := c.byID[m.id]
	if t == nil || t == c.self || t.Addr != m.addr {
		c.stats.UnknownTargets++
		if m.nack {
			c.send(from, &message{kind: kindNack, seq: m.seq})
		}
		return
	}
	if len(c.relays) >= maxRelays {
		return
	}
	c.seq++
	c.relays = append(c.relays, relay{
		seq: c.seq, origSeq: m.seq, origAddr: from, wantNack: m.nack,
		nackAt:   now.Add(c.nackTimeout()),
		expireAt: now.Add(c.cfg.ProbeInterval),
	})
	c.send(t.Addr, &message{kind: kindPing, seq: c.seq, id: t.ID})
}

// merge applies a remote member list. Suspicions in it do not count as
// confirmations (the sender may only have heard them). A remote "dead" only makes a known
// member suspect (it may be stale; the member gets its chance to refute),
// as in memberlist; an unknown dead or left member is recorded as such, so
// that stale gossip at its incarnation cannot resurrect it later.
func (c *Core) merge(now time.Time, sender string, states []Member) {
	for i := range states {
		s := &states[i]
		switch s.State {
		case StateAlive:
			c.alive(now, s.Incarnation, s.ID, s.Addr, s.Meta)
		case StateSuspect:
			c.suspect(now, s.Incarnation, s.ID, sender, false)
		case StateDead, StateLeft:
			if _, known := c.byID[s.ID]; !known {
				if !c.implausible(nil, s.Incarnation) {
					c.addTombstone(now, s)
				}
			} else if s.State == StateLeft {
				c.dead(now, s.Incarnation, s.ID, s.ID)
			} else {
				c.suspect(now, s.Incarnation, s.ID, sender, false)
			}
		}
	}
}

func (c *Core) addTombstone(now time.Time, s *Member) {
	m := &member{Member: *s, changed: now}
	c.byID[m.ID] = m
	c.all = append(c.all, m)
}

// maxIncarnationJump bounds how far above a member's known incarnation an
// update may claim it to be. Only a member raises its own incarnation, one
// step per refutation or metadata update, so a larger jump is corrupt or
// forged; accepted, one at MaxUint64 could never be refuted (the
// refutation would wrap to 0) and would lock the member out. A node that
// restarts at a low incarnation is unaffected: the cluster's incarnation
// of it is above its own, and it refutes that by one step.
const maxIncarnationJump = 1 << 32

// implausible reports, and counts, whether an update claiming incarnation
// inc for m (nil: an unknown member) must be ignored: inc is MaxUint64
// (it could not be refuted), or more than maxIncarnationJump above m's.
func (c *Core) implausible(m *member, inc uint64) bool {
	bad := inc == math.MaxUint64 || m != nil && inc > m.Incarnation && inc-m.Incarnation > maxIncarnationJump
	if bad {
		c.stats.Implausible++
	}
	return bad
}

// refuteAccusation handles a suspicion or death of the local node at inc.
// A current one is refuted. A stale one (below the local incarnation) means its
// sender missed the refutation, so the node announces itself again: the
// announcement rides on the reply to the packet that carried the stale
// accusation, since updates are handled first.
func (c *Core) refuteAccusation(inc uint64) {
	switch {
	case c.left, c.implausible(c.self, inc):
	case inc >= c.self.Incarnation:
		c.refute(inc)
	default:
		c.broadcastAlive(c.self)
	}
}

// refute raises the local incarnation above inc and disseminates it.
func (c *Core) refute(inc uint64) {
	c.self.Incarnation = max(c.self.Incarnation, inc) + 1
	c.broadcastAlive(c.self)
	c.adjustHealth(1)
}

func (c *Core) alive(now time.Time, inc uint64, id, addr string, meta []byte) {
	if id == c.self.ID {
		// At another address, the claim is another node's (one ID used
		// twice), and refuting it would only start a war of incarnations:
		// the others refuse it as a conflict anyway.
		switch {
		case addr != c.self.Addr:
			c.conflict(now, c.self, inc, addr, meta)
		case inc > c.self.Incarnation && !c.left && !c.implausible(c.self, inc):
			c.refute(inc)
		}
		return
	}
	m := c.byID[id]
	if m == nil {
		if c.implausible(nil, inc) {
			return
		}
		m = &member{Member: Member{ID: id, Addr: addr, Incarnation: inc, State: StateAlive, Meta: meta}, changed: now}
		c.byID[id] = m
		c.all = append(c.all, m)
		c.becameLive(m)
		c.broadcastAlive(m)
		c.event(now, EventJoined, m)
		return
	}
	if inc <= m.Incarnation || c.implausible(m, inc) {
		return
	}
	if addr != m.Addr {
		if m.State.live() || c.cfg.DeadNodeReclaimTime < 0 || now.Sub(m.changed) < c.cfg.DeadNodeReclaimTime {
			c.conflict(now, m, inc, addr, meta)
			return
		}
		m.conflictAddr = ""
	}
	prev := m.State
	changed := m.Addr != addr || !slices.Equal(m.Meta, meta)
	m.Incarnation, m.Addr, m.Meta = inc, addr, meta
	c.setState(now, m, StateAlive)
	c.broadcastAlive(m)
	switch {
	case !prev.live():
		c.becameLive(m)
		c.event(now, EventJoined, m)
	case prev == StateSuspect || changed:
		c.event(now, EventUpdated, m)
	}
}

// conflict refuses an alive message that would move m to addr: it
// counts it, and reports the first claim of each address as an
// EventConflict.
func (c *Core) conflict(now time.Time, m *member, inc uint64, addr string, meta []byte) {
	c.stats.Conflicts++
	if m.conflictAddr == addr {
		return
	}
	m.conflictAddr = addr
	c.pushEvent(Event{Kind: EventConflict, Member: m.Member, At: now,
		Claim: Member{ID: m.ID, Addr: addr, Incarnation: inc, State: StateAlive, Meta: meta}})
}

// becameLive counts m as live and inserts it at a random place in the rest
// of this round's probe order, so it is probed within the round.
func (c *Core) becameLive(m *member) {
	c.numLive++
	i := c.probeIdx + c.rng.IntN(len(c.probeList)-c.probeIdx+1)
	c.probeList = slices.Insert(c.probeList, i, m)
}

// accused returns the member an accusation (suspect or dead) of id at inc
// applies to, or nil when it applies to none: the local node, which
// refutes it instead, an unknown member, one already dead or left, or an
// incarnation that is stale or implausible.
func (c *Core) accused(id string, inc uint64) *member {
	if id == c.self.ID {
		c.refuteAccusation(inc)
		return nil
	}
	m := c.byID[id]
	if m == nil || inc < m.Incarnation || !m.State.live() || c.implausible(m, inc) {
		return nil
	}
	return m
}

// suspect handles a suspicion of member id at inc raised by node from. A
// suspicion learnt from a push-pull list is not independent evidence, so
// it starts a suspicion but never confirms one (confirm false).
func (c *Core) suspect(now time.Time, inc uint64, id, from string, confirm bool) {
	m := c.accused(id, inc)
	if m == nil {
		return
	}
	if m.State == StateSuspect && inc == m.Incarnation {
		if confirm && !c.cfg.DisableLifeguard && m.susp.confirm(from) {
			c.broadcast(m.ID, &message{kind: kindSuspect, inc: inc, id: id, from: from})
		}
		return
	}
	// A new suspicion; at a higher incarnation it replaces the old one,
	// timer included: the member refuted that one.
	c.setState(now, m, StateAlive)
	m.Incarnation = inc
	c.setState(now, m, StateSuspect)
	n := c.numLive
	k := c.cfg.SuspicionMult - 2
	if n-2 < k || c.cfg.DisableLifeguard {
		k = 0
	}
	minT := suspicionTimeout(c.cfg.SuspicionMult, n, c.cfg.ProbeInterval)
	m.susp = newSuspicion(now, from, k, minT, time.Duration(c.cfg.SuspicionMaxTimeoutMult)*minT)
	c.suspects = append(c.suspects, m)
	c.broadcast(m.ID, &message{kind: kindSuspect, inc: inc, id: id, from: from})
	c.event(now, EventSuspected, m)
}

func (c *Core) dead(now time.Time, inc uint64, id, from string) {
	m := c.accused(id, inc)
	if m == nil {
		return
	}
	m.Incarnation = inc
	kind, st := EventFailed, StateDead
	if from == id {
		kind, st = EventLeft, StateLeft
	}
	c.setState(now, m, st)
	c.numLive--
	c.broadcast(m.ID, &message{kind: kindDead, inc: inc, id: id, from: from})
	c.event(now, kind, m)
}

// setState moves m to st, starting or ending its suspicion.
func (c *Core) setState(now time.Time, m *member, st State) {
	if m.State == StateSuspect && st != StateSuspect {
		m.susp = nil
		c.suspects = slices.DeleteFunc(c.suspects, func(x *member) bool { return x == m })
	}
	if m.State != st {
		m.changed = now
	}
	m.State = st
}

func (c *Core) broadcastAlive(m *member) {
	c.broadcast(m.ID, &message{kind: kindAlive, inc: m.Incarnation, id: m.ID, addr: m.Addr, meta: m.Meta})
}

func (c *Core) broadcast(id string, m *message) {
	c.queue.enqueue(id, c.enc.encodeMsg(nil, m))
}

func (c *Core) event(now time.Time, kind EventKind, m *member) {
	c.pushEvent(Event{Kind: kind, Member: m.Member, At: now})
}

// pushEvent queues e (see EventResync for the overflow policy).
func (c *Core) pushEvent(e Event) {
	var dropped uint64
	c.events, dropped = pushEvent(c.events, e, c.cfg.MaxEvents)
	c.stats.DroppedEvents += dropped
	c.queued++
}
