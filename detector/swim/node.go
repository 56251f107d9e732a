package swim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Transport carries packets between nodes. It is defined here, where it is
// consumed; [UDP] implements it.
type Transport interface {
	// WriteTo sends one packet to addr, best effort (it may be lost).
	WriteTo(packet []byte, addr string) error
	// Packets delivers received packets; it is closed when the transport
	// is closed.
	Packets() <-chan Inbound
}

// Inbound is a received packet and the address it came from. It is a
// plain value; the receiver owns Data.
type Inbound struct {
	From string
	Data []byte
}

// Node runs a [Core] over a [Transport] with the real clock: one goroutine
// ticks the core at its deadlines, feeds it received packets and sends
// what it returns, without holding the lock that the Node's other methods
// take (a slow WriteTo, such as one that resolves a host name, stalls
// neither queries nor the protocol's state). It is safe for concurrent
// use. Create it with [Start]; the zero value is not usable.
type Node struct {
	tr      Transport
	log     *slog.Logger
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	leaveReq  chan struct{} // Leave asks the goroutine to leave (buffered)
	wake      chan struct{} // the core's deadline may have moved (buffered)
	sends     chan sendReq  // SendTo's requests
	leaveOnce sync.Once
	leftDone  chan struct{} // closed when the core is done announcing the leave
	out       []Packet      // the goroutine's copy of a call's packets

	mu      sync.Mutex
	core    *Core
	leftErr error // Leave's result, set before leftDone is closed
}

// sendReq is a SendTo call for the node's goroutine.
type sendReq struct {
	id      string
	payload []byte
	err     chan error // buffered
}

// ErrClosed is returned by [Node.Leave] when the node stopped (Close, or
// the context given to Start ended) before the leave was done.
var ErrClosed = errors.New("swim: node closed")

// ErrLeaveUnacknowledged is returned (wrapped) by [Node.Leave] when the
// announcement was sent in every round but fewer members than wanted
// acknowledged it (see [Core.Leave]): the others will learn of the leave
// from those that heard it, or take the node for failed.
var ErrLeaveUnacknowledged = errors.New("swim: leave not acknowledged")

// Start runs core over tr until ctx is done or Close is called, in one
// goroutine that has ended when Close returns. log may be nil (discard).
// The node owns core from now on: use the Node's methods, not core's.
// tr's WriteTo is called from that goroutine only.
func Start(ctx context.Context, core *Core, tr Transport, log *slog.Logger) *Node {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	n := &Node{tr: tr, log: log, core: core, changed: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
		leaveReq: make(chan struct{}, 1), leftDone: make(chan struct{}), wake: make(chan struct{}, 1), sends: make(chan sendReq)}
	go n.run(ctx)
	return n
}

func (n *Node) run(ctx context.Context) {
	defer close(n.done)
	defer close(n.changed)
	defer func() {
		// A Leave that came with the stop still sends its first round.
		select {
		case <-n.leaveReq:
			n.step(func(now time.Time) ([]Packet, error) { return n.core.Leave(now), nil })
		default:
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	leaving := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			n.step(func(now time.Time) ([]Packet, error) { return n.core.Tick(now), nil })
		case in, ok := <-n.tr.Packets():
			if !ok {
				return
			}
			n.step(func(now time.Time) ([]Packet, error) { return n.core.Receive(now, in.From, in.Data) })
		case <-n.leaveReq:
			leaving = true
			n.step(func(now time.Time) ([]Packet, error) { return n.core.Leave(now), nil })
		case r := <-n.sends:
			n.step(func(now time.Time) ([]Packet, error) {
				out, err := n.core.SendTo(now, r.id, r.payload)
				r.err <- err
				return out, nil
			})
		case <-n.wake:
		}
		n.mu.Lock()
		d := n.core.Deadline()
		if acked, need, done := n.core.LeaveStatus(); leaving && done {
			leaving = false
			if acked < need {
				n.leftErr = fmt.Errorf("%w: by %d of the %d members wanted", ErrLeaveUnacknowledged, acked, need)
			}
			close(n.leftDone)
		}
		n.mu.Unlock()
		if d.IsZero() { // left: nothing more to time
			d = time.Now().Add(time.Hour)
		}
		timer.Reset(time.Until(d))
	}
}

// step runs one call on the core under the lock, and then, without the
// lock, sends its packets and signals Changed if it queued events or
// messages.
func (n *Node) step(call func(now time.Time) ([]Packet, error)) {
	n.mu.Lock()
	before := n.core.queued
	out, err := call(time.Now())
	n.out = append(n.out[:0], out...) // the core reuses its slice; the Data are ours
	grew := n.core.queued != before
	n.mu.Unlock()
	if err != nil {
		n.log.Debug("swim: dropped packet", "err", err)
	}
	for i, p := range n.out {
		if err := n.tr.WriteTo(p.Data, p.Addr); err != nil {
			n.log.Debug("swim: send failed", "addr", p.Addr, "err", err)
		}
		n.out[i] = Packet{}
	}
	if grew {
		select {
		case n.changed <- struct{}{}:
		default:
		}
	}
}

// Changed returns a channel that receives a value after new events or
// user messages were queued (coalesced: one value may stand for many).
// It is closed when the node stops (Close, or the end of Start's
// context), so
//
//	for range node.Changed() { events = node.PopEvents(events[:0]); ... }
//
// ends then; events and messages queued before remain for PopEvents and
// PopMessages. The protocol never waits for the consumer.
func (n *Node) Changed() <-chan struct{} { return n.changed }

// PopEvents appends the queued events to dst, empties the queue and
// returns dst (see [Core.PopEvents]: at most Config.MaxEvents are kept,
// and an EventResync says that older ones were dropped).
func (n *Node) PopEvents(dst []Event) []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.PopEvents(dst)
}

// PopMessages appends the received user broadcasts and messages to dst,
// empties the queue and returns dst (see [Core.PopMessages]).
func (n *Node) PopMessages(dst []Message) []Message {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.PopMessages(dst)
}

// Broadcast queues payload for dissemination to every member (see
// [Core.Broadcast]) and returns a channel that is closed once the
// broadcast has left the local queue: sent the retransmit limit of times,
// invalidated by a newer one of its name, or evicted (or never, if the
// node stops first). The node keeps a copy of payload. Errors are
// [Core.Broadcast]'s, and [ErrClosed] once the node stopped.
func (n *Node) Broadcast(name string, payload []byte) (<-chan struct{}, error) {
	select {
	case <-n.done:
		return nil, ErrClosed
	default:
	}
	done := make(chan struct{})
	n.mu.Lock()
	err := n.core.Broadcast(name, payload, func() { close(done) })
	n.mu.Unlock()
	if err != nil {
		return nil, err
	}
	n.poke()
	return done, nil
}

// SendTo sends payload to the live member id alone, best effort (see
// [Core.SendTo]), and returns once the packet was handed to the
// transport. It returns [Core.SendTo]'s errors, ctx's error if ctx ends
// before the node's goroutine took the request, or [ErrClosed] if the
// node stopped.
func (n *Node) SendTo(ctx context.Context, id string, payload []byte) error {
	r := sendReq{id: id, payload: payload, err: make(chan error, 1)}
	select {
	case n.sends <- r:
		return <-r.err // the goroutine answers before anything else
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
		return ErrClosed
	}
}

// poke makes the node's goroutine look at the core's deadline again.
func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// Members appends every known member to dst (see [Core.Members]).
func (n *Node) Members(dst []Member) []Member {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Members(dst)
}

// Member returns the member with the given ID, if known.
func (n *Node) Member(id string) (Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Member(id)
}

// NumLive returns the number of alive and suspect members, self included.
func (n *Node) NumLive() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.NumLive()
}

// Health returns Lifeguard's local health score (see [Core.Health]).
func (n *Node) Health() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Health()
}

// Stats returns the core's counters (see [Core.Stats]).
func (n *Node) Stats() Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.Stats()
}

// UpdateMeta replaces the local metadata (see [Core.UpdateMeta]) and
// disseminates it at once; it returns an error wrapping [ErrMetaSize] if
// meta is too long.
func (n *Node) UpdateMeta(meta []byte) error {
	n.mu.Lock()
	err := n.core.UpdateMeta(meta)
	n.mu.Unlock()
	n.poke()
	return err
}

// Leave announces that the node leaves (see [Core.Leave]) and waits until
// min(GossipNodes, live members) members acknowledged the announcement,
// which they pass on to the others; the node then takes no part in the
// protocol until Close. Leave returns nil then; an error wrapping
// [ErrLeaveUnacknowledged] if every round of the announcement was sent
// with fewer acknowledgements; ctx's error if ctx ends first (the
// announcement goes on until Close, and its first round is sent even if
// Close comes at once); or [ErrClosed] if the node had stopped. Calling
// it again waits for the same leave.
func (n *Node) Leave(ctx context.Context) error {
	n.leaveOnce.Do(func() { n.leaveReq <- struct{}{} })
	select {
	case <-n.leftDone:
	case <-ctx.Done():
		return ctx.Err()
	case <-n.done:
	}
	select {
	case <-n.leftDone:
		return n.leftErr
	default:
		return ErrClosed
	}
}

// Close stops the node's goroutine and waits for it to end; Changed is
// closed then. It does not close the transport. Close is idempotent.
func (n *Node) Close() error {
	n.cancel()
	<-n.done
	return nil
}

// UDP is a [Transport] over one UDP socket. It is safe for concurrent use.
type UDP struct {
	conn      udpConn
	packets   chan Inbound
	closing   chan struct{} // closed by Close: ends a read backoff at once
	closeOnce sync.Once
	done      chan struct{}
	readErr   atomic.Pointer[error]

	resolve  func(addr string) (netip.AddrPort, error)
	mu       sync.Mutex
	resolved map[string]resolution // WriteTo's cache of host names
}

// resolution is a cached resolution of a host name, or its failure.
type resolution struct {
	ap      netip.AddrPort
	err     error
	expires time.Time
}

// WriteTo reuses a host name's resolution, or its failure, for resolveTTL,
// and caches at most maxResolved names.
const (
	resolveTTL  = 5 * time.Second
	maxResolved = 1024
)

// udpConn is the part of *net.UDPConn that UDP uses.
type udpConn interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	LocalAddr() net.Addr
	Close() error
}

var _ Transport = (*UDP)(nil)

// ListenUDP binds addr (host:port; port 0 picks a free one) and starts one
// goroutine that reads packets of up to 64KiB; it ends when Close returns.
func ListenUDP(addr string) (*UDP, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	return newUDP(conn), nil
}

// newUDP starts reading conn.
func newUDP(conn udpConn) *UDP {
	u := &UDP{conn: conn, packets: make(chan Inbound, 256), closing: make(chan struct{}), done: make(chan struct{}),
		resolve: resolveUDP, resolved: make(map[string]resolution)}
	go u.read()
	return u
}

// The reader's backoff after a failed read: minReadBackoff, doubled for
// each further consecutive failure up to maxReadBackoff, reset by a
// successful read. A transient error (such as an ICMP error that some
// systems report on the socket) costs one short pause; a persistent one
// costs one read per maxReadBackoff instead of a busy loop.
const (
	minReadBackoff = 5 * time.Millisecond
	maxReadBackoff = time.Second
)

// read delivers packets until the socket is closed. It retries failed
// reads after a backoff (see minReadBackoff) that Close interrupts, and
// records the error for ReadErr.
func (u *UDP) read() {
	defer close(u.done)
	defer close(u.packets)
	buf := make([]byte, 64<<10)
	var backoff time.Duration
	for {
		n, from, err := u.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			u.readErr.Store(&err)
			backoff = min(max(2*backoff, minReadBackoff), maxReadBackoff)
			select {
			case <-time.After(backoff):
			case <-u.closing:
				return
			}
			continue
		}
		backoff = 0
		select {
		case u.packets <- Inbound{From: from.String(), Data: append([]byte(nil), buf[:n]...)}:
		default: // the node is behind: drop, as the network could
		}
	}
}

// ReadErr returns the last error a read of the socket failed with, other
// than its closure, or nil if none did. The reader retries after such
// errors, pausing between 5ms and 1s (doubling while they persist): a
// non-nil ReadErr with no packets arriving means a broken socket.
func (u *UDP) ReadErr() error {
	if p := u.readErr.Load(); p != nil {
		return *p
	}
	return nil
}

// Addr returns the bound address, to use as Config.Addr when the socket
// is bound to a specific IP. Bound to a wildcard ("0.0.0.0:7946") it
// returns an unspecified address such as "[::]:7946", which other nodes
// cannot send to: set Config.Addr to the address they reach instead.
func (u *UDP) Addr() string { return u.conn.LocalAddr().String() }

// WriteTo sends packet to addr, an ip:port or a resolvable host:port. A
// host name's resolution (or its failure) is reused for 5 seconds, so
// sending does not wait for the resolver each time.
func (u *UDP) WriteTo(packet []byte, addr string) error {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		if ap, err = u.resolveCached(addr); err != nil {
			return err
		}
	}
	_, err = u.conn.WriteToUDPAddrPort(packet, ap)
	return err
}

// resolveCached resolves addr through the cache, without holding u.mu
// while the resolver runs. A full cache first forgets its expired
// entries, and all of them if none has expired.
func (u *UDP) resolveCached(addr string) (netip.AddrPort, error) {
	now := time.Now()
	u.mu.Lock()
	r, ok := u.resolved[addr]
	u.mu.Unlock()
	if ok && now.Before(r.expires) {
		return r.ap, r.err
	}
	ap, err := u.resolve(addr)
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.resolved) >= maxResolved {
		maps.DeleteFunc(u.resolved, func(_ string, r resolution) bool { return !now.Before(r.expires) })
		if len(u.resolved) >= maxResolved {
			clear(u.resolved)
		}
	}
	u.resolved[addr] = resolution{ap: ap, err: err, expires: now.Add(resolveTTL)}
	return ap, err
}

// resolveUDP resolves a host:port with the system resolver.
func resolveUDP(addr string) (netip.AddrPort, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return ua.AddrPort(), nil
}

// Packets returns the received packets; the channel is closed by Close.
func (u *UDP) Packets() <-chan Inbound { return u.packets }

// Close closes the socket and waits for the reading goroutine to end.
func (u *UDP) Close() error {
	u.closeOnce.Do(func() { close(u.closing) })
	err := u.conn.Close()
	<-u.done
	return err
}
