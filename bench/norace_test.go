//go:build !race

package bench

// raceEnabled reports whether the race detector is on: the quality tables,
// long single-goroutine computations, skip themselves under it.
const raceEnabled = false
