package swim

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recorder is a StateDelegate that sends its state and records the
// states it merges.
type recorder struct {
	state  []byte
	joins  []bool // the join argument of every LocalState call
	merged []string
}

func (r *recorder) LocalState(join bool) []byte {
	r.joins = append(r.joins, join)
	return r.state
}

func (r *recorder) MergeRemoteState(state []byte, join bool) {
	r.merged = append(r.merged, fmt.Sprintf("%s join=%v", state, join))
}

// TestUserStateExchange: a push-pull exchange carries each side's user
// state to the other, with the join flag of a joining node's exchange
// on both sides; only the full-state messages carry it.
func TestUserStateExchange(t *testing.T) {
	for _, join := range []bool{false, true} {
		ra, rb := &recorder{state: []byte("A")}, &recorder{state: []byte("B")}
		a := newCore(t, "a", Config{UserState: ra})
		b := newCore(t, "b", Config{UserState: rb})
		flags := uint64(ppWantReply)
		if join {
			flags |= ppJoin
		}
		a.out = a.out[:0]
		a.requestState(t0, "b", flags)
		exchange(t, t0, "a", a.out, a, b)
		want := fmt.Sprintf("join=%v", join)
		require.Equal(t, []string{"A " + want}, rb.merged)
		require.Equal(t, []string{"B " + want}, ra.merged)
		require.Equal(t, []bool{join}, ra.joins)
		require.Equal(t, []bool{join}, rb.joins)
		_, ok := a.Member("b")
		require.True(t, ok, "membership exchanged as before")
	}
}

// TestUserStateBounds: a remote user state above MaxStateLen is not
// merged, and counted, while the members of its packet are; one above
// any packet does not decode; a local state above MaxStateLen is not
// sent, and counted; MaxStateLen is at most what fits in one packet,
// and a state of that size does, sealed and with the longest ID.
func TestUserStateBounds(t *testing.T) {
	r := &recorder{}
	c := newCore(t, "a", Config{UserState: r, MaxStateLen: 100})
	members := []Member{{ID: "m", Addr: "m", Incarnation: 1}}
	_, err := c.Receive(t0, "x", packet(message{kind: kindPushPull, id: "x", state: make([]byte, 101), states: members}))
	require.NoError(t, err)
	require.Empty(t, r.merged)
	require.Equal(t, 1, c.Stats().OversizedStates)
	_, ok := c.Member("m")
	require.True(t, ok)
	_, err = c.Receive(t0, "x", packet(message{kind: kindPushPull, id: "x", state: []byte("ok")}))
	require.NoError(t, err)
	require.Equal(t, []string{"ok join=false"}, r.merged)
	_, err = c.Receive(t0, "x", packet(message{kind: kindPushPull, id: "x", state: make([]byte, MaxMTU+1)}))
	require.ErrorIs(t, err, ErrMalformed)

	r.state = make([]byte, 101)
	c.out = c.out[:0]
	c.sendState("x", ppWantReply, nil)
	for _, m := range decodeAll(t, c.out) {
		require.Nil(t, m.state)
	}
	require.Equal(t, 2, c.Stats().OversizedStates)

	_, err = New(Config{ID: "a", Addr: "a", MaxStateLen: 1400 - pushPullOverhead + 1}, t0)
	require.ErrorIs(t, err, ErrConfig)
	kr, err := NewKeyring(key(1))
	require.NoError(t, err)
	long := string(bytes.Repeat([]byte{'i'}, MaxIDLen))
	big := &recorder{state: bytes.Repeat([]byte{'s'}, MinMTU-pushPullOverhead)}
	c, err = New(Config{ID: long, Addr: long, MTU: MinMTU, Keyring: kr, UserState: big, Incarnation: 1 << 62}, t0)
	require.NoError(t, err)
	require.Equal(t, MinMTU-pushPullOverhead, c.cfg.MaxStateLen)
	c.out = c.out[:0]
	c.requestState(t0, "x", ppWantReply|ppJoin)
	require.Len(t, c.out, 2, "the state, then the member")
	for _, p := range c.out {
		require.LessOrEqual(t, len(p.Data), MinMTU)
	}
	require.Zero(t, c.Stats().OversizedStates)
}

// TestUserStateJoin: a node joining a simulated cluster merges its
// seed's user state with join set, and the seed merges the joiner's.
func TestUserStateJoin(t *testing.T) {
	c := newCluster(t, 1, 4, Config{}, lan)
	c.waitConverged(time.Minute)
	seed := &recorder{state: []byte("seed")}
	c.nodes[0].core.cfg.UserState = seed
	r := &recorder{state: []byte("fresh")}
	sn := &simNode{c: c, cfg: Config{ID: "fresh", Addr: "fresh", Seeds: []string{"n000"}, UserState: r}}
	c.nodes = append(c.nodes, sn)
	c.sim.Add("fresh", sn)
	c.boot(sn)
	c.waitConverged(time.Minute)
	require.Contains(t, r.merged, "seed join=true")
	require.Contains(t, seed.merged, "fresh join=true")
}
