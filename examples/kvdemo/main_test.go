package main

import (
	"strings"
	"testing"
)

// The demo with short phases: every phase runs, and the checker passes.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster on loopback")
	}
	var out strings.Builder
	if err := run([]string{"-phase", "300ms", "-clients", "4", "-keys", "20", "-faults", "kill,partition,leave,join", "-data", t.TempDir()}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"steady load", "kill n5", "partition n4", "heal", "leave n1", "handed over", "restart n5", "join n6", "converge", "verdict: PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestDemoFlags(t *testing.T) {
	for _, args := range [][]string{{"-nodes", "2"}, {"-faults", "flood"}, {"-n", "3", "-w", "4"}} {
		if err := run(args, &strings.Builder{}); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}
