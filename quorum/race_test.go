//go:build race

package quorum_test

// raceEnabled reports a -race build, whose instrumentation allocates.
const raceEnabled = true
