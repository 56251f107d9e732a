package swim

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/simnet"
)

var long = flag.Bool("long", false, "run the long SWIM simulations (1000 periods, 256 nodes, more seeds)")

// cluster runs SWIM cores on a simulated network, event by event: the next
// event is the earliest of the network's next delivery and the nodes'
// deadlines, so a run is exact in virtual time and deterministic per seed.
type cluster struct {
	t     testing.TB
	seed  uint64
	net   *simnet.Network[[]byte]
	nodes []*simNode
	addr  map[string]*simNode
	start time.Time
	// onEvent, when set, sees every membership event as it happens.
	onEvent func(observer *simNode, e Event)
}

type simNode struct {
	idx      int
	cfg      Config
	core     *Core
	deadline time.Time
	crashed  bool
}

// newCluster creates n nodes named n000, n001, ... whose addresses are
// their names, all joining through n000. cfg is the template config.
func newCluster(t testing.TB, seed uint64, n int, cfg Config, link simnet.Link) *cluster {
	c := &cluster{
		t:    t,
		seed: seed,
		net:  simnet.New[[]byte](simnet.Config{Seed: seed, Default: link}),
		addr: make(map[string]*simNode),
	}
	c.start = c.net.Now()
	for i := range n {
		nc := cfg
		nc.ID = fmt.Sprintf("n%03d", i)
		nc.Addr = nc.ID
		nc.RandSeed = seed<<16 | uint64(i)
		if i > 0 {
			nc.Seeds = []string{"n000"}
		}
		sn := &simNode{idx: i, cfg: nc}
		c.nodes = append(c.nodes, sn)
		c.addr[nc.Addr] = sn
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
	sn.deadline = c.net.Now()
}

func (c *cluster) period() time.Duration { return c.nodes[0].core.cfg.ProbeInterval }

// periods returns the virtual time since the start in protocol periods.
func (c *cluster) periods(at time.Time) float64 {
	return float64(at.Sub(c.start)) / float64(c.period())
}

func (c *cluster) after(sn *simNode, out []Packet) {
	for _, p := range out {
		c.net.Send(sn.cfg.Addr, p.Addr, p.Data)
	}
	for _, e := range sn.core.PopEvents(nil) {
		if c.onEvent != nil {
			c.onEvent(sn, e)
		}
	}
	sn.deadline = sn.core.Deadline()
}

// runFor advances the simulation by d.
func (c *cluster) runFor(d time.Duration) { c.runUntil(c.net.Now().Add(d), nil) }

// runUntil runs events up to t, or until done (checked after every event)
// returns true. It reports whether done did.
func (c *cluster) runUntil(t time.Time, done func() bool) bool {
	for {
		var next *simNode
		for _, sn := range c.nodes {
			if !sn.crashed && !sn.deadline.IsZero() && (next == nil || sn.deadline.Before(next.deadline)) {
				next = sn
			}
		}
		at, ok := c.net.Next()
		switch {
		case ok && !at.After(t) && (next == nil || !at.After(next.deadline)):
			m, _ := c.net.Step()
			sn := c.addr[m.To]
			if sn == nil || sn.crashed {
				continue
			}
			out, err := sn.core.Receive(c.net.Now(), m.From, m.Payload)
			if err != nil {
				c.t.Fatalf("seed %d: %s: %v", c.seed, sn.cfg.ID, err)
			}
			c.after(sn, out)
		case next != nil && !next.deadline.After(t):
			c.net.AdvanceTo(next.deadline, func(simnet.Message[[]byte]) { panic("unreachable") })
			c.after(next, next.core.Tick(c.net.Now()))
		default:
			c.net.AdvanceTo(t, func(simnet.Message[[]byte]) { panic("unreachable") })
			return done != nil && done()
		}
		if done != nil && done() {
			return true
		}
	}
}

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
