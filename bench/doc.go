// Package bench runs the same work through distkit and through peer
// libraries in one `go test -bench` run, so their numbers can be compared
// side by side. It is a module of its own so that the peers never become
// dependencies of the library's users.
package bench
