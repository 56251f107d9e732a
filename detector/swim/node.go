package swim

import (
	"context"
	"errors"
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
// ticks the core at its deadlines and feeds it received packets. It is safe
// for concurrent use. Create it with [Start]; the zero value is not usable.
type Node struct {
	tr      Transport
	log     *slog.Logger
	changed chan struct{}
	cancel  context.CancelFunc
	done    chan struct{}

	mu     sync.Mutex
	core   *Core
	events []Event
}

// Start runs core over tr until ctx is done or Close is called, in one
// goroutine that has ended when Close returns. log may be nil (discard).
// The node owns core from now on: use the Node's methods, not core's.
func Start(ctx context.Context, core *Core, tr Transport, log *slog.Logger) *Node {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(ctx)
	n := &Node{tr: tr, log: log, core: core, changed: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go n.run(ctx)
	return n
}

func (n *Node) run(ctx context.Context) {
	defer close(n.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
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
		}
		n.mu.Lock()
		d := n.core.Deadline()
		n.mu.Unlock()
		if d.IsZero() { // left: nothing more to time
			d = time.Now().Add(time.Hour)
		}
		timer.Reset(time.Until(d))
	}
}

// step runs one call on the core under the lock, sends its packets and
// moves its events to the node's queue.
func (n *Node) step(call func(now time.Time) ([]Packet, error)) {
	n.mu.Lock()
	out, err := call(time.Now())
	if err != nil {
		n.log.Debug("swim: dropped packet", "err", err)
	}
	n.send(out)
	before := len(n.events)
	n.events = n.core.PopEvents(n.events)
	if over := len(n.events) - n.core.cfg.MaxEvents; over > 0 {
		n.events = n.events[over:]
	}
	grew := len(n.events) > before
	n.mu.Unlock()
	if grew {
		select {
		case n.changed <- struct{}{}:
		default:
		}
	}
}

// send writes packets; the caller holds n.mu.
func (n *Node) send(out []Packet) {
	for _, p := range out {
		if err := n.tr.WriteTo(p.Data, p.Addr); err != nil {
			n.log.Debug("swim: send failed", "addr", p.Addr, "err", err)
		}
	}
}

// Changed returns a channel that receives a value after new events were
// queued (coalesced: one value may stand for many events).
func (n *Node) Changed() <-chan struct{} { return n.changed }

// PopEvents appends the queued events (at most Config.MaxEvents, oldest
// dropped) to dst, empties the queue and returns dst.
func (n *Node) PopEvents(dst []Event) []Event {
	n.mu.Lock()
	defer n.mu.Unlock()
	dst = append(dst, n.events...)
	n.events = n.events[:0]
	return dst
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

// UpdateMeta replaces the local metadata (see [Core.UpdateMeta]); it
// returns an error wrapping [ErrMetaSize] if meta is too long.
func (n *Node) UpdateMeta(meta []byte) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.core.UpdateMeta(meta)
}

// Leave announces that the node leaves (see [Core.Leave]); the node then
// stays inert until Close.
func (n *Node) Leave() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.send(n.core.Leave(time.Now()))
}

// Close stops the node's goroutine and waits for it to end. It does not
// close the transport. Close is idempotent.
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
