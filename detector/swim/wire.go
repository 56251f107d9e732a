package swim

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Wire format, version 2. A packet is one msgpack array:
//
//	[version, [msg, msg, ...]]
//
// and each message is an array whose first element is its kind:
//
//	ping      [1, seq, targetID]
//	ping-req  [2, seq, targetID, targetAddr, wantNack]
//	ack       [3, seq]
//	nack      [4, seq]
//	alive     [5, incarnation, id, addr, meta]
//	suspect   [6, incarnation, id, from]
//	dead      [7, incarnation, id, from]              (from == id: left)
//	push-pull [8, senderID, flags, token, cookie, userState, [[id, addr, incarnation, state, meta], ...]]
//	cookie    [9, token, cookie]
//	broadcast [10, originID, epoch, seq, name, payload]  (user data, see userbcast.go)
//	message   [11, senderID, payload]                    (user data to one member)
//
// A push-pull request that wants the full state back (flag 1) is answered
// with it only if it echoes a cookie the receiver issued to the request's
// source address (see pushpull.go); otherwise the answer is a cookie
// message, which echoes the request's token. Flag 2 marks the exchange of
// a joining node. (Version 1 had neither cookies nor user states: its
// push-pull had 4 fields.)
//
// A packet carries at most one ping, ping-req, ack, nack, push-pull,
// cookie or message (the primary message) and at most MaxUpdates
// piggybacked alive, suspect, dead and broadcast updates, in any order.
// Decoding is all or nothing: a malformed
// packet is rejected whole, before any of it is applied. Malformed
// includes a packet with more than one primary message or more than
// MaxUpdates updates, and a sequence number or epoch at or above 2^63 (no node
// ever sends one: they count up from 0).

// Version is the wire format version this package writes and accepts.
const Version = 2

// Limits on what a packet may carry; [Config] enforces them locally and the
// decoder rejects packets that exceed them.
const (
	MaxIDLen    = 128 // bytes in a member ID
	MaxAddrLen  = 128 // bytes in an address
	MaxMetaLen  = 512 // bytes of user metadata per member
	MaxLabelLen = 128 // bytes in a cluster label
	MinMTU      = 1024
	// MaxUpdates bounds the updates piggybacked on one packet, so the
	// work a packet causes is bounded whatever the MTU.
	MaxUpdates = 128
	// MaxMTU is the largest UDP payload over IPv4 (65535 less the 8-byte
	// UDP and 20-byte IPv4 headers): a larger packet cannot be sent.
	MaxMTU = 65507
)

// ErrMalformed is returned (wrapped) by [Core.Receive] for a packet that is
// not a well-formed version-1 packet.
var ErrMalformed = errors.New("swim: malformed packet")

// ErrVersion is returned (wrapped) by [Core.Receive] for a packet of another
// wire version.
var ErrVersion = errors.New("swim: unsupported wire version")

type kind uint8

const (
	kindPing kind = iota + 1
	kindPingReq
	kindAck
	kindNack
	kindAlive
	kindSuspect
	kindDead
	kindPushPull
	kindCookie
)

// update reports whether k is a disseminated membership update.
func (k kind) update() bool {
	return k == kindAlive || k == kindSuspect || k == kindDead || k == kindBroadcast
}

// fieldCount is the array length of each message kind on the wire.
var fieldCount = [...]int{kindPing: 3, kindPingReq: 5, kindAck: 2, kindNack: 2, kindAlive: 5, kindSuspect: 4, kindDead: 4, kindPushPull: 7, kindCookie: 3,
	kindBroadcast: 6, kindUserMsg: 3}

// Push-pull flags: ppWantReply asks the receiver to reply with its own
// state; ppJoin marks the exchange of a joining node (see StateDelegate).
const (
	ppWantReply = 1
	ppJoin      = 2
)

// message is the decoded form of every message kind; each kind uses the
// fields its wire form lists.
type message struct {
	kind   kind
	seq    uint64
	inc    uint64
	id     string // alive/suspect/dead: the member; ping/ping-req: the target; push-pull: the sender
	addr   string
	from   string
	meta   []byte
	nack   bool
	flags  uint64
	token  []byte // push-pull, cookie: the requester's token, echoed with the cookie
	cookie []byte // push-pull, cookie: the address validation cookie
	state  []byte // push-pull: the user state (see StateDelegate)
	states []Member
	// user data (kindBroadcast, kindUserMsg); id is the origin or sender
	epoch   uint64
	name    string
	payload []byte
}

// encoder appends msgpack to a reusable buffer.
type encoder struct {
	buf bytes.Buffer
	enc *msgpack.Encoder
}

func newEncoder() *encoder {
	e := &encoder{}
	e.enc = msgpack.NewEncoder(&e.buf)
	return e
}

// encodeMsg appends the encoding of m to dst and returns it.
func (e *encoder) encodeMsg(dst []byte, m *message) []byte {
	e.buf.Reset()
	x := e.enc
	var err error
	switch m.kind {
	case kindPing:
		err = errors.Join(x.EncodeArrayLen(3), x.EncodeUint(uint64(m.kind)), x.EncodeUint(m.seq), x.EncodeString(m.id))
	case kindPingReq:
		err = errors.Join(x.EncodeArrayLen(5), x.EncodeUint(uint64(m.kind)), x.EncodeUint(m.seq), x.EncodeString(m.id),
			x.EncodeString(m.addr), x.EncodeBool(m.nack))
	case kindAck, kindNack:
		err = errors.Join(x.EncodeArrayLen(2), x.EncodeUint(uint64(m.kind)), x.EncodeUint(m.seq))
	case kindCookie:
		err = errors.Join(x.EncodeArrayLen(3), x.EncodeUint(uint64(m.kind)), x.EncodeBytes(m.token), x.EncodeBytes(m.cookie))
	case kindAlive:
		err = errors.Join(x.EncodeArrayLen(5), x.EncodeUint(uint64(m.kind)), x.EncodeUint(m.inc), x.EncodeString(m.id),
			x.EncodeString(m.addr), x.EncodeBytes(m.meta))
	case kindSuspect, kindDead:
		err = errors.Join(x.EncodeArrayLen(4), x.EncodeUint(uint64(m.kind)), x.EncodeUint(m.inc), x.EncodeString(m.id),
			x.EncodeString(m.from))
	case kindPushPull:
		err = errors.Join(x.EncodeArrayLen(7), x.EncodeUint(uint64(m.kind)), x.EncodeString(m.id), x.EncodeUint(m.flags),
			x.EncodeBytes(m.token), x.EncodeBytes(m.cookie), x.EncodeBytes(m.state), x.EncodeArrayLen(len(m.states)))
		for i := range m.states {
			dst = append(dst, e.buf.Bytes()...)
			dst = e.encodeState(dst, &m.states[i])
			e.buf.Reset()
		}
	case kindBroadcast:
		err = errors.Join(x.EncodeArrayLen(6), x.EncodeUint(uint64(m.kind)), x.EncodeString(m.id), x.EncodeUint(m.epoch),
			x.EncodeUint(m.seq), x.EncodeString(m.name), x.EncodeBytes(m.payload))
	case kindUserMsg:
		err = errors.Join(x.EncodeArrayLen(3), x.EncodeUint(uint64(m.kind)), x.EncodeString(m.id), x.EncodeBytes(m.payload))
	default:
		panic(fmt.Sprintf("swim: encoding unknown message kind %d", m.kind))
	}
	if err != nil { // writes to a bytes.Buffer cannot fail
		panic("swim: " + err.Error())
	}
	return append(dst, e.buf.Bytes()...)
}

// encodeState appends one push-pull member record to dst.
func (e *encoder) encodeState(dst []byte, s *Member) []byte {
	e.buf.Reset()
	x := e.enc
	if err := errors.Join(x.EncodeArrayLen(5), x.EncodeString(s.ID), x.EncodeString(s.Addr), x.EncodeUint(s.Incarnation),
		x.EncodeUint(uint64(s.State)), x.EncodeBytes(s.Meta)); err != nil {
		panic("swim: " + err.Error())
	}
	return append(dst, e.buf.Bytes()...)
}

// packetHeader appends the header of a packet with n messages.
func (e *encoder) packetHeader(dst []byte, n int) []byte {
	e.buf.Reset()
	if err := errors.Join(e.enc.EncodeArrayLen(2), e.enc.EncodeUint(Version), e.enc.EncodeArrayLen(n)); err != nil {
		panic("swim: " + err.Error())
	}
	return append(dst, e.buf.Bytes()...)
}

// minStateLen is the shortest encoding of a push-pull member record: an
// array header, a one-byte ID (two bytes), and one byte each for the
// address, incarnation, state and meta.
const minStateLen = 7

// headerLen is an upper bound on the length of a packet header.
const headerLen = 1 + 1 + 3

// decoder decodes packets with explicit bounds: every length is checked
// against the bytes that remain before anything is allocated.
type decoder struct {
	r       bytes.Reader
	dec     *msgpack.Decoder
	scratch []byte
	// known, when set, interns member IDs: a decoded ID that names a known
	// member reuses that member's string instead of allocating.
	known map[string]*member
}

func newDecoder() *decoder {
	d := &decoder{}
	d.dec = msgpack.NewDecoder(&d.r)
	return d
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// decodePacket decodes data into msgs (reusing its storage) and returns it.
func (d *decoder) decodePacket(data []byte, msgs []message) ([]message, error) {
	d.r.Reset(data)
	d.dec.ResetReader(&d.r)
	n, err := d.arrayLen()
	if err != nil {
		return msgs, err
	}
	if n != 2 {
		return msgs, malformed("packet has %d fields, want 2", n)
	}
	v, err := d.uint()
	if err != nil {
		return msgs, err
	}
	if v != Version {
		return msgs, fmt.Errorf("%w: %d (want %d)", ErrVersion, v, Version)
	}
	if n, err = d.arrayLen(); err != nil {
		return msgs, err
	}
	if n > 1+MaxUpdates {
		return msgs, malformed("%d messages in one packet, limit %d", n, 1+MaxUpdates)
	}
	msgs = msgs[:0]
	primaries := 0
	for range n {
		var m message
		if err := d.decodeMsg(&m); err != nil {
			return msgs, err
		}
		if !m.kind.update() {
			if primaries++; primaries > 1 {
				return msgs, malformed("more than one primary message in a packet")
			}
		}
		msgs = append(msgs, m)
	}
	if n-primaries > MaxUpdates {
		return msgs, malformed("%d updates in one packet, limit %d", n-primaries, MaxUpdates)
	}
	if d.r.Len() != 0 {
		return msgs, malformed("%d trailing bytes", d.r.Len())
	}
	return msgs, nil
}

func (d *decoder) decodeMsg(m *message) error {
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	if n < 2 {
		return malformed("message has %d fields", n)
	}
	k, err := d.uint()
	if err != nil {
		return err
	}
	m.kind = kind(k)
	if k >= uint64(len(fieldCount)) || fieldCount[k] == 0 {
		return malformed("unknown message kind %d", k)
	}
	if want := fieldCount[k]; n != want {
		return malformed("message kind %d has %d fields, want %d", k, n, want)
	}
	switch m.kind {
	case kindPing:
		m.seq, err = d.seq()
		if err == nil {
			m.id, err = d.id()
		}
	case kindPingReq:
		m.seq, err = d.seq()
		if err == nil {
			m.id, err = d.id()
		}
		if err == nil {
			m.addr, err = d.str(MaxAddrLen)
		}
		if err == nil {
			m.nack, err = d.dec.DecodeBool()
		}
	case kindAck, kindNack:
		m.seq, err = d.seq()
	case kindCookie:
		m.token, err = d.bytes(tokenLen)
		if err == nil {
			m.cookie, err = d.bytes(cookieLen)
		}
	case kindAlive:
		m.inc, err = d.uint()
		if err == nil {
			m.id, err = d.id()
		}
		if err == nil {
			m.addr, err = d.addrOf(m.id)
		}
		if err == nil {
			m.meta, err = d.bytes(MaxMetaLen)
		}
	case kindSuspect, kindDead:
		m.inc, err = d.uint()
		if err == nil {
			m.id, err = d.id()
		}
		if err == nil {
			m.from, err = d.id()
		}
	case kindPushPull:
		err = d.pushPull(m)
	case kindBroadcast, kindUserMsg:
		err = d.decodeUser(m)
	}
	if err != nil && !errors.Is(err, ErrMalformed) {
		err = fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return err
}

func (d *decoder) pushPull(m *message) error {
	var err error
	if m.id, err = d.id(); err != nil {
		return err
	}
	if m.flags, err = d.uint(); err != nil {
		return err
	}
	if m.token, err = d.bytes(tokenLen); err != nil {
		return err
	}
	if m.cookie, err = d.bytes(cookieLen); err != nil {
		return err
	}
	// The user state's bound is the packet's; the core refuses more than
	// Config.MaxStateLen.
	if m.state, err = d.bytes(MaxMTU); err != nil {
		return err
	}
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	// arrayLen bounded n by the bytes left; a member record takes at
	// least minStateLen of them, so that bounds the records that can follow.
	m.states = make([]Member, 0, min(n, d.r.Len()/minStateLen))
	for range n {
		if k, err := d.arrayLen(); err != nil || k != 5 {
			return errors.Join(err, malformed("member record has %d fields, want 5", k))
		}
		var s Member
		if s.ID, err = d.id(); err != nil {
			return err
		}
		if s.Addr, err = d.addrOf(s.ID); err != nil {
			return err
		}
		if s.Incarnation, err = d.uint(); err != nil {
			return err
		}
		st, err := d.uint()
		if err != nil {
			return err
		}
		if st > uint64(StateLeft) {
			return malformed("member state %d", st)
		}
		s.State = State(st)
		if s.Meta, err = d.bytes(MaxMetaLen); err != nil {
			return err
		}
		m.states = append(m.states, s)
	}
	return nil
}

func (d *decoder) uint() (uint64, error) {
	v, err := d.dec.DecodeUint64()
	if err != nil {
		return 0, malformed("%v", err)
	}
	return v, nil
}

// seq decodes a sequence number, below 2^63 (convention for every counter
// from the wire: local ones count up from 0 and never reach it).
func (d *decoder) seq() (uint64, error) {
	v, err := d.uint()
	if err == nil && v >= 1<<63 {
		return 0, malformed("sequence number %d at or above 2^63", v)
	}
	return v, err
}

// arrayLen decodes an array header whose elements (at least one byte each)
// fit in the remaining input.
func (d *decoder) arrayLen() (int, error) {
	n, err := d.dec.DecodeArrayLen()
	if err != nil {
		return 0, malformed("%v", err)
	}
	if n < 0 || n > d.r.Len() {
		return 0, malformed("array of %d elements in %d bytes", n, d.r.Len())
	}
	return n, nil
}

// raw decodes a str or bin of at most limit bytes into d.scratch and returns
// it; the result is valid until the next call.
func (d *decoder) raw(limit int) ([]byte, error) {
	n, err := d.dec.DecodeBytesLen()
	if err != nil {
		return nil, malformed("%v", err)
	}
	if n == -1 {
		return nil, nil
	}
	if n > limit || n > d.r.Len() {
		return nil, malformed("string of %d bytes (limit %d, %d left)", n, limit, d.r.Len())
	}
	d.scratch = append(d.scratch[:0], make([]byte, n)...)
	if err := d.dec.ReadFull(d.scratch); err != nil {
		return nil, malformed("%v", err)
	}
	return d.scratch, nil
}

func (d *decoder) str(limit int) (string, error) {
	b, err := d.raw(limit)
	return string(b), err
}

// addrOf decodes the address of member id, reusing the known member's
// address string when it is unchanged.
func (d *decoder) addrOf(id string) (string, error) {
	b, err := d.raw(MaxAddrLen)
	if err != nil {
		return "", err
	}
	if m, ok := d.known[id]; ok && m.Addr == string(b) {
		return m.Addr, nil
	}
	return string(b), nil
}

// id decodes a non-empty member ID.
func (d *decoder) id() (string, error) {
	b, err := d.raw(MaxIDLen)
	switch {
	case err != nil:
		return "", err
	case len(b) == 0:
		return "", malformed("empty member ID")
	}
	if m, ok := d.known[string(b)]; ok {
		return m.ID, nil
	}
	return string(b), nil
}

// bytes decodes a str or bin of at most limit bytes into a new slice (nil
// when empty).
func (d *decoder) bytes(limit int) ([]byte, error) {
	b, err := d.raw(limit)
	if len(b) == 0 {
		return nil, err
	}
	return bytes.Clone(b), err
}
