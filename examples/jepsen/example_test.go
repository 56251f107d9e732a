package jepsen_test

import (
	"fmt"

	"github.com/distkit/distkit/examples/jepsen"
)

// A seed's schedule over five nodes: every kind of fault once, in a
// seeded order, with seeded targets.
func ExampleSchedule() {
	for _, f := range jepsen.Schedule(1, 7, 5) {
		fmt.Println(f)
	}
	// Output:
	// partition [0 3]
	// kill [2]
	// asymmetric [3 1]
	// slow-link [0]
	// pause [3]
	// leave-join [3]
	// nontransitive [4 1 2]
}
