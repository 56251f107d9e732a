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
