//go:build !race

package crdt

// raceEnabled reports whether the race detector is on: its
// instrumentation moves some values to the heap, so allocation counts
// differ.
const raceEnabled = false
