package kv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Multiplexed replica RPCs. With [HTTPTransport.Mux], a node's replica
// RPCs to a peer share one long-lived connection, opened by an HTTP
// Upgrade on the peer's API listener (so its address, TLS and cluster
// keys are those of the HTTP path), which carries many requests at once,
// answered in any order:
//
//	GET /internal/mux HTTP/1.1
//	Connection: Upgrade
//	Upgrade: kv-mux/1
//	X-KV-Mux-Nonce: <32 hex digits: the client's 16 random bytes>
//	X-KV-Auth: <the HeaderAuth of the 16 nonce bytes as the body>
//
// is answered "101 Switching Protocols" with the server's own nonce in
// X-KV-Mux-Nonce, and from then on each side sends frames:
//
//	length (4 bytes, big-endian: the bytes after it)
//	id     (8 bytes: the request's number on the connection, from 1;
//	        0 for a server's go-away)
//	arg    (8 bytes: a request's timeout in ns, in (0, MaxBatchTimeout];
//	        an answer's status, 100–599; a go-away's last request read)
//	body   (a request, an encoded response, or an error's text)
//	mac    (32 bytes, with a cluster key: HMAC-SHA256 under the key that
//	        authenticated the upgrade of the direction's label, both
//	        nonces, the frame's sequence number in its direction, and
//	        id, arg and body)
//
// Every frame is authenticated, not only the upgrade: the MAC binds it to
// its connection (the nonces, the server's fresh, so a replayed upgrade
// gets a connection no one can send on) and to its place in it (the
// sequence, so frames cannot be replayed, reordered or dropped unseen),
// which keeps the HTTP path's guarantee that a body is the one its sender
// signed even without TLS. Without a cluster key there is no MAC, as the
// HTTP path then has no authenticator.
//
// Each side writes every frame queued since its last write in one write
// call, so concurrent calls share syscalls with no timer holding any
// back: a caller's side from a writer goroutine (a caller never waits on
// a write, only for its ctx), a server's from the goroutine that finished
// an answer while no write is under way. Every request takes a slot of
// [Limits.MaxConcurrentRPC] (none free: answered 503) and is bounded by
// its timeout. A frame shorter than its header or over the size limit, a
// MAC that does not verify, a request ID reused while it is in flight,
// an answer to a request never sent, or a key removed from the set
// closes the connection; so does a write that does not finish within
// the write timeout (a peer that stopped reading), and, on a caller's
// side, silence past a written request's timeout and muxGrace (a peer
// partitioned away or paused, which TCP takes minutes to give up on).
// Idle connections close too: a caller's once no call was made on it for
// between [muxIdle] and twice that, with none awaiting an answer (the
// next call opens another), and a server's once no request came for
// between [muxServeIdle] and twice that, with none in flight, which ends
// only the connections of callers gone without closing theirs, as a
// caller closes an idle one first (a server counts its answers as
// activity too). A node shutting down sends each caller a go-away: it
// reads no more requests, answers those it read, and closes once they
// are answered, and the caller fails the requests after the last one
// read as not delivered (free to go elsewhere) rather than as lost in
// flight, as HTTP/2's GOAWAY does. A peer that answers
// the upgrade 404, 405 or 400 (a node without it) is called over HTTP for
// [muxRetry] before the upgrade is tried again.
const (
	muxPath        = "/internal/mux"
	muxProto       = "kv-mux/1"
	headerMuxNonce = "X-KV-Mux-Nonce"
	muxNonceLen    = 16
	muxHeaderLen   = 16 // id and arg
	// muxOverhead is what a queued frame counts beyond its body: its
	// length, header and MAC, and its place in the queue.
	muxOverhead = 4 + muxHeaderLen + sha256.Size + 48
	// muxQueueBytes bounds the bytes of frames waiting for a connection
	// side's writer: a call that would pass it is not delivered, and a
	// server stops reading requests until its answers drain.
	muxQueueBytes = 8 << 20
	// muxRetry is how long a peer that refused the upgrade is called
	// over HTTP.
	muxRetry = time.Minute
	// muxIdle is how long a caller keeps a connection it makes no call
	// on, at least; muxServeIdle how long a server keeps one on which no
	// request comes, at least: more than twice muxIdle, so that the
	// caller closes it first and no call races the server's close.
	muxIdle      = time.Minute
	muxServeIdle = 5 * time.Minute
)

// The labels that separate the MACs of the two directions.
const (
	muxRequestLabel = 'q'
	muxAnswerLabel  = 'a'
)

// same reports whether k and o are the same key (both nil included): a
// set's keys are new values after every [ClusterKeys.Set].
func (k *clusterKey) same(o *clusterKey) bool {
	return k == o || k != nil && o != nil && bytes.Equal(k.key, o.key)
}

// errNoMux reports a peer that does not serve the upgrade.
var errNoMux = errors.New("kv: peer does not serve multiplexed RPCs")

// muxFramer encodes and decodes one connection's frames. Its send side is
// used by one drain at a time, its receive side by the connection's
// reader alone.
type muxFramer struct {
	key   *clusterKey // nil: frames carry no MAC
	nonce [2 * muxNonceLen]byte
	send  muxDirection
	recv  muxDirection
	hdr   [4 + muxHeaderLen]byte // the receive side's scratch
	sum   [sha256.Size]byte      // the receive side's scratch
	want  [sha256.Size]byte      // the receive side's scratch
}

// muxDirection is the MAC state of one direction of a connection.
type muxDirection struct {
	label   byte
	seq     uint64
	mac     hash.Hash // nil without a key
	scratch [1 + 8]byte
}

func newMuxFramer(key *clusterKey, client, server []byte, isClient bool) *muxFramer {
	f := &muxFramer{key: key}
	copy(f.nonce[:], client)
	copy(f.nonce[muxNonceLen:], server)
	f.send.label, f.recv.label = muxAnswerLabel, muxRequestLabel
	if isClient {
		f.send.label, f.recv.label = muxRequestLabel, muxAnswerLabel
	}
	if key != nil {
		f.send.mac, f.recv.mac = hmac.New(sha256.New, key.key), hmac.New(sha256.New, key.key)
	}
	return f
}

// maxFrame is the longest frame (after its length) the framer takes.
func (f *muxFramer) maxFrame() int { return muxHeaderLen + MaxRPCLen + f.macLen() }

func (f *muxFramer) macLen() int {
	if f.key == nil {
		return 0
	}
	return sha256.Size
}

// mac appends to dst the MAC of the direction's next frame, whose header
// is hdr and body body, and moves the direction on.
func (f *muxFramer) mac(d *muxDirection, dst, hdr, body []byte) []byte {
	d.scratch[0] = d.label
	binary.BigEndian.PutUint64(d.scratch[1:], d.seq)
	d.mac.Reset()
	d.mac.Write(d.scratch[:])
	d.mac.Write(f.nonce[:])
	d.mac.Write(hdr)
	d.mac.Write(body)
	return d.mac.Sum(dst)
}

// appendFrame appends the frame of id, arg and body to buf.
func (f *muxFramer) appendFrame(buf []byte, id, arg uint64, body []byte) []byte {
	start := len(buf)
	buf = binary.BigEndian.AppendUint32(buf, uint32(muxHeaderLen+len(body)+f.macLen()))
	buf = binary.BigEndian.AppendUint64(buf, id)
	buf = binary.BigEndian.AppendUint64(buf, arg)
	buf = append(buf, body...)
	if f.key != nil {
		buf = f.mac(&f.send, buf, buf[start+4:start+4+muxHeaderLen], buf[start+4+muxHeaderLen:])
	}
	f.send.seq++
	return buf
}

// readFrame reads the next frame from br. Once its length is in, the
// rest must arrive within bodyTimeout (0: no bound), set on conn unless
// br holds the whole frame already. It
// refuses a frame shorter than its header or over maxFrame, and one
// whose MAC does not verify.
func (f *muxFramer) readFrame(br *bufio.Reader, conn net.Conn, bodyTimeout time.Duration) (id, arg uint64, body []byte, err error) {
	if _, err := io.ReadFull(br, f.hdr[:4]); err != nil {
		return 0, 0, nil, err
	}
	n := int64(binary.BigEndian.Uint32(f.hdr[:4]))
	if n < int64(muxHeaderLen+f.macLen()) || n > int64(f.maxFrame()) {
		return 0, 0, nil, fmt.Errorf("%w: a frame of %d bytes, want %d to %d", ErrMalformed, n, muxHeaderLen+f.macLen(), f.maxFrame())
	}
	if bodyTimeout > 0 && int64(br.Buffered()) < n { // a frame read whole needs none
		_ = conn.SetReadDeadline(time.Now().Add(bodyTimeout))
		defer func() { _ = conn.SetReadDeadline(time.Time{}) }()
	}
	if _, err := io.ReadFull(br, f.hdr[4:]); err != nil {
		return 0, 0, nil, noEOF(err)
	}
	size := int(n) - muxHeaderLen - f.macLen()
	if size <= 64<<10 {
		body = make([]byte, size)
		_, err = io.ReadFull(br, body)
	} else {
		body, err = readDeclared(br, size)
	}
	if err != nil {
		return 0, 0, nil, noEOF(err)
	}
	if f.key != nil {
		if _, err := io.ReadFull(br, f.sum[:]); err != nil {
			return 0, 0, nil, noEOF(err)
		}
		if !hmac.Equal(f.mac(&f.recv, f.want[:0], f.hdr[4:], body), f.sum[:]) {
			return 0, 0, nil, fmt.Errorf("%w: frame %d: wrong MAC", ErrUnauthenticated, f.recv.seq)
		}
	}
	f.recv.seq++
	return binary.BigEndian.Uint64(f.hdr[4:]), binary.BigEndian.Uint64(f.hdr[12:]), body, nil
}

// noEOF turns the end of a connection within a frame into an unexpected
// one.
func noEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// muxOut is a frame waiting for a connection's writer.
type muxOut struct {
	id, arg uint64
	body    []byte
	call    *muxCall // a client's call, marked sent when the writer takes it
}

// muxConn is what the two sides of a connection share: the framer, the
// queue of frames to write, and closing.
type muxConn struct {
	conn         net.Conn
	br           *bufio.Reader
	f            *muxFramer
	writeTimeout time.Duration
	wake         chan struct{} // a frame was queued
	closed       chan struct{} // closed once the connection is

	mu      sync.Mutex
	queue   []muxOut
	queued  int   // bytes of the frames in queue, muxOverhead each and their bodies
	err     error // why it closed; nil while open
	writing bool  // a drain is under way: it writes what is queued
	spare   []muxOut
	buf     []byte // the frames of the last write, for the next
	// written, when set, runs under mu after each write (see drain).
	written func(out []muxOut, unwritten int, err error)
	// onClose runs under mu once, when the connection closes.
	onClose func(err error)
	// drained, when set, is signalled under mu each time the writer
	// takes the queue.
	drained *sync.Cond
	// activity counts what keeps the connection from being idle (see
	// watchIdle), under mu; idle is the timer that checks it.
	activity uint64
	idle     *time.Timer
}

func newMuxConn(conn net.Conn, br *bufio.Reader, f *muxFramer, writeTimeout time.Duration) *muxConn {
	return &muxConn{conn: conn, br: br, f: f, writeTimeout: writeTimeout, wake: make(chan struct{}, 1), closed: make(chan struct{})}
}

// enqueue queues o; m.mu must be held.
func (m *muxConn) enqueue(o muxOut) {
	m.queue = append(m.queue, o)
	m.queued += muxOverhead + len(o.body)
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// close closes the connection for err, once.
func (m *muxConn) close(err error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return
	}
	m.err = err
	m.queue, m.queued = nil, 0
	if m.idle != nil {
		m.idle.Stop()
	}
	if m.onClose != nil {
		m.onClose(err)
	}
	if m.drained != nil {
		m.drained.Broadcast()
	}
	m.mu.Unlock()
	close(m.closed)
	_ = m.conn.Close()
}

// watchIdle closes the connection once a whole period of length idle
// passed with no activity (m.activity unchanged) and busy, called under
// mu, false at its end; it checks once a period, so an idle connection
// closes between idle and twice idle after its last activity, and costs
// no timer operation per frame.
func (m *muxConn) watchIdle(idle time.Duration, busy func() bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mark := m.activity
	m.idle = time.AfterFunc(idle, func() {
		m.mu.Lock()
		quiet := m.err == nil && m.activity == mark && !busy()
		mark = m.activity
		if m.err == nil && !quiet {
			m.idle.Reset(idle)
		}
		m.mu.Unlock()
		if quiet {
			m.close(fmt.Errorf("kv: idle for %v", idle))
		}
	})
}

// writeLoop writes the queued frames each time a frame is queued, until
// the connection closes (see drain).
func (m *muxConn) writeLoop() {
	for {
		select {
		case <-m.wake:
		case <-m.closed:
			return
		}
		m.mu.Lock()
		m.writing = true
		m.mu.Unlock()
		m.drain()
	}
}

// drain writes the queued frames, all that wait in one write call, until
// none waits, then clears writing; the caller set writing, under mu. A
// write that fails or does not finish within writeTimeout closes the
// connection. After each write, written (when set) runs under mu with
// the frames of the write, the index of the first that starts at or past
// the bytes written (none of it was sent; len(out) when all were), and
// the write's error.
func (m *muxConn) drain() {
	var starts []int
	for {
		m.mu.Lock()
		if len(m.queue) == 0 || m.err != nil {
			m.writing = false
			m.mu.Unlock()
			return
		}
		out := m.queue
		m.queue, m.queued = m.spare[:0], 0
		live := out[:0]
		for _, o := range out {
			if o.call != nil {
				if o.call.gone {
					continue
				}
				o.call.sent, o.call.writing = true, true
			}
			live = append(live, o)
		}
		clear(out[len(live):])
		out = live
		if m.drained != nil {
			m.drained.Broadcast()
		}
		if len(out) == 0 {
			m.spare = out
			m.mu.Unlock()
			continue
		}
		m.mu.Unlock()
		buf := m.buf[:0]
		starts = starts[:0]
		for _, o := range out {
			starts = append(starts, len(buf))
			buf = m.f.appendFrame(buf, o.id, o.arg, o.body)
		}
		_ = m.conn.SetWriteDeadline(time.Now().Add(m.writeTimeout))
		n, err := m.conn.Write(buf)
		m.mu.Lock()
		if m.written != nil {
			unwritten := len(out)
			if n < len(buf) {
				unwritten, _ = slices.BinarySearch(starts, n)
			}
			m.written(out, unwritten, err)
		}
		clear(out) // let the bodies go
		m.spare = out
		if cap(buf) <= maxPooledBuffer {
			m.buf = buf
		}
		if err != nil {
			m.writing = false
		}
		m.mu.Unlock()
		if err != nil {
			m.close(fmt.Errorf("writing to %s: %w", m.conn.RemoteAddr(), err))
			return
		}
	}
}

// muxCall is a call on a client's connection.
type muxCall struct {
	id      uint64
	timeout time.Duration
	size    int  // the bytes it counts in the queue while it waits there
	sent    bool // the writer took it (under the connection's mu)
	gone    bool // abandoned while queued: the writer drops it
	writing bool // the writer's write of it has not returned
	// deliver takes the call's one outcome, from whoever removed the call
	// from pending; it must not block.
	deliver func(resp []byte, err error)
	stop    func() bool // stops the watch of the call's ctx; nil: not yet set
}

// muxClient is the calling side of a connection to node to.
type muxClient struct {
	*muxConn
	to       string
	key      *clusterKey // the key it was opened under (nil: none)
	pending  map[uint64]*muxCall
	nextID   uint64
	retiring bool // closes once nothing is pending
	// expect is when a frame must have come, since the last one read: the
	// earliest end of a timeout (and muxGrace) of a request written
	// since; zero: none written. A connection past it is taken for dead
	// (a peer partitioned away or paused, which TCP would take minutes to
	// give up on) and closed, so that the next call opens another.
	expect time.Time
	watch  *time.Timer // fires at expect
}

// muxGrace is how long past a request's timeout its connection may stay
// silent before it is taken for dead: the peer answers a request whose
// timeout passed with its error.
const muxGrace = time.Second

// errMuxClosed is the error of a call made on a connection already closed.
var errMuxClosed = errors.New("kv: the connection closed")

func newMuxClient(to string, conn net.Conn, br *bufio.Reader, f *muxFramer, writeTimeout time.Duration) *muxClient {
	c := &muxClient{muxConn: newMuxConn(conn, br, f, writeTimeout), to: to, key: f.key, pending: map[uint64]*muxCall{}}
	c.onClose = func(err error) {
		if c.watch != nil {
			c.watch.Stop()
		}
		for _, call := range c.pending {
			switch {
			case call.writing: // its write's outcome says whether it left
			case call.sent:
				c.finish(call, nil, fmt.Errorf("kv: node %s: the connection closed before the answer: %w", c.to, err))
			default:
				c.finish(call, nil, fmt.Errorf("%w: node %s: the connection closed: %w", ErrNotDelivered, c.to, err))
			}
		}
	}
	c.written = func(out []muxOut, unwritten int, err error) {
		broken := err != nil || c.err != nil
		now := time.Now()
		for i, o := range out {
			o.call.writing = false
			if !broken && c.pending[o.id] == o.call {
				// Not when its answer came already, as it may before this
				// runs: nothing more would clear the time set.
				c.expectBy(now.Add(o.call.timeout + muxGrace))
			}
			switch {
			case !broken || c.pending[o.id] != o.call:
			case i >= unwritten:
				c.finish(o.call, nil, fmt.Errorf("%w: node %s: the connection failed before the request was written: %w", ErrNotDelivered, c.to, firstErr(err, c.err)))
			default:
				c.finish(o.call, nil, fmt.Errorf("kv: node %s: the connection failed once the request was written: %w", c.to, firstErr(err, c.err)))
			}
		}
	}
	c.watchIdle(muxIdle, func() bool { return len(c.pending) > 0 })
	go c.writeLoop()
	go c.readLoop()
	return c
}

// expectBy makes t the time a frame must have come by, unless an earlier
// one is set; c.mu must be held.
func (c *muxClient) expectBy(t time.Time) {
	if !c.expect.IsZero() && !t.Before(c.expect) {
		return
	}
	c.expect = t
	d := time.Until(t)
	if c.watch == nil {
		c.watch = time.AfterFunc(d, c.check)
		return
	}
	c.watch.Reset(d)
}

// check closes the connection once it is past the time a frame was
// expected by.
func (c *muxClient) check() {
	c.mu.Lock()
	expect := c.expect
	late := !expect.IsZero() && !time.Now().Before(expect)
	if !expect.IsZero() && !late {
		c.watch.Reset(time.Until(expect))
	}
	c.mu.Unlock()
	if late {
		c.close(fmt.Errorf("kv: node %s: no answer on the connection by %v past a request's timeout", c.to, muxGrace))
	}
}

// finish removes call from pending and delivers its outcome; c.mu must be
// held, and call pending.
func (c *muxClient) finish(call *muxCall, resp []byte, err error) {
	delete(c.pending, call.id)
	if call.stop != nil {
		call.stop()
	}
	call.deliver(resp, err)
}

// open reports whether the connection takes calls.
func (c *muxClient) open() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err == nil && !c.retiring
}

// retire closes the connection once its pending calls are answered.
func (c *muxClient) retire() {
	c.mu.Lock()
	c.retiring = true
	idle := len(c.pending) == 0
	c.mu.Unlock()
	if idle {
		c.close(errors.New("kv: retired"))
	}
}

// call sends req and waits for its answer or ctx: see start.
func (c *muxClient) call(ctx context.Context, req []byte, timeout time.Duration) ([]byte, error) {
	done := make(chan batchResult, 1)
	c.start(ctx, req, timeout, func(resp []byte, err error) { done <- batchResult{resp, err} })
	r := <-done
	return r.resp, r.err
}

// start sends req, and deliver takes its answer, or its failure when ctx
// ends first: the errors of [HTTPTransport.Call]. A call still queued
// when ctx ends or the connection closes was not delivered; one made on
// a closed connection fails with errMuxClosed. deliver runs once, on the
// caller's goroutine when the call fails at once and otherwise on one of
// the connection's or ctx's, and must not block. timeout bounds a call
// whose ctx has no deadline.
func (c *muxClient) start(ctx context.Context, req []byte, timeout time.Duration, deliver func(resp []byte, err error)) {
	if err := ctx.Err(); err != nil {
		deliver(nil, fmt.Errorf("%w: %w", ErrNotDelivered, context.Cause(ctx)))
		return
	}
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		deliver(nil, fmt.Errorf("%w: %w", ErrNotDelivered, context.DeadlineExceeded))
		return
	}
	if len(req) > MaxRPCLen {
		deliver(nil, fmt.Errorf("%w: a replica RPC of %d bytes, want at most %d", ErrNotDelivered, len(req), MaxRPCLen))
		return
	}
	call := &muxCall{size: muxOverhead + len(req), timeout: min(timeout, MaxBatchTimeout), deliver: deliver}
	c.mu.Lock()
	switch {
	case c.err != nil || c.retiring:
		c.mu.Unlock()
		deliver(nil, fmt.Errorf("%w: %w", ErrNotDelivered, errMuxClosed))
		return
	case c.queued > 0 && c.queued+len(req) > muxQueueBytes:
		queued := c.queued
		c.mu.Unlock()
		deliver(nil, fmt.Errorf("%w: node %s: %d bytes wait to be sent to it already", ErrNotDelivered, c.to, queued))
		return
	}
	c.nextID++
	c.activity++
	call.id = c.nextID
	c.pending[call.id] = call
	c.enqueue(muxOut{id: call.id, arg: uint64(call.timeout), body: req, call: call})
	c.mu.Unlock()
	if ctx.Done() == nil {
		return // it never ends
	}
	stop := context.AfterFunc(ctx, func() { c.abandon(call, ctx) })
	c.mu.Lock()
	if c.pending[call.id] == call {
		call.stop = stop
		stop = nil
	}
	c.mu.Unlock()
	if stop != nil {
		stop() // delivered already
	}
}

// abandon fails call, whose ctx ended, unless it was delivered: not
// delivered while it waits in the queue, and indeterminate once taken.
func (c *muxClient) abandon(call *muxCall, ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[call.id] != call {
		return
	}
	call.stop = nil // it ran
	if call.sent {
		c.finish(call, nil, fmt.Errorf("kv: node %s: %w", c.to, context.Cause(ctx)))
		return
	}
	c.undeliver(call, fmt.Errorf("%w: %w", ErrNotDelivered, context.Cause(ctx)))
}

// undeliver fails call, pending and never read by the peer, with err. A
// call still queued is left there for the writer to drop: finding it
// there would cost a scan per call when many wait behind a peer that
// stopped reading. c.mu must be held.
func (c *muxClient) undeliver(call *muxCall, err error) {
	if !call.sent {
		call.gone = true
		c.queued -= call.size
	}
	c.finish(call, nil, err)
}

// readLoop reads answers and hands each to its call until the connection
// closes.
func (c *muxClient) readLoop() {
	for {
		id, status, body, err := c.f.readFrame(c.br, c.conn, 0)
		if err == nil && id == 0 {
			err = c.goneAway(status, body)
			if err == nil {
				continue
			}
		}
		if err != nil {
			c.close(err)
			return
		}
		if status < 100 || status > 599 {
			c.close(fmt.Errorf("%w: an answer of status %d", ErrMalformed, status))
			return
		}
		c.mu.Lock()
		call := c.pending[id]
		if id == 0 || id > c.nextID || call != nil && !call.sent {
			c.mu.Unlock()
			c.close(fmt.Errorf("%w: an answer to request %d, which was not sent", ErrMalformed, id))
			return
		}
		c.expect = time.Time{} // the connection lives; the timer finds nothing due
		var stop func() bool
		if call != nil { // nil: its caller gave up
			delete(c.pending, id)
			stop, call.stop = call.stop, nil
		}
		idle := c.retiring && len(c.pending) == 0
		c.mu.Unlock()
		if call != nil {
			if stop != nil {
				stop()
			}
			if status == http.StatusOK {
				call.deliver(body, nil)
			} else {
				call.deliver(nil, statusError(c.to, int(status), string(body)))
			}
		}
		if idle {
			c.close(errors.New("kv: retired"))
			return
		}
	}
}

// goneAway takes the server's go-away frame (see [muxServer.goAway]):
// the server read no request after last and answers those it read. The
// connection takes no more calls, those after last fail as not
// delivered, and it closes once the others are answered. A frame naming
// a request never sent is an error.
func (c *muxClient) goneAway(last uint64, why []byte) error {
	c.mu.Lock()
	if last > c.nextID {
		c.mu.Unlock()
		return fmt.Errorf("%w: a go-away after request %d, which was not sent", ErrMalformed, last)
	}
	c.retiring = true
	for id, call := range c.pending {
		if id <= last {
			continue
		}
		c.undeliver(call, fmt.Errorf("%w: node %s: %.200s", ErrNotDelivered, c.to, why))
	}
	idle := len(c.pending) == 0
	c.mu.Unlock()
	if idle {
		c.close(errors.New("kv: the peer went away"))
	}
	return nil
}

// muxPeer is the multiplexed connection to one node at one address.
type muxPeer struct {
	mu        sync.Mutex
	conn      *muxClient
	dial      *muxDial  // the upgrade in progress; nil: none
	httpUntil time.Time // the peer refused the upgrade: HTTP until then
	// gone marks a peer that [HTTPTransport.forget] removed from the
	// transport's peers: whoever holds it looks the address up again.
	gone bool
}

// muxDial is an upgrade in progress; err is set before done closes.
type muxDial struct {
	done chan struct{}
	err  error
}

type muxPeerKey struct{ to, addr string }

// callMux sends req to node to at addr on the connection to it, which it
// opens first when there is none; over HTTP when the node does not serve
// the upgrade.
func (t *HTTPTransport) callMux(ctx context.Context, to, addr string, req []byte) ([]byte, error) {
	for range 2 { // a connection that closed since it was found: once more
		c, err := t.muxConnTo(ctx, to, addr)
		if errors.Is(err, errNoMux) {
			return t.callHTTP(ctx, to, addr, req)
		}
		if err != nil {
			return nil, err
		}
		resp, err := c.call(ctx, req, t.defaultTimeout())
		if !errors.Is(err, errMuxClosed) {
			return resp, err
		}
	}
	return nil, fmt.Errorf("%w: node %s: %w", ErrNotDelivered, to, errMuxClosed)
}

// asyncTransport is a Transport that starts a call without a goroutine
// of the caller's: deliver takes the outcome of Call, once, on some
// goroutine, and must not block.
type asyncTransport interface {
	Transport
	startCall(ctx context.Context, to string, req []byte, deliver func([]byte, error))
}

var _ asyncTransport = (*HTTPTransport)(nil)

// startCall is Call for a caller that waits on no goroutine of its own:
// on an open multiplexed connection the call leaves at once and its
// answer is delivered from the connection's reader; otherwise Call runs
// on a goroutine of its own.
func (t *HTTPTransport) startCall(ctx context.Context, to string, req []byte, deliver func([]byte, error)) {
	if t.Mux {
		t.mu.RLock()
		addr, ok := t.addrs[to]
		t.mu.RUnlock()
		var c *muxClient
		if ok {
			c, _ = t.openMux(to, addr)
		}
		if c != nil {
			c.start(ctx, req, t.defaultTimeout(), func(resp []byte, err error) {
				if errors.Is(err, errMuxClosed) { // since it was found: Call opens another
					go func() { deliver(t.Call(ctx, to, req)) }()
					return
				}
				deliver(resp, err)
			})
			return
		}
	}
	go func() { deliver(t.Call(ctx, to, req)) }()
}

// openMux returns the peer of node to at addr and its open connection
// under the current primary key, or nil.
func (t *HTTPTransport) openMux(to, addr string) (*muxClient, *muxPeer) {
	k := muxPeerKey{to, addr}
	t.mu.RLock()
	p := t.muxPeers[k]
	t.mu.RUnlock()
	if p == nil {
		t.mu.Lock()
		if t.muxPeers == nil {
			t.muxPeers = map[muxPeerKey]*muxPeer{}
		}
		if p = t.muxPeers[k]; p == nil {
			p = &muxPeer{}
			t.muxPeers[k] = p
		}
		t.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.conn; c != nil && c.key.same(t.primary()) && c.open() {
		return c, p
	}
	return nil, p
}

// primary is the key calls are signed with, nil for none.
func (t *HTTPTransport) primary() *clusterKey {
	if keys := t.keys(); keys != nil {
		return keys.primary()
	}
	return nil
}

// muxConnTo returns the open connection to node to at addr, under the
// current primary key, opening it when there is none; errNoMux when the
// node refused the upgrade within muxRetry.
func (t *HTTPTransport) muxConnTo(ctx context.Context, to, addr string) (*muxClient, error) {
	c, p := t.openMux(to, addr)
	if c != nil {
		return c, nil
	}
	return t.connect(ctx, p, to, addr)
}

// connect is muxConnTo through p, the peer of node to at addr that
// openMux returned, or through the peer that replaced it once it was
// forgotten: a connection is opened only in the transport's current
// peer, where later calls find it.
func (t *HTTPTransport) connect(ctx context.Context, p *muxPeer, to, addr string) (*muxClient, error) {
	key := t.primary()
	for {
		p.mu.Lock()
		if p.gone {
			p.mu.Unlock()
			var c *muxClient
			if c, p = t.openMux(to, addr); c != nil {
				return c, nil
			}
			continue
		}
		if c := p.conn; c != nil && c.key.same(key) && c.open() {
			p.mu.Unlock()
			return c, nil
		}
		if time.Now().Before(p.httpUntil) {
			p.mu.Unlock()
			return nil, errNoMux
		}
		d := p.dial
		if d == nil {
			if p.conn != nil {
				p.conn.retire() // the key changed: its calls finish on it
				p.conn = nil
			}
			d = &muxDial{done: make(chan struct{})}
			p.dial = d
			go t.dialMux(p, d, to, addr, key)
		}
		p.mu.Unlock()
		select {
		case <-d.done:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: node %s: waiting for a connection: %w", ErrNotDelivered, to, context.Cause(ctx))
		}
		if d.err != nil {
			return nil, d.err
		}
	}
}

// dialMux opens the connection of the dial d and records its outcome in
// p. The peer is forgotten once the connection closes, or at once when
// none opened.
func (t *HTTPTransport) dialMux(p *muxPeer, d *muxDial, to, addr string, key *clusterKey) {
	ctx, cancel := context.WithTimeout(context.Background(), t.defaultTimeout())
	defer cancel()
	c, err := t.upgrade(ctx, to, addr, key)
	k := muxPeerKey{to, addr}
	if err == nil {
		go func() {
			<-c.closed
			t.forget(k, p, c)
		}()
	} else {
		defer t.forget(k, p, nil) // after p.mu is released
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// Checked with p.mu held, where the connection is stored, so that a
	// closeMux running meanwhile either finds it in p or is seen here.
	t.mu.RLock()
	if t.muxClosed && err == nil {
		c.close(ErrUnavailable)
		err = fmt.Errorf("%w: %w", ErrNotDelivered, ErrUnavailable)
	}
	t.mu.RUnlock()
	switch {
	case errors.Is(err, errNoMux):
		p.httpUntil = time.Now().Add(muxRetry)
	case err != nil:
		d.err = err
	default:
		p.conn = c
	}
	p.dial = nil
	close(d.done)
}

// forget lets go of p's connection c, which closed, and of p itself
// when p holds nothing more (no connection, no dial, no refusal of the
// upgrade to remember): the transport keeps a peer per address in use,
// not one per address it ever called, which would grow with every
// restart of a node on a platform that gives it a new address.
//
// Locks are taken as dialMux takes them, p.mu before t.mu.
func (t *HTTPTransport) forget(k muxPeerKey, p *muxPeer, c *muxClient) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c != nil && p.conn == c {
		p.conn = nil
	}
	if p.gone || p.conn != nil || p.dial != nil || time.Now().Before(p.httpUntil) {
		return
	}
	t.mu.Lock()
	if t.muxPeers[k] == p {
		delete(t.muxPeers, k)
	}
	t.mu.Unlock()
	p.gone = true
}

// upgrade dials addr and upgrades the connection, authenticated under
// key. An error wraps ErrNotDelivered, or is errNoMux for a node that
// answered the upgrade as one without it does.
func (t *HTTPTransport) upgrade(ctx context.Context, to, addr string, key *clusterKey) (*muxClient, error) {
	notDelivered := func(err error) error { return fmt.Errorf("%w: node %s: %w", ErrNotDelivered, to, err) }
	scheme := "http://"
	var tlsConfig *tls.Config
	ht, _ := t.client().Transport.(*http.Transport)
	if ht == nil && t.client().Transport == nil {
		ht = http.DefaultTransport.(*http.Transport)
	}
	if t.TLS {
		if ht == nil || ht.TLSClientConfig == nil {
			return nil, errNoMux // no certificate to present here: HTTP's client has it
		}
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, notDelivered(err)
		}
		tlsConfig = ht.TLSClientConfig.Clone()
		tlsConfig.ServerName, tlsConfig.NextProtos = host, []string{"http/1.1"}
		scheme = "https://"
	}
	dial := (&net.Dialer{}).DialContext
	if ht != nil && ht.DialContext != nil {
		dial = ht.DialContext // the HTTP client's dialer
	}
	conn, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, notDelivered(err)
	}
	if tlsConfig != nil {
		tc := tls.Client(conn, tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			conn.Close()
			return nil, notDelivered(err)
		}
		conn = tc
	}
	c, err := t.handshake(ctx, conn, scheme+addr, to, key)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// handshake sends the upgrade request on conn and reads its answer.
func (t *HTTPTransport) handshake(ctx context.Context, conn net.Conn, url, to string, key *clusterKey) (*muxClient, error) {
	notDelivered := func(err error) error { return fmt.Errorf("%w: node %s: %w", ErrNotDelivered, to, err) }
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	nonce := make([]byte, muxNonceLen)
	_, _ = rand.Read(nonce)
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, url+muxPath, nil)
	if err != nil {
		return nil, notDelivered(err)
	}
	hr.Header.Set("Connection", "Upgrade")
	hr.Header.Set("Upgrade", muxProto)
	hr.Header.Set(headerMuxNonce, hex.EncodeToString(nonce))
	if key != nil {
		hr.Header.Set(HeaderAuth, key.authenticator(time.Now(), nonce))
	}
	if err := hr.Write(conn); err != nil {
		return nil, notDelivered(err)
	}
	br := bufio.NewReaderSize(conn, 64<<10)
	resp, err := http.ReadResponse(br, hr)
	if err != nil {
		return nil, notDelivered(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusBadRequest:
			return nil, errNoMux
		}
		return nil, notDelivered(statusError(to, resp.StatusCode, errorText(resp)))
	}
	server, err := hex.DecodeString(resp.Header.Get(headerMuxNonce))
	if err != nil || len(server) != muxNonceLen || !strings.EqualFold(resp.Header.Get("Upgrade"), muxProto) {
		return nil, notDelivered(fmt.Errorf("%w: an upgrade without a %d-byte nonce or to %q", ErrMalformed, muxNonceLen, resp.Header.Get("Upgrade")))
	}
	_ = conn.SetDeadline(time.Time{})
	return newMuxClient(to, conn, br, newMuxFramer(key, nonce, server, true), t.defaultTimeout()), nil
}

// closeMux ends the transport's multiplexed connections, at its end:
// calls in flight on them fail as when a connection is lost, and a
// connection opened from now on is closed at once (its calls are not
// delivered).
func (t *HTTPTransport) closeMux() {
	t.mu.Lock()
	peers := slices.Collect(maps.Values(t.muxPeers))
	t.muxClosed = true
	t.mu.Unlock()
	for _, p := range peers {
		p.mu.Lock()
		c := p.conn
		p.conn = nil
		p.mu.Unlock()
		if c != nil {
			c.close(ErrUnavailable)
		}
	}
}

// muxConns are the connections a node serves, so that its shutdown can
// close them and wait for their requests.
type muxConns struct {
	mu     sync.Mutex
	closed bool
	conns  map[*muxServer]struct{}
	wg     sync.WaitGroup
}

// add registers s, or reports false once closeAll began.
func (cs *muxConns) add(s *muxServer) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	if cs.conns == nil {
		cs.conns = map[*muxServer]struct{}{}
	}
	cs.conns[s] = struct{}{}
	cs.wg.Add(1)
	return true
}

func (cs *muxConns) remove(s *muxServer) {
	cs.mu.Lock()
	delete(cs.conns, s)
	cs.mu.Unlock()
	cs.wg.Done()
}

// closeAll closes every connection, refuses new ones, and waits until
// the requests they carried have ended.
func (cs *muxConns) closeAll() {
	for _, s := range cs.stop() {
		s.close(ErrUnavailable)
	}
	cs.wg.Wait()
}

// shutdown refuses new connections, makes every connection go away
// ([muxServer.goAway]: the requests read are answered, the callers told
// which were not read), and waits until all have closed; when ctx ends
// first, it closes them as closeAll does.
func (cs *muxConns) shutdown(ctx context.Context) {
	conns := cs.stop()
	for _, s := range conns {
		s.goAway()
	}
	done := make(chan struct{})
	go func() {
		cs.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	for _, s := range conns {
		s.close(ErrUnavailable)
	}
	<-done
}

// stop refuses new connections and returns those open.
func (cs *muxConns) stop() []*muxServer {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	return slices.Collect(maps.Keys(cs.conns))
}

// muxServer is the serving side of a connection.
type muxServer struct {
	*muxConn
	handle   func(ctx context.Context, req []byte) ([]byte, error)
	workers  *workers     // the goroutines requests are handled on
	slots    limiter      // the node's RPC slots, one per request served
	keys     *ClusterKeys // the connection closes when its key leaves them
	inFlight map[uint64]struct{}
	// last is the ID of the last request read; away, set by goAway,
	// stops the reading (both under mu).
	last uint64
	away bool
}

// newMuxServer returns the serving side of conn, whose frames are read
// from br with f, each request handled by handle under a slot of slots;
// a frame must arrive and a write finish within timeout.
func newMuxServer(conn net.Conn, br *bufio.Reader, f *muxFramer, timeout time.Duration, slots limiter, keys *ClusterKeys, handle func(context.Context, []byte) ([]byte, error)) *muxServer {
	return &muxServer{muxConn: newMuxConn(conn, br, f, timeout), handle: handle, workers: &workers{}, slots: slots, keys: keys, inFlight: map[uint64]struct{}{}}
}

// serveMux upgrades a peer's connection to multiplexed RPCs and serves
// them until it closes: 401 without a verified peer certificate when
// they are required or without a current authenticator of the client's
// nonce under a cluster key, 400 for an upgrade to anything else.
func (a *api) serveMux(w http.ResponseWriter, r *http.Request) {
	if a.unverifiedPeer(w, r) {
		return
	}
	nonce, err := hex.DecodeString(r.Header.Get(headerMuxNonce))
	if !strings.EqualFold(r.Header.Get("Upgrade"), muxProto) || err != nil || len(nonce) != muxNonceLen {
		http.Error(w, fmt.Sprintf("kv: want Upgrade: %s with a %s of %d hex bytes", muxProto, headerMuxNonce, muxNonceLen), http.StatusBadRequest)
		return
	}
	var key *clusterKey
	if keys := a.cfg.Keys.macs(); keys != nil {
		auth, err := parseAuth(keys, r.Header.Get(HeaderAuth), time.Now())
		if err == nil {
			err = auth.check(nonce)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		key = auth.key
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "kv: this connection cannot be upgraded: "+err.Error(), http.StatusBadRequest)
		return
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Time{})
	server := make([]byte, muxNonceLen)
	_, _ = rand.Read(server)
	_ = conn.SetWriteDeadline(time.Now().Add(a.cfg.Limits.BodyTimeout))
	if _, err := fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n%s: %x\r\n\r\n", muxProto, headerMuxNonce, server); err != nil {
		return
	}
	s := newMuxServer(conn, brw.Reader, newMuxFramer(key, nonce, server, false), a.cfg.Limits.BodyTimeout, a.rpcSlots, a.cfg.Keys, a.n.Handle)
	if !a.conns.add(s) {
		return
	}
	defer a.conns.remove(s)
	s.run(r.Context())
}

// run serves the connection's requests until it closes, then waits for
// those in flight.
func (s *muxServer) run(ctx context.Context) {
	ctx, cancel := context.WithCancelCause(ctx)
	s.drained = sync.NewCond(&s.mu)
	s.onClose = cancel
	s.watchIdle(muxServeIdle, func() bool { return len(s.inFlight) > 0 })
	stop := context.AfterFunc(ctx, func() { s.close(context.Cause(ctx)) })
	defer stop()
	var wg sync.WaitGroup
	defer s.workers.close()
	defer wg.Wait()
	for {
		s.mu.Lock()
		for s.queued > muxQueueBytes && s.err == nil && !s.away {
			s.drained.Wait() // the peer reads its answers slower than it sends
		}
		closed, away := s.err != nil, s.away
		s.mu.Unlock()
		if closed {
			return
		}
		if away {
			s.sendAway()
			return // once the requests read are answered, serveMux closes
		}
		id, timeout, body, err := s.f.readFrame(s.br, s.conn, s.writeTimeout)
		if err == nil && s.f.key != nil && !slices.ContainsFunc(s.keys.macs(), s.f.key.same) {
			err = fmt.Errorf("%w: the connection's key was removed", ErrUnauthenticated)
		}
		if err != nil {
			s.mu.Lock()
			away = s.away
			s.mu.Unlock()
			if away { // goAway cut the read short: the frame is dropped
				s.sendAway()
			} else {
				s.close(err)
			}
			return
		}
		s.mu.Lock()
		_, reused := s.inFlight[id]
		s.inFlight[id] = struct{}{}
		s.last = max(s.last, id)
		s.activity++
		s.mu.Unlock()
		switch {
		case reused:
			s.close(fmt.Errorf("%w: request ID %d reused while in flight", ErrMalformed, id))
			return
		case timeout == 0 || timeout > uint64(MaxBatchTimeout):
			s.refuse(&wg, id, http.StatusBadRequest, fmt.Appendf(nil, "kv: a timeout of %d ns, want one in (0, %v]", timeout, MaxBatchTimeout))
		case !s.slots.try():
			s.refuse(&wg, id, http.StatusServiceUnavailable, []byte(s.slots.overloaded()))
		default:
			wg.Add(1)
			s.workers.Go(func() {
				defer wg.Done()
				rctx, cancel := context.WithTimeout(ctx, time.Duration(timeout))
				resp, err := s.handle(rctx, body)
				cancel()
				s.slots.release()
				if err != nil {
					s.answer(id, uint64(rpcStatus(err)), []byte(err.Error()))
					return
				}
				s.answer(id, http.StatusOK, resp)
			})
		}
	}
}

// goAway makes the connection stop taking requests, for the node's
// shutdown: its reader stops, at once even within a frame (which is
// dropped), and sends the caller a go-away frame naming the last request
// it read; those it read are still answered, and the connection closes
// once they are. The caller then knows that the requests after that one
// were not delivered, so it may send them elsewhere, where a connection
// cut would leave every one in flight indeterminate.
func (s *muxServer) goAway() {
	s.mu.Lock()
	s.away = true
	s.drained.Broadcast()
	s.mu.Unlock()
	_ = s.conn.SetReadDeadline(time.Now()) // readFrame clears it only once a frame is read whole
}

// sendAway sends the go-away frame: ID 0, the last request read as its
// argument, and why as its body.
func (s *muxServer) sendAway() {
	s.mu.Lock()
	s.sendLocked(muxOut{id: 0, arg: s.last, body: []byte("kv: the node is shutting down")})
}

// sendLocked queues o, unless the connection closed, and writes the
// queue itself when no write is under way: a frame costs no hand-off to
// a writer. It is called with s.mu held, and releases it.
func (s *muxServer) sendLocked(o muxOut) {
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, o)
	s.queued += muxOverhead + len(o.body)
	drain := !s.writing
	s.writing = true
	s.mu.Unlock()
	if drain {
		s.drain()
	}
}

// refuse answers request id on a worker, so that the reader never waits
// for a write.
func (s *muxServer) refuse(wg *sync.WaitGroup, id, status uint64, text []byte) {
	wg.Add(1)
	s.workers.Go(func() {
		defer wg.Done()
		s.answer(id, status, text)
	})
}

// answer sends the answer of request id (see sendLocked).
func (s *muxServer) answer(id, status uint64, body []byte) {
	if status == http.StatusOK && len(body) > MaxRPCLen {
		// A frame the caller refuses would close the connection on every
		// call in flight: fail this one alone.
		status, body = http.StatusInternalServerError, fmt.Appendf(nil, "kv: an answer of %d bytes, more than %d", len(body), MaxRPCLen)
	}
	if status != http.StatusOK && len(body) > maxErrorBytes {
		body = body[:maxErrorBytes]
	}
	s.mu.Lock()
	delete(s.inFlight, id)
	s.activity++ // the caller may call again at once: a whole period from now
	s.sendLocked(muxOut{id: id, arg: status, body: body})
}
