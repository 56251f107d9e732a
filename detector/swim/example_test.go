package swim_test

import (
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
