package swim

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func newCore(t testing.TB, id string, cfg Config) *Core {
	cfg.ID, cfg.Addr = id, id
	c, err := New(cfg, t0)
	require.NoError(t, err)
	return c
}

// packet encodes msgs as one packet.
func packet(msgs ...message) []byte {
	e := newEncoder()
	var body []byte
	for i := range msgs {
		body = e.encodeMsg(body, &msgs[i])
	}
	return append(e.packetHeader(nil, len(msgs)), body...)
}

func decodeAll(t testing.TB, out []Packet) []message {
	var all []message
	d := newDecoder()
	for _, p := range out {
		msgs, err := d.decodePacket(p.Data, nil)
		require.NoError(t, err)
		all = append(all, msgs...)
	}
	return all
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{}, t0)
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{ID: "a", Addr: "a", ProbeTimeout: 2 * time.Second}, t0)
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{ID: "a", Addr: "a", Meta: make([]byte, MaxMetaLen+1)}, t0)
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{ID: "a", Addr: "a", MTU: 100}, t0)
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{ID: "a", Addr: "a", MTU: 65508}, t0)
	require.ErrorIs(t, err, ErrConfig)
	require.ErrorContains(t, err, "MTU 65508 outside")
	_, err = New(Config{ID: "a", Addr: "a", MTU: 65507}, t0)
	require.NoError(t, err)
	c := newCore(t, "a", Config{})
	require.Equal(t, time.Second, c.cfg.ProbeInterval)
	require.Equal(t, 500*time.Millisecond, c.cfg.ProbeTimeout)
	require.Equal(t, 3, c.cfg.IndirectChecks)
	require.Equal(t, 4, c.cfg.SuspicionMult)
	require.Equal(t, 6, c.cfg.SuspicionMaxTimeoutMult)
	require.Equal(t, 8, c.cfg.AwarenessMaxMultiplier)
	require.Equal(t, 4, c.cfg.RetransmitMult)
}

// TestSuspicionTimeout checks the formula, worked by hand for min 2s, max
// 30s, k 3: 30 - 28*log(c+1)/log(4) = 30, 16, 7.810.., 2 seconds.
func TestSuspicionTimeout(t *testing.T) {
	s := newSuspicion(t0, "x", 3, 2*time.Second, 30*time.Second)
	want := []time.Duration{30 * time.Second, 16 * time.Second, 7810 * time.Millisecond, 2 * time.Second}
	for i, w := range want {
		require.Equal(t, w, s.timeout(), "after %d confirmations", i)
		s.confirm(fmt.Sprintf("c%d", i))
	}
	require.False(t, s.confirm("c9"), "confirmations beyond k are not counted")
	require.False(t, s.confirm("x"), "the original suspector does not confirm")
	require.Equal(t, 2*time.Second, s.timeout())
	require.Equal(t, 4*time.Second, newSuspicion(t0, "x", 0, 4*time.Second, 40*time.Second).timeout(), "k=0: min")
	require.Equal(t, 4*time.Second, suspicionTimeout(4, 10, time.Second))
	require.Equal(t, 8*time.Second, suspicionTimeout(4, 100, time.Second))
	require.Equal(t, 4*time.Second, suspicionTimeout(4, 1, time.Second))
	require.Equal(t, 4, retransmitLimit(4, 5))
	require.Equal(t, 8, retransmitLimit(4, 10))
	require.Equal(t, 12, retransmitLimit(4, 100))
	require.Equal(t, 30*time.Second, pushPullScale(30*time.Second, 32))
	require.Equal(t, 60*time.Second, pushPullScale(30*time.Second, 33))
	require.Equal(t, 90*time.Second, pushPullScale(30*time.Second, 128))
}

// TestRefutation: a suspicion of the local node at its incarnation makes it
// refute with a higher one, carried by the very ack to the ping that told
// it (buddy system).
func TestRefutation(t *testing.T) {
	c := newCore(t, "a", Config{})
	out, err := c.Receive(t0, "b", packet(
		message{kind: kindPing, seq: 7, id: "a"},
		message{kind: kindSuspect, inc: 0, id: "a", from: "b"},
	))
	require.NoError(t, err)
	require.Len(t, out, 1)
	require.Equal(t, "b", out[0].Addr)
	msgs := decodeAll(t, out)
	require.Equal(t, kindAck, msgs[0].kind)
	require.Equal(t, uint64(7), msgs[0].seq)
	require.Contains(t, msgs[1:], message{kind: kindAlive, inc: 1, id: "a", addr: "a"})
	require.Equal(t, uint64(1), c.Local().Incarnation)
	require.Equal(t, 1, c.Health(), "refuting raises the local health score")
	// A stale suspicion at a lower incarnation is ignored.
	_, err = c.Receive(t0, "b", packet(message{kind: kindSuspect, inc: 0, id: "a", from: "b"}))
	require.NoError(t, err)
	require.Equal(t, uint64(1), c.Local().Incarnation)
}

// TestPrecedence checks the state precedence rules against a reference
// model on random update sequences: at equal incarnation dead > suspect >
// alive, and only a higher incarnation revives.
func TestPrecedence(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 1))
		c := newCore(t, "a", Config{DisableLifeguard: true})
		_, err := c.Receive(t0, "b", packet(message{kind: kindAlive, inc: 0, id: "b", addr: "b"}))
		require.NoError(t, err)
		model := Member{ID: "b", Addr: "b", State: StateAlive}
		for range 50 {
			inc := uint64(r.IntN(4))
			k := []kind{kindAlive, kindSuspect, kindDead}[r.IntN(3)]
			m := message{kind: k, inc: inc, id: "b", addr: "b", from: "c"}
			_, err := c.Receive(t0, "c", packet(m))
			require.NoError(t, err)
			live := model.State == StateAlive || model.State == StateSuspect
			switch {
			case k == kindAlive && inc > model.Incarnation:
				model.State, model.Incarnation = StateAlive, inc
			case k == kindSuspect && live && (inc > model.Incarnation || inc == model.Incarnation && model.State == StateAlive):
				model.State, model.Incarnation = StateSuspect, inc
			case k == kindDead && live && inc >= model.Incarnation:
				model.State, model.Incarnation = StateDead, inc
			}
			got, _ := c.Member("b")
			require.Equal(t, model.State, got.State, "seed %d", seed)
			require.Equal(t, model.Incarnation, got.Incarnation, "seed %d", seed)
		}
	}
}

// TestNoResurrection: push-pull state naming a member alive at the
// incarnation at which it is known dead does not bring it back; a higher
// incarnation does.
func TestNoResurrection(t *testing.T) {
	c := newCore(t, "a", Config{})
	_, err := c.Receive(t0, "b", packet(
		message{kind: kindAlive, inc: 3, id: "b", addr: "b"},
		message{kind: kindDead, inc: 3, id: "b", from: "c"},
	))
	require.NoError(t, err)
	stale := message{kind: kindPushPull, id: "c", states: []Member{{ID: "b", Addr: "b", Incarnation: 3, State: StateAlive}}}
	_, err = c.Receive(t0, "c", packet(stale))
	require.NoError(t, err)
	m, _ := c.Member("b")
	require.Equal(t, StateDead, m.State)
	// Unknown dead members are remembered too.
	_, err = c.Receive(t0, "c", packet(message{kind: kindPushPull, id: "c", states: []Member{{ID: "d", Addr: "d", Incarnation: 2, State: StateDead}}}))
	require.NoError(t, err)
	_, err = c.Receive(t0, "c", packet(message{kind: kindPushPull, id: "c", states: []Member{{ID: "d", Addr: "d", Incarnation: 2, State: StateAlive}}}))
	require.NoError(t, err)
	m, _ = c.Member("d")
	require.Equal(t, StateDead, m.State)
	require.Equal(t, 1, c.NumLive())
	stale.states[0].Incarnation = 4
	_, err = c.Receive(t0, "c", packet(stale))
	require.NoError(t, err)
	m, _ = c.Member("b")
	require.Equal(t, StateAlive, m.State)
	ev := c.PopEvents(nil)
	require.Equal(t, []EventKind{EventJoined, EventFailed, EventJoined}, []EventKind{ev[0].Kind, ev[1].Kind, ev[2].Kind})
}

// TestMTUAndRetransmitLimit: packets never exceed the MTU, and each update
// is piggybacked exactly RetransmitMult*ceil(log10(n+1)) times. The pings
// carry updates the node knows already, as pings in a busy cluster do, so
// that the acks may be as large as the MTU (see replyFactor).
func TestMTUAndRetransmitLimit(t *testing.T) {
	c := newCore(t, "a", Config{MTU: MinMTU})
	var ups []message
	for i := range 200 {
		id := fmt.Sprintf("member-%03d", i)
		ups = append(ups, message{kind: kindAlive, id: id, addr: id, meta: bytes.Repeat([]byte{'m'}, 20)})
	}
	for i := 0; i < len(ups); i += 20 {
		_, err := c.Receive(t0, "x", packet(ups[i:i+20]...))
		require.NoError(t, err)
	}
	limit := retransmitLimit(4, c.NumLive())
	require.Equal(t, 12, limit)
	sent := map[string]int{}
	for i := range 1000 {
		ping := append([]message{{kind: kindPing, seq: uint64(i), id: "a"}}, ups[i%10*20:i%10*20+20]...)
		out, err := c.Receive(t0, "x", packet(ping...))
		require.NoError(t, err)
		for _, p := range out {
			require.LessOrEqual(t, len(p.Data), MinMTU)
		}
		for _, m := range decodeAll(t, out) {
			if m.kind == kindAlive {
				sent[m.id]++
			}
		}
	}
	require.Len(t, sent, 201)
	for id, n := range sent {
		require.Equal(t, limit, n, id)
	}
	// Push-pull state is split into packets under the MTU.
	out := c.Leave(t0)
	require.NotEmpty(t, out)
	c2 := newCore(t, "b", Config{MTU: MinMTU})
	for i := 0; i < len(ups); i += 20 {
		_, err := c2.Receive(t0, "x", packet(ups[i:i+20]...))
		require.NoError(t, err)
	}
	out, err := c2.Receive(t0, "z", c2.pullRequest(t0, "z"))
	require.NoError(t, err)
	states := 0
	for _, p := range out {
		require.LessOrEqual(t, len(p.Data), MinMTU)
		for _, m := range decodeAll(t, []Packet{p}) {
			states += len(m.states)
		}
	}
	require.Greater(t, len(out), 1)
	require.Equal(t, 201, states, "every member in the reply")
}

func TestEventsBounded(t *testing.T) {
	c := newCore(t, "a", Config{MaxEvents: 3})
	for i := range 5 {
		_, err := c.Receive(t0, "x", packet(message{kind: kindAlive, id: fmt.Sprint(i), addr: "x"}))
		require.NoError(t, err)
	}
	ev := c.PopEvents(nil)
	require.Len(t, ev, 3)
	require.Equal(t, EventResync, ev[0].Kind, "the consumer is told to resynchronise")
	require.Equal(t, "3", ev[1].Member.ID, "the oldest events are dropped")
	require.Equal(t, uint64(3), c.Stats().DroppedEvents)
	require.Empty(t, c.PopEvents(nil))
}

// TestLeave: the announcement carries a ping per member; a member's ack,
// sent after it applied the announcement, counts towards the
// acknowledgements wanted; without them the announcement is repeated to
// the members that did not answer, every ProbeInterval, at most
// retransmit-limit rounds.
func TestLeave(t *testing.T) {
	c := newCore(t, "a", Config{})
	for _, id := range []string{"b", "c"} {
		_, err := c.Receive(t0, id, packet(message{kind: kindAlive, id: id, addr: id}))
		require.NoError(t, err)
	}
	out := c.Leave(t0)
	require.Len(t, out, 2)
	acked, need, done := c.LeaveStatus()
	require.Equal(t, []any{0, 2, false}, []any{acked, need, done})
	require.Equal(t, t0.Add(time.Second), c.Deadline())
	b := newCore(t, "b", Config{})
	_, err := b.Receive(t0, "a", packet(message{kind: kindAlive, id: "a", addr: "a"}))
	require.NoError(t, err)
	i := slices.IndexFunc(out, func(p Packet) bool { return p.Addr == "b" })
	require.Contains(t, decodeAll(t, out[i:i+1]), message{kind: kindDead, id: "a", from: "a"})
	ack, err := b.Receive(t0, "a", out[i].Data)
	require.NoError(t, err)
	m, _ := b.Member("a")
	require.Equal(t, StateLeft, m.State)
	require.Len(t, ack, 1)
	_, err = c.Receive(t0, "b", ack[0].Data)
	require.NoError(t, err)
	_, err = c.Receive(t0, "b", ack[0].Data) // a duplicate counts once
	require.NoError(t, err)
	acked, _, done = c.LeaveStatus()
	require.Equal(t, []any{1, false}, []any{acked, done})

	// c did not answer: the next round goes to c only, until the rounds
	// run out.
	limit := retransmitLimit(4, 3)
	for round := 2; round <= limit; round++ {
		now := t0.Add(time.Duration(round-1) * time.Second)
		require.Empty(t, c.Tick(now.Add(-time.Nanosecond)))
		out = c.Tick(now)
		require.Len(t, out, 1, "round %d", round)
		require.Equal(t, "c", out[0].Addr)
		require.Contains(t, decodeAll(t, out), message{kind: kindDead, id: "a", from: "a"})
	}
	acked, need, done = c.LeaveStatus()
	require.Equal(t, []any{1, 2, true}, []any{acked, need, done})
	require.True(t, c.Deadline().IsZero())
	require.Empty(t, c.Tick(t0.Add(time.Hour)))

	// A late ack of the first round still counts.
	c2 := newCore(t, "a", Config{})
	_, err = c2.Receive(t0, "b", packet(message{kind: kindAlive, id: "b", addr: "b"}))
	require.NoError(t, err)
	first := c2.Leave(t0)
	c2.Tick(t0.Add(time.Second))
	ack, err = b.Receive(t0, "a", first[0].Data)
	require.NoError(t, err)
	_, err = c2.Receive(t0.Add(time.Second), "b", ack[0].Data)
	require.NoError(t, err)
	acked, need, done = c2.LeaveStatus()
	require.Equal(t, []any{1, 1, true}, []any{acked, need, done})

	// Alone, there is nobody to tell.
	c3 := newCore(t, "a", Config{})
	require.Empty(t, c3.Leave(t0))
	_, _, done = c3.LeaveStatus()
	require.True(t, done)
}

func TestMalformed(t *testing.T) {
	c := newCore(t, "a", Config{})
	for _, p := range [][]byte{nil, {0x90}, {0x92, 0x01, 0x90}, []byte("garbage"), append(packet(message{kind: kindAck, seq: 1}), 0)} {
		_, err := c.Receive(t0, "x", p)
		if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrVersion) {
			t.Fatalf("%x: err %v", p, err)
		}
	}
	_, err := c.Receive(t0, "x", []byte{0x92, 0x01, 0x90})
	require.ErrorIs(t, err, ErrVersion, "version 1")
	// A packet is applied whole or not at all.
	bad := append(packet(message{kind: kindAlive, id: "b", addr: "b"}), 0xc1)
	_, err = c.Receive(t0, "x", bad)
	require.ErrorIs(t, err, ErrMalformed)
	_, ok := c.Member("b")
	require.False(t, ok)
}

// FuzzDecode: the decoder never panics, and whatever it accepts re-encodes
// to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(packet(message{kind: kindPing, seq: 1, id: "a"}, message{kind: kindSuspect, inc: 2, id: "b", from: "c"}))
	f.Add(packet(message{kind: kindPingReq, seq: 1, id: "a", addr: "x:1", nack: true}, message{kind: kindDead, inc: 3, id: "b", from: "c"}))
	f.Add(packet(message{kind: kindNack, seq: 3}, message{kind: kindAck, seq: 4}))
	f.Add(packet(message{kind: kindAlive, inc: 9, id: "a", addr: "x", meta: []byte("m")}, message{kind: kindDead, id: "a", from: "a"}))
	f.Add(packet(message{kind: kindPushPull, id: "z", flags: 1, states: []Member{{ID: "a", Addr: "b", State: StateLeft}}}))
	f.Add(packet(message{kind: kindPushPull, id: "z", flags: 3, cookie: make([]byte, cookieLen), state: []byte("user")}))
	f.Add(packet(message{kind: kindCookie, cookie: make([]byte, cookieLen)}))
	f.Add([]byte{0x92, 0x02, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add(packet(message{kind: kindUserMsg, id: "a", payload: []byte("p")}, message{kind: kindBroadcast, id: "b", epoch: 1, seq: 2, name: "n", payload: []byte("q")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := newDecoder().decodePacket(data, nil)
		if err != nil {
			return
		}
		if !bytes.Equal(packet(msgs...), data) {
			// Non-canonical encodings (e.g. wide integers) are accepted; they
			// must decode to the same messages once re-encoded.
			again, err := newDecoder().decodePacket(packet(msgs...), nil)
			require.NoError(t, err)
			require.Equal(t, msgs, again)
		}
	})
}

// TestReceivePingAllocs: answering a ping allocates only the ack's bytes,
// which the caller owns.
func TestReceivePingAllocs(t *testing.T) {
	c := newCore(t, "a", Config{})
	p := packet(message{kind: kindPing, seq: 1, id: "a"})
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Receive(t0, "b", p); err != nil {
			t.Fatal(err)
		}
	})
	require.Equal(t, 1.0, allocs)
}

func TestUpdateMeta(t *testing.T) {
	a := newCore(t, "a", Config{})
	b := newCore(t, "b", Config{})
	_, err := b.Receive(t0, "a", packet(message{kind: kindAlive, id: "a", addr: "a"}))
	require.NoError(t, err)
	b.PopEvents(nil)
	require.ErrorIs(t, a.UpdateMeta(make([]byte, MaxMetaLen+1)), ErrMetaSize)
	require.NoError(t, a.UpdateMeta([]byte("zone=b")))
	require.Equal(t, uint64(1), a.Local().Incarnation)
	require.False(t, a.Deadline().After(t0), "the update is gossiped at once")
	out := a.Tick(t0) // no live member yet: a gossips to nobody; answer a ping instead
	require.Empty(t, out)
	out, err = a.Receive(t0, "b", packet(message{kind: kindPing, seq: 1, id: "a"}))
	require.NoError(t, err)
	_, err = b.Receive(t0, "a", out[0].Data)
	require.NoError(t, err)
	ev := b.PopEvents(nil)
	require.Len(t, ev, 1)
	require.Equal(t, EventUpdated, ev[0].Kind)
	require.Equal(t, []byte("zone=b"), ev[0].Member.Meta)
}

// TestRoundRobin: every member is probed exactly once per round, in an
// order that changes between rounds.
func TestRoundRobin(t *testing.T) {
	c := newCore(t, "a", Config{RandSeed: 9})
	const n = 10
	for i := range n {
		id := fmt.Sprint("m", i)
		_, err := c.Receive(t0, id, packet(message{kind: kindAlive, id: id, addr: id}))
		require.NoError(t, err)
	}
	now := t0
	var rounds [][]string
	for range 3 {
		var order []string
		for range n {
			for _, m := range decodeAll(t, c.Tick(now)) {
				if m.kind == kindPing {
					order = append(order, m.id)
					_, err := c.Receive(now, m.id, packet(message{kind: kindAck, seq: m.seq}))
					require.NoError(t, err)
				}
			}
			now = now.Add(time.Second)
		}
		require.Len(t, order, n)
		seen := map[string]bool{}
		for _, id := range order {
			require.False(t, seen[id], "probed twice in a round: %s", id)
			seen[id] = true
		}
		rounds = append(rounds, order)
	}
	require.NotEqual(t, rounds[0], rounds[1], "the order is reshuffled per round")
	require.Zero(t, c.Stats().FailedProbes)
}

// indirectProber returns a prober that knows "t" and four helpers, and
// runs probe periods (acking every other target) until it pings "t"; it
// returns the ping and when it was sent.
func indirectProber(t *testing.T) (*Core, message, time.Time) {
	prober := newCore(t, "p", Config{RandSeed: 1})
	for _, id := range []string{"t", "h1", "h2", "h3", "h4"} {
		_, err := prober.Receive(t0, id, packet(message{kind: kindAlive, id: id, addr: id}))
		require.NoError(t, err)
	}
	for now := t0; ; now = now.Add(time.Second) {
		for _, m := range decodeAll(t, prober.Tick(now)) {
			if m.kind != kindPing {
				continue
			}
			if m.id == "t" {
				return prober, m, now
			}
			_, err := prober.Receive(now, m.id, packet(message{kind: kindAck, seq: m.seq}))
			require.NoError(t, err)
		}
	}
}

// nackIn returns the packet of out that carries a nack, or nil.
func nackIn(t *testing.T, out []Packet) *Packet {
	for i := range out {
		if decodeAll(t, out[i:i+1])[0].kind == kindNack {
			return &out[i]
		}
	}
	return nil
}

// TestIndirectProbe: a missed direct ack leads to IndirectChecks
// ping-reqs; a helper pings the target under its own sequence number and
// forwards the ack under the prober's. A helper whose target is silent
// sends a nack 80% of the prober's indirect window after the ping-req
// arrived, so with LAN delays it reaches the prober before the period
// ends: when all nacks come, the failed probe is evidence against the
// target only, and the prober's health score stays 0; each nack that does
// not come raises it by one.
func TestIndirectProbe(t *testing.T) {
	const delay = 5 * time.Millisecond // one way, on every link
	for _, nacks := range []int{3, 1} {
		prober, ping, now := indirectProber(t)
		reqAt := now.Add(500 * time.Millisecond)
		out := prober.Tick(reqAt)
		require.Len(t, out, 3, "IndirectChecks ping-reqs")
		for _, p := range out {
			require.NotEqual(t, "t", p.Addr)
			m := decodeAll(t, []Packet{p})[0]
			require.Equal(t, message{kind: kindPingReq, seq: ping.seq, id: "t", addr: "t", nack: true}, m)
		}
		for i, req := range out[:nacks] {
			helper := newCore(t, req.Addr, Config{})
			_, err := helper.Receive(now, "t", packet(message{kind: kindAlive, id: "t", addr: "t"}))
			require.NoError(t, err)
			arrive := reqAt.Add(delay)
			relayed, err := helper.Receive(arrive, "p", req.Data)
			require.NoError(t, err)
			require.Len(t, relayed, 1)
			require.Equal(t, "t", relayed[0].Addr)
			hp := decodeAll(t, relayed)[0]
			require.Equal(t, message{kind: kindPing, seq: hp.seq, id: "t"}, hp)
			if nacks == 1 && i == 0 {
				// An ack from the target is forwarded under the prober's seq
				// (not delivered here: the probe is to fail).
				fwd, err := helper.Receive(arrive, "t", packet(message{kind: kindAck, seq: hp.seq}))
				require.NoError(t, err)
				require.Equal(t, "p", fwd[0].Addr)
				require.Equal(t, message{kind: kindAck, seq: ping.seq}, decodeAll(t, fwd)[0])
				_, err = helper.Receive(arrive, "p", req.Data) // the same request, unanswered this time
				require.NoError(t, err)
				hp = decodeAll(t, helper.Tick(arrive))[0]
			}
			nackAt := arrive.Add(400 * time.Millisecond)
			require.Nil(t, nackIn(t, helper.Tick(nackAt.Add(-time.Nanosecond))), "nack before its time")
			nack := nackIn(t, helper.Tick(nackAt))
			require.NotNil(t, nack, "no nack at its time")
			require.Equal(t, message{kind: kindNack, seq: ping.seq}, decodeAll(t, []Packet{*nack})[0])
			// The nack arrives before the prober's period ends.
			at := nackAt.Add(delay)
			require.True(t, at.Before(prober.Deadline()), "nack at %v, period ends at %v", at.Sub(now), prober.Deadline().Sub(now))
			_, err = prober.Receive(at, req.Addr, nack.Data)
			require.NoError(t, err)
		}
		prober.Tick(now.Add(time.Second))
		m, _ := prober.Member("t")
		require.Equal(t, StateSuspect, m.State)
		require.Equal(t, 3-nacks, prober.Health(), "%d of 3 nacks", nacks)
	}
}

// TestReceiveKnownUpdatesAllocs: a packet of updates the node already
// knows (the common case of gossip) is decoded and applied without
// allocating: IDs and addresses of known members are interned.
func TestReceiveKnownUpdatesAllocs(t *testing.T) {
	c := newCore(t, "a", Config{})
	var ups []message
	for i := range 20 {
		id := fmt.Sprint("member-", i)
		ups = append(ups, message{kind: kindAlive, inc: 2, id: id, addr: id + ":7946"},
			message{kind: kindSuspect, inc: 1, id: id, from: "a"})
	}
	p := packet(ups...)
	_, err := c.Receive(t0, "x", p)
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := c.Receive(t0, "x", p); err != nil {
			t.Fatal(err)
		}
	})
	require.Equal(t, 0.0, allocs)
}

// FuzzReceive: a core fed arbitrary packets never panics, and a rejected
// packet changes nothing.
func FuzzReceive(f *testing.F) {
	f.Add(packet(message{kind: kindPingReq, seq: 1, id: "b", addr: "b", nack: true}, message{kind: kindDead, inc: 1, id: "b", from: "c"}))
	f.Add(packet(message{kind: kindPushPull, id: "z", flags: 1, states: []Member{{ID: "a", Addr: "a", Incarnation: 5, State: StateDead}}}))
	f.Add(packet(message{kind: kindSuspect, id: "a", from: "b"}, message{kind: kindPing, id: "a"}))
	f.Add(packet(message{kind: kindBroadcast, id: "b", epoch: 1, seq: 1, name: "n"}, message{kind: kindUserMsg, id: "b", payload: []byte("p")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newCore(t, "a", Config{})
		if _, err := c.Receive(t0, "b", packet(message{kind: kindAlive, id: "b", addr: "b"})); err != nil {
			t.Fatal(err)
		}
		before := c.Members(nil)
		if _, err := c.Receive(t0, "x", data); err != nil {
			require.Equal(t, before, c.Members(nil))
			return
		}
		c.Tick(t0.Add(time.Hour))
	})
}

// TestDecodePushPullAllocBound: a push-pull header that claims more member
// records than the rest of the packet can hold allocates in proportion to
// the records that could fit, not to the claim.
func TestDecodePushPullAllocBound(t *testing.T) {
	const claim = 60000
	p := packet(message{kind: kindPushPull, id: "z"})
	p = append(p[:len(p)-1], 0xdd, 0, 0, claim>>8, claim&0xff) // the states' array header
	p = append(p, make([]byte, claim)...)                      // one byte per claimed record
	d := newDecoder()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := d.decodePacket(p, nil)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, ErrMalformed)
	require.LessOrEqual(t, after.TotalAlloc-before.TotalAlloc, uint64(16*len(p)),
		"bytes allocated for a %d-byte packet", len(p))
}

// TestImplausibleIncarnation: an accusation at MaxUint64, or more than
// maxIncarnationJump above the known incarnation, is ignored, so it can
// neither wrap the local node's refutation to 0 nor lock a remote member
// out; accusations within the bound, as after a restart, are refuted as
// usual.
func TestImplausibleIncarnation(t *testing.T) {
	c := newCore(t, "a", Config{Incarnation: 5})
	_, err := c.Receive(t0, "b", packet(message{kind: kindAlive, inc: 3, id: "b", addr: "b"}))
	require.NoError(t, err)
	for _, inc := range []uint64{math.MaxUint64, 5 + maxIncarnationJump + 1} {
		for _, k := range []kind{kindSuspect, kindDead, kindAlive} {
			_, err := c.Receive(t0, "x", packet(message{kind: k, inc: inc, id: "a", addr: "a", from: "x"}))
			require.NoError(t, err)
			require.Equal(t, uint64(5), c.Local().Incarnation, "%v at %d", k, inc)
		}
		for _, k := range []kind{kindDead, kindSuspect, kindAlive} {
			_, err := c.Receive(t0, "x", packet(message{kind: k, inc: inc - 2, id: "b", addr: "b", from: "x"}))
			require.NoError(t, err)
			m, _ := c.Member("b")
			require.Equal(t, Member{ID: "b", Addr: "b", Incarnation: 3}, m, "%v at %d", k, inc-2)
		}
	}
	_, err = c.Receive(t0, "x", packet(message{kind: kindAlive, inc: math.MaxUint64, id: "c", addr: "c"}))
	require.NoError(t, err)
	_, err = c.Receive(t0, "x", packet(message{kind: kindPushPull, id: "x", states: []Member{{ID: "d", Addr: "d", Incarnation: math.MaxUint64, State: StateDead}}}))
	require.NoError(t, err)
	require.Equal(t, 2, len(c.Members(nil)), "no member learnt at MaxUint64")
	require.Equal(t, 14, c.Stats().Implausible)

	// Within the bound: a restarted node learns its old incarnation and
	// refutes it by one step; a suspicion at the bound is refuted too.
	_, err = c.Receive(t0, "x", packet(message{kind: kindDead, inc: 57, id: "a", from: "x"}))
	require.NoError(t, err)
	require.Equal(t, uint64(58), c.Local().Incarnation)
	_, err = c.Receive(t0, "x", packet(message{kind: kindSuspect, inc: 58 + maxIncarnationJump, id: "a", from: "x"}))
	require.NoError(t, err)
	require.Equal(t, uint64(59+maxIncarnationJump), c.Local().Incarnation)
	_, err = c.Receive(t0, "x", packet(message{kind: kindDead, inc: 3 + maxIncarnationJump, id: "b", from: "x"}))
	require.NoError(t, err)
	m, _ := c.Member("b")
	require.Equal(t, StateDead, m.State)
	_, err = New(Config{ID: "a", Addr: "a", Incarnation: math.MaxUint64/2 + 1}, t0)
	require.ErrorIs(t, err, ErrConfig)
}
