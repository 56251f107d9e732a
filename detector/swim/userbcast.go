package swim

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"
)

// User data: broadcasts disseminated to every member and messages to one
// member, memberlist's Delegate surface (GetBroadcasts with a
// TransmitLimitedQueue, NotifyMsg, SendBestEffort) in the core's style.
//
// A broadcast is identified by its origin's ID, the origin's epoch (the
// time its Core was created, in nanoseconds since 1970, so that a restarted
// origin starts a new series) and a sequence number that counts up from 1
// per epoch. Every node that receives a broadcast for the first time
// delivers it and queues it to relay, as it does membership updates.

// Limits on user data, enforced locally and by the decoder. With an ID and
// a name at their limits, a broadcast fits in a sealed MinMTU packet beside
// a ping, and so does a message.
const (
	// MaxPayloadLen bounds the payload of a user broadcast or message, in
	// bytes (serf's default UserEventSizeLimit).
	MaxPayloadLen = 512
	// MaxNameLen bounds the name of a user broadcast, in bytes.
	MaxNameLen = 128
)

const (
	kindBroadcast kind = 10 // [10, origin, epoch, seq, name, payload]
	kindUserMsg   kind = 11 // [11, sender, payload]
)

var (
	// ErrPayloadSize is returned (wrapped) by [Core.Broadcast] and
	// [Core.SendTo] for a payload longer than MaxPayloadLen or a name
	// longer than MaxNameLen.
	ErrPayloadSize = errors.New("swim: user payload too large")
	// ErrQueueFull is returned (wrapped) by [Core.Broadcast] when the
	// local node's share of the broadcast queue is full of broadcasts
	// still being disseminated.
	ErrQueueFull = errors.New("swim: broadcast queue full")
	// ErrUnknownMember is returned (wrapped) by [Core.SendTo] for an ID
	// that is not a live member other than the local node.
	ErrUnknownMember = errors.New("swim: not a live member")
	// ErrLeft is returned by [Core.Broadcast] and [Core.SendTo] after
	// [Core.Leave].
	ErrLeft = errors.New("swim: the node has left")
)

// Message is user data delivered to the application: a broadcast, or a
// message sent to the local node alone. It is a plain value; Payload is
// the receiver's.
type Message struct {
	From    string // the member that broadcast or sent it
	Name    string // a broadcast's name; "" for an unnamed broadcast and a direct message
	Payload []byte
	Direct  bool      // sent to the local node alone ([Core.SendTo]), not broadcast
	At      time.Time // the time passed to the call that received it
}

// UserStats counts what happened to user broadcasts and messages; it is
// embedded in [Stats].
type UserStats struct {
	// UserRefused counts broadcasts and messages refused unread: a
	// broadcast whose origin is not a known member or claims an epoch
	// more than an hour ahead of the local clock, a message whose sender
	// is not a live member (or, without a Keyring, sent from another
	// address than the member's).
	UserRefused int
	// UserStale counts broadcasts not delivered for their age: older than
	// the 64 latest of their origin, superseded by a newer broadcast of
	// the same name from the same origin, or from an earlier epoch of the
	// origin. Copies of a broadcast already delivered are not counted:
	// epidemic dissemination makes them normal.
	UserStale int
	// BroadcastsEvicted counts broadcasts dropped from the relay queue
	// before their retransmit limit, because the queue or their origin's
	// share of it was full.
	BroadcastsEvicted int
	// DroppedMessages counts received messages dropped from the
	// application's queue because it, or their sender's share of it, was
	// full.
	DroppedMessages uint64
}

// originShare divides the broadcast queue and the message queue among
// origins: one origin's broadcasts take at most 1/originShare of either
// (at least one entry), so a flood from one member evicts its own older
// broadcasts, not the others'.
const originShare = 8

// share returns the entries of a queue of capacity n one origin may take.
func share(n int) int { return max(1, n/originShare) }

// maxEpochAhead bounds how far ahead of the local clock an origin's epoch
// may be: a forged epoch far in the future would otherwise make every real
// broadcast of the origin look stale until the origin restarted.
const maxEpochAhead = time.Hour

// epochAt returns the broadcast epoch of a core created at now: its
// nanoseconds since 1970, at least 1 and below 2^63.
func epochAt(now time.Time) uint64 { return uint64(max(now.UnixNano(), 1)) }

// userState is a core's user data.
type userState struct {
	epoch uint64 // the local broadcast epoch (see epochAt)
	seq   uint64 // the last local broadcast's sequence number
	queue userQueue
	inbox inbox
}

// Broadcast queues payload to be disseminated to every member, as
// memberlist's TransmitLimitedQueue: it is piggybacked on the packets the
// core sends in the space left by membership updates, and gossiped,
// RetransmitMult*ceil(log10(n+1)) times in all by each member, which
// delivers it once, as a [Message] for [Core.PopMessages]. The core keeps
// a copy of payload.
//
// A non-empty name makes the broadcast invalidate the older ones of the
// same name from this node (memberlist's NamedBroadcast): a queued older
// one is dropped at once, here and at every member that relays both, and a
// member that receives the older after the newer does not deliver it. An
// empty name is a unique broadcast, never invalidated.
//
// finished, if not nil, is called once the broadcast leaves the local
// queue: sent the retransmit limit of times, invalidated, or evicted. It
// is called from within a call on the core (Broadcast, Tick, Receive,
// SendTo or Leave), so it must not call the core; for a [Node] it runs
// with the node's lock held and must not block.
//
// Broadcast returns an error wrapping [ErrPayloadSize] for a payload or
// name over its limit, wrapping [ErrQueueFull] when the local node already
// has MaxBroadcasts/8 broadcasts queued (a named one that replaces a queued
// one always fits), or [ErrLeft] after Leave.
func (c *Core) Broadcast(name string, payload []byte, finished func()) error {
	if err := checkUser(name, payload); err != nil {
		return err
	}
	if c.left {
		return ErrLeft
	}
	q := &c.user.queue
	if (name == "" || !q.has(c.self.ID, name)) && q.count(c.self.ID) >= share(c.cfg.MaxBroadcasts) {
		return fmt.Errorf("%w: %d broadcasts of this node queued", ErrQueueFull, q.count(c.self.ID))
	}
	c.user.seq++
	m := message{kind: kindBroadcast, id: c.self.ID, epoch: c.user.epoch, seq: c.user.seq, name: name, payload: payload}
	c.stats.BroadcastsEvicted += q.enqueue(userBroadcast{broadcast: broadcast{id: c.self.ID, msg: c.enc.encodeMsg(nil, &m)},
		name: name, epoch: m.epoch, seq: m.seq, finished: finished}, c.cfg.MaxBroadcasts)
	return nil
}

// SendTo returns the packet, sent at now, that carries payload to the
// live member id alone, best effort (memberlist's SendBestEffort): it may be lost, and
// is not retransmitted. The member delivers it as a [Message] with Direct
// set. Like every packet, it is sealed when the core has a Keyring, and
// carries piggybacked updates. The packets returned are valid until the
// next call on c, as Tick's.
//
// SendTo returns an error wrapping [ErrPayloadSize] for a payload over
// MaxPayloadLen, wrapping [ErrUnknownMember] when id is not a live member
// other than the local node, or [ErrLeft] after Leave.
func (c *Core) SendTo(now time.Time, id string, payload []byte) ([]Packet, error) {
	c.now = now // the sealing time
	c.out = c.out[:0]
	c.budget = math.MaxInt
	if err := checkUser("", payload); err != nil {
		return c.out, err
	}
	if c.left {
		return c.out, ErrLeft
	}
	m := c.byID[id]
	if m == nil || m == c.self || !m.State.live() {
		return c.out, fmt.Errorf("%w: %q", ErrUnknownMember, id)
	}
	c.send(m.Addr, &message{kind: kindUserMsg, id: c.self.ID, payload: payload})
	return c.out, nil
}

// PopMessages appends the user broadcasts and messages received since the
// last call to dst, in the order they arrived, empties the queue, and
// returns dst. The queue holds at most Config.MaxMessages messages, and at
// most MaxMessages/8 from one sender; past either bound the oldest (of the
// queue, or of the sender) is dropped and counted in
// [Stats].DroppedMessages.
func (c *Core) PopMessages(dst []Message) []Message { return c.user.inbox.pop(dst) }

// checkUser checks a broadcast's name and a payload against their limits.
func checkUser(name string, payload []byte) error {
	switch {
	case len(payload) > MaxPayloadLen:
		return fmt.Errorf("%w: payload of %d bytes, limit %d", ErrPayloadSize, len(payload), MaxPayloadLen)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: name of %d bytes, limit %d", ErrPayloadSize, len(name), MaxNameLen)
	}
	return nil
}

// receiveBroadcast delivers and relays a broadcast seen for the first
// time, from an origin that is a known member (in any state: it may have
// broadcast before it failed or left).
func (c *Core) receiveBroadcast(now time.Time, m *message) {
	o := c.byID[m.id]
	switch {
	case o == c.self: // our own, relayed back
		return
	case o == nil || m.epoch > epochAt(now)+uint64(maxEpochAhead):
		c.stats.UserRefused++
		return
	}
	if o.bcasts == nil {
		o.bcasts = &window{}
	}
	switch o.bcasts.accept(m.epoch, m.seq, nameHash(m.name)) {
	case duplicate:
		return
	case stale:
		c.stats.UserStale++
		return
	}
	c.deliver(Message{From: o.ID, Name: m.name, Payload: m.payload, At: now})
	c.stats.BroadcastsEvicted += c.user.queue.enqueue(userBroadcast{broadcast: broadcast{id: o.ID, msg: c.enc.encodeMsg(nil, m)},
		name: m.name, epoch: m.epoch, seq: m.seq}, c.cfg.MaxBroadcasts)
}

// receiveUserMsg delivers a message from a live member. Without a
// Keyring, the packet must come from the member's address: the sender's
// ID alone is anyone's to claim.
func (c *Core) receiveUserMsg(now time.Time, from string, m *message) {
	s := c.byID[m.id]
	if s == nil || s == c.self || !s.State.live() || c.cfg.Keyring == nil && s.Addr != from {
		c.stats.UserRefused++
		return
	}
	c.deliver(Message{From: s.ID, Payload: m.payload, Direct: true, At: now})
}

func (c *Core) deliver(m Message) {
	c.stats.DroppedMessages += c.user.inbox.push(m, c.cfg.MaxMessages)
	c.queued++
}

// disseminating reports whether updates or user broadcasts wait to be
// piggybacked.
func (c *Core) disseminating() bool { return c.queue.Len() > 0 || c.user.queue.Len() > 0 }

// userBroadcast is a user broadcast waiting to be piggybacked, encoded;
// its id is its origin's.
type userBroadcast struct {
	broadcast
	name       string
	epoch, seq uint64
	rank       int    // fill's: the broadcast's place among its origin's
	finished   func() // local broadcasts only; may be nil
}

// done calls b's finished function, if any.
func (b *userBroadcast) done() {
	if b.finished != nil {
		b.finished()
	}
}

// newer reports whether b was broadcast after o by their common origin.
func (b *userBroadcast) newer(o *userBroadcast) bool {
	return b.epoch > o.epoch || b.epoch == o.epoch && b.seq > o.seq
}

// userQueue is the bounded queue of user broadcasts to piggyback, with
// memberlist's TransmitLimitedQueue semantics (fewest transmissions
// first, then newest; dropped at the retransmit limit; a named broadcast
// invalidates the older ones of its name) plus fairness among origins:
// each origin holds at most share(capacity) entries, and fill interleaves
// origins.
type userQueue struct {
	items []userBroadcast
	order uint64
	rank  map[string]int // fill's scratch
}

// Len returns the number of queued broadcasts.
func (q *userQueue) Len() int { return len(q.items) }

func (q *userQueue) count(origin string) int {
	n := 0
	for i := range q.items {
		if q.items[i].id == origin {
			n++
		}
	}
	return n
}

func (q *userQueue) has(origin, name string) bool {
	return slices.ContainsFunc(q.items, func(b userBroadcast) bool { return b.id == origin && b.name == name })
}

// enqueue adds b to a queue of at most capacity broadcasts and returns how
// many it evicted. A named b replaces the older ones of its name from its
// origin (and is dropped if a newer one is queued); a full origin share
// evicts that origin's least valuable broadcast (most transmitted, then
// oldest), a full queue that of the origin with the most queued. Dropped
// broadcasts' finished functions are called.
func (q *userQueue) enqueue(b userBroadcast, capacity int) (evicted int) {
	if b.name != "" {
		// At most one broadcast per origin and name is queued.
		i := slices.IndexFunc(q.items, func(o userBroadcast) bool { return o.id == b.id && o.name == b.name })
		if i >= 0 && q.items[i].newer(&b) {
			b.done()
			return 0
		}
		if i >= 0 {
			q.items[i].done()
			q.items = slices.Delete(q.items, i, i+1)
		}
	}
	if q.count(b.id) >= share(capacity) {
		q.evict(b.id)
		evicted++
	} else if len(q.items) >= capacity {
		q.evict(q.largestOrigin())
		evicted++
	}
	q.order++
	b.order = q.order
	q.items = append(q.items, b)
	return evicted
}

// evict drops origin's least valuable queued broadcast.
func (q *userQueue) evict(origin string) {
	worst := -1
	for i := range q.items {
		b := &q.items[i]
		if b.id == origin && (worst < 0 || lessValuable(b, &q.items[worst])) {
			worst = i
		}
	}
	q.items[worst].done()
	q.items = slices.Delete(q.items, worst, worst+1)
}

// lessValuable orders broadcasts by value: more transmissions, then older.
func lessValuable(a, b *userBroadcast) bool {
	return a.transmits > b.transmits || a.transmits == b.transmits && a.order < b.order
}

// largestOrigin returns the origin with the most queued broadcasts (the
// first queued among equals).
func (q *userQueue) largestOrigin() string {
	best, most := "", 0
	for i := range q.items {
		if n := q.count(q.items[i].id); n > most {
			best, most = q.items[i].id, n
		}
	}
	return best
}

// fill appends to dst as many queued broadcasts as fit in room bytes, at
// most n, counts a transmission for each, drops those that reached limit
// (calling their finished functions), and returns dst and the number
// appended. Each origin's broadcasts go fewest transmissions first, then
// newest; origins take turns (every origin's first, then every origin's
// second, ...), so one origin's flood cannot fill every packet.
func (q *userQueue) fill(dst []byte, room, limit, n int) ([]byte, int) {
	if len(q.items) == 0 {
		return dst, 0
	}
	slices.SortFunc(q.items, func(a, b userBroadcast) int { return byTransmits(&a.broadcast, &b.broadcast) })
	if q.rank == nil {
		q.rank = make(map[string]int)
	}
	for i := range q.items {
		b := &q.items[i]
		b.rank = q.rank[b.id]
		q.rank[b.id]++
	}
	clear(q.rank)
	slices.SortStableFunc(q.items, func(a, b userBroadcast) int { return cmp.Compare(a.rank, b.rank) })
	dst, added := pack(q.items, func(b *userBroadcast) *broadcast { return &b.broadcast }, dst, room, n)
	q.items = slices.DeleteFunc(q.items, func(b userBroadcast) bool {
		if b.transmits >= limit {
			b.done()
			return true
		}
		return false
	})
	return dst, added
}

// windowLen is how many of an origin's latest broadcasts a node
// remembers: an older one is refused as stale.
const windowLen = 64

// window is what a node remembers of one origin's broadcasts, a sliding
// window as in IPsec's anti-replay: the origin's epoch, the highest
// sequence number seen in it, which of the windowLen below it were seen,
// and their names' hashes, so that a broadcast superseded by a newer one
// of its name is not delivered.
type window struct {
	epoch, high uint64
	seen        uint64 // bit i: high-i was seen
	names       [windowLen]uint64
}

type verdict uint8

const (
	fresh verdict = iota
	duplicate
	stale
)

// accept records broadcast seq of epoch with the given name hash (0: no
// name) and says whether it is fresh (to deliver), a duplicate, or stale.
func (w *window) accept(epoch, seq, name uint64) verdict {
	switch {
	case epoch < w.epoch:
		return stale
	case epoch > w.epoch:
		*w = window{epoch: epoch}
	}
	if seq > w.high {
		if shift := seq - w.high; shift >= windowLen {
			w.seen = 0
		} else {
			w.seen <<= shift
		}
		w.high = seq
		w.seen |= 1
		w.names[seq%windowLen] = name
		return fresh
	}
	d := w.high - seq
	switch {
	case d >= windowLen:
		return stale
	case w.seen&(1<<d) != 0:
		return duplicate
	}
	for i := range d {
		if name != 0 && w.seen&(1<<i) != 0 && w.names[(w.high-i)%windowLen] == name {
			return stale // a newer broadcast of the same name was delivered
		}
	}
	w.seen |= 1 << d
	w.names[seq%windowLen] = name
	return fresh
}

// nameHash returns a broadcast name's hash for window: 0 for no name,
// never 0 for a name.
func nameHash(name string) uint64 {
	if name == "" {
		return 0
	}
	return xxhash.Sum64String(name) | 1
}

// inbox is the bounded queue of received user data for the application,
// with a per-sender share (see PopMessages).
type inbox struct {
	items []Message
	from  map[string]int // queued messages per sender
}

// push queues m in an inbox of at most capacity messages and returns the
// number of messages dropped.
func (b *inbox) push(m Message, capacity int) (dropped uint64) {
	if b.from == nil {
		b.from = make(map[string]int)
	}
	switch {
	case b.from[m.From] >= share(capacity):
		b.remove(slices.IndexFunc(b.items, func(x Message) bool { return x.From == m.From }))
		dropped++
	case len(b.items) >= capacity:
		b.remove(0)
		dropped++
	}
	b.items = append(b.items, m)
	b.from[m.From]++
	return dropped
}

func (b *inbox) remove(i int) {
	from := b.items[i].From
	if b.from[from]--; b.from[from] == 0 {
		delete(b.from, from)
	}
	b.items = slices.Delete(b.items, i, i+1)
}

func (b *inbox) pop(dst []Message) []Message {
	dst = append(dst, b.items...)
	clear(b.items)
	b.items = b.items[:0]
	clear(b.from)
	return dst
}

// decodeUser decodes the fields of a broadcast or a message after the kind.
func (d *decoder) decodeUser(m *message) error {
	var err error
	if m.id, err = d.id(); err != nil {
		return err
	}
	if m.kind == kindBroadcast {
		if m.epoch, err = d.seq(); err != nil {
			return err
		}
		if m.seq, err = d.seq(); err != nil {
			return err
		}
		if m.name, err = d.str(MaxNameLen); err != nil {
			return err
		}
	}
	m.payload, err = d.bytes(MaxPayloadLen)
	return err
}
