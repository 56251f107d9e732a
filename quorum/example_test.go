package quorum_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/distkit/distkit/quorum"
)

func ExampleConfig() {
	for _, c := range []quorum.Config{{N: 3, R: 2, W: 2}, {N: 3, R: 1, W: 1}, {N: 3, R: 4, W: 1}} {
		if err := c.Validate(); err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%+v overlapping=%v write faults=%d read faults=%d stale=%.3f\n",
			c, c.Overlapping(), c.WriteFaults(), c.ReadFaults(), quorum.StaleProbability(c, 1))
	}
	// Output:
	// {N:3 R:2 W:2} overlapping=true write faults=1 read faults=1 stale=0.000
	// {N:3 R:1 W:1} overlapping=false write faults=2 read faults=2 stale=0.667
	// quorum: invalid argument: config {N:3 R:4 W:1}: read quorum R = 4: a read cannot wait for more than N = 3 replicas
}

func ExampleAvailability() {
	// Each replica is up 99.9% of the time; a QUORUM of 3 needs 2.
	fmt.Printf("available:   %.9f\n", quorum.Availability(3, 2, 0.999))
	fmt.Printf("unavailable: %.4g\n", quorum.Unavailability(3, 2, 0.999))
	// Output:
	// available:   0.999997002
	// unavailable: 2.998e-06
}

func ExampleLevel_Requirement() {
	p := quorum.Placement{
		Zones: map[string][]string{"eu": {"a", "b", "c"}, "us": {"d", "e", "f"}},
		Local: "eu",
	}
	for _, l := range []quorum.Level{quorum.LevelQuorum, quorum.LevelLocalQuorum, quorum.LevelEachQuorum} {
		req, err := l.Requirement(p)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%-12v min=%d a,b,d:%v a,d,e,f:%v a,b,d,e:%v\n", l, req.Min(),
			req.Satisfied([]string{"a", "b", "d"}),
			req.Satisfied([]string{"a", "d", "e", "f"}),
			req.Satisfied([]string{"a", "b", "d", "e"}))
	}
	// Output:
	// QUORUM       min=4 a,b,d:false a,d,e,f:true a,b,d,e:true
	// LOCAL_QUORUM min=2 a,b,d:true a,d,e,f:false a,b,d,e:true
	// EACH_QUORUM  min=4 a,b,d:false a,d,e,f:false a,b,d,e:true
}

// How soon after a write commits do reads with N=3, R=W=1 see it, when a
// write takes 10ms on average to reach a replica and messages otherwise
// take 1ms?
func ExampleWARS_Simulate() {
	fast := quorum.Exponential{Mean: time.Millisecond}
	m := quorum.WARS{W: quorum.Exponential{Mean: 10 * time.Millisecond}, A: fast, R: fast, S: fast}
	v, err := m.Simulate(quorum.Config{N: 3, R: 1, W: 1}, 20_000, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	window, _ := v.Window(0.999)
	fmt.Printf("consistent at commit: %.1f\n", v.Consistent(0))
	fmt.Printf("consistent 20ms later: %.1f\n", v.Consistent(20*time.Millisecond))
	fmt.Println("99.9% within 100ms:", window < 100*time.Millisecond)
	// Output:
	// consistent at commit: 0.4
	// consistent 20ms later: 0.9
	// 99.9% within 100ms: true
}

// A quorum read that calls only two replicas and a third when one fails.
func ExampleGather() {
	down := errors.New("connection refused")
	get := func(ctx context.Context, replica string) (string, error) {
		if replica == "b" {
			return "", down
		}
		return "v1@" + replica, nil
	}
	replies, err := quorum.Gather(context.Background(), []string{"b", "a", "c"}, 2, get, quorum.Hedge(0))
	fmt.Println(err)
	for _, r := range replies {
		fmt.Printf("%s: %q %v\n", r.Replica, r.Value, r.Err)
	}

	_, err = quorum.Gather(context.Background(), []string{"a", "b"}, 2, get)
	fmt.Println(errors.Is(err, quorum.ErrNoQuorum), errors.Is(err, down))
	// Output:
	// <nil>
	// b: "" connection refused
	// a: "v1@a" <nil>
	// c: "v1@c" <nil>
	// true true
}

// A write at EACH_QUORUM across two zones, calling only a quorum of each
// zone unless a call fails.
func ExampleGatherFor() {
	req, err := quorum.LevelEachQuorum.Requirement(quorum.Placement{
		Zones: map[string][]string{"eu": {"a", "b", "c"}, "us": {"d", "e", "f"}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	put := func(ctx context.Context, replica string) (string, error) {
		if replica == "d" {
			return "", errors.New("disk full")
		}
		return "ok", nil
	}
	replies, err := quorum.GatherFor(context.Background(), req, put, quorum.Hedge(0))
	fmt.Println(err)
	for _, r := range replies {
		fmt.Println(r.Replica, r.Value, r.Err)
	}
	// Output:
	// <nil>
	// a ok <nil>
	// b ok <nil>
	// d  disk full
	// e ok <nil>
	// f ok <nil>
}

func ExampleHedgeAt() {
	var tr quorum.Tracker // shared by every read of the cluster
	for range quorum.MinSamples {
		tr.Observe("a", 2*time.Millisecond)
		tr.Observe("b", 3*time.Millisecond)
	}
	p99, _ := tr.Quantile("b", 0.99)
	fmt.Println(p99)
	// Output: 3ms
}
