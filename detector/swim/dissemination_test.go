package swim

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/simnet"
)

// disseminate lets a cluster of n converge on link, then has one random
// member broadcast bcasts payloads at once and runs 20 periods. It checks
// that every other member delivers each broadcast exactly once and that
// each member sends each exactly the retransmit limit of times (so that
// n*limit copies go out per broadcast, whatever the loss), and returns
// the periods until the last delivery and the packets sent beyond the
// probes' two per member and period.
func disseminate(t *testing.T, seed uint64, n, bcasts int, link simnet.Link) (last float64, extra int) {
	t.Helper()
	c := newCluster(t, seed, n, Config{}, link)
	c.waitConverged(5 * time.Minute)
	c.runFor(30 * time.Second) // let join traffic drain
	for _, sn := range c.nodes {
		sn.core.PopMessages(nil)
	}
	copies := map[string]int{} // per sender and payload
	packets := 0
	c.onSend = func(from *simNode, p Packet) {
		packets++
		for _, m := range broadcastsIn(t, []Packet{p}) {
			copies[from.cfg.ID+"/"+string(m.payload)]++
		}
	}
	origin := c.nodes[c.net.Rand().IntN(n)]
	start := c.net.Now()
	for i := range bcasts {
		if err := origin.core.Broadcast("", fmt.Appendf(nil, "b%03d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	const periods = 20
	c.runFor(periods * c.period())
	limit := retransmitLimit(4, n)
	var want []string
	for i := range bcasts {
		want = append(want, fmt.Sprintf("b%03d", i))
	}
	for _, sn := range c.nodes {
		var got []string
		for _, m := range sn.core.PopMessages(nil) {
			got = append(got, string(m.Payload))
			last = max(last, c.periods(m.At)-c.periods(start))
		}
		slices.Sort(got)
		if sn == origin && len(got) != 0 || sn != origin && !slices.Equal(got, want) {
			t.Fatalf("seed %d: %s delivered %q", seed, sn.cfg.ID, got)
		}
		for _, p := range want {
			if k := copies[sn.cfg.ID+"/"+p]; k != limit {
				t.Fatalf("seed %d: %s sent %s %d times, want exactly %d", seed, sn.cfg.ID, p, k, limit)
			}
		}
	}
	return last, packets - 2*n*periods
}

// TestBroadcastDissemination: a broadcast reaches every member within a
// bounded number of protocol periods, on a LAN and with 10% loss; every
// member delivers it once and sends it exactly RetransmitMult*
// ceil(log10(n+1)) times, and the traffic it adds is bounded by gossip:
// at most GossipNodes packets per gossip round, and no more rounds than
// the retransmit limit needs.
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
			for _, seed := range seeds(2) {
				bcasts := []int{1, 10}[seed%2]
				last, extra := disseminate(t, seed, n, bcasts, tc.link)
				limit := retransmitLimit(4, n)
				// A gossip packet carries every queued broadcast (ten of
				// a few bytes fit), so a member's are done after
				// ceil(limit/GossipNodes) rounds of GossipNodes packets.
				bound := n * 3 * ((limit + 2) / 3)
				t.Logf("%s, %d members, %d broadcasts, seed %d: all delivered after %.2f periods; %d packets beyond the probes' (bound %d without loss)",
					tc.name, n, bcasts, seed, last, extra, bound)
				if last > tc.periods {
					t.Errorf("%s, %d members, seed %d: last delivery after %.2f periods, want <= %v", tc.name, n, seed, last, tc.periods)
				}
				if tc.link.Loss == 0 && extra > bound {
					t.Errorf("%s, %d members, seed %d: %d packets beyond the probes', bound %d", tc.name, n, seed, extra, bound)
				}
			}
		}
	}
}
