// Package bench runs the same work through distkit and through peer
// libraries in one `go test -bench` run, so their numbers can be compared
// side by side. It is a module of its own so that the peers never become
// dependencies of the library's users.
//
// Every benchmark is named BenchmarkX/<case>/impl=<implementation>, with
// impl=distkit first, so that `benchstat -col /impl` puts each peer beside
// distkit. A peer the module proxy does not serve is written plainly in
// the benchmark after its published design and named after the design
// (impl=map for GoVector's vector clock, impl=tombstone for neurodrone's
// OR-Set, impl=dskit-design for grafana/dskit's DoUntilQuorum); a small
// test checks each such baseline against distkit, so that the comparison
// is between two correct implementations.
//
// The pairs: hlc_test.go (hybrid logical clocks), merkle_test.go
// (anti-entropy trees, with transparency-dev/merkle), vclock_test.go,
// ring_test.go (serialx/hashring, stathat/consistent,
// groupcache/consistenthash, go-rendezvous, go-jump), quorum_test.go,
// crdt_test.go, idempotency_test.go, saga_test.go, swim_test.go
// (hashicorp/memberlist) and seq_test.go (Yjs and Automerge, run under
// node from seqjs/ on the editing traces). Quality comparisons that are not timings (load
// balance, keys moved, state size, fan-out behaviour, failure detection)
// are Test functions named ...Table that log a markdown table; the
// -tables flag also appends the tables to a file, and -long enables the
// SWIM simulations, which take a minute or more.
//
// run.sh runs everything and regenerates RESULTS.md (see its header for
// COUNT, BENCHTIME, BENCH, APPEND and REPORT); notes.md, which describes
// every pair and quotes the peers' own published figures with their
// sources, is copied into it.
package bench
