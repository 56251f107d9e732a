package simnet

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// pinger pings its peer every period and answers pings; it logs what it
// sees.
type pinger struct {
	name, peer string
	net        *Network[string]
	period     time.Duration
	next       time.Time
	log        *[]string
}

func (p *pinger) Deliver(m Message[string]) {
	*p.log = append(*p.log, fmt.Sprintf("%v %s<-%s %s", m.At.Sub(p.net.Now().Truncate(time.Hour)), p.name, m.From, m.Payload))
	if m.Payload == "ping" {
		p.net.Send(p.name, m.From, "pong")
	}
}

func (p *pinger) Deadline() time.Time { return p.next }

func (p *pinger) Tick(now time.Time) {
	if now.Before(p.next) {
		panic("ticked early")
	}
	p.net.Send(p.name, p.peer, "ping")
	p.next = now.Add(p.period)
}

func runPingers(seed uint64) []string {
	net := New[string](Config{Seed: seed, Default: Link{MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond, Loss: 0.2}})
	sim := NewSim(net)
	var log []string
	sim.Add("a", &pinger{name: "a", peer: "b", net: net, period: 20 * time.Millisecond, next: net.Now(), log: &log})
	sim.Add("b", &pinger{name: "b", peer: "a", net: net, period: 35 * time.Millisecond, next: net.Now(), log: &log})
	sim.Run(net.Now().Add(time.Second), nil)
	return log
}

func TestSimDeterministic(t *testing.T) {
	for seed := range uint64(10) {
		a := runPingers(seed)
		require.Equal(t, a, runPingers(seed), "seed %d", seed)
		require.NotEmpty(t, a)
	}
}

func TestSimOrderAndDone(t *testing.T) {
	net := New[string](Config{Seed: 1, Default: Link{MinDelay: 10 * time.Millisecond}})
	sim := NewSim(net)
	var log []string
	a := &pinger{name: "a", peer: "b", net: net, period: 100 * time.Millisecond, next: net.Now(), log: &log}
	sim.Add("a", a)
	sim.Add("b", &pinger{name: "b", peer: "a", net: net, log: &log}) // no timer
	start := net.Now()
	require.False(t, sim.Run(start.Add(250*time.Millisecond), func() bool { return false }))
	require.Equal(t, []string{
		"10ms b<-a ping", "20ms a<-b pong",
		"110ms b<-a ping", "120ms a<-b pong",
		"210ms b<-a ping", "220ms a<-b pong",
	}, log)
	require.Equal(t, start.Add(250*time.Millisecond), net.Now())
	// done stops the run at the event that satisfies it.
	require.True(t, sim.Run(start.Add(time.Hour), func() bool { return len(log) == 8 }))
	require.Equal(t, start.Add(320*time.Millisecond), net.Now())
	// Messages to unknown names are dropped; Add replaces a process.
	net.Send("a", "nobody", "x")
	sim.Add("a", &pinger{name: "a", net: net, log: &log})
	sim.Run(net.Now().Add(time.Hour), nil)
	require.Len(t, log, 8)
	require.Panics(t, func() { sim.Run(start, nil) })
}
