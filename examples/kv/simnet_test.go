package kv

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/distkit/distkit/internal/simnet"
	"github.com/distkit/distkit/quorum"
)

// simNet carries the nodes' RPCs over a [simnet.Network] inside a
// synctest bubble: every request and every response is a message with a
// seeded virtual delay, loss, duplication and partitions. A Call posts a
// request and blocks until its response arrives or its context ends
// (a lost message surfaces as the caller's timeout, as on a real
// network). Delivering a request to a node runs its Handle on a goroutine
// of its own, which posts the response back. A duplicated request is
// handled twice; a duplicated or late response is ignored.
//
// A pump goroutine drives the network in step with the bubble's clock:
// it waits until every other goroutine of the bubble is durably blocked
// (synctest.Wait), sends the messages posted since in a canonical order
// (by sender, receiver and content hash, not by which goroutine got there
// first, so that the network's per-Send fault draws follow the seed),
// then delivers one due message and waits again. With no message
// due it sleeps, on a bubble timer, until the next delivery time or until
// a goroutine posts, so the nodes' own timers (call timeouts, hedging,
// bbolt's batch delay) fire in virtual-time order with the deliveries.
//
// Determinism: the goroutines woken by one event (a delivery, or timers
// due at the same instant) run concurrently, in any order Go picks. The
// canonical send order hides that order from the network's fault draws,
// but not from the nodes' shared state: when two replications of one
// write fail at the same instant, which of them takes the first fallback
// is a race in Node, so where a hint lands, and with it what a later
// handoff sends, can differ between runs of a seed. A sequential history
// without handoff or anti-entropy passes replays exactly up to its final
// convergence (every operation's outcome and dot, the network's
// counters), which TestClusterReplaysSeed checks; without the canonical
// order about half the seeds diverged. Histories with repair passes
// replay approximately, concurrent clients not at all.
//
// Crashes are [simnet.Network.Isolate]: a crashed node's messages in
// flight, and any it would still send, are dropped.
type simNet struct {
	kick chan struct{} // a message was posted: wake the pump

	mu      sync.Mutex
	net     *simnet.Network[envelope]
	link    simnet.Link      // the links' delays and faults
	ids     []string         // every node ever attached
	hosts   map[string]*host // attached nodes
	side    []string         // cut off from the rest; empty: no partition
	outbox  []posted         // posted since the pump last flushed
	due     []simnet.Message[envelope]
	waiting map[uint64]chan envelope // calls awaiting their response
	calls   uint64                   // calls so far, the last call's ID
	ignored int                      // responses nobody waited for
}

// envelope is a message on the simulated network: a request, or the
// response to call.
type envelope struct {
	call     uint64
	response bool
	body     []byte
	err      string // a response's error
}

type posted struct {
	from, to string
	e        envelope
	hash     uint64 // of the body, for the canonical send order
}

// host is an attached node and the requests it is serving.
type host struct {
	node     *Node
	handlers sync.WaitGroup
}

// newSimNet returns a network with seed and link, and starts its pump,
// which t's cleanup stops; by then every call must have returned (the
// cluster closed). It must run inside a synctest bubble.
func newSimNet(t testing.TB, seed uint64, link simnet.Link) *simNet {
	s := &simNet{
		kick:    make(chan struct{}, 1),
		net:     simnet.New[envelope](simnet.Config{Seed: seed, Start: time.Now(), Default: link}),
		link:    link,
		hosts:   map[string]*host{},
		waiting: map[uint64]chan envelope{},
	}
	done := make(chan struct{})
	var pump sync.WaitGroup
	pump.Go(func() { s.pump(done) })
	t.Cleanup(func() {
		close(done)
		pump.Wait()
		if len(s.waiting) != 0 {
			t.Errorf("%d calls still waiting for a response", len(s.waiting))
		}
	})
	return s
}

func (s *simNet) transport(from string) Transport { return simTransport{s, from} }

type simTransport struct {
	s    *simNet
	from string
}

// Call posts req and waits for its response or for ctx.
func (t simTransport) Call(ctx context.Context, to string, req []byte) ([]byte, error) {
	s := t.s
	reply := make(chan envelope, 1)
	s.mu.Lock()
	s.calls++
	id := s.calls
	s.waiting[id] = reply
	s.post(t.from, to, envelope{call: id, body: req})
	s.mu.Unlock()
	select {
	case e := <-reply:
		if e.err != "" {
			return nil, fmt.Errorf("%s -> %s: %s", t.from, to, e.err)
		}
		return e.body, nil
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.waiting, id)
		s.mu.Unlock()
		return nil, fmt.Errorf("%s -> %s: %w", t.from, to, context.Cause(ctx))
	}
}

// post queues e for the pump's next flush; s.mu is held.
func (s *simNet) post(from, to string, e envelope) {
	s.outbox = append(s.outbox, posted{from, to, e, xxhash.Sum64(e.body)})
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// pump drives the network until done is closed.
func (s *simNet) pump(done <-chan struct{}) {
	wake := time.NewTimer(time.Hour)
	wake.Stop()
	for {
		synctest.Wait()
		m, next, ok := s.poll()
		if ok {
			s.deliver(m)
			continue
		}
		if !next.IsZero() {
			wake.Reset(time.Until(next))
		}
		select {
		case <-s.kick:
		case <-wake.C:
		case <-done:
			return
		}
		wake.Stop()
	}
}

// poll brings the network's clock to the bubble's, sends the posted
// messages in canonical order, and returns the next message due now, or
// else the time the next one is due (zero: none in flight).
func (s *simNet) poll() (m simnet.Message[envelope], next time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	collect := func(m simnet.Message[envelope]) { s.due = append(s.due, m) }
	s.net.AdvanceTo(now, collect)
	slices.SortFunc(s.outbox, func(a, b posted) int {
		return cmp.Or(strings.Compare(a.from, b.from), strings.Compare(a.to, b.to),
			cmp.Compare(a.hash, b.hash), strings.Compare(a.e.err, b.e.err))
	})
	for _, p := range s.outbox {
		s.net.Send(p.from, p.to, p.e)
	}
	clear(s.outbox)
	s.outbox = s.outbox[:0]
	s.net.AdvanceTo(now, collect) // zero delays
	if len(s.due) == 0 {
		next, _ = s.net.Next()
		return m, next, false
	}
	m = s.due[0]
	s.due = slices.Delete(s.due, 0, 1)
	return m, next, true
}

// deliver hands m to its receiver: a response to the call waiting for
// it, a request to a handler goroutine of the receiving node.
func (s *simNet) deliver(m simnet.Message[envelope]) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := m.Payload
	if e.response {
		reply, ok := s.waiting[e.call]
		if !ok {
			s.ignored++
			return
		}
		delete(s.waiting, e.call)
		reply <- e
		return
	}
	h := s.hosts[m.To]
	if h == nil || !s.net.Open(m.From, m.To) { // crashed or cut off since it fell due
		return
	}
	h.handlers.Go(func() {
		body, err := h.node.Handle(context.Background(), e.body)
		r := envelope{call: e.call, response: true, body: body}
		if err != nil {
			r.err = err.Error()
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.post(m.To, m.From, r)
	})
}

func (s *simNet) node(id string) *Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h := s.hosts[id]; h != nil {
		return h.node
	}
	return nil
}

func (s *simNet) attach(id string, n *Node) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !slices.Contains(s.ids, id) {
		s.ids = append(s.ids, id)
	}
	s.hosts[id] = &host{node: n}
	s.net.Rejoin(id)
}

func (s *simNet) detach(id string) *Node {
	s.mu.Lock()
	h := s.hosts[id]
	delete(s.hosts, id)
	s.net.Isolate(id)
	s.mu.Unlock()
	h.handlers.Wait()
	return h.node
}

// split cuts the nodes of side off from the others, both ways, replacing
// any earlier split; with no nodes it ends the split.
func (s *simNet) split(side ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, a := range s.side {
		for _, b := range s.ids {
			s.net.Unblock(a, b)
			s.net.Unblock(b, a)
		}
	}
	s.side = slices.Clone(side)
	rest := slices.DeleteFunc(slices.Clone(s.ids), func(id string) bool { return slices.Contains(side, id) })
	s.net.Partition(side, rest)
}

func (s *simNet) heal() {
	s.mu.Lock()
	s.link.Loss, s.link.Duplicate = 0, 0
	s.net.SetDefault(s.link)
	s.mu.Unlock()
	s.split()
}

// stats returns the network's counters.
func (s *simNet) stats() simnet.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.net.Stats()
}

// ignoredResponses returns how many responses reached no caller: late
// ones (the call had ended) and duplicates.
func (s *simNet) ignoredResponses() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ignored
}

// simLink is the network of the seeded histories: 0.5 to 5 ms one way,
// with the given loss and duplication.
func simLink(loss, dup float64) simnet.Link {
	return simnet.Link{MinDelay: 500 * time.Microsecond, MaxDelay: 5 * time.Millisecond, Loss: loss, Duplicate: dup}
}

// newSimCluster starts a cluster of nodes on a [simNet]. It must run
// inside a synctest bubble.
func newSimCluster(t testing.TB, seed uint64, nodes int, q quorum.Config, link simnet.Link) *clusterOn[*simNet] {
	return newClusterOn(t, newSimNet(t, seed, link), nodes, q)
}
