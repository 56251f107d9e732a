// Package cputime reads the CPU time of the running process, for
// benchmarks that report it next to wall time: on a shared, loaded
// machine wall time counts the time other processes ran, while the
// process's own user and system time, garbage collection included, does
// not.
//
// # Usage
//
//	start := cputime.Process()
//	for b.Loop() { ... }
//	b.ReportMetric(float64(cputime.Process()-start)/float64(b.N), "cpu-ns/op")
//
// # Guarantees
//
// On Unix systems [Process] is the user plus system time of every thread
// of the process so far, as getrusage(2) reports it, and never decreases.
// Elsewhere, or if the system refuses the call, it is 0, so that a
// difference of two readings is 0 rather than wrong.
package cputime
