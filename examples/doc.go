// Package examples holds runnable programs that wire distkit's primitives
// together. It is a module of its own so that the library's users never
// inherit the examples' dependencies.
//
// Run one from the repository root, for example:
//
//	go run ./examples/clocks
//
// examples/payments (an idempotent payment API whose debits commit with
// their recorded responses) and examples/orders (a saga whose
// participants guard their SQL with the PostgreSQL barrier) need a
// PostgreSQL database: pass its connection string with -dsn. Their tests
// start a throwaway server (see stores/servertest).
package examples
