// Package simnet is a seeded, deterministic simulated network driven with
// virtual time, for testing distributed protocols without sockets, sleeps or
// goroutines.
//
// Nodes are plain strings. [Network.Send] schedules a message; nothing moves
// until the test advances the virtual clock with [Network.Step],
// [Network.Advance] or [Network.AdvanceTo], which deliver the messages that
// fall due, in order, to a handler. Every link (an ordered pair of nodes) has
// a [Link] configuration: a delay range or function, a loss probability and a
// duplication probability. Random delays reorder messages. Links can be cut
// one way ([Network.Block]), both ways between groups ([Network.Partition]),
// or for a whole node ([Network.Isolate]), and healed again.
//
// # Usage
//
//	net := simnet.New[[]byte](simnet.Config{Seed: seed, Default: simnet.Link{
//		MinDelay: time.Millisecond, MaxDelay: 10 * time.Millisecond, Loss: 0.1,
//	}})
//	net.Send("a", "b", []byte("ping"))
//	net.Advance(time.Second, func(m simnet.Message[[]byte]) {
//		// m.To handles m.Payload at net.Now() == m.At; it may Send replies,
//		// which are delivered in this same call when they fall due in time.
//	})
//
// Nodes with timers (protocol cores with a Deadline, like a SWIM core or a
// replica's anti-entropy) run on a [Sim]: each implements [Process], and
// Sim.Run interleaves deliveries and timers in virtual-time order:
//
//	sim := simnet.NewSim(net)
//	sim.Add("a", nodeA) // Deliver(m), Deadline(), Tick(now)
//	sim.Add("b", nodeB)
//	converged := sim.Run(net.Now().Add(time.Minute), func() bool { ... })
//
// Tests print the seed when they fail ("seed 42: ..."); New with the same
// seed and the same sequence of calls replays the run exactly.
//
// # Guarantees
//
//   - Determinism: the network draws all its randomness from one PCG
//     generator seeded by [Config.Seed], in the order of Send calls. The same
//     seed and the same sequence of calls produce the same deliveries, at the
//     same virtual times, in the same order.
//   - Order: messages are delivered in order of delivery time; ties go to the
//     message sent first. The clock never goes backwards, and a handler
//     always sees Now() equal to the message's delivery time.
//   - A message is delivered only if its link is open both when it is sent
//     and when it arrives: a partition also drops the messages in flight.
//   - Each sent message is dropped with the link's Loss probability and,
//     if it is not dropped, delivered a second time (with its own delay) with
//     the link's Duplicate probability. [Stats] counts every outcome.
//   - A [Sim] runs the event (delivery or process timer) with the earliest
//     time next; ties go to deliveries, then to processes in the order they
//     were added. It is as deterministic as the processes it runs.
//   - Payloads are delivered as sent: the network never copies or inspects
//     them, so a duplicated message shares its payload with the original.
//     Receivers must not modify payloads.
package simnet

import (
	"fmt"
	"github.com/distkit/distkit/internal/minheap"
	"math/rand/v2"
	"time"
)

// Link configures one direction of traffic between two nodes. The zero Link
// delivers every message exactly once, instantly.
type Link struct {
	// MinDelay and MaxDelay bound the one-way delay, drawn uniformly from
	// [MinDelay, MaxDelay]. MaxDelay below MinDelay means MinDelay.
	MinDelay, MaxDelay time.Duration
	// Delay, when set, replaces the uniform draw: it returns the delay for
	// one message using r, the network's generator (for determinism it must
	// draw randomness only from r). A negative result counts as zero.
	Delay func(r *rand.Rand) time.Duration
	// Loss is the probability in [0, 1] that a message is dropped.
	Loss float64
	// Duplicate is the probability in [0, 1] that a delivered message is
	// delivered twice.
	Duplicate float64
}

func (l Link) validate() error {
	if l.Loss < 0 || l.Loss > 1 || l.Duplicate < 0 || l.Duplicate > 1 {
		return fmt.Errorf("simnet: probabilities must be in [0, 1]: loss %v, duplicate %v", l.Loss, l.Duplicate)
	}
	if l.MinDelay < 0 {
		return fmt.Errorf("simnet: negative MinDelay %v", l.MinDelay)
	}
	return nil
}

func (l Link) delay(r *rand.Rand) time.Duration {
	if l.Delay != nil {
		return max(l.Delay(r), 0)
	}
	if l.MaxDelay <= l.MinDelay {
		return l.MinDelay
	}
	return l.MinDelay + time.Duration(r.Int64N(int64(l.MaxDelay-l.MinDelay)+1))
}

// Config configures a [Network]. The zero Config is seed 0 with instant,
// lossless links.
type Config struct {
	// Seed seeds the network's random generator.
	Seed uint64
	// Start is the virtual time at creation. Zero means
	// 2000-01-01T00:00:00Z, so that times print readably.
	Start time.Time
	// Default applies to every link without its own [Network.SetLink].
	Default Link
}

// Message is a message in flight or delivered. It is a plain value.
type Message[P any] struct {
	From, To string
	Payload  P
	// Sent is the virtual time of the Send call; At the delivery time.
	Sent, At time.Time
	// Seq numbers messages in scheduling order, from 1; a duplicate has its
	// own Seq.
	Seq uint64
}

// Stats counts what happened to the messages sent so far. It is a plain
// value (a snapshot).
type Stats struct {
	Sent       int // Send calls
	Lost       int // dropped by a link's Loss
	Duplicated int // extra copies scheduled by a link's Duplicate
	Blocked    int // dropped by a partition, at send or at arrival
	Delivered  int // handed to a handler or returned by Step
}

// Network is the simulated network. Create it with [New]; the zero value is
// not usable. It is not safe for concurrent use: one test goroutine drives
// it, and handlers run synchronously inside the delivering call.
type Network[P any] struct {
	seed    uint64
	rng     *rand.Rand
	now     time.Time
	deflt   Link
	links   map[[2]string]Link
	blocked map[[2]string]bool
	isolate map[string]bool
	queue   minheap.Heap[Message[P]]
	seq     uint64
	stats   Stats
}

// New returns an empty network at cfg.Start. It panics if cfg.Default is
// invalid (a probability outside [0, 1] or a negative delay).
func New[P any](cfg Config) *Network[P] {
	if err := cfg.Default.validate(); err != nil {
		panic(err)
	}
	start := cfg.Start
	if start.IsZero() {
		start = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	}
	return &Network[P]{
		seed:    cfg.Seed,
		rng:     rand.New(rand.NewPCG(cfg.Seed, 0x5eed_0f_51_3e7)),
		now:     start,
		deflt:   cfg.Default,
		links:   make(map[[2]string]Link),
		blocked: make(map[[2]string]bool),
		isolate: make(map[string]bool),
	}
}

// Seed returns the seed the network was created with, for failure messages.
func (n *Network[P]) Seed() uint64 { return n.seed }

// Now returns the virtual time.
func (n *Network[P]) Now() time.Time { return n.now }

// Rand returns the network's generator. Tests may draw from it to make their
// own choices (which node crashes, which keys to write) part of the seeded
// run.
func (n *Network[P]) Rand() *rand.Rand { return n.rng }

// Stats returns the counters so far.
func (n *Network[P]) Stats() Stats { return n.stats }

// Pending returns the number of messages in flight.
func (n *Network[P]) Pending() int { return len(n.queue) }

// SetLink configures the link from -> to, replacing the default for it. It
// panics if l is invalid.
func (n *Network[P]) SetLink(from, to string, l Link) {
	if err := l.validate(); err != nil {
		panic(err)
	}
	n.links[[2]string{from, to}] = l
}

// SetDefault replaces the configuration of every link without its own
// SetLink. It panics if l is invalid.
func (n *Network[P]) SetDefault(l Link) {
	if err := l.validate(); err != nil {
		panic(err)
	}
	n.deflt = l
}

// Link returns the configuration in effect for from -> to.
func (n *Network[P]) Link(from, to string) Link {
	if l, ok := n.links[[2]string{from, to}]; ok {
		return l
	}
	return n.deflt
}

// Block cuts the link from -> to (one way) until Unblock or Heal.
func (n *Network[P]) Block(from, to string) { n.blocked[[2]string{from, to}] = true }

// Unblock reopens the link from -> to.
func (n *Network[P]) Unblock(from, to string) { delete(n.blocked, [2]string{from, to}) }

// Partition cuts every link between a node of a and a node of b, both ways.
func (n *Network[P]) Partition(a, b []string) {
	for _, x := range a {
		for _, y := range b {
			n.Block(x, y)
			n.Block(y, x)
		}
	}
}

// Isolate cuts every link to and from node, including links to nodes that
// appear later, until Rejoin or Heal.
func (n *Network[P]) Isolate(node string) { n.isolate[node] = true }

// Rejoin undoes Isolate(node); links cut by Block or Partition stay cut.
func (n *Network[P]) Rejoin(node string) { delete(n.isolate, node) }

// Heal reopens every link: it undoes every Block, Partition and Isolate.
func (n *Network[P]) Heal() {
	clear(n.blocked)
	clear(n.isolate)
}

// Open reports whether the link from -> to currently carries messages.
func (n *Network[P]) Open(from, to string) bool {
	return !n.isolate[from] && !n.isolate[to] && !n.blocked[[2]string{from, to}]
}

// Send schedules payload from -> to at the current virtual time. Whether it
// is lost, duplicated or delayed is decided now, from the link's
// configuration and the seeded generator.
func (n *Network[P]) Send(from, to string, payload P) {
	n.stats.Sent++
	if !n.Open(from, to) {
		n.stats.Blocked++
		return
	}
	l := n.Link(from, to)
	if l.Loss > 0 && n.rng.Float64() < l.Loss {
		n.stats.Lost++
		return
	}
	n.schedule(from, to, payload, l.delay(n.rng))
	if l.Duplicate > 0 && n.rng.Float64() < l.Duplicate {
		n.stats.Duplicated++
		n.schedule(from, to, payload, l.delay(n.rng))
	}
}

func (n *Network[P]) schedule(from, to string, payload P, d time.Duration) {
	n.seq++
	n.queue.Push(Message[P]{From: from, To: to, Payload: payload, Sent: n.now, At: n.now.Add(d), Seq: n.seq})
}

// Next returns the delivery time of the earliest message in flight, or false
// when none is.
func (n *Network[P]) Next() (time.Time, bool) {
	if len(n.queue) == 0 {
		return time.Time{}, false
	}
	return n.queue[0].At, true
}

// Step advances the clock to the earliest message in flight and returns it,
// or returns false (and leaves the clock alone) when nothing is in flight.
// Messages dropped by a partition at arrival are skipped (and counted).
func (n *Network[P]) Step() (Message[P], bool) {
	for len(n.queue) > 0 {
		if m, ok := n.pop(); ok {
			return m, true
		}
	}
	return Message[P]{}, false
}

// pop advances the clock to the earliest message in flight, which must
// exist, removes it and returns it if its link is open; else it counts it
// as blocked and returns false.
func (n *Network[P]) pop() (Message[P], bool) {
	m := n.queue.Pop()
	n.now = m.At
	if !n.Open(m.From, m.To) {
		n.stats.Blocked++
		return Message[P]{}, false
	}
	n.stats.Delivered++
	return m, true
}

// AdvanceTo delivers, in order, every message due at or before t, including
// messages that handle sends during the call, then sets the clock to t. It
// returns the number of messages delivered. It panics if t is before Now.
func (n *Network[P]) AdvanceTo(t time.Time, handle func(Message[P])) int {
	if t.Before(n.now) {
		panic(fmt.Sprintf("simnet: AdvanceTo(%v) before now %v", t, n.now))
	}
	delivered := 0
	for {
		at, ok := n.Next()
		if !ok || at.After(t) {
			break
		}
		if m, ok := n.pop(); ok {
			delivered++
			handle(m)
		}
	}
	n.now = t
	return delivered
}

// Advance is AdvanceTo(Now().Add(d), handle). It panics if d is negative.
func (n *Network[P]) Advance(d time.Duration, handle func(Message[P])) int {
	if d < 0 {
		panic(fmt.Sprintf("simnet: Advance(%v) with a negative duration", d))
	}
	return n.AdvanceTo(n.now.Add(d), handle)
}

// Before orders messages by delivery time, then Seq: the order the
// network delivers them in.
func (m Message[P]) Before(o Message[P]) bool {
	if c := m.At.Compare(o.At); c != 0 {
		return c < 0
	}
	return m.Seq < o.Seq
}
