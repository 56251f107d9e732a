// Package stores is the root of the stores module, which keeps distkit's
// idempotency records and sagas in databases users already run, tested on
// real servers: package [github.com/distkit/distkit/stores/postgres]
// (idempotency store, atomic phases, saga log, saga barrier) and package
// [github.com/distkit/distkit/stores/redis] (idempotency store). It is a
// module of its own so that the library never depends on a database
// driver. This package holds the module's side-by-side benchmarks.
//
// # Usage
//
//	go test -run '^$' -bench . -benchmem github.com/distkit/distkit/stores
//
// # Guarantees
//
// Every store here passes the conformance suite of the interface it
// implements (idempotency/idempotencytest, saga/sagatest) against a
// throwaway server started by the tests.
package stores
