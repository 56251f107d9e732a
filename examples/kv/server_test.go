package kv

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/distkit/distkit/detector/swim"
)

// swimSim runs the SWIM cores of a cluster of servers in virtual time over
// an instant network that drops the packets crossing a partition.
type swimSim struct {
	t     *testing.T
	now   time.Time
	cores []*swim.Core
	addrs []string
	byAdr map[string]int
	cut   map[int]bool // partitioned nodes, by index
}

func newSwimSim(t *testing.T, seed uint64, nodes int, cfg ServerConfig) *swimSim {
	s := &swimSim{t: t, now: time.Unix(1_700_000_000, 0), byAdr: map[string]int{}, cut: map[int]bool{}}
	for i := range nodes {
		s.addrs = append(s.addrs, fmt.Sprintf("10.0.0.%d:7946", i+1))
		s.byAdr[s.addrs[i]] = i
	}
	for i := range nodes {
		c := cfg
		c.ID, c.Join = fmt.Sprintf("n%d", i+1), s.addrs
		sc, err := swimConfig(c, s.addrs[i], nil)
		if err != nil {
			t.Fatal(err)
		}
		sc.RandSeed = seed*1000 + uint64(i)
		core, err := swim.New(sc, s.now)
		if err != nil {
			t.Fatal(err)
		}
		s.cores = append(s.cores, core)
	}
	return s
}

// deliver sends out from node i, and what the receivers answer, at s.now.
func (s *swimSim) deliver(i int, out []swim.Packet) {
	type packet struct {
		from int
		swim.Packet
	}
	var queue []packet
	for _, p := range out {
		queue = append(queue, packet{i, p})
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		to, ok := s.byAdr[p.Addr]
		if !ok || s.cut[p.from] != s.cut[to] {
			continue
		}
		resp, err := s.cores[to].Receive(s.now, s.addrs[p.from], p.Data)
		if err != nil {
			s.t.Fatal(err)
		}
		for _, r := range resp {
			queue = append(queue, packet{to, r})
		}
	}
}

// run advances virtual time to until, ticking every core at its deadlines,
// and stops early (reporting true) as soon as done holds.
func (s *swimSim) run(until time.Time, done func() bool) bool {
	for !done() {
		next, who := until, -1
		for i, c := range s.cores {
			if d := c.Deadline(); d.Before(next) {
				next, who = d, i
			}
		}
		if who < 0 {
			s.now = until
			return false
		}
		if next.After(s.now) { // a deadline already passed is due now
			s.now = next
		}
		s.deliver(who, s.cores[who].Tick(s.now))
	}
	return true
}

// allAlive reports whether every core sees every other member alive.
func (s *swimSim) allAlive() bool {
	for i, c := range s.cores {
		for j := range s.cores {
			if m, ok := c.Member(fmt.Sprintf("n%d", j+1)); i != j && (!ok || m.State != swim.StateAlive) {
				return false
			}
		}
	}
	return true
}

// TestServerSWIMHealsPartition is the regression test of kvdemo failing to
// converge: with the demo's 100ms ProbeInterval the push-pull period stayed
// at SWIM's default 30s, so after a partition healed, the partitioned node
// and the rest kept each other dead (dead members are not probed) for up to
// 30s, and the hints held for them could not be delivered. A partition must
// heal within the 100 probe intervals kvdemo's convergence allows, with
// sealed gossip (a cluster key) as without.
func TestServerSWIMHealsPartition(t *testing.T) {
	const probe = 100 * time.Millisecond
	for seed := range uint64(20) {
		cfg := ServerConfig{ProbeInterval: probe}
		if seed%2 == 1 {
			cfg.ClusterKey = []byte("a secret the five nodes share")
		}
		s := newSwimSim(t, seed, 5, cfg)
		if !s.run(s.now.Add(50*probe), s.allAlive) {
			t.Fatalf("seed %d: the cluster did not form", seed)
		}
		s.cut[3] = true
		if s.run(s.now.Add(50*probe), func() bool { return false }) {
			t.Fatalf("seed %d: unreachable", seed)
		}
		if m, _ := s.cores[0].Member("n4"); m.State != swim.StateDead {
			t.Fatalf("seed %d: n1 sees the partitioned n4 %v, want dead", seed, m.State)
		}
		if m, _ := s.cores[3].Member("n1"); m.State == swim.StateAlive {
			t.Fatalf("seed %d: the partitioned n4 sees n1 alive", seed)
		}
		clear(s.cut)
		healed := s.now
		if !s.run(healed.Add(100*probe), s.allAlive) {
			t.Fatalf("seed %d: partition not healed %v after it ended", seed, 100*probe)
		}
		t.Logf("seed %d: healed in %v", seed, s.now.Sub(healed))
	}
}

// cancelOn is a log handler that calls cancel when a record with message
// msg is logged.
type cancelOn struct {
	msg    string
	cancel context.CancelFunc
}

func (h cancelOn) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOn) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h cancelOn) WithGroup(string) slog.Handler            { return h }
func (h cancelOn) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.cancel()
	}
	return nil
}

// TestShutdownLeavesAfterHandover: a Shutdown whose handover succeeded
// leaves SWIM even when its ctx ends right after, so that the others drop
// the node from their rings rather than keep it as failed (with hints for
// it piling up) once its disk is discarded.
func TestShutdownLeavesAfterHandover(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := StartServer(ServerConfig{ID: "n1", Listen: "127.0.0.1:0", Gossip: "127.0.0.1:0", Data: t.TempDir(),
		Members: []Member{{ID: "n2", Addr: "127.0.0.1:1"}}, Logger: slog.New(cancelOn{"handed over", cancel})})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.swim.Member("n1"); m.State != swim.StateLeft {
		t.Fatalf("after its handover, n1 is %v in SWIM, want left", m.State)
	}
}

// After SWIM's event queue overflowed, the snapshot of its members becomes
// a leave for each member that left and a join for every other, whatever
// its state, so the ring ends where the dropped events would have led it.
func TestResyncEvents(t *testing.T) {
	members := []swim.Member{
		{ID: "a", State: swim.StateAlive, Meta: []byte(`{"http":"a:1"}`)},
		{ID: "b", State: swim.StateLeft},
		{ID: "c", State: swim.StateDead},
		{ID: "d", State: swim.StateSuspect},
	}
	want := []swim.EventKind{swim.EventJoined, swim.EventLeft, swim.EventJoined, swim.EventJoined}
	got := resyncEvents(members)
	if len(got) != len(want) {
		t.Fatalf("%d events for %d members", len(got), len(members))
	}
	for i, e := range got {
		if e.Kind != want[i] || e.Member.ID != members[i].ID || string(e.Member.Meta) != string(members[i].Meta) {
			t.Errorf("event %d = %v %s, want %v %s", i, e.Kind, e.Member.ID, want[i], members[i].ID)
		}
	}
}
