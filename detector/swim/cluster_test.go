package swim

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/simnet"
)

var (
	long     = flag.Bool("long", false, "run the long SWIM simulations (1000 periods, 256 nodes, more seeds)")
	onlySeed = flag.Uint64("seed", 0, "replay only this simulation seed (as printed by a failure)")
)

// cluster runs SWIM cores on a simulated network, event by event: the next
// event is the earliest of the network's next delivery and the nodes'
// deadlines, so a run is exact in virtual time and deterministic per seed.
type cluster struct {
	t     testing.TB
	seed  uint64
	net   *simnet.Network[[]byte]
	sim   *simnet.Sim[[]byte]
	nodes []*simNode
	start time.Time
	// onEvent, when set, sees every membership event as it happens.
	onEvent func(observer *simNode, e Event)
	// onSend, when set, sees every packet a node sends.
	onSend func(from *simNode, p Packet)
}

// simNode is a SWIM core as a simnet.Process.
type simNode struct {
	c       *cluster
	cfg     Config
	core    *Core
	crashed bool
}

func (sn *simNode) Deliver(m simnet.Message[[]byte]) {
	if sn.crashed {
		return
	}
	out, err := sn.core.Receive(m.At, m.From, m.Payload)
	if err != nil {
		sn.c.t.Fatalf("seed %d: %s: %v", sn.c.seed, sn.cfg.ID, err)
	}
	sn.after(out)
}

func (sn *simNode) Deadline() time.Time {
	if sn.crashed {
		return time.Time{}
	}
	return sn.core.Deadline()
}

func (sn *simNode) Tick(now time.Time) { sn.after(sn.core.Tick(now)) }

// after sends a call's packets and passes its events on.
func (sn *simNode) after(out []Packet) {
	for _, p := range out {
		if sn.c.onSend != nil {
			sn.c.onSend(sn, p)
		}
		sn.c.net.Send(sn.cfg.Addr, p.Addr, p.Data)
	}
	for _, e := range sn.core.PopEvents(nil) {
		if sn.c.onEvent != nil {
			sn.c.onEvent(sn, e)
		}
	}
}

// newCluster creates n nodes named n000, n001, ... whose addresses are
// their names, all joining through n000. cfg is the template config.
func newCluster(t testing.TB, seed uint64, n int, cfg Config, link simnet.Link) *cluster {
	c := &cluster{
		t:    t,
		seed: seed,
		net:  simnet.New[[]byte](simnet.Config{Seed: seed, Default: link}),
	}
	c.sim = simnet.NewSim(c.net)
	c.start = c.net.Now()
	for i := range n {
		nc := cfg
		nc.ID = fmt.Sprintf("n%03d", i)
		nc.Addr = nc.ID
		nc.RandSeed = seed<<16 | uint64(i)
		if i > 0 {
			nc.Seeds = []string{"n000"}
		}
		sn := &simNode{c: c, cfg: nc}
		c.nodes = append(c.nodes, sn)
		c.sim.Add(nc.Addr, sn)
		c.boot(sn)
	}
	return c
}

// boot (re)starts sn with a fresh core.
func (c *cluster) boot(sn *simNode) {
	core, err := New(sn.cfg, c.net.Now())
	if err != nil {
		c.t.Fatalf("seed %d: %v", c.seed, err)
	}
	sn.core, sn.crashed = core, false
}

func (c *cluster) period() time.Duration { return c.nodes[0].core.cfg.ProbeInterval }

// periods returns the virtual time since the start in protocol periods.
func (c *cluster) periods(at time.Time) float64 {
	return float64(at.Sub(c.start)) / float64(c.period())
}

// runFor advances the simulation by d.
func (c *cluster) runFor(d time.Duration) { c.runUntil(c.net.Now().Add(d), nil) }

// runUntil runs events up to t, or until done (checked after every event)
// returns true. It reports whether done did.
func (c *cluster) runUntil(t time.Time, done func() bool) bool { return c.sim.Run(t, done) }

// converged reports whether every running node sees exactly the running
// nodes as alive.
func (c *cluster) converged() bool {
	up := 0
	for _, sn := range c.nodes {
		if !sn.crashed {
			up++
		}
	}
	for _, sn := range c.nodes {
		if sn.crashed {
			continue
		}
		if sn.core.NumLive() != up {
			return false
		}
		for _, o := range c.nodes {
			if o.crashed {
				continue
			}
			m, ok := sn.core.Member(o.cfg.ID)
			if !ok || m.State != StateAlive {
				return false
			}
		}
	}
	return true
}

// waitConverged runs until the cluster converges, failing the test after
// limit.
func (c *cluster) waitConverged(limit time.Duration) {
	c.t.Helper()
	if !c.runUntil(c.net.Now().Add(limit), c.converged) {
		c.t.Fatalf("seed %d: not converged after %v", c.seed, limit)
	}
}

// slow makes every link to and from node k times slower.
func (c *cluster) slow(node string, k int, base simnet.Link) {
	slowLink := base
	slowLink.Delay = func(r *rand.Rand) time.Duration {
		return time.Duration(k) * (base.MinDelay + time.Duration(r.Int64N(int64(base.MaxDelay-base.MinDelay)+1)))
	}
	for _, o := range c.nodes {
		if o.cfg.Addr != node {
			c.net.SetLink(node, o.cfg.Addr, slowLink)
			c.net.SetLink(o.cfg.Addr, node, slowLink)
		}
	}
}

func TestClusterJoins(t *testing.T) {
	for seed := range uint64(3) {
		c := newCluster(t, seed, 16, Config{}, simnet.Link{MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond})
		failed := 0
		c.onEvent = func(_ *simNode, e Event) {
			if e.Kind == EventFailed || e.Kind == EventSuspected {
				failed++
			}
		}
		c.waitConverged(30 * time.Second)
		t.Logf("seed %d: converged after %.1f periods", seed, c.periods(c.net.Now()))
		c.runFor(30 * time.Second)
		if failed != 0 || !c.converged() {
			t.Fatalf("seed %d: %d suspicions or failures in a healthy cluster", seed, failed)
		}
	}
}

// lan is the network of the simulations: 1 to 10ms one way.
var lan = simnet.Link{MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond}

// seeds returns the seeds to run: n in CI, 10n with -long, or the one
// given with -seed.
func seeds(n int) []uint64 {
	if *onlySeed != 0 {
		return []uint64{*onlySeed}
	}
	if *long {
		n *= 10
	}
	s := make([]uint64, n)
	for i := range s {
		s[i] = uint64(i) + 1
	}
	return s
}

// quantile returns the q-quantile of sorted xs (nearest rank).
func quantile(xs []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}

// crashOne starts a cluster of n with cfg (the default Config if zero) on
// the LAN, lets it converge and settle for 5 s, and crashes a random node
// other than the seed.
func crashOne(t *testing.T, seed uint64, n int, cfg Config) (c *cluster, victim *simNode, crashAt time.Time) {
	c = newCluster(t, seed, n, cfg, lan)
	c.waitConverged(time.Minute)
	c.runFor(5 * time.Second)
	victim = c.nodes[1+c.net.Rand().IntN(n-1)]
	victim.crashed = true
	return c, victim, c.net.Now()
}

// TestCrashDetected64 crashes one node of 64: every other node declares it
// dead, and no other node is ever suspected. It reports the time to the
// first suspicion anywhere (SWIM's first detection, e/(e-1) ~ 1.58 periods
// expected after the crash plus up to one period until the next probe of
// the node ends) and the median and p99 over all nodes of the time to the
// dead verdict, without and with a keyring.
func TestCrashDetected64(t *testing.T) {
	kr, err := NewKeyring(key(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []Config{{}, {Keyring: kr, Label: "prod"}} {
		crashDetected(t, cfg)
	}
}

func crashDetected(t *testing.T, cfg Config) {
	var firsts, all []float64
	for _, seed := range seeds(3) {
		c, victim, crashAt := crashOne(t, seed, 64, cfg)
		first := time.Time{}
		verdicts := map[string]time.Time{}
		c.onEvent = func(obs *simNode, e Event) {
			if e.Member.ID != victim.cfg.ID {
				if e.Kind == EventSuspected || e.Kind == EventFailed {
					t.Fatalf("seed %d: %s: false %s of %s", seed, obs.cfg.ID, e.Kind, e.Member.ID)
				}
				return
			}
			switch e.Kind {
			case EventSuspected:
				if first.IsZero() {
					first = e.At
				}
			case EventFailed:
				verdicts[obs.cfg.ID] = e.At
			}
		}
		if !c.runUntil(crashAt.Add(2*time.Minute), func() bool { return len(verdicts) == 63 }) {
			t.Fatalf("seed %d: %d of 63 nodes declared %s dead", seed, len(verdicts), victim.cfg.ID)
		}
		firsts = append(firsts, c.periods(first)-c.periods(crashAt))
		for _, at := range verdicts {
			all = append(all, c.periods(at)-c.periods(crashAt))
		}
	}
	slices.Sort(firsts)
	slices.Sort(all)
	t.Logf("64 nodes, keyring %v, %d seeds: first suspicion median %.2f periods (max %.2f); dead verdict median %.2f, p99 %.2f, max %.2f periods",
		cfg.Keyring != nil, len(firsts), quantile(firsts, 0.5), firsts[len(firsts)-1], quantile(all, 0.5), quantile(all, 0.99), all[len(all)-1])
}

// falsePositives runs n healthy nodes for the given periods on a network
// that loses 10% of packets (one way delays 10 to 50ms) and where every
// packet to or from node n001 takes 5x longer (50 to 250ms: a node too busy
// to process its packets in time), and returns the dead verdicts
// (EventFailed, summed over all observers) about the normal nodes and
// about the slow node, and the suspicions of normal nodes.
func falsePositives(t *testing.T, seed uint64, n, periods int, lifeguard bool) (normal, slow, suspicions int) {
	c := newCluster(t, seed, n, Config{DisableLifeguard: !lifeguard}, lan)
	c.waitConverged(time.Minute)
	lossy := simnet.Link{MinDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond, Loss: 0.1}
	c.net.SetDefault(lossy)
	c.slow("n001", 5, lossy)
	c.onEvent = func(_ *simNode, e Event) {
		switch {
		case e.Kind == EventFailed && e.Member.ID == "n001":
			slow++
		case e.Kind == EventFailed:
			normal++
		case e.Kind == EventSuspected && e.Member.ID != "n001":
			suspicions++
		}
	}
	c.runFor(time.Duration(periods) * c.period())
	return normal, slow, suspicions
}

// TestNoFalseDeadUnderLoss: with 10% packet loss and one node slowed 5x,
// Lifeguard (with distkit's verification of weakly confirmed suspicions)
// declares no healthy node dead, slow one included. The count with
// Lifeguard off is reported for comparison. CI runs 32 nodes for 200
// periods on 2 seeds; -long runs 64 nodes for 1000 periods on 20 seeds.
func TestNoFalseDeadUnderLoss(t *testing.T) {
	n, periods := 32, 200
	if *long {
		n, periods = 64, 1000
	}
	var off int
	for _, seed := range seeds(2) {
		normal, slow, susp := falsePositives(t, seed, n, periods, true)
		offNormal, offSlow, offSusp := falsePositives(t, seed, n, periods, false)
		t.Logf("seed %d, %d nodes, %d periods: false dead verdicts (normal nodes / slow node), suspicions of normal nodes: Lifeguard on %d / %d, %d; off %d / %d, %d",
			seed, n, periods, normal, slow, susp, offNormal, offSlow, offSusp)
		if normal+slow != 0 {
			t.Errorf("seed %d: %d false dead verdicts with Lifeguard on", seed, normal+slow)
		}
		off += offNormal + offSlow
	}
	t.Logf("false dead verdicts with Lifeguard off, all seeds: %d", off)
}

// TestPartitionHeals splits 16 nodes 8/8 until each side declares the
// other dead, heals the network, and checks that membership converges
// (push-pull reaches the dead side and each side refutes); then a node
// restarts with incarnation 0 and comes back alive at a higher one.
func TestPartitionHeals(t *testing.T) {
	for _, seed := range seeds(3) {
		c := newCluster(t, seed, 16, Config{PushPullInterval: 10 * time.Second}, lan)
		c.waitConverged(time.Minute)
		var a, b []string
		for i, sn := range c.nodes {
			if i < 8 {
				a = append(a, sn.cfg.Addr)
			} else {
				b = append(b, sn.cfg.Addr)
			}
		}
		c.net.Partition(a, b)
		split := func() bool {
			for _, sn := range c.nodes {
				if sn.core.NumLive() != 8 {
					return false
				}
			}
			return true
		}
		if !c.runUntil(c.net.Now().Add(5*time.Minute), split) {
			t.Fatalf("seed %d: the sides did not declare each other dead", seed)
		}
		splitAt := c.periods(c.net.Now())
		c.net.Heal()
		c.waitConverged(5 * time.Minute)
		t.Logf("seed %d: split complete at %.1f periods, converged %.1f periods after the heal", seed, splitAt, c.periods(c.net.Now())-splitAt)

		sn := c.nodes[5]
		before, _ := c.nodes[0].core.Member(sn.cfg.ID)
		sn.crashed = true
		if !c.runUntil(c.net.Now().Add(5*time.Minute), func() bool {
			m, _ := c.nodes[0].core.Member(sn.cfg.ID)
			return m.State == StateDead
		}) {
			t.Fatalf("seed %d: crashed node not declared dead", seed)
		}
		c.boot(sn) // restarts at incarnation 0
		c.waitConverged(5 * time.Minute)
		after, _ := c.nodes[0].core.Member(sn.cfg.ID)
		if after.Incarnation <= before.Incarnation {
			t.Fatalf("seed %d: rejoined at incarnation %d, was %d", seed, after.Incarnation, before.Incarnation)
		}
	}
}

// TestMessagesPerPeriod counts the packets sent per member per protocol
// period in a healthy, converged cluster: SWIM's load is constant in the
// cluster size. The table is logged; the test requires every size within
// 25% of the smallest cluster's rate. CI runs 16 to 64 members; -long adds
// 128 and 256.
func TestMessagesPerPeriod(t *testing.T) {
	sizes := []int{16, 32, 64}
	if *long {
		sizes = append(sizes, 128, 256)
	}
	const periods = 40
	var base float64
	for _, n := range sizes {
		c := newCluster(t, 1, n, Config{}, lan)
		c.waitConverged(5 * time.Minute)
		c.runFor(30 * time.Second) // let join traffic drain
		start := c.net.Stats().Sent
		c.runFor(periods * c.period())
		rate := float64(c.net.Stats().Sent-start) / float64(n*periods)
		t.Logf("%4d members: %.2f packets per member per period", n, rate)
		if base == 0 {
			base = rate
		}
		if rate > 1.25*base || rate < base/1.25 {
			t.Errorf("%d members: %.2f packets per member per period, %.2f at %d", n, rate, base, sizes[0])
		}
	}
}
