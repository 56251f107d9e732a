// Package distkit is a library of the primitives every distributed system
// needs, each in a small package of its own, built around transport- and
// storage-agnostic interfaces.
//
// This package holds no code; it is the map. Import the packages below.
//
//	Package                 What it gives you
//	clock                   the physical clock interface and Lamport clocks
//	clock/clocktest         a manual clock for tests
//	hlc                     hybrid logical clocks (Kulkarni et al. 2014)
//	vclock                  vector clocks, dots and dotted version vector sets
//	crdt                    state-based CRDTs with delta mutators
//	ring                    consistent hashing with bounded loads, rendezvous, jump
//	quorum                  N/R/W math, PBS staleness and quorum fan-out
//	detector                phi-accrual and heartbeat failure detectors
//	detector/swim           SWIM membership with Lifeguard
//	merkle                  incremental Merkle trees and anti-entropy exchange
//	idempotency             idempotency keys, an executor and HTTP middleware
//	idempotency/idempotencytest  a conformance suite for idempotency stores
//	saga                    a saga orchestrator with a durable log
//
// # Shared guarantees
//
// Pure cores. Algorithm types do no I/O, start no goroutines and never read
// the clock on their own: they take the current time, ticks or messages as
// arguments and return results or messages to send. Where a loop is needed
// a thin driver wraps the core, takes a context.Context, documents when its
// goroutines end and has Close. Everything is therefore testable
// deterministically, on a simulated network and in virtual time.
//
// Zero values. Wherever a zero value can be meaningful it is ready to use,
// and the type's documentation says so; constructors exist only where it
// cannot.
//
// Concurrency. Every exported type states whether it is safe for
// concurrent use. Hot paths (clock reads, comparisons, lookups) are
// allocation-free where the algorithm allows.
//
// Wire format. Every type that crosses a network or a disk encodes with
// msgpack, deterministically. Decoders never panic and never allocate
// more than their input justifies: malformed input is an error.
//
// Stable hashing. Placement and anti-entropy use xxhash, identical in
// every process and every version, never Go's randomized hashes.
//
// Dependencies. The library itself needs only msgpack, xxhash and
// golang.org/x/sync. The runnable examples and the side-by-side
// benchmarks against peer libraries live in separate modules.
//
// # Where to start
//
// Pick the package by the problem in front of you:
//
//   - ordering events across processes: hlc (or clock.Lamport);
//   - keeping concurrent writes as siblings instead of losing one:
//     vclock.DVVSet;
//   - replicated state that merges without coordination: crdt;
//   - deciding which nodes own a key: ring;
//   - reading and writing N replicas and reasoning about staleness: quorum;
//   - knowing who is alive: detector for heartbeats, detector/swim for
//     membership;
//   - finding where replicas diverge: merkle;
//   - retries that must not apply twice: idempotency;
//   - a business transaction across services: saga.
//
// The examples module wires the primitives into runnable programs.
package distkit
