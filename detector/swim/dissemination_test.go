package swim

import (
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/simnet"
)

// watchSends has fn see the messages of every packet a node of c sends
// (unsealed).
func (c *cluster) watchSends(fn func(from *simNode, msgs []message)) {
	d := newDecoder()
	var msgs []message
	c.onSend = func(from *simNode, p Packet) {
		var err error
		if msgs, err = d.decodePacket(p.Data, msgs[:0]); err != nil {
			c.t.Fatal(err)
		}
		fn(from, msgs)
	}
}

// isGossip reports whether a packet's messages are a gossip packet's:
// no probe, ack or other primary message, only updates and broadcasts.
func isGossip(msgs []message) bool {
	return !slices.ContainsFunc(msgs, func(m message) bool { return !m.kind.update() })
}

// disseminate lets a cluster of n converge on link, then has one random
// member broadcast bcasts payloads at once and runs 8 periods. It checks
// that no member delivers a broadcast twice, or its own, and that each
// member that delivered one sent it exactly the retransmit limit of times
// (so that the copies sent do not depend on loss). It returns the
// periods until the last delivery, the (member, broadcast) pairs never
// delivered, and the number of gossip packets (packets without a probe,
// an ack or another primary message).
func disseminate(t *testing.T, seed uint64, n, bcasts int, link simnet.Link) (last float64, missed, gossip int) {
	t.Helper()
	c := newCluster(t, seed, n, Config{}, link)
	c.waitConverged(5 * time.Minute)
	c.runFor(10 * time.Second) // let join traffic drain
	for _, sn := range c.nodes {
		sn.core.PopMessages(nil)
	}
	copies := map[string]int{} // per sender and payload
	c.watchSends(func(from *simNode, msgs []message) {
		if isGossip(msgs) {
			gossip++
		}
		for _, m := range msgs {
			if m.kind == kindBroadcast {
				copies[from.cfg.ID+"/"+string(m.payload)]++
			}
		}
	})
	origin := c.nodes[c.net.Rand().IntN(n)]
	start := c.net.Now()
	for i := range bcasts {
		if err := origin.core.Broadcast("", fmt.Appendf(nil, "b%03d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	c.runFor(8 * c.period())
	limit := retransmitLimit(4, n)
	for _, sn := range c.nodes {
		got := map[string]bool{}
		for _, m := range sn.core.PopMessages(nil) {
			if got[string(m.Payload)] || sn == origin {
				t.Fatalf("seed %d: %s delivered %s again, or its own", seed, sn.cfg.ID, m.Payload)
			}
			got[string(m.Payload)] = true
			last = max(last, c.periods(m.At)-c.periods(start))
		}
		for i := range bcasts {
			p := fmt.Sprintf("b%03d", i)
			want := limit
			if !got[p] && sn != origin {
				missed++
				want = 0
			}
			if k := copies[sn.cfg.ID+"/"+p]; k != want {
				t.Fatalf("seed %d: %s sent %s %d times, want exactly %d", seed, sn.cfg.ID, p, k, want)
			}
		}
	}
	return last, missed, gossip
}

// TestBroadcastDissemination: a broadcast reaches the members within a
// bounded number of protocol periods, on a LAN and with 10% loss; every
// member delivers it once and sends it exactly RetransmitMult*
// ceil(log10(n+1)) times, and the traffic it adds is bounded: gossip
// packets (the only ones a broadcast adds) number at most GossipNodes per
// round, in no more rounds per broadcast than the retransmit limit needs.
//
// Delivery is best effort, as memberlist's: the n*limit copies sent land
// on random members, so a member receives about limit*(1-loss) of them
// and misses all with probability about e^-(limit*(1-loss)) (3e-4 with
// 64 members and no loss, 7e-4 with 10% loss). The test allows three
// times the expected misses, plus one.
func TestBroadcastDissemination(t *testing.T) {
	lossy := lan
	lossy.Loss = 0.1
	sizes := []int{16, 64}
	if *long {
		sizes = append(sizes, 256)
	}
	for _, tc := range []struct {
		name    string
		link    simnet.Link
		periods float64 // bound on the last delivery
	}{{"lan", lan, 1}, {"10% loss", lossy, 2}} {
		for _, n := range sizes {
			runs := seeds(2)
			if n > 16 || tc.link.Loss > 0 {
				runs = seeds(1)
			}
			for _, seed := range runs {
				bcasts := []int{1, 10}[seed%2]
				last, missed, gossip := disseminate(t, seed, n, bcasts, tc.link)
				limit := retransmitLimit(4, n)
				pairs := (n - 1) * bcasts
				allowed := 1 + int(math.Ceil(3*float64(pairs)*math.Exp(-float64(limit)*(1-tc.link.Loss))))
				// A gossip packet carries every queued broadcast (ten of
				// a few bytes fit), so a broadcast is done at a member
				// after at most ceil(limit/GossipNodes) rounds of
				// GossipNodes packets. (Broadcasts that arrive apart, say
				// some in an ack cut to its reply budget, need rounds of
				// their own.)
				bound := n * 3 * ((limit + 2) / 3) * bcasts
				t.Logf("%s, %d members, %d broadcasts, seed %d: %d of %d deliveries missed (allowed %d), the last after %.2f periods; %d gossip packets (bound %d without loss)",
					tc.name, n, bcasts, seed, missed, pairs, allowed, last, gossip, bound)
				if missed > allowed {
					t.Errorf("%s, %d members, seed %d: %d deliveries missed, allowed %d", tc.name, n, seed, missed, allowed)
				}
				if last > tc.periods {
					t.Errorf("%s, %d members, seed %d: last delivery after %.2f periods, want <= %v", tc.name, n, seed, last, tc.periods)
				}
				if tc.link.Loss == 0 && gossip > bound {
					t.Errorf("%s, %d members, seed %d: %d gossip packets, bound %d", tc.name, n, seed, gossip, bound)
				}
			}
		}
	}
}

// TestMetaDissemination: metadata updated on one member reaches every
// other member, as an EventUpdated with the new metadata at the new
// incarnation, within a period, on a LAN and with 10% loss.
func TestMetaDissemination(t *testing.T) {
	lossy := lan
	lossy.Loss = 0.1
	for _, link := range []simnet.Link{lan, lossy} {
		for _, seed := range seeds(1) {
			c := newCluster(t, seed, 32, Config{}, link)
			c.waitConverged(5 * time.Minute)
			c.runFor(10 * time.Second)
			origin := c.nodes[c.net.Rand().IntN(len(c.nodes))]
			updated := map[string]time.Time{}
			c.onEvent = func(sn *simNode, e Event) {
				if e.Kind == EventUpdated && e.Member.ID == origin.cfg.ID && string(e.Member.Meta) == "v2" {
					if e.Member.Incarnation != origin.core.Local().Incarnation {
						t.Fatalf("seed %d: %s saw incarnation %d", seed, sn.cfg.ID, e.Member.Incarnation)
					}
					updated[sn.cfg.ID] = e.At
				}
			}
			start := c.net.Now()
			if err := origin.core.UpdateMeta([]byte("v2")); err != nil {
				t.Fatal(err)
			}
			c.runFor(5 * c.period())
			last := 0.0
			for _, sn := range c.nodes {
				at, ok := updated[sn.cfg.ID]
				if sn != origin && !ok {
					t.Fatalf("seed %d, loss %v: %s never saw the update", seed, link.Loss, sn.cfg.ID)
				}
				last = max(last, c.periods(at)-c.periods(start))
			}
			t.Logf("loss %v, seed %d: every member saw the metadata after %.2f periods", link.Loss, seed, last)
			if last > 1 {
				t.Errorf("loss %v, seed %d: last update seen after %.2f periods", link.Loss, seed, last)
			}
		}
	}
}

// flooder sends every node of a cluster, every 100ms until end, a packet
// of MaxUpdates fresh broadcasts that claim the member origin.
type flooder struct {
	c      *cluster
	origin string
	epoch  uint64
	seq    uint64
	next   time.Time
	end    time.Time
	enc    *encoder
}

func (f *flooder) Deliver(simnet.Message[[]byte]) {}

func (f *flooder) Deadline() time.Time {
	if !f.next.Before(f.end) {
		return time.Time{}
	}
	return f.next
}

func (f *flooder) Tick(now time.Time) {
	f.next = now.Add(100 * time.Millisecond)
	for _, sn := range f.c.nodes {
		if sn.cfg.ID == f.origin {
			continue
		}
		var body []byte
		for range MaxUpdates {
			f.seq++
			body = f.enc.encodeMsg(body, &message{kind: kindBroadcast, id: f.origin, epoch: f.epoch, seq: f.seq, payload: []byte("flood")})
		}
		f.c.net.Send("evil", sn.cfg.Addr, append(f.enc.packetHeader(nil, MaxUpdates), body...))
	}
}

// TestBroadcastFloodSimulated: while a sender floods every member with
// fresh broadcasts in a member's name (1280 per member per period), a
// broadcast from another member still reaches everyone within a period;
// the queues stay within their bounds, the flood's evictions are counted,
// each member sends no more gossip packets than GossipNodes per gossip
// round, and membership does not change.
func TestBroadcastFloodSimulated(t *testing.T) {
	for _, seed := range seeds(1) {
		const n = 16
		c := newCluster(t, seed, n, Config{}, lan)
		c.waitConverged(5 * time.Minute)
		c.runFor(10 * time.Second)
		changed := 0
		c.onEvent = func(*simNode, Event) { changed++ }
		honest, victim := c.nodes[1], c.nodes[2]
		start := c.net.Now()
		const periods = 2
		f := &flooder{c: c, origin: victim.cfg.ID, epoch: victim.core.user.epoch, next: start, end: start.Add(periods * c.period()), enc: newEncoder()}
		c.sim.Add("evil", f)
		gossip := map[string]int{}
		c.watchSends(func(from *simNode, msgs []message) {
			if isGossip(msgs) {
				gossip[from.cfg.ID]++
			}
		})
		if err := honest.core.Broadcast("", []byte("honest"), nil); err != nil {
			t.Fatal(err)
		}
		c.runFor(periods * c.period())
		last := 0.0
		for _, sn := range c.nodes {
			core := sn.core
			if q := core.user.queue.Len(); q > core.cfg.MaxBroadcasts || core.user.queue.count(victim.cfg.ID) > share(core.cfg.MaxBroadcasts) {
				t.Fatalf("seed %d: %s queues %d broadcasts", seed, sn.cfg.ID, q)
			}
			got := core.PopMessages(nil)
			if len(got) > core.cfg.MaxMessages {
				t.Fatalf("seed %d: %s holds %d messages", seed, sn.cfg.ID, len(got))
			}
			if sn == honest {
				continue
			}
			i := slices.IndexFunc(got, func(m Message) bool { return m.From == honest.cfg.ID })
			if i < 0 {
				t.Fatalf("seed %d: %s never delivered the honest broadcast", seed, sn.cfg.ID)
			}
			last = max(last, c.periods(got[i].At)-c.periods(start))
			if sn != victim && (core.Stats().BroadcastsEvicted == 0 || core.Stats().DroppedMessages == 0) {
				t.Fatalf("seed %d: %s counted no eviction: %+v", seed, sn.cfg.ID, core.Stats().UserStats)
			}
			if g, bound := gossip[sn.cfg.ID], periods*3*int(c.period()/core.cfg.GossipInterval); g > bound {
				t.Fatalf("seed %d: %s sent %d gossip packets in %d periods, bound %d", seed, sn.cfg.ID, g, periods, bound)
			}
		}
		t.Logf("seed %d: the honest broadcast reached every member after %.2f periods; %s's stats %+v", seed, last, c.nodes[3].cfg.ID, c.nodes[3].core.Stats().UserStats)
		if last > 1 {
			t.Errorf("seed %d: the honest broadcast took %.2f periods", seed, last)
		}
		if changed != 0 || !c.converged() {
			t.Errorf("seed %d: %d membership events during the flood", seed, changed)
		}
	}
}
