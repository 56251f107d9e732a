package swim

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPushEventModel: the event queue against a model on random
// histories of pushes and pops: without an overflow since the last pop it
// holds every event; after one, an EventResync and the newest max-1; the
// dropped count is every event pushed and never returned.
func TestPushEventModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 2))
	for range 300 {
		limit := 1 + r.IntN(6)
		q, pushed := []Event{}, []Event{} // pushed: since the last pop
		var dropped, popped, total uint64
		for i := range 200 {
			if r.IntN(8) == 0 {
				want := pushed
				if len(pushed) > limit {
					want = append([]Event{{Kind: EventResync, At: pushed[len(pushed)-1].At}}, pushed[len(pushed)-(limit-1):]...)
				}
				require.Equal(t, want, q, "seed %d", seed)
				for _, e := range q {
					if e.Kind != EventResync {
						popped++
					}
				}
				q, pushed = q[:0], []Event{}
				continue
			}
			e := Event{Kind: EventJoined, Member: Member{ID: fmt.Sprint(i)}, At: t0.Add(time.Duration(i))}
			var d uint64
			q, d = pushEvent(q, e, limit)
			dropped += d
			total++
			pushed = append(pushed, e)
			require.LessOrEqual(t, len(q), limit)
		}
		for _, e := range q {
			if e.Kind != EventResync {
				popped++
			}
		}
		require.Equal(t, total, popped+dropped, "seed %d: every event is returned or counted", seed)
	}
}

// TestNodeSlowConsumer: a consumer that takes 3 s over each batch of
// events while 12 members join and 6 of them fail never holds the
// protocol up (no member ever suspects the consumer's node), the queue
// stays within MaxEvents, the dropped events are counted, and a consumer
// that rebuilds its view from Members on EventResync ends with the same
// view as the node.
func TestNodeSlowConsumer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		net := &memNet{ports: map[string]*chanTransport{}}
		var nodes []*Node
		start := func(id string, cfg Config) *Node {
			cfg.ID, cfg.Addr, cfg.RandSeed = id, id, uint64(len(nodes))
			if id != "a" {
				cfg.Seeds = []string{"a"}
			}
			core, err := New(cfg, time.Now())
			require.NoError(t, err)
			n := Start(ctx, core, net.listen(id), nil)
			nodes = append(nodes, n)
			return n
		}
		a := start("a", Config{MaxEvents: 4})
		suspected := 0
		view := map[string]State{}
		resyncs := 0
		consumed := make(chan struct{})
		go func() {
			defer close(consumed)
			for range a.Changed() {
				for _, e := range a.PopEvents(nil) {
					if e.Kind == EventResync {
						resyncs++
						clear(view)
						for _, m := range a.Members(nil) {
							view[m.ID] = m.State
						}
						continue
					}
					view[e.Member.ID] = e.Member.State
				}
				time.Sleep(3 * time.Second) // a slow consumer
			}
		}()
		for i := range 12 {
			start(fmt.Sprint("m", i), Config{})
		}
		time.Sleep(10 * time.Second)
		for _, n := range nodes[1:7] {
			n.Close()
		}
		for i := 1; i <= 6; i++ {
			net.close(fmt.Sprint("m", i-1))
		}
		for range 60 {
			time.Sleep(time.Second)
			for _, n := range nodes[7:] {
				if m, _ := n.Member("a"); m.State != StateAlive {
					suspected++
				}
			}
		}
		require.Zero(t, suspected, "the slow consumer's node was suspected")
		require.Positive(t, a.Stats().DroppedEvents)
		require.Positive(t, resyncs)
		want := map[string]State{}
		for _, m := range a.Members(nil) {
			want[m.ID] = m.State
		}
		for _, n := range nodes {
			n.Close()
		}
		<-consumed
		for _, e := range a.PopEvents(nil) { // the consumer may have stopped between a Changed and its pop
			view[e.Member.ID] = e.Member.State
		}
		delete(want, "a")
		delete(view, "a")
		require.Equal(t, want, view)
		require.Equal(t, 6, count(maps.Values(want), StateDead))
	})
}

func count[T comparable](seq func(func(T) bool), x T) int {
	n := 0
	for v := range seq {
		if v == x {
			n++
		}
	}
	return n
}

// TestNodeUserData: over Nodes, a broadcast reaches the other members at
// once (Broadcast wakes the node's goroutine: no wait for the next
// timer), its channel closes when it is done, a message reaches its
// member alone, and UpdateMeta is gossiped at once too.
func TestNodeUserData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := context.Background()
		net := &memNet{ports: map[string]*chanTransport{}}
		var nodes []*Node
		for i, id := range []string{"a", "b", "c"} {
			cfg := Config{ID: id, Addr: id, RandSeed: uint64(i)}
			if id != "a" {
				cfg.Seeds = []string{"a"}
			}
			core, err := New(cfg, time.Now())
			require.NoError(t, err)
			nodes = append(nodes, Start(ctx, core, net.listen(id), nil))
		}
		a, b, c := nodes[0], nodes[1], nodes[2]
		time.Sleep(10 * time.Second) // join and let updates drain
		synctest.Wait()
		for _, n := range nodes {
			require.Equal(t, 3, n.NumLive())
			n.PopEvents(nil)
		}

		done, err := a.Broadcast("cfg", []byte("v1"))
		require.NoError(t, err)
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		for _, n := range []*Node{b, c} {
			require.Equal(t, []Message{{From: "a", Name: "cfg", Payload: []byte("v1"), At: time.Now().Add(-20 * time.Millisecond)}}, n.PopMessages(nil))
		}
		select {
		case <-done:
			t.Fatal("finished before the retransmit limit")
		default:
		}
		time.Sleep(5 * time.Second)
		<-done
		require.Empty(t, b.PopMessages(nil), "delivered once")

		require.NoError(t, a.SendTo(ctx, "b", []byte("hi")))
		synctest.Wait()
		require.Equal(t, "hi", string(b.PopMessages(nil)[0].Payload))
		require.Empty(t, c.PopMessages(nil))
		require.ErrorIs(t, a.SendTo(ctx, "zz", nil), ErrUnknownMember)
		_, err = a.Broadcast("", make([]byte, MaxPayloadLen+1))
		require.ErrorIs(t, err, ErrPayloadSize)

		require.NoError(t, b.UpdateMeta([]byte("zone=2")))
		time.Sleep(20 * time.Millisecond)
		synctest.Wait()
		ev := a.PopEvents(nil)
		require.Len(t, ev, 1)
		require.Equal(t, EventUpdated, ev[0].Kind)
		require.Equal(t, "zone=2", string(ev[0].Member.Meta))

		for _, n := range nodes {
			n.Close()
		}
		require.True(t, errors.Is(a.SendTo(ctx, "b", nil), ErrClosed))
		_, err = a.Broadcast("", nil)
		require.ErrorIs(t, err, ErrClosed)
	})
}
