package detector_test

import (
	"fmt"
	"time"

	"github.com/distkit/distkit/detector"
)

// A node heartbeats every second, then falls silent: φ climbs past the
// threshold of 8 about half a second after the heartbeat it missed.
func ExamplePhi() {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fd := detector.NewPhi(detector.PhiConfig{})
	for i := range 30 {
		fd.Heartbeat(start.Add(time.Duration(i) * time.Second))
	}
	last := start.Add(29 * time.Second)
	for _, silence := range []time.Duration{500 * time.Millisecond, time.Second, 1300 * time.Millisecond, 1600 * time.Millisecond} {
		now := last.Add(silence)
		fmt.Printf("after %v: phi %.2f available %v\n", silence, fd.Phi(now), fd.Available(now))
	}
	// Output:
	// after 500ms: phi 0.00 available true
	// after 1s: phi 0.30 available true
	// after 1.3s: phi 2.91 available true
	// after 1.6s: phi 10.78 available false
}

func ExamplePhiOf() {
	// Akka's realistic values: mean 1s, standard deviation 100ms.
	for _, elapsed := range []time.Duration{time.Second, 1200 * time.Millisecond, 1400 * time.Millisecond, 1700 * time.Millisecond} {
		fmt.Printf("%v: %.1f\n", elapsed, detector.PhiOf(elapsed, time.Second, 100*time.Millisecond))
	}
	// Output:
	// 1s: 0.3
	// 1.2s: 1.6
	// 1.4s: 4.7
	// 1.7s: 15.4
}

// A registry watches a cluster; one node stops heartbeating.
func ExampleRegistry() {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	reg := detector.NewRegistry(func() *detector.Phi {
		return detector.NewPhi(detector.PhiConfig{AcceptablePause: 3 * time.Second})
	}, detector.RegistryConfig{})
	for s := range 60 {
		now := start.Add(time.Duration(s) * time.Second)
		reg.Heartbeat("a", now)
		reg.Heartbeat("b", now)
		if s < 50 {
			reg.Heartbeat("c", now) // c crashes after 49s
		}
		if suspects := reg.Suspects(now); len(suspects) > 0 {
			fmt.Println(s, suspects)
		}
	}
	// Output:
	// 54 [c]
	// 55 [c]
	// 56 [c]
	// 57 [c]
	// 58 [c]
	// 59 [c]
}

// The exponential model forgives more and detects later than Phi.
func ExampleExponential() {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fd := detector.NewExponential(detector.ExponentialConfig{FirstHeartbeat: time.Second})
	fd.Heartbeat(start)
	for _, silence := range []time.Duration{time.Second, 10 * time.Second, 18 * time.Second, 19 * time.Second} {
		now := start.Add(silence)
		fmt.Printf("after %v: phi %.2f available %v\n", silence, fd.Phi(now), fd.Available(now))
	}
	// Output:
	// after 1s: phi 0.43 available true
	// after 10s: phi 4.34 available true
	// after 18s: phi 7.82 available true
	// after 19s: phi 8.25 available false
}

func ExampleTimeout() {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	fd := detector.NewTimeout(2 * time.Second)
	fd.Heartbeat(start)
	fmt.Println(fd.Available(start.Add(2*time.Second)), fd.Available(start.Add(2*time.Second+1)))
	// Output: true false
}
