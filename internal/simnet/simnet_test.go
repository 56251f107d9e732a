package simnet

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// trace runs a fixed random workload on a network seeded with seed and
// returns a transcript of every delivery.
func trace(seed uint64) []string {
	n := New[int](Config{Seed: seed, Default: Link{MinDelay: time.Millisecond, MaxDelay: 50 * time.Millisecond, Loss: 0.2, Duplicate: 0.1}})
	nodes := []string{"a", "b", "c", "d"}
	var out []string
	w := rand.New(rand.NewPCG(1, 2)) // the workload is the same for every seed
	for i := range 200 {
		n.Send(nodes[w.IntN(4)], nodes[w.IntN(4)], i)
		if i%20 == 0 {
			n.Advance(10*time.Millisecond, func(m Message[int]) {
				out = append(out, fmt.Sprintf("%s>%s %d @%v", m.From, m.To, m.Payload, m.At.Sub(m.Sent)))
				if m.Payload%3 == 0 { // handlers may send; replies are part of the run
					n.Send(m.To, m.From, -m.Payload)
				}
			})
		}
	}
	n.Advance(time.Second, func(m Message[int]) {
		out = append(out, fmt.Sprintf("%s>%s %d @%v", m.From, m.To, m.Payload, m.At.Sub(m.Sent)))
	})
	return out
}

func TestDeterministicPerSeed(t *testing.T) {
	for seed := range uint64(20) {
		a, b := trace(seed), trace(seed)
		require.Equal(t, a, b, "seed %d: two runs differ", seed)
		require.NotEqual(t, a, trace(seed+100), "seed %d: another seed gave the same run", seed)
	}
}

func TestDeliveryOrder(t *testing.T) {
	for seed := range uint64(20) {
		n := New[int](Config{Seed: seed, Default: Link{MaxDelay: 100 * time.Millisecond}})
		for i := range 500 {
			n.Send("a", "b", i)
		}
		var last Message[int]
		got := n.Advance(time.Second, func(m Message[int]) {
			require.Equal(t, m.At, n.Now(), "seed %d: handler sees the delivery time", seed)
			if last.Seq != 0 {
				c := last.At.Compare(m.At)
				require.True(t, c < 0 || c == 0 && last.Seq < m.Seq, "seed %d: out of order", seed)
			}
			last = m
		})
		require.Equal(t, 500, got, "seed %d", seed)
	}
}

func TestReorderingHappens(t *testing.T) {
	n := New[int](Config{Seed: 7, Default: Link{MaxDelay: 100 * time.Millisecond}})
	for i := range 100 {
		n.Send("a", "b", i)
	}
	inversions, prev := 0, -1
	n.Advance(time.Second, func(m Message[int]) {
		if m.Payload < prev {
			inversions++
		}
		prev = m.Payload
	})
	require.Positive(t, inversions, "random delays must reorder messages")
	// With a fixed delay, order is send order.
	n.SetDefault(Link{MinDelay: 5 * time.Millisecond})
	for i := range 100 {
		n.Send("a", "b", i)
	}
	prev = -1
	n.Advance(time.Second, func(m Message[int]) {
		require.Greater(t, m.Payload, prev)
		prev = m.Payload
	})
}

// TestLossRate checks the empirical loss rate against a 5-sigma binomial
// bound for several probabilities and seeds.
func TestLossRate(t *testing.T) {
	const sends = 10000
	for _, p := range []float64{0, 0.01, 0.1, 0.5, 1} {
		for seed := range uint64(3) {
			n := New[struct{}](Config{Seed: seed, Default: Link{Loss: p}})
			for range sends {
				n.Send("a", "b", struct{}{})
			}
			delivered := n.Advance(0, func(Message[struct{}]) {})
			s := n.Stats()
			require.Equal(t, sends, s.Lost+delivered, "seed %d p %v", seed, p)
			sigma := math.Sqrt(sends * p * (1 - p))
			require.InDelta(t, sends*p, float64(s.Lost), 5*sigma+0.5, "seed %d p %v", seed, p)
		}
	}
}

func TestDuplication(t *testing.T) {
	const sends = 5000
	for seed := range uint64(3) {
		n := New[int](Config{Seed: seed, Default: Link{MaxDelay: 10 * time.Millisecond, Duplicate: 0.2}})
		for i := range sends {
			n.Send("a", "b", i)
		}
		seen := make(map[int]int)
		n.Advance(time.Second, func(m Message[int]) { seen[m.Payload]++ })
		dups := 0
		for i := range sends {
			require.Contains(t, []int{1, 2}, seen[i], "seed %d: message %d", seed, i)
			if seen[i] == 2 {
				dups++
			}
		}
		require.Equal(t, n.Stats().Duplicated, dups)
		require.InDelta(t, sends*0.2, float64(dups), 5*math.Sqrt(sends*0.2*0.8), "seed %d", seed)
	}
}

func TestPartitions(t *testing.T) {
	n := New[string](Config{Seed: 1, Default: Link{MinDelay: 10 * time.Millisecond}})
	got := map[string]bool{}
	deliver := func() {
		clear(got)
		n.Advance(time.Second, func(m Message[string]) { got[m.Payload] = true })
	}
	all := func() {
		for _, f := range []string{"a", "b", "c"} {
			for _, to := range []string{"a", "b", "c"} {
				if f != to {
					n.Send(f, to, f+to)
				}
			}
		}
	}

	n.Partition([]string{"a"}, []string{"b", "c"})
	all()
	deliver()
	require.Equal(t, map[string]bool{"bc": true, "cb": true}, got)

	n.Heal()
	n.Block("a", "b") // one way
	all()
	deliver()
	require.False(t, got["ab"])
	require.True(t, got["ba"])
	require.Len(t, got, 5)

	n.Heal()
	n.Isolate("c")
	all()
	deliver()
	require.Equal(t, map[string]bool{"ab": true, "ba": true}, got)
	n.Rejoin("c")
	all()
	deliver()
	require.Len(t, got, 6)

	// A partition drops messages already in flight when they arrive during
	// it; healing does not bring them back.
	n.Send("a", "b", "inflight")
	n.Advance(5*time.Millisecond, func(Message[string]) { t.Fatal("delivered early") })
	n.Partition([]string{"a"}, []string{"b"})
	require.Zero(t, n.Advance(10*time.Millisecond, func(Message[string]) {}))
	n.Heal()
	deliver()
	require.Empty(t, got)
	// A message sent before a partition and arriving after it heals is
	// delivered: the link was open at both ends of its flight.
	n.Send("a", "b", "across")
	n.Partition([]string{"a"}, []string{"b"})
	n.Heal()
	deliver()
	require.Equal(t, map[string]bool{"across": true}, got)
	s := n.Stats()
	require.Equal(t, s.Sent, s.Delivered+s.Blocked)
}

func TestPerLinkConfig(t *testing.T) {
	n := New[int](Config{Seed: 3, Default: Link{MinDelay: time.Millisecond}})
	n.SetLink("a", "b", Link{Delay: func(r *rand.Rand) time.Duration { return time.Duration(r.IntN(3)+1) * time.Second }})
	n.SetLink("b", "a", Link{Loss: 1})
	n.Send("a", "b", 1)
	n.Send("b", "a", 2)
	n.Send("a", "c", 3)
	m, ok := n.Step()
	require.True(t, ok)
	require.Equal(t, 3, m.Payload)
	require.Equal(t, time.Millisecond, m.At.Sub(m.Sent))
	m, ok = n.Step()
	require.True(t, ok)
	require.Equal(t, 1, m.Payload)
	require.Contains(t, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}, m.At.Sub(m.Sent))
	_, ok = n.Step()
	require.False(t, ok)
	require.Equal(t, Stats{Sent: 3, Lost: 1, Delivered: 2}, n.Stats())
}

func TestAdvanceDeliversChainsInWindow(t *testing.T) {
	n := New[int](Config{Seed: 1, Default: Link{MinDelay: 100 * time.Millisecond}})
	n.Send("a", "b", 0)
	hops := 0
	handle := func(m Message[int]) {
		hops++
		n.Send(m.To, m.From, m.Payload+1)
	}
	require.Equal(t, 10, n.Advance(time.Second, handle), "replies due inside the window are delivered")
	require.Equal(t, 1, n.Pending())
	start := n.Now()
	at, ok := n.Next()
	require.True(t, ok)
	require.Equal(t, start.Add(100*time.Millisecond), at)
}

func TestMisusePanics(t *testing.T) {
	n := New[int](Config{})
	require.PanicsWithValue(t, "simnet: Advance(-1ns) with a negative duration", func() { n.Advance(-1, nil) })
	require.Panics(t, func() { n.SetLink("a", "b", Link{Loss: 2}) })
	require.Panics(t, func() { New[int](Config{Default: Link{MinDelay: -1}}) })
}

// TestAdvanceStopsAtBlocked: a message dropped at arrival does not make
// AdvanceTo deliver a later message or move the clock past its target.
func TestAdvanceStopsAtBlocked(t *testing.T) {
	n := New[int](Config{Seed: 1})
	n.SetLink("a", "b", Link{MinDelay: 10 * time.Millisecond})
	n.SetLink("c", "b", Link{MinDelay: 50 * time.Millisecond})
	n.Send("a", "b", 1)
	n.Send("c", "b", 2)
	n.Block("a", "b")
	start := n.Now()
	require.Zero(t, n.Advance(20*time.Millisecond, func(Message[int]) { t.Fatal("delivered") }))
	require.Equal(t, start.Add(20*time.Millisecond), n.Now())
	require.Equal(t, 1, n.Pending())
}
