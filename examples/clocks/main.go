// Command clocks simulates three processes exchanging messages and stamps
// every event with a Lamport clock, showing that each receive is ordered
// after its send even though the processes share no physical clock.
//
//	go run ./examples/clocks [-seed N] [-events N]
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/distkit/distkit/clock"
)

type message struct {
	from, to int
	stamp    uint64
}

func main() {
	seed := flag.Uint64("seed", 1, "random seed for the event schedule")
	events := flag.Int("events", 12, "number of events to simulate")
	flag.Parse()
	if *events < 0 {
		fmt.Fprintln(os.Stderr, "clocks: -events must not be negative")
		os.Exit(2)
	}
	if !run(*seed, *events) {
		os.Exit(1)
	}
}

// run simulates the schedule and reports whether every receive was stamped
// after its send.
func run(seed uint64, events int) bool {
	r := rand.New(rand.NewPCG(seed, 0))
	names := []string{"A", "B", "C"}
	clocks := make([]clock.Lamport, len(names))
	var inFlight []message
	ok := true
	for range events {
		p := r.IntN(len(names))
		switch {
		case len(inFlight) > 0 && r.IntN(2) == 0:
			i := r.IntN(len(inFlight))
			m := inFlight[i]
			inFlight = append(inFlight[:i], inFlight[i+1:]...)
			t := clocks[m.to].Witness(m.stamp)
			fmt.Printf("%s receives from %s  sent@%-3d received@%d\n", names[m.to], names[m.from], m.stamp, t)
			ok = ok && t > m.stamp
		case r.IntN(2) == 0:
			to := (p + 1 + r.IntN(len(names)-1)) % len(names)
			t := clocks[p].Tick()
			inFlight = append(inFlight, message{from: p, to: to, stamp: t})
			fmt.Printf("%s sends to %s       @%d\n", names[p], names[to], t)
		default:
			fmt.Printf("%s local event      @%d\n", names[p], clocks[p].Tick())
		}
	}
	fmt.Printf("every receive after its send: %v\n", ok)
	return ok
}
