package swim_test

import (
	"context"
	"fmt"
	"time"

	"github.com/distkit/distkit/detector/swim"
)

// Two cores exchange packets by hand: b joins through a, then a stops
// answering and b declares it dead.
func Example() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := swim.New(swim.Config{ID: "a", Addr: "addr-a"}, now)
	b, _ := swim.New(swim.Config{ID: "b", Addr: "addr-b", Seeds: []string{"addr-a"}}, now)
	cores := map[string]*swim.Core{"addr-a": a, "addr-b": b}
	down := map[string]bool{}
	var deliver func(from string, out []swim.Packet)
	deliver = func(from string, out []swim.Packet) {
		for _, p := range append([]swim.Packet(nil), out...) {
			if !down[p.Addr] {
				reply, _ := cores[p.Addr].Receive(now, from, p.Data)
				deliver(p.Addr, reply)
			}
		}
	}
	run := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(100 * time.Millisecond) {
			for _, addr := range []string{"addr-a", "addr-b"} {
				if !down[addr] {
					deliver(addr, cores[addr].Tick(now))
				}
			}
		}
	}
	run(2 * time.Second)
	down["addr-a"] = true
	run(time.Minute)
	for _, e := range b.PopEvents(nil) {
		fmt.Println(e.Kind, e.Member.ID)
	}
	// Output:
	// joined a
	// suspected a
	// failed a
}

// Two nodes on loopback UDP: b joins through a, a leaves, and b's loop
// over Changed ends when b is closed.
func ExampleStart() {
	ctx := context.Background()
	start := func(id string, seeds ...string) (*swim.Node, *swim.UDP) {
		udp, err := swim.ListenUDP("127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		core, err := swim.New(swim.Config{ID: id, Addr: udp.Addr(), Seeds: seeds}, time.Now())
		if err != nil {
			panic(err)
		}
		return swim.Start(ctx, core, udp, nil), udp
	}
	a, udpA := start("a")
	defer udpA.Close()
	defer a.Close()
	b, udpB := start("b", udpA.Addr())
	defer udpB.Close()

	for range b.Changed() {
		for _, e := range b.PopEvents(nil) {
			fmt.Println(e.Kind, e.Member.ID)
			switch e.Kind {
			case swim.EventJoined:
				if err := a.Leave(ctx); err != nil { // returns once b acknowledged it
					fmt.Println(err)
				}
			case swim.EventLeft:
				b.Close() // closes Changed: the loop ends
			}
		}
	}
	fmt.Println("b stopped")
	// Output:
	// joined a
	// left a
	// b stopped
}

// Four cores exchange packets by hand. a's event queue holds two events,
// so of the three joins it sees, the oldest are dropped and an
// EventResync says to rebuild the view from Members. Then a broadcasts its
// configuration twice under one name (the second invalidates the first,
// which is never sent) and b sends c a message.
func ExampleCore_Broadcast() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := []string{"a", "b", "c", "d"}
	cores := map[string]*swim.Core{}
	for i, id := range ids {
		cfg := swim.Config{ID: id, Addr: id, RandSeed: uint64(i)}
		if id == "a" {
			cfg.MaxEvents = 2
		} else {
			cfg.Seeds = []string{"a"}
		}
		cores[id], _ = swim.New(cfg, now)
	}
	var deliver func(from string, out []swim.Packet)
	deliver = func(from string, out []swim.Packet) {
		for _, p := range append([]swim.Packet(nil), out...) {
			reply, _ := cores[p.Addr].Receive(now, from, p.Data)
			deliver(p.Addr, reply)
		}
	}
	run := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(100 * time.Millisecond) {
			for _, id := range ids {
				deliver(id, cores[id].Tick(now))
			}
		}
	}
	run(3 * time.Second)

	a := cores["a"]
	for _, e := range a.PopEvents(nil) {
		if e.Kind == swim.EventResync { // events were dropped: start again from a snapshot
			for _, m := range a.Members(nil) {
				fmt.Println("resync:", m.ID, m.State)
			}
			continue
		}
		fmt.Println(e.Kind, e.Member.ID)
	}

	a.Broadcast("config", []byte("v1"), func() { fmt.Println("v1 finished") })
	a.Broadcast("config", []byte("v2"), func() { fmt.Println("v2 finished") })
	out, _ := cores["b"].SendTo(now, "c", []byte("hello"))
	deliver("b", out)
	run(3 * time.Second)
	for _, id := range ids {
		for _, m := range cores[id].PopMessages(nil) {
			if m.Direct {
				fmt.Printf("%s got %q from %s, to it alone\n", id, m.Payload, m.From)
			} else {
				fmt.Printf("%s got %s=%s broadcast by %s\n", id, m.Name, m.Payload, m.From)
			}
		}
	}
	// Output:
	// resync: a alive
	// resync: b alive
	// resync: c alive
	// resync: d alive
	// joined d
	// v1 finished
	// v2 finished
	// b got config=v2 broadcast by a
	// c got "hello" from b, to it alone
	// c got config=v2 broadcast by a
	// d got config=v2 broadcast by a
}
