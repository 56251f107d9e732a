// Package examples holds runnable programs that wire distkit's primitives
// together. It is a module of its own so that the library's users never
// inherit the examples' dependencies.
//
// Run one from the repository root, for example:
//
//	go run ./examples/clocks
package examples
