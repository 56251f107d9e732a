package swim

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func key(b byte) []byte { return bytes.Repeat([]byte{b}, KeySize) }

func TestKeyringAPI(t *testing.T) {
	_, err := NewKeyring(make([]byte, 16))
	require.ErrorIs(t, err, ErrKey)
	k, err := NewKeyring(key(1), key(2))
	require.NoError(t, err)
	require.NoError(t, k.AddKey(key(2)), "adding an installed key does nothing")
	require.Equal(t, [][]byte{key(1), key(2)}, k.Keys())
	require.ErrorIs(t, k.UseKey(key(3)), ErrKey)
	require.ErrorIs(t, k.RemoveKey(key(1)), ErrKey, "the primary stays")
	require.NoError(t, k.UseKey(key(2)))
	require.NoError(t, k.RemoveKey(key(1)))
	require.NoError(t, k.RemoveKey(key(9)))
	require.Equal(t, [][]byte{key(2)}, k.Keys())
	require.ErrorIs(t, k.AddKey(nil), ErrKey)
}

// TestSealedPackets: cores with a keyring exchange sealed packets within
// the MTU; a packet sealed with another key or label, altered, truncated
// or not sealed is dropped, counted, and changes nothing.
func TestSealedPackets(t *testing.T) {
	ring := func(keys ...[]byte) *Keyring {
		k, err := NewKeyring(keys[0], keys[1:]...)
		require.NoError(t, err)
		return k
	}
	a := newCore(t, "a", Config{Keyring: ring(key(1)), Label: "prod", MTU: MinMTU})
	b := newCore(t, "b", Config{Keyring: ring(key(2), key(1)), Label: "prod"})
	// b learns a through a's push-pull (its join), sealed with key 1.
	out, err := a.Receive(t0, "b", nil)
	require.ErrorIs(t, err, ErrSealed)
	require.Empty(t, out)
	for i := range 60 { // enough members that a's state takes several packets
		id := fmt.Sprint("m", i)
		a.alive(t0, 0, id, id, bytes.Repeat([]byte{'x'}, 20))
	}
	_, err = b.Receive(t0, "a", a.sendStateTo(t, "b"))
	require.NoError(t, err)
	m, ok := b.Member("a")
	require.True(t, ok)
	require.Equal(t, "a", m.Addr)
	// b seals with key 2, which a does not have.
	reply := b.Tick(t0)
	require.NotEmpty(t, reply)
	for _, p := range reply {
		before := a.Members(nil)
		_, err := a.Receive(t0, "b", p.Data)
		require.ErrorIs(t, err, ErrSealed)
		require.Equal(t, before, a.Members(nil))
	}
	require.NoError(t, a.cfg.Keyring.AddKey(key(2)))
	ping := b.sealedPing(t, "a")
	out, err = a.Receive(t0, "b", ping)
	require.NoError(t, err)
	require.Len(t, out, 1)
	for _, p := range a.Leave(t0) {
		require.LessOrEqual(t, len(p.Data), MinMTU)
	}

	c := newCore(t, "c", Config{Keyring: ring(key(2)), Label: "prod"})
	bad := map[string][]byte{
		"other label": newCore(t, "d", Config{Keyring: ring(key(2)), Label: "test"}).sealedPing(t, "c"),
		"no label":    newCore(t, "d", Config{Keyring: ring(key(2))}).sealedPing(t, "c"),
		"unsealed":    packet(message{kind: kindPing, seq: 1, id: "c"}),
		"truncated":   ping[:len(ping)-1],
		"altered":     append(append([]byte(nil), ping[:20]...), append([]byte{ping[20] ^ 1}, ping[21:]...)...),
		"empty":       {},
	}
	for name, p := range bad {
		out, err := c.Receive(t0, "x", p)
		require.ErrorIs(t, err, ErrSealed, name)
		require.Empty(t, out, name)
	}
	require.Equal(t, len(bad), c.Stats().Unopened)
	require.Zero(t, c.Stats().Malformed)
	out, err = c.Receive(t0, "b", b.sealedPing(t, "c"))
	require.NoError(t, err)
	require.Len(t, out, 1, "a genuine packet opens")
}

// sendStateTo returns c's push-pull request to addr, its first packet.
func (c *Core) sendStateTo(t *testing.T, addr string) []byte {
	c.out = c.out[:0]
	c.sendState(addr, ppWantReply, nil)
	require.NotEmpty(t, c.out)
	return c.out[0].Data
}

// sealedPing returns a ping from c to the member id, sealed.
func (c *Core) sealedPing(t *testing.T, id string) []byte {
	c.out = c.out[:0]
	c.budget = 1 << 20
	c.send(id, &message{kind: kindPing, seq: 1, id: id})
	return c.out[0].Data
}

// TestKeyRotationSimulated: 8 nodes with their own keyrings rotate from
// one key to another, node by node (install, switch, remove), on a LAN:
// no packet fails to open, no node is ever suspected.
func TestKeyRotationSimulated(t *testing.T) {
	for _, seed := range seeds(2) {
		c := newCluster(t, seed, 8, Config{}, lan)
		for _, sn := range c.nodes {
			k, err := NewKeyring(key(1))
			require.NoError(t, err)
			sn.cfg.Keyring, sn.cfg.Label = k, "prod"
			c.boot(sn)
		}
		bad := 0
		c.onEvent = func(_ *simNode, e Event) {
			if e.Kind == EventSuspected || e.Kind == EventFailed {
				bad++
			}
		}
		c.waitConverged(time.Minute)
		for _, step := range []func(k *Keyring) error{
			func(k *Keyring) error { return k.AddKey(key(2)) },
			func(k *Keyring) error { return k.UseKey(key(2)) },
			func(k *Keyring) error { return k.RemoveKey(key(1)) },
		} {
			for _, sn := range c.nodes {
				require.NoError(t, step(sn.cfg.Keyring))
				c.runFor(3 * time.Second)
			}
		}
		c.runFor(10 * time.Second)
		for _, sn := range c.nodes {
			require.Zero(t, sn.core.Stats().Unopened, "seed %d: %s", seed, sn.cfg.ID)
			require.Equal(t, [][]byte{key(2)}, sn.cfg.Keyring.Keys())
		}
		require.Zero(t, bad, "seed %d: suspicions during the rotation", seed)
		require.True(t, c.converged(), "seed %d", seed)
	}
}

// FuzzReceiveSealed: a core with a keyring fed arbitrary packets never
// panics, and a packet that does not open changes nothing.
func FuzzReceiveSealed(f *testing.F) {
	k, err := NewKeyring(key(1))
	require.NoError(f, err)
	sender := newCore(f, "b", Config{Keyring: k})
	f.Add(sender.sealedPing(&testing.T{}, "a"))
	f.Add([]byte{sealVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := newCore(t, "a", Config{Keyring: k})
		before := c.Members(nil)
		if _, err := c.Receive(t0, "x", data); err != nil {
			require.Equal(t, before, c.Members(nil))
		}
	})
}

// TestSealedBadInput: packets that open under the cluster's key and label
// but carry an oversized payload (metadata above MaxMetaLen, more than
// MaxUpdates updates, a body larger than any datagram) are dropped whole
// and counted as malformed; a flood from one member (a captured packet replayed 1000 times,
// which is accepted once, then 1000 alive messages bumping its own
// incarnation) changes the membership once at most, keeps one queued
// update for that member, and costs replies within replyFactor of its
// bytes. Nothing panics.
func TestSealedBadInput(t *testing.T) {
	kr, err := NewKeyring(key(1))
	require.NoError(t, err)
	label := []byte("prod")
	seal := func(plain []byte) []byte { return kr.seal(nil, append(stamp(nil, t0), plain...), label) }
	c := attackTargetWith(t, Config{Keyring: kr, Label: "prod"})
	before := c.Members(nil)
	var many []message
	for i := range MaxUpdates + 1 {
		many = append(many, message{kind: kindAlive, id: fmt.Sprint("new-", i), addr: fmt.Sprint("new-", i)})
	}
	oversized := map[string][]byte{
		"metadata above MaxMetaLen": seal(packet(message{kind: kindAlive, inc: 9, id: "member-01", addr: "member-01:7946",
			meta: make([]byte, MaxMetaLen+1)})),
		"more than MaxUpdates updates": seal(packet(many...)),
		"a body above MaxMTU":          seal(append(packet(message{kind: kindPing, seq: 1, id: "a"}), make([]byte, MaxMTU)...)),
	}
	for name, p := range oversized {
		out, err := c.Receive(t0, "member-01:7946", p)
		require.ErrorIs(t, err, ErrMalformed, name)
		require.Empty(t, out, name)
		require.Equal(t, before, c.Members(nil), name)
	}
	require.Equal(t, len(oversized), c.Stats().Malformed)
	require.Zero(t, c.Stats().Unopened)
	require.Empty(t, c.PopEvents(nil))

	// One member floods: a captured packet (an update of its metadata
	// and a ping) replayed, then its own incarnation bumped a thousand
	// times.
	meta := []byte("new metadata")
	captured := seal(packet(message{kind: kindAlive, inc: 1, id: "member-01", addr: "member-01:7946", meta: meta},
		message{kind: kindPing, seq: 7, id: "a"}))
	var flood [][]byte
	for range 1000 {
		flood = append(flood, captured)
	}
	for i := range 1000 {
		flood = append(flood, seal(packet(message{kind: kindAlive, inc: uint64(2 + i), id: "member-01", addr: "member-01:7946", meta: meta})))
	}
	in, out, to := amplification(t, c, "member-01:7946", flood...)
	t.Logf("a flood of %d packets from one member: %d bytes in, %d bytes in %d packets out: %.2fx", len(flood), in, out, to["member-01:7946"], ratio(in, out))
	require.LessOrEqual(t, out, replyFactor*in)
	require.Equal(t, 1, to["member-01:7946"], "one ack for the captured ping, nothing else")
	require.Equal(t, 999, c.Stats().Replayed)
	events := c.PopEvents(nil)
	require.Len(t, events, 1, "one update of member-01's metadata")
	require.Equal(t, EventUpdated, events[0].Kind)
	require.Equal(t, len(before), len(c.Members(nil)))
	m, _ := c.Member("member-01")
	require.Equal(t, uint64(1001), m.Incarnation)
	require.LessOrEqual(t, c.queue.Len(), len(before), "one queued update per member at most")
	require.Equal(t, len(oversized), c.Stats().Malformed)
}
