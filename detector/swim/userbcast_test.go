package swim

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// broadcastsIn returns the user broadcasts the packets carry.
func broadcastsIn(t testing.TB, out []Packet) []message {
	var bs []message
	for _, m := range decodeAll(t, out) {
		if m.kind == kindBroadcast {
			bs = append(bs, m)
		}
	}
	return bs
}

// joined returns a core "a" that knows the live members ids.
func joined(t testing.TB, cfg Config, ids ...string) *Core {
	c := newCore(t, "a", cfg)
	for _, id := range ids {
		c.alive(t0, 1, id, id, nil)
	}
	c.PopEvents(nil)
	return c
}

// piggyback returns the packet c sends to addr with nothing but what it
// piggybacks, as in a gossip round.
func piggyback(c *Core, addr string) []Packet {
	c.out = c.out[:0]
	c.budget = math.MaxInt
	c.send(addr)
	return c.out
}

// TestUserLimitsFit: a broadcast and a message with every field at its
// limit fit in a sealed MinMTU packet beside the largest ping.
func TestUserLimitsFit(t *testing.T) {
	e := newEncoder()
	id := strings.Repeat("i", MaxIDLen)
	ping := e.encodeMsg(nil, &message{kind: kindPing, seq: 1<<63 - 1, id: id})
	bcast := e.encodeMsg(nil, &message{kind: kindBroadcast, id: id, epoch: 1<<63 - 1, seq: 1<<63 - 1,
		name: strings.Repeat("n", MaxNameLen), payload: make([]byte, MaxPayloadLen)})
	msg := e.encodeMsg(nil, &message{kind: kindUserMsg, id: id, payload: make([]byte, MaxPayloadLen)})
	room := MinMTU - sealOverhead - headerLen
	require.LessOrEqual(t, len(ping)+len(bcast), room)
	require.LessOrEqual(t, len(msg), room)

	// And the core sends them so.
	ring, err := NewKeyring(key(1))
	require.NoError(t, err)
	c := newCore(t, id, Config{MTU: MinMTU, Keyring: ring})
	c.alive(t0, 1, "b", "b", nil)
	require.NoError(t, c.Broadcast(strings.Repeat("n", MaxNameLen), make([]byte, MaxPayloadLen), nil))
	c.queue = broadcastQueue{} // no membership update competes for the room
	opened := func(p Packet) []Packet {
		require.LessOrEqual(t, len(p.Data), MinMTU)
		plain, err := ring.open(nil, p.Data, nil)
		require.NoError(t, err)
		return []Packet{{Data: plain[stampLen:]}}
	}
	c.out, c.budget = c.out[:0], math.MaxInt
	c.send("b", &message{kind: kindPing, seq: 1<<63 - 1, id: id})
	require.Len(t, broadcastsIn(t, opened(c.out[0])), 1, "the broadcast rides on the ping")
	out, err := c.SendTo(t0, "b", make([]byte, MaxPayloadLen))
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, kindUserMsg, decodeAll(t, opened(out[0]))[0].kind)
}

// TestBroadcastQueue: memberlist's TransmitLimitedQueue semantics. Each
// broadcast is sent exactly the retransmit limit of times, then finished;
// a named broadcast invalidates (finishes) the queued older one of its
// name, an unnamed one never; the local share of the queue is bounded.
func TestBroadcastQueue(t *testing.T) {
	c := joined(t, Config{MaxBroadcasts: 24}, "b", "c")
	limit := retransmitLimit(4, c.NumLive())
	finished := map[string]int{}
	bcast := func(name, payload string) error {
		return c.Broadcast(name, []byte(payload), func() { finished[payload]++ })
	}
	require.NoError(t, bcast("cfg", "v1"))
	require.NoError(t, bcast("", "u1"))
	require.NoError(t, bcast("cfg", "v2"))
	require.Equal(t, map[string]int{"v1": 1}, finished, "v2 invalidates v1 at once")
	require.NoError(t, bcast("", "u2"))
	require.Equal(t, 3, c.user.queue.Len(), "unnamed broadcasts are never invalidated")
	require.ErrorIs(t, bcast("", "u3"), ErrQueueFull, "the local share is 24/8 = 3")
	require.NoError(t, bcast("cfg", "v3"), "a named broadcast that replaces a queued one always fits")

	sent := map[string]int{}
	for range 3 * limit {
		for _, m := range broadcastsIn(t, piggyback(c, "b")) {
			require.Equal(t, "a", m.id)
			sent[string(m.payload)]++
		}
	}
	require.Equal(t, map[string]int{"u1": limit, "u2": limit, "v3": limit}, sent, "each sent exactly limit times")
	require.Equal(t, map[string]int{"v1": 1, "v2": 1, "u1": 1, "u2": 1, "v3": 1}, finished)
	require.Zero(t, c.user.queue.Len())
	require.False(t, c.disseminating())

	require.ErrorIs(t, c.Broadcast("", make([]byte, MaxPayloadLen+1), nil), ErrPayloadSize)
	require.ErrorIs(t, c.Broadcast(strings.Repeat("n", MaxNameLen+1), nil, nil), ErrPayloadSize)
	c.Leave(t0)
	require.ErrorIs(t, c.Broadcast("", nil, nil), ErrLeft)
}

// TestBroadcastOrder: the least transmitted broadcasts go first, the
// newest among equals, and origins take turns, so a flood from one origin
// does not keep another's broadcast out of the packets.
func TestBroadcastOrder(t *testing.T) {
	var q userQueue
	add := func(origin string, seq uint64) {
		e := newEncoder()
		msg := e.encodeMsg(nil, &message{kind: kindBroadcast, id: origin, epoch: 1, seq: seq, payload: make([]byte, 100)})
		q.enqueue(userBroadcast{broadcast: broadcast{id: origin, msg: msg}, epoch: 1, seq: seq}, 64)
	}
	add("quiet", 1)
	for seq := range uint64(8) {
		add("flood", seq+1)
	}
	dst, n := q.fill(nil, 250, 10, MaxUpdates) // room for two
	require.Equal(t, 2, n)
	msgs := decodeAll(t, []Packet{{Data: append(newEncoder().packetHeader(nil, n), dst...)}})
	require.Equal(t, "flood", msgs[0].id)
	require.Equal(t, uint64(8), msgs[0].seq, "the newest first")
	require.Equal(t, "quiet", msgs[1].id, "then the other origin's, before the flood's second newest")
}

// TestBroadcastQueueBounds: one origin's broadcasts take at most an
// eighth of the queue (its least valuable evicted first), and a full
// queue evicts from the origin with the most; evictions finish the
// broadcast and are counted.
func TestBroadcastQueueBounds(t *testing.T) {
	var q userQueue
	finished := 0
	add := func(origin string, seq uint64) int {
		return q.enqueue(userBroadcast{broadcast: broadcast{id: origin}, epoch: 1, seq: seq, finished: func() { finished++ }}, 16)
	}
	evicted := 0
	for seq := range uint64(5) {
		evicted += add("x", seq+1)
	}
	require.Equal(t, 3, evicted, "share 16/8 = 2")
	require.Equal(t, 3, finished)
	require.Equal(t, 2, q.count("x"))
	require.True(t, q.has("x", ""))
	for i := range 14 {
		require.Zero(t, add(fmt.Sprint("o", i), 1))
	}
	require.Equal(t, 16, q.Len())
	require.Equal(t, 1, add("new", 1), "a full queue evicts")
	require.Equal(t, 1, q.count("x"), "from the largest origin")
	require.Equal(t, 16, q.Len())
}

// windowModel is the reference for window: every broadcast seen, per epoch.
type windowModel struct {
	epoch uint64
	seen  map[uint64]uint64 // seq -> name hash
	high  uint64
}

func (m *windowModel) accept(epoch, seq, name uint64) verdict {
	switch {
	case epoch < m.epoch:
		return stale
	case epoch > m.epoch || m.seen == nil:
		*m = windowModel{epoch: epoch, seen: map[uint64]uint64{}}
	}
	if _, ok := m.seen[seq]; ok && m.high-seq < windowLen {
		return duplicate
	}
	if seq+windowLen <= m.high {
		return stale
	}
	for s, n := range m.seen {
		if name != 0 && n == name && s > seq && s+windowLen > m.high {
			return stale
		}
	}
	m.seen[seq] = name
	m.high = max(m.high, seq)
	return fresh
}

// TestWindowModel: the sliding window agrees with a model that remembers
// every broadcast, on random histories (reordered, duplicated, named,
// across epochs).
func TestWindowModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 1))
	for range 200 {
		var w window
		var m windowModel
		epoch, top := uint64(1), uint64(0)
		for step := range 500 {
			if r.IntN(100) == 0 {
				epoch++
				top = 0
			}
			e := epoch
			if r.IntN(20) == 0 && epoch > 1 {
				e = epoch - 1
			}
			top += uint64(r.IntN(3))
			seq := uint64(1)
			if top > 0 {
				seq = top - min(top-1, uint64(r.IntN(100)))
			}
			name := uint64(r.IntN(4)) // 0: unnamed
			got, want := w.accept(e, seq, name), m.accept(e, seq, name)
			require.Equal(t, want, got, "seed %d step %d: epoch %d seq %d name %d", seed, step, e, seq, name)
		}
	}
}

// TestBroadcastRelay: a receiver delivers a broadcast once, relays it,
// and drops an older one of the same name that arrives after the newer;
// its own broadcasts coming back are ignored.
func TestBroadcastRelay(t *testing.T) {
	c := joined(t, Config{}, "b", "c")
	bc := func(seq uint64, name, payload string) []byte {
		return packet(message{kind: kindBroadcast, id: "b", epoch: 7, seq: seq, name: name, payload: []byte(payload)})
	}
	for _, p := range [][]byte{bc(2, "cfg", "new"), bc(2, "cfg", "new"), bc(1, "cfg", "old"), bc(3, "", "u")} {
		_, err := c.Receive(t0, "c", p)
		require.NoError(t, err)
	}
	got := c.PopMessages(nil)
	require.Equal(t, []Message{{From: "b", Name: "cfg", Payload: []byte("new"), At: t0}, {From: "b", Payload: []byte("u"), At: t0}}, got)
	require.Equal(t, 1, c.Stats().UserStale)
	relayed := broadcastsIn(t, piggyback(c, "c"))
	require.Len(t, relayed, 2)
	// A new epoch of b (a restart) starts a new series.
	_, err := c.Receive(t0, "c", packet(message{kind: kindBroadcast, id: "b", epoch: 8, seq: 1, name: "cfg", payload: []byte("restarted")}))
	require.NoError(t, err)
	require.Len(t, c.PopMessages(nil), 1)
	require.Len(t, c.user.queue.items, 2, "the new epoch's cfg replaced the old one in the queue")
	// The node's own broadcast, relayed back.
	_, err = c.Receive(t0, "c", packet(message{kind: kindBroadcast, id: "a", epoch: 1, seq: 1}))
	require.NoError(t, err)
	require.Empty(t, c.PopMessages(nil))
}

// TestUserMessage: SendTo reaches the member alone, sealed with a
// keyring; messages from a non-member, a dead member, or (unkeyed) a
// member's ID at another address are refused and counted.
func TestUserMessage(t *testing.T) {
	a := joined(t, Config{}, "b")
	b := newCore(t, "b", Config{})
	b.alive(t0, 1, "a", "a", nil)
	out, err := a.SendTo(t0, "b", []byte("hello"))
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, "b", out[0].Addr)
	_, err = b.Receive(t0, "a", out[0].Data)
	require.NoError(t, err)
	require.Equal(t, []Message{{From: "a", Payload: []byte("hello"), Direct: true, At: t0}}, b.PopMessages(nil))

	_, err = a.SendTo(t0, "nobody", nil)
	require.ErrorIs(t, err, ErrUnknownMember)
	_, err = a.SendTo(t0, "a", nil)
	require.ErrorIs(t, err, ErrUnknownMember)
	_, err = a.SendTo(t0, "b", make([]byte, MaxPayloadLen+1))
	require.ErrorIs(t, err, ErrPayloadSize)

	for _, p := range []struct{ from, id string }{{"x", "x"}, {"x", "a"}} {
		_, err = b.Receive(t0, p.from, packet(message{kind: kindUserMsg, id: p.id, payload: []byte("spoof")}))
		require.NoError(t, err)
	}
	require.Empty(t, b.PopMessages(nil))
	require.Equal(t, 2, b.Stats().UserRefused)
	require.Equal(t, 2, b.NumLive(), "no membership change")

	// With a keyring: sealed, and the sender's address does not matter
	// (a member behind NAT, or known by a host name).
	ring, err := NewKeyring(key(1))
	require.NoError(t, err)
	ka := joined(t, Config{Keyring: ring}, "b")
	kb := newCore(t, "b", Config{Keyring: ring})
	kb.alive(t0, 1, "a", "a", nil)
	out, err = ka.SendTo(t0, "b", []byte("secret"))
	require.NoError(t, err)
	require.False(t, bytes.Contains(out[0].Data, []byte("secret")))
	_, err = kb.Receive(t0, "10.0.0.1:7946", out[0].Data)
	require.NoError(t, err)
	require.Len(t, kb.PopMessages(nil), 1)
	ka.Leave(t0)
	_, err = ka.SendTo(t0, "b", nil)
	require.ErrorIs(t, err, ErrLeft)
}

// TestUserBadInput: an oversized payload, name or metadata, a counter at or above
// 2^63 (up to 2^64-1) in a new field, a broadcast from a non-member or
// from an epoch far ahead: each is a drop and a counter, never a panic,
// never a membership change.
func TestUserBadInput(t *testing.T) {
	cases := []struct {
		name    string
		msg     message
		counter func(Stats) int
	}{
		{"oversized broadcast payload", message{kind: kindBroadcast, id: "b", epoch: 1, seq: 1, payload: make([]byte, MaxPayloadLen+1)}, func(s Stats) int { return s.Malformed }},
		{"oversized message payload", message{kind: kindUserMsg, id: "b", payload: make([]byte, MaxPayloadLen+1)}, func(s Stats) int { return s.Malformed }},
		{"oversized name", message{kind: kindBroadcast, id: "b", epoch: 1, seq: 1, name: strings.Repeat("n", MaxNameLen+1)}, func(s Stats) int { return s.Malformed }},
		{"seq 2^64-1", message{kind: kindBroadcast, id: "b", epoch: 1, seq: math.MaxUint64}, func(s Stats) int { return s.Malformed }},
		{"seq 2^63", message{kind: kindBroadcast, id: "b", epoch: 1, seq: 1 << 63}, func(s Stats) int { return s.Malformed }},
		{"epoch 2^64-1", message{kind: kindBroadcast, id: "b", epoch: math.MaxUint64, seq: 1}, func(s Stats) int { return s.Malformed }},
		{"epoch 2^63-1", message{kind: kindBroadcast, id: "b", epoch: 1<<63 - 1, seq: 1}, func(s Stats) int { return s.UserRefused }},
		{"epoch an hour and a second ahead", message{kind: kindBroadcast, id: "b", epoch: epochAt(t0.Add(time.Hour + time.Second)), seq: 1}, func(s Stats) int { return s.UserRefused }},
		{"origin not a member", message{kind: kindBroadcast, id: "x", epoch: 1, seq: 1}, func(s Stats) int { return s.UserRefused }},
		{"sender not a member", message{kind: kindUserMsg, id: "x"}, func(s Stats) int { return s.UserRefused }},
		{"oversized metadata", message{kind: kindAlive, inc: 2, id: "b", addr: "b", meta: make([]byte, MaxMetaLen+1)}, func(s Stats) int { return s.Malformed }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := joined(t, Config{}, "b")
			before := c.Members(nil)
			require.NotPanics(t, func() { c.Receive(t0, "b", packet(tc.msg)) })
			require.Equal(t, 1, tc.counter(c.Stats()))
			require.Empty(t, c.PopMessages(nil))
			require.Empty(t, c.PopEvents(nil))
			require.Equal(t, before, c.Members(nil))
			require.Zero(t, c.user.queue.Len(), "nothing relayed")
		})
	}
	// The same epoch within the hour is accepted: the bound is not the
	// check that refused the others.
	c := joined(t, Config{}, "b")
	_, err := c.Receive(t0, "b", packet(message{kind: kindBroadcast, id: "b", epoch: epochAt(t0.Add(time.Hour)), seq: 1}))
	require.NoError(t, err)
	require.Len(t, c.PopMessages(nil), 1)
}

// TestBroadcastFloodBounded: a member that floods a node with fresh
// broadcasts (128 per packet, 100 packets) evicts only its own: the
// queue, the flooder's share of it and the application's queue stay
// bounded, another member's broadcast is still delivered and relayed in
// the next packet, the drops are counted, and membership does not change.
func TestBroadcastFloodBounded(t *testing.T) {
	c := joined(t, Config{MaxBroadcasts: 64, MaxMessages: 64}, "b", "evil")
	before := c.Members(nil)
	_, err := c.Receive(t0, "b", packet(message{kind: kindBroadcast, id: "b", epoch: 1, seq: 1, payload: []byte("honest")}))
	require.NoError(t, err)
	seq := uint64(0)
	for range 100 {
		msgs := make([]message, MaxUpdates)
		for i := range msgs {
			seq++
			msgs[i] = message{kind: kindBroadcast, id: "evil", epoch: 1, seq: seq, payload: []byte("flood")}
		}
		_, err := c.Receive(t0, "evil", packet(msgs...))
		require.NoError(t, err)
		require.LessOrEqual(t, c.user.queue.Len(), 64)
		require.LessOrEqual(t, c.user.queue.count("evil"), 64/originShare)
		require.LessOrEqual(t, len(c.user.inbox.items), 64)
	}
	s := c.Stats()
	require.Equal(t, 100*MaxUpdates-64/originShare, s.BroadcastsEvicted)
	require.Equal(t, uint64(100*MaxUpdates-64/originShare), s.DroppedMessages)
	got := c.PopMessages(nil)
	require.Equal(t, "honest", string(got[0].Payload), "the flood does not push others' messages out")
	require.Len(t, got, 1+64/originShare)
	relayed := broadcastsIn(t, piggyback(c, "b"))
	require.Contains(t, relayed, message{kind: kindBroadcast, id: "b", epoch: 1, seq: 1, payload: []byte("honest")})
	require.Empty(t, c.PopEvents(nil))
	require.Equal(t, before, c.Members(nil))
}

// BenchmarkReceiveBroadcast: receiving a packet with one fresh broadcast
// of 100 bytes: decode, window, delivery to the application's queue and
// the relay queue.
func BenchmarkReceiveBroadcast(b *testing.B) {
	c := joined(b, Config{}, "b")
	packets := make([][]byte, 1024)
	for i := range packets {
		packets[i] = packet(message{kind: kindBroadcast, id: "b", epoch: 1, seq: uint64(i + 1), payload: make([]byte, 100)})
	}
	var msgs []Message
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%len(packets) == 0 {
			c.user.queue = userQueue{}
			c.byID["b"].bcasts = nil
		}
		if _, err := c.Receive(t0, "b", packets[i%len(packets)]); err != nil {
			b.Fatal(err)
		}
		msgs = c.PopMessages(msgs[:0])
	}
}

// BenchmarkPiggybackBroadcasts: building a gossip packet that carries 10
// queued broadcasts of 100 bytes.
func BenchmarkPiggybackBroadcasts(b *testing.B) {
	c := joined(b, Config{RetransmitMult: 1 << 20}, "b")
	c.queue = broadcastQueue{}
	for i := range 10 {
		if err := c.Broadcast(fmt.Sprint(i), make([]byte, 100), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if out := piggyback(c, "b"); len(out[0].Data) < 1000 {
			b.Fatalf("%d bytes", len(out[0].Data))
		}
	}
}
