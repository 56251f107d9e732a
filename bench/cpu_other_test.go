//go:build !unix

package bench

import "time"

// processCPU returns 0 where getrusage is not available: the benchmarks
// then report no CPU time.
func processCPU() time.Duration { return 0 }
