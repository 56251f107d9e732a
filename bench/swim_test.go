package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/distkit/distkit/detector/swim"
)

// swimNet is the simulated network both SWIM implementations run on,
// inside a testing/synctest bubble (virtual time): one-way delays uniform
// in 10 to 50 ms, a loss rate, and a slowed node whose packets, sent or
// received, take 5 times longer (50 to 250 ms), as in the swim package's
// own simulations. A stalled node models a process starved of CPU
// (Lifeguard's anomaly): during each of its stalls it processes no
// message, so packets to it wait until the stall ends, and so do the
// packets its timers made it send, and its stream connections fail. It
// counts the packets and bytes the nodes send, streams included.
type swimNet struct {
	mu      sync.Mutex
	rng     *rand.Rand
	loss    float64
	slow    string
	stalls  map[string][]swimStall // each stalled node's stalls, in time order
	down    map[string]bool
	sent    int        // packets written
	bytes   int        // bytes written, in packets and on streams
	streams int        // memberlist stream connections opened
	conns   []net.Conn // the streams' ends, closed when the cluster stops
	stopped bool       // the cluster stopped: no more streams
	inbox   map[string]func(from string, data []byte)
	accept  map[string]chan net.Conn // memberlist nodes' stream listeners
}

func newSwimNet(seed uint64) *swimNet {
	return &swimNet{rng: rand.New(rand.NewPCG(seed, 14)), down: map[string]bool{},
		inbox: map[string]func(string, []byte){}, accept: map[string]chan net.Conn{}}
}

// swimStall is a time during which the stalled node processes nothing.
type swimStall struct{ start, end time.Time }

// stall makes node stall from now until until, for 1 to 5 s at a time
// (uniform), with gapMin to gapMax of normal work between stalls.
func (s *swimNet) stall(node string, until time.Time, gapMin, gapMax time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stalls == nil {
		s.stalls = map[string][]swimStall{}
	}
	span := func(lo, hi time.Duration) time.Duration { return lo + time.Duration(s.rng.Int64N(int64(hi-lo)+1)) }
	var stalls []swimStall
	for t := time.Now().Add(span(gapMin, gapMax)); t.Before(until); {
		end := t.Add(span(time.Second, 5*time.Second))
		stalls = append(stalls, swimStall{t, end})
		t = end.Add(span(gapMin, gapMax))
	}
	s.stalls[node] = stalls
}

// stallEnd returns the end of the stall of node at t, or t if node is not
// stalled then. The caller holds s.mu.
func (s *swimNet) stallEnd(node string, t time.Time) time.Time {
	stalls := s.stalls[node]
	i, _ := slices.BinarySearchFunc(stalls, t, func(st swimStall, t time.Time) int { return st.end.Compare(t) })
	if i < len(stalls) && !t.Before(stalls[i].start) && t.Before(stalls[i].end) {
		return stalls[i].end
	}
	return t
}

// send delivers a copy of data from one address to another after the
// link's delay, unless it is lost or either end is down; a stalled
// sender sends, and a stalled receiver receives, when its stall ends.
func (s *swimNet) send(from, to string, data []byte) {
	s.mu.Lock()
	s.sent++
	s.bytes += len(data)
	deliver := s.inbox[to]
	lost := deliver == nil || s.down[from] || s.down[to] || s.rng.Float64() < s.loss
	delay := 10*time.Millisecond + time.Duration(s.rng.Int64N(int64(40*time.Millisecond)+1))
	if from == s.slow || to == s.slow {
		delay *= 5
	}
	now := time.Now()
	at := s.stallEnd(to, s.stallEnd(from, now).Add(delay))
	s.mu.Unlock()
	if lost {
		return
	}
	buf := slices.Clone(data)
	time.AfterFunc(at.Sub(now), func() { deliver(from, buf) })
}

func (s *swimNet) set(f func(s *swimNet)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// swimCluster is a running cluster of either implementation; verdicts
// are the dead verdicts observers reached, in order.
type swimCluster struct {
	net      *swimNet
	addrs    []string
	numLive  func(i int) int
	stop     func()
	mu       sync.Mutex
	verdicts []swimVerdict
}

type swimVerdict struct {
	observer, target string
	at               time.Time
}

func (c *swimCluster) failed(observer, target string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.verdicts = append(c.verdicts, swimVerdict{observer, target, time.Now()})
}

func swimAddr(i int) string { return fmt.Sprintf("10.0.%d.%d:7946", i/256, i%256) }
func swimID(i int) string   { return fmt.Sprintf("node-%d", i) }

// startDistkitSWIM starts n distkit SWIM nodes (default config, the same
// defaults as memberlist's LAN config) joining through node 0.
func startDistkitSWIM(t *testing.T, nw *swimNet, n int) *swimCluster {
	return startDistkit(t, nw, n, swim.Config{})
}

// startPlainSWIM starts n distkit SWIM nodes with Lifeguard turned off.
func startPlainSWIM(t *testing.T, nw *swimNet, n int) *swimCluster {
	return startDistkit(t, nw, n, swim.Config{DisableLifeguard: true})
}

// startDistkit starts n distkit SWIM nodes configured by base (ID,
// address, seed and seeds set per node) joining through node 0.
func startDistkit(t *testing.T, nw *swimNet, n int, base swim.Config) *swimCluster {
	ctx, cancel := context.WithCancel(t.Context())
	c := &swimCluster{net: nw}
	var nodes []*swim.Node
	var wg sync.WaitGroup
	for i := range n {
		addr := swimAddr(i)
		c.addrs = append(c.addrs, addr)
		tr := &swimTransport{net: nw, addr: addr, packets: make(chan swim.Inbound, 8192)}
		nw.set(func(s *swimNet) {
			s.inbox[addr] = func(from string, data []byte) {
				select {
				case tr.packets <- swim.Inbound{From: from, Data: data}:
				default:
				}
			}
		})
		cfg := base
		cfg.ID, cfg.Addr, cfg.RandSeed = swimID(i), addr, uint64(i)
		if i > 0 {
			cfg.Seeds = []string{swimAddr(0)}
		}
		core, err := swim.New(cfg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		node := swim.Start(ctx, core, tr, nil)
		nodes = append(nodes, node)
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case <-node.Changed():
					for _, e := range node.PopEvents(nil) {
						if e.Kind == swim.EventFailed {
							c.failed(cfg.ID, e.Member.ID)
						}
					}
				}
			}
		})
	}
	c.numLive = func(i int) int { return nodes[i].NumLive() }
	c.stop = func() {
		cancel()
		for _, n := range nodes {
			n.Close()
		}
		wg.Wait()
	}
	return c
}

type swimTransport struct {
	net     *swimNet
	addr    string
	packets chan swim.Inbound
}

func (t *swimTransport) WriteTo(packet []byte, addr string) error {
	t.net.send(t.addr, addr, packet)
	return nil
}

func (t *swimTransport) Packets() <-chan swim.Inbound { return t.packets }

// startMemberlist starts n hashicorp/memberlist nodes with
// DefaultLANConfig, joining through node 0, over mlTransport.
func startMemberlist(t *testing.T, nw *swimNet, n int) *swimCluster {
	return startMemberlistWith(t, nw, n, func(*memberlist.Config) {})
}

// startMemberlistWith is startMemberlist with each node's config changed
// by configure.
func startMemberlistWith(t *testing.T, nw *swimNet, n int, configure func(*memberlist.Config)) *swimCluster {
	c := &swimCluster{net: nw}
	var mls []*memberlist.Memberlist
	for i := range n {
		addr := swimAddr(i)
		c.addrs = append(c.addrs, addr)
		ip := net.IPv4(10, 0, byte(i/256), byte(i%256))
		tr := &mlTransport{net: nw, addr: addr, ip: ip, packets: make(chan *memberlist.Packet, 8192), streams: make(chan net.Conn, 16)}
		nw.set(func(s *swimNet) {
			s.accept[addr] = tr.streams
			s.inbox[addr] = func(from string, data []byte) {
				host, _, _ := net.SplitHostPort(from)
				select {
				case tr.packets <- &memberlist.Packet{Buf: data, From: &net.UDPAddr{IP: net.ParseIP(host), Port: 7946}, Timestamp: time.Now()}:
				default:
				}
			}
		})
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = swimID(i)
		cfg.Transport = tr
		cfg.AdvertiseAddr, cfg.AdvertisePort = ip.String(), 7946
		cfg.LogOutput = io.Discard
		cfg.Events = &mlEvents{c: c, observer: cfg.Name}
		configure(cfg)
		m, err := memberlist.Create(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if i > 0 {
			if _, err := m.Join([]string{swimAddr(0)}); err != nil {
				t.Fatal(err)
			}
		}
		mls = append(mls, m)
	}
	c.numLive = func(i int) int { return mls[i].NumMembers() }
	c.stop = func() {
		for _, m := range mls {
			m.Shutdown()
		}
		// Stopped nodes read their streams no more: close them, as their
		// exit would, so that writers blocked on them return.
		nw.set(func(s *swimNet) {
			s.stopped = true
			for _, c := range s.conns {
				c.Close()
			}
		})
		wait(time.Minute) // probes in flight end at their timeouts
	}
	return c
}

// mlTransport is a memberlist.Transport over swimNet; streams (push-pull
// and TCP fallback pings) are in-memory pipes, neither delayed nor lost.
type mlTransport struct {
	net     *swimNet
	addr    string
	ip      net.IP
	packets chan *memberlist.Packet
	streams chan net.Conn
}

func (t *mlTransport) FinalAdvertiseAddr(string, int) (net.IP, int, error) { return t.ip, 7946, nil }

func (t *mlTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.net.send(t.addr, addr, b)
	return time.Now(), nil
}

func (t *mlTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *mlTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	var dst chan net.Conn
	t.net.set(func(s *swimNet) {
		s.streams++
		now := time.Now()
		stalled := s.stallEnd(t.addr, now) != now || s.stallEnd(addr, now) != now
		if !s.down[t.addr] && !s.down[addr] && !stalled && !s.stopped {
			dst = s.accept[addr]
		}
	})
	if dst == nil {
		return nil, fmt.Errorf("dial %s: unreachable", addr)
	}
	a, b := net.Pipe()
	t.net.set(func(s *swimNet) {
		s.conns = append(s.conns, a, b)
		if s.stopped { // stopped since the check above
			a.Close()
		}
	})
	select {
	case dst <- countedConn{b, t.net}:
		return countedConn{a, t.net}, nil
	case <-time.After(timeout):
		return nil, fmt.Errorf("dial %s: timeout", addr)
	}
}

func (t *mlTransport) StreamCh() <-chan net.Conn { return t.streams }
func (t *mlTransport) Shutdown() error           { return nil }

// countedConn counts the bytes written on a stream in swimNet.bytes.
type countedConn struct {
	net.Conn
	net *swimNet
}

func (c countedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.net.set(func(s *swimNet) { s.bytes += n })
	return n, err
}

type mlEvents struct {
	c        *swimCluster
	observer string
}

func (e *mlEvents) NotifyJoin(*memberlist.Node)    {}
func (e *mlEvents) NotifyUpdate(*memberlist.Node)  {}
func (e *mlEvents) NotifyLeave(n *memberlist.Node) { e.c.failed(e.observer, n.Name) }

// wait lets d of virtual time pass.
func wait(d time.Duration) { <-time.After(d) }

// converge waits, a second at a time, until every node counts n live
// members, and reports whether that happened within limit.
func (c *swimCluster) converge(n int, limit time.Duration) bool {
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); wait(time.Second) {
		if !slices.ContainsFunc(c.addrs, func(a string) bool { return c.numLive(slices.Index(c.addrs, a)) != n }) {
			return true
		}
	}
	return false
}

// swimImpl is a SWIM implementation with its configuration.
type swimImpl struct {
	name  string
	start func(t *testing.T, nw *swimNet, n int) *swimCluster
}

var swimImpls = []swimImpl{{"distkit", startDistkitSWIM}, {"memberlist", startMemberlist}, {"distkit, Lifeguard off", startPlainSWIM}}

// swimLoad is the traffic of a healthy cluster, per member per protocol
// period.
type swimLoad struct{ packets, bytes, streams float64 }

// swimTraffic runs n healthy nodes of impl on a loss-free network and
// returns the packets, bytes (streams included) and stream connections
// per member per protocol period (1 s) over 60 periods, from 30 s after
// convergence (memberlist's first push-pull comes 30 to 60 s after its
// start; both push-pull every 30 s up to 32 members, less often beyond).
// ok is false if the cluster did not converge within 3 minutes.
func swimTraffic(t *testing.T, impl swimImpl, n int) (load swimLoad, ok bool) {
	synctest.Test(t, func(t *testing.T) {
		nw := newSwimNet(uint64(n))
		c := impl.start(t, nw, n)
		defer c.stop()
		if ok = c.converge(n, 3*time.Minute); !ok {
			return
		}
		wait(30 * time.Second)
		var sent0, bytes0, streams0 int
		nw.set(func(s *swimNet) { sent0, bytes0, streams0 = s.sent, s.bytes, s.streams })
		const periods = 60
		wait(periods * time.Second)
		nw.set(func(s *swimNet) {
			per := float64(n * periods)
			load = swimLoad{float64(s.sent-sent0) / per, float64(s.bytes-bytes0) / per, float64(s.streams-streams0) / per}
		})
	})
	return load, ok
}

// swimTrafficRow runs swimTraffic for each of impls at n members and
// returns a table row: title, then each load as format gives it. A
// cluster that does not converge is reported so, and fails the test if
// its implementation is named must.
func swimTrafficRow(t *testing.T, impls []swimImpl, n int, title, must string, format func(swimLoad) string) []string {
	row := []string{title}
	for _, impl := range impls {
		load, ok := swimTraffic(t, impl, n)
		switch {
		case ok:
			row = append(row, format(load))
		case impl.name == must:
			t.Errorf("%s, %d nodes: not converged after 3 minutes", impl.name, n)
			fallthrough
		default:
			row = append(row, "not converged after 3 min")
		}
	}
	return row
}

// swimScenario runs 32 nodes of impl: they converge, then anomaly
// applies for 200 periods, and the dead verdicts (summed over observers)
// about the healthy nodes and about the anomalous ones it returns are
// counted. Then the anomaly ends, and three nodes crash one after the
// other, a minute apart (all their packets lost): it returns the mean
// time the first and the last live observer took to declare a crashed
// node dead, and of how many crashes every live observer did within the
// minute. The mean over three crashes smooths out the luck of when a
// crashed node is first probed.
func swimScenario(t *testing.T, impl swimImpl, anomaly func(s *swimNet, until time.Time) []string) (healthy, anomalous int, first, last time.Duration, detected int) {
	const n = 32
	synctest.Test(t, func(t *testing.T) {
		nw := newSwimNet(32)
		c := impl.start(t, nw, n)
		defer c.stop()
		if !c.converge(n, 2*time.Minute) {
			t.Fatalf("%s: not converged after 2 minutes", impl.name)
		}
		c.mu.Lock()
		c.verdicts = nil
		c.mu.Unlock()
		end := time.Now().Add(swimPeriods * time.Second)
		odd := anomaly(nw, end)
		wait(swimPeriods * time.Second)
		for i, victim := range swimVictims {
			crashed := end.Add(time.Duration(i) * time.Minute)
			nw.set(func(s *swimNet) { s.down[swimAddr(victim)] = true })
			wait(time.Minute)
			c.mu.Lock()
			seen := map[string]bool{}
			var lastAt time.Duration
			for _, v := range c.verdicts {
				switch {
				case i > 0 || !v.at.Before(end):
				case slices.Contains(odd, v.target):
					anomalous++
				default:
					healthy++
				}
				// Observers are the members still up: 31, 30, 29. (A
				// crashed node runs on, cut off, and finds everyone dead.)
				down := slices.ContainsFunc(swimVictims[:i+1], func(x int) bool { return swimID(x) == v.observer })
				if v.target == swimID(victim) && !v.at.Before(crashed) && !down && !seen[v.observer] {
					seen[v.observer] = true
					if len(seen) == 1 {
						first += v.at.Sub(crashed) / time.Duration(len(swimVictims))
					}
					lastAt = v.at.Sub(crashed)
				}
			}
			c.mu.Unlock()
			last += lastAt / time.Duration(len(swimVictims))
			if len(seen) == n-1-i {
				detected++
			}
		}
	})
	return healthy, anomalous, first, last, detected
}

// swimScenarios0 names the first scenario's row.
const swimScenarios0 = "dead verdicts about healthy nodes: normal / slowed (32 members, 200 periods, 10% loss, one node 5x slower)"

// swimVictims are the nodes swimScenario crashes, one a minute, after
// the anomaly.
var swimVictims = []int{5, 17, 29}

// swimPeriods is how long the anomalies of swimScenario last, in 1 s
// protocol periods.
const swimPeriods = 200

// swimLossy is the first scenario: 10% packet loss, and node-1 slowed 5x.
func swimLossy(s *swimNet, _ time.Time) []string {
	s.set(func(s *swimNet) { s.loss, s.slow = 0.1, swimAddr(1) })
	return []string{swimID(1)}
}

// swimStalled returns Lifeguard's anomaly: k members (node-1 to node-k)
// each stall 1 to 5 s at a time, with 1 to 5 s of normal work between
// stalls (see swimNet.stall), on a network that loses 10% of packets.
func swimStalled(k int) func(s *swimNet, until time.Time) []string {
	return func(s *swimNet, until time.Time) []string {
		s.set(func(s *swimNet) { s.loss = 0.1 })
		var odd []string
		for i := 1; i <= k; i++ {
			s.stall(swimAddr(i), until, time.Second, 5*time.Second)
			odd = append(odd, swimID(i))
		}
		return odd
	}
}

// TestSWIMTable runs distkit's SWIM, hashicorp/memberlist and distkit's
// SWIM with Lifeguard off, all with their default (LAN) configuration, on
// the same simulated network in virtual time: traffic per member per
// period at 16, 64 and 256 members, and two scenarios of swimScenario:
// packet loss with a slow node, and a node whose processing stalls 1 to
// 5 s at a time (false dead verdicts per 1000 member-periods: 32 members
// for 200 periods are 6400). It runs only with -long. It asserts for
// distkit: convergence, no dead verdict about a healthy node under loss,
// fewer false dead verdicts than memberlist and than Lifeguard off with a
// stalled node, and the crash detected by every live node within 60 s.
func TestSWIMTable(t *testing.T) {
	if !*long || raceEnabled {
		t.Skip("a minute or more of CPU: runs with -long, without -race (bench/run.sh passes -long)")
	}
	rows := [][]string{}
	for _, n := range []int{16, 64, 256} {
		rows = append(rows, swimTrafficRow(t, swimImpls, n, fmt.Sprintf("packets (streams) per member per period, %d members", n), "distkit",
			func(l swimLoad) string { return fmt.Sprintf("%.2f (%.3f)", l.packets, l.streams) }))
	}
	const memberPeriods = 32 * swimPeriods / 1000.0
	for _, sc := range []struct {
		name    string
		anomaly func(*swimNet, time.Time) []string
		fp      string
	}{
		{"the loss scenario", swimLossy, swimScenarios0},
		{"one stalled member", swimStalled(1), "false dead verdicts per 1000 member-periods, about healthy / stalled members (32 members, 200 periods, 10% loss, one member stalled 1-5 s at a time)"},
		{"8 stalled members", swimStalled(8), "the same with 8 of the 32 members stalled"},
	} {
		fp := []string{sc.fp}
		det := []string{"crashed node declared dead, mean of 3 crashes after " + sc.name + ": first / last observer (crashes detected by all)"}
		var healthy []int
		for i, impl := range swimImpls {
			h, a, first, last, detected := swimScenario(t, impl, sc.anomaly)
			if sc.fp == swimScenarios0 {
				fp = append(fp, fmt.Sprintf("%d / %d", h, a))
			} else {
				fp = append(fp, fmt.Sprintf("%.2f / %.2f (%d / %d)", float64(h)/memberPeriods, float64(a)/memberPeriods, h, a))
			}
			det = append(det, fmt.Sprintf("%v / %v (%d of %d)", first.Round(time.Millisecond), last.Round(time.Millisecond), detected, len(swimVictims)))
			healthy = append(healthy, h)
			if i == 0 && detected < len(swimVictims) {
				t.Errorf("distkit, %s: %d of %d crashes detected by every live node within a minute", sc.name, detected, len(swimVictims))
			}
		}
		switch {
		case sc.fp == swimScenarios0 && healthy[0] > 0:
			t.Errorf("distkit: %d dead verdicts about healthy normal nodes under loss", healthy[0])
		case healthy[0] > healthy[1] || healthy[2] > 0 && healthy[0] >= healthy[2]:
			t.Errorf("%s: false dead verdicts about healthy nodes: distkit %d, memberlist %d, Lifeguard off %d", sc.name, healthy[0], healthy[1], healthy[2])
		}
		rows = append(rows, fp, det)
	}
	header := []string{"measure"}
	for _, impl := range swimImpls {
		header = append(header, impl.name)
	}
	writeTable(t, "SWIM vs memberlist (virtual time, default LAN configs, delays 10-50 ms)", header, rows)
}
