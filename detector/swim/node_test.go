package swim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// memNet is an in-memory lossless network of chanTransports.
type memNet struct {
	mu    sync.Mutex
	ports map[string]*chanTransport
}

type chanTransport struct {
	net  *memNet
	addr string
	ch   chan Inbound
}

func (m *memNet) listen(addr string) *chanTransport {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &chanTransport{net: m, addr: addr, ch: make(chan Inbound, 1024)}
	m.ports[addr] = t
	return t
}

func (m *memNet) close(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	close(m.ports[addr].ch)
	delete(m.ports, addr)
}

func (t *chanTransport) WriteTo(p []byte, addr string) error {
	t.net.mu.Lock()
	defer t.net.mu.Unlock()
	if dst, ok := t.net.ports[addr]; ok {
		select {
		case dst.ch <- Inbound{From: t.addr, Data: p}:
		default:
		}
	}
	return nil
}

func (t *chanTransport) Packets() <-chan Inbound { return t.ch }

// waitFor waits until cond holds, checking after each event of any node;
// it fails the test after timeout.
func waitFor(t *testing.T, nodes []*Node, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Millisecond) // backstop for conditions that change without events
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		case <-tick.C:
		case <-nodes[0].Changed():
		}
	}
}

// runNodes starts 5 nodes whose transports come from listen, joined
// through the first, checks they converge, crashes one and makes another
// leave, and checks the others see both.
func runNodes(t *testing.T, cfg Config, listen func(i int) (Transport, string, func()), timeout time.Duration) {
	const n = 5
	ctx := context.Background()
	var nodes []*Node
	var closers []func()
	var seed string
	for i := range n {
		tr, addr, closeTr := listen(i)
		c := cfg
		c.ID, c.Addr, c.RandSeed = fmt.Sprintf("node%d", i), addr, uint64(i)
		if i > 0 {
			c.Seeds = []string{seed}
		} else {
			seed = addr
		}
		core, err := New(c, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, Start(ctx, core, tr, nil))
		closers = append(closers, closeTr)
	}
	state := func(i int, id string) State {
		m, _ := nodes[i].Member(id)
		return m.State
	}
	waitFor(t, nodes, timeout, "5 live members everywhere", func() bool {
		for _, nd := range nodes {
			if nd.NumLive() != n {
				return false
			}
		}
		return true
	})
	// node4 crashes, node3 leaves.
	nodes[4].Close()
	closers[4]()
	if err := nodes[3].Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	for i := range 3 { // three acknowledgements wanted, and node4 cannot give one
		if state(i, "node3") != StateLeft {
			t.Fatalf("Leave returned before node%d applied it", i)
		}
	}
	waitFor(t, nodes, timeout, "node4 dead and node3 left at nodes 0-2", func() bool {
		for i := range 3 {
			if state(i, "node4") != StateDead || state(i, "node3") != StateLeft {
				return false
			}
		}
		return true
	})
	for i := range 4 {
		nodes[i].Close()
		closers[i]()
	}
	ev := nodes[0].PopEvents(nil)
	kinds := map[EventKind]int{}
	for _, e := range ev {
		kinds[e.Kind]++
	}
	if kinds[EventJoined] != 4 || kinds[EventFailed] != 1 || kinds[EventLeft] != 1 {
		t.Fatalf("node0 events: %v", kinds)
	}
}

// TestNodeSynctest runs the driver on an in-memory network inside a
// synctest bubble: virtual time, memberlist's default timing.
func TestNodeSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		net := &memNet{ports: map[string]*chanTransport{}}
		runNodes(t, Config{}, func(i int) (Transport, string, func()) {
			addr := fmt.Sprintf("mem%d", i)
			return net.listen(addr), addr, func() { net.close(addr) }
		}, time.Minute)
	})
}

// TestUDPEndToEnd runs 5 nodes over real UDP sockets on loopback, with
// fast timing and generous timeouts (real time: nothing is asserted about
// how long it takes).
func TestUDPEndToEnd(t *testing.T) {
	cfg := Config{ProbeInterval: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond,
		GossipInterval: 20 * time.Millisecond, PushPullInterval: time.Second}
	runNodes(t, cfg, func(int) (Transport, string, func()) {
		u, err := ListenUDP("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return u, u.Addr(), func() { u.Close() }
	}, 30*time.Second)
	// Every goroutine the driver and the transport started has ended when
	// their Close returned. (Counting goroutines instead is flaky: the
	// runtime's finalizer goroutine counts while it runs finalizers.) A
	// goroutine may still be returning from the function whose deferred
	// close released Close, so it gets a few chances to be scheduled.
	buf := make([]byte, 1<<20)
	leaked := func() string {
		for g := range strings.SplitSeq(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "swim.(*Node).run") || strings.Contains(g, "swim.(*UDP).read") {
				return g
			}
		}
		return ""
	}
	for range 100 {
		if leaked() == "" {
			return
		}
		runtime.Gosched()
	}
	t.Fatalf("leaked goroutine:\n%s", leaked())
}

// scriptConn is a udpConn whose reads fail or succeed as scripted (a nil
// error delivers a packet), then block until Close.
type scriptConn struct {
	script []error
	closed chan struct{}
	idle   chan struct{} // closed when the script is done

	mu    sync.Mutex
	reads []time.Time
}

var errRead = errors.New("read failed")

func newScriptConn(script ...error) *scriptConn {
	return &scriptConn{script: script, closed: make(chan struct{}), idle: make(chan struct{})}
}

func (c *scriptConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	select {
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	default:
	}
	c.mu.Lock()
	c.reads = append(c.reads, time.Now())
	i := len(c.reads) - 1
	c.mu.Unlock()
	if i < len(c.script) {
		return 1, netip.MustParseAddrPort("127.0.0.1:1"), c.script[i]
	}
	close(c.idle)
	<-c.closed
	return 0, netip.AddrPort{}, net.ErrClosed
}

func (c *scriptConn) WriteToUDPAddrPort(b []byte, _ netip.AddrPort) (int, error) { return len(b), nil }
func (c *scriptConn) LocalAddr() net.Addr                                        { return &net.UDPAddr{} }
func (c *scriptConn) Close() error                                               { close(c.closed); return nil }

// gaps returns the virtual time between consecutive reads.
func (c *scriptConn) gaps() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var d []time.Duration
	for i := 1; i < len(c.reads); i++ {
		d = append(d, c.reads[i].Sub(c.reads[i-1]))
	}
	return d
}

// TestUDPReadBackoff: failed reads are retried after a backoff that
// doubles from 5ms to 1s while they persist and restarts after a packet;
// the error is reported by ReadErr.
func TestUDPReadBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		script := slices.Repeat([]error{errRead}, 10)
		script = append(script, nil, errRead, errRead)
		c := newScriptConn(script...)
		u := newUDP(c)
		<-c.idle
		ms := time.Millisecond
		want := []time.Duration{5 * ms, 10 * ms, 20 * ms, 40 * ms, 80 * ms, 160 * ms, 320 * ms, 640 * ms, time.Second, time.Second,
			0, 5 * ms, 10 * ms}
		if got := c.gaps(); !slices.Equal(got, want) {
			t.Fatalf("gaps between reads %v, want %v", got, want)
		}
		if !errors.Is(u.ReadErr(), errRead) {
			t.Fatalf("ReadErr %v", u.ReadErr())
		}
		u.Close()
		if in := <-u.Packets(); string(in.Data) != "\x00" {
			t.Fatalf("packet %q", in.Data)
		}
	})
}

// TestUDPCloseDuringBackoff: Close ends a read backoff at once.
func TestUDPCloseDuringBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newScriptConn(errRead)
		u := newUDP(c)
		synctest.Wait() // the reader waits out its backoff
		start := time.Now()
		u.Close()
		if d := time.Since(start); d != 0 {
			t.Fatalf("Close waited %v", d)
		}
		if n := len(c.gaps()); n != 0 {
			t.Fatalf("%d reads after the first", n+1)
		}
		if u.ReadErr() == nil {
			t.Fatal("no ReadErr")
		}
	})
}

// TestUDPResolveCache: WriteTo resolves a host name once per resolveTTL
// (failures included), never an ip:port, and caches at most maxResolved
// names.
func TestUDPResolveCache(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		u := newUDP(newScriptConn())
		defer u.Close()
		calls := map[string]int{}
		u.resolve = func(addr string) (netip.AddrPort, error) {
			calls[addr]++
			if addr == "bad:1" {
				return netip.AddrPort{}, errRead
			}
			return netip.MustParseAddrPort("127.0.0.1:1"), nil
		}
		for range 3 {
			if err := u.WriteTo([]byte("x"), "host:1"); err != nil {
				t.Fatal(err)
			}
			if err := u.WriteTo([]byte("x"), "bad:1"); !errors.Is(err, errRead) {
				t.Fatalf("err %v", err)
			}
			if err := u.WriteTo([]byte("x"), "127.0.0.1:2"); err != nil {
				t.Fatal(err)
			}
		}
		if want := map[string]int{"host:1": 1, "bad:1": 1}; !maps.Equal(calls, want) {
			t.Fatalf("resolutions %v, want %v", calls, want)
		}
		<-time.After(resolveTTL)
		for range 2 {
			u.WriteTo([]byte("x"), "host:1")
		}
		if calls["host:1"] != 2 {
			t.Fatalf("%d resolutions of host:1 after the TTL, want 2", calls["host:1"])
		}
		for i := range 2 * maxResolved {
			u.WriteTo([]byte("x"), fmt.Sprintf("h%d:1", i))
			if n := len(u.resolved); n > maxResolved {
				t.Fatalf("%d cached names", n)
			}
		}
	})
}

// blockingTransport is a memNet transport whose WriteTo blocks, after
// block is called, until unblock.
type blockingTransport struct {
	*chanTransport
	gate atomic.Pointer[chan struct{}]
}

func (t *blockingTransport) block() {
	ch := make(chan struct{})
	t.gate.Store(&ch)
}

func (t *blockingTransport) unblock() { close(*t.gate.Swap(nil)) }

func (t *blockingTransport) WriteTo(p []byte, addr string) error {
	if g := t.gate.Load(); g != nil {
		<-*g
	}
	return t.chanTransport.WriteTo(p, addr)
}

// TestNodeAPI: a blocked WriteTo stalls neither Members nor Stats (no
// I/O under the state lock); Health and Stats report the core's;
// events nobody pops are dropped and counted; Leave returns once the
// leave is acknowledged, with ctx's error when it cannot be, and with
// ErrClosed after Close; Close closes Changed.
func TestNodeAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		net := &memNet{ports: map[string]*chanTransport{}}
		start := func(id string, cfg Config, tr Transport) *Node {
			cfg.ID, cfg.Addr = id, id
			if cfg.Seeds == nil && id != "a" {
				cfg.Seeds = []string{"a"}
			}
			core, err := New(cfg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return Start(ctx, core, tr, nil)
		}
		a := start("a", Config{MaxEvents: 2}, net.listen("a"))
		btr := &blockingTransport{chanTransport: net.listen("b")}
		b := start("b", Config{}, btr)
		cn := start("c", Config{}, net.listen("c"))
		time.Sleep(5 * time.Second) // virtual time
		synctest.Wait()
		if a.NumLive() != 3 || b.NumLive() != 3 {
			t.Fatalf("not joined: %d, %d", a.NumLive(), b.NumLive())
		}
		if s := a.Stats(); s.DroppedEvents != 0 || s.PacketsReceived == 0 || a.Health() != 0 {
			t.Fatalf("stats %+v, health %d", s, a.Health())
		}
		// c's two joins fill a's queue of 2; one more event drops one.
		cn.Close()
		net.close("c")
		time.Sleep(time.Minute)
		if got := a.Stats().DroppedEvents; got == 0 {
			t.Fatal("no dropped event counted")
		}
		if ev := a.PopEvents(nil); len(ev) != 2 {
			t.Fatalf("%d events kept, want 2", len(ev))
		}

		btr.block() // b's next send blocks
		time.Sleep(2 * time.Second)
		synctest.Wait()
		done := make(chan struct{})
		go func() {
			b.Members(nil)
			b.Stats()
			b.Health()
			close(done)
		}()
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Fatal("queries wait for a send")
		}
		btr.unblock()

		// a leaves; b acknowledges.
		if err := a.Leave(ctx); err != nil {
			t.Fatal(err)
		}
		if err := a.Leave(ctx); err != nil {
			t.Fatal("a second Leave waits for the same leave:", err)
		}
		if m, _ := b.Member("a"); m.State != StateLeft {
			t.Fatalf("a is %v at b", m.State)
		}
		// e joins b and crashes; b leaves with only e to tell: ctx ends
		// first, then the rounds run out.
		e := start("e", Config{Seeds: []string{"b"}}, net.listen("e"))
		time.Sleep(2 * time.Second)
		if m, _ := b.Member("e"); m.State != StateAlive {
			t.Fatalf("e is %v at b", m.State)
		}
		e.Close()
		net.close("e")
		tctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		if err := b.Leave(tctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Leave: %v", err)
		}
		if err := b.Leave(ctx); !errors.Is(err, ErrLeaveUnacknowledged) {
			t.Fatalf("Leave: %v", err)
		}
		for _, n := range []*Node{a, b} {
			go n.Close()
			for range n.Changed() {
			}
		}
		if err := a.Leave(ctx); err != nil {
			t.Fatal("a's leave was done before Close:", err)
		}
		n := start("d", Config{}, net.listen("d"))
		n.Close()
		if err := n.Leave(ctx); !errors.Is(err, ErrClosed) {
			t.Fatalf("Leave after Close: %v", err)
		}
	})
}
