package cputime_test

import (
	"runtime"
	"testing"

	"github.com/distkit/distkit/internal/cputime"
)

// TestProcessCountsWork checks that busy work moves the reading forward
// on systems that have one.
func TestProcessCountsWork(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "plan9" || runtime.GOOS == "js" || runtime.GOOS == "wasip1" {
		t.Skip("no process CPU time here")
	}
	start := cputime.Process()
	x := uint64(1)
	for range 50_000_000 { // some tens of milliseconds
		x = x*6364136223846793005 + 1442695040888963407
	}
	got := cputime.Process()
	if got <= start {
		t.Fatalf("CPU time did not move over busy work (%d): %v, then %v", x, start, got)
	}
}
