package swim

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// benchCore returns a core that knows n members, with an empty queue.
func benchCore(b *testing.B, n int) *Core {
	c := newCore(b, "self", Config{})
	for i := range n {
		id := fmt.Sprintf("member-%03d", i)
		if _, err := c.Receive(t0, id, packet(message{kind: kindAlive, id: id, addr: id})); err != nil {
			b.Fatal(err)
		}
	}
	c.queue.items = c.queue.items[:0]
	c.PopEvents(nil)
	return c
}

// BenchmarkReceivePing is the common case: answer a ping with an ack.
func BenchmarkReceivePing(b *testing.B) {
	c := benchCore(b, 64)
	p := packet(message{kind: kindPing, seq: 1, id: "self"})
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Receive(t0, "member-001", p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTickPeriod runs one protocol period of a 64-member core: the
// tick that pings, the ack, and the tick that ends the probe.
func BenchmarkTickPeriod(b *testing.B) {
	c := benchCore(b, 64)
	c.cfg.PushPullInterval = -1 // measured on its own below
	e := newEncoder()
	var ack []byte
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		c.Tick(now)
		ack = e.packetHeader(ack[:0], 1)
		ack = e.encodeMsg(ack, &message{kind: kindAck, seq: c.probe.seq})
		if _, err := c.Receive(now, c.probe.target.Addr, ack); err != nil {
			b.Fatal(err)
		}
		now = now.Add(time.Second)
	}
}

// BenchmarkPushPullReply answers a push-pull from a 64-member core: the
// full state in MTU-sized packets.
func BenchmarkPushPullReply(b *testing.B) {
	c := benchCore(b, 64)
	p := c.pullRequest(t0, "member-001")
	b.ReportAllocs()
	for b.Loop() {
		clear(c.pp.replied) // past the rate limit
		if _, err := c.Receive(t0, "member-001", p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeCompound(b *testing.B) {
	c := benchCore(b, 64)
	for i := range 20 {
		c.broadcastAlive(c.all[1+i])
	}
	ping := message{kind: kindPing, seq: 1, id: "member-001"}
	b.ReportAllocs()
	for b.Loop() {
		c.out = c.out[:0]
		for i := range c.queue.items {
			c.queue.items[i].transmits = 0
		}
		c.send("member-001", &ping)
	}
	b.SetBytes(int64(len(c.out[0].Data)))
}

func BenchmarkDecodeCompound(b *testing.B) {
	msgs := []message{{kind: kindPing, seq: 1, id: "member-001"}}
	for i := range 20 {
		id := fmt.Sprintf("member-%03d", i)
		msgs = append(msgs, message{kind: kindAlive, inc: 3, id: id, addr: id})
	}
	p := packet(msgs...)
	d := newDecoder()
	var dst []message
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if dst, err = d.decodePacket(p, dst); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSealOpen seals a 200-byte packet with AES-256-GCM under the
// primary key of a keyring of two and opens it again.
func BenchmarkSealOpen(b *testing.B) {
	k, err := NewKeyring(bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize))
	if err != nil {
		b.Fatal(err)
	}
	plain, label := make([]byte, 200), []byte("prod")
	var sealed, opened []byte
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		sealed = k.seal(sealed[:0], plain, label)
		if opened, err = k.open(opened[:0], sealed, label); err != nil {
			b.Fatal(err)
		}
	}
}
