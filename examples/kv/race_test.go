//go:build race

package kv

// raceEnabled reports whether the race detector is on: it allocates, so
// allocation counts are checked without it.
const raceEnabled = true
