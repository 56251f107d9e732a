// Package stamptest checks, in concurrency tests of clocks, that the
// timestamps several goroutines were handed are all distinct and increase
// within each goroutine.
//
// # Usage
//
//	results := make([][]uint64, goroutines) // each goroutine fills its own
//	... wg.Wait()
//	stamptest.RequireUnique(t, results)
//
// # Guarantees
//
// RequireUnique fails the test, naming the offending timestamp, exactly when
// some timestamp appears twice (in one goroutine or across goroutines) or a
// goroutine's timestamps do not strictly increase.
package stamptest

import (
	"cmp"
	"testing"
)

// RequireUnique fails t unless the timestamps in results, one slice per
// goroutine in the order that goroutine received them, are all distinct
// and each goroutine's strictly increase.
func RequireUnique[T cmp.Ordered](t testing.TB, results [][]T) {
	t.Helper()
	seen := make(map[T]bool)
	for g, out := range results {
		for i, ts := range out {
			if seen[ts] {
				t.Fatalf("timestamp %v returned twice", ts)
			}
			seen[ts] = true
			if i > 0 && ts <= out[i-1] {
				t.Fatalf("goroutine %d: %v after %v", g, ts, out[i-1])
			}
		}
	}
}
