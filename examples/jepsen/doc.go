// Package jepsen tests kvnode, the store of package kv as processes, under
// faults of a real kernel network, in the manner of Jepsen: it runs one
// kvnode per network namespace, drives concurrent clients against them,
// injects faults on a seeded schedule, records every operation, and
// checks the history and the replicas' stores afterwards.
//
// # Usage
//
// As root, with ip (iproute2), nft (nftables) and tc:
//
//	go test ./examples/jepsen/ -run Jepsen -v                    # one seeded schedule, about 3 minutes
//	go test ./examples/jepsen/ -run Jepsen -v -seed 42           # replay seed 42
//	go test ./examples/jepsen/ -run Jepsen -v -long -seeds 20 -timeout 2h -out /tmp/jepsen
//
// Without root or the tools the test skips, saying why; with CI=true it
// fails instead. A failing seed prints the command that replays it.
// From Go, [Run] runs one schedule and returns a [Result]: its
// [Result.Report] is the text report and [Result.SVG] the timeline.
//
// # The network
//
// The harness creates a bridge, dkj-br0, in the root namespace with
// 10.77.0.1/24, and per node a namespace dkj-nI whose eth0 (10.77.0.11+I)
// is a veth onto the bridge. The clients run in the root namespace and
// reach every node over the bridge; the faults sit inside the nodes'
// namespaces, so the clients keep reaching every node that runs. Every
// name starts with [Prefix]; [Cleanup] removes them all (it runs before
// and after each run, also when the run fails or is interrupted) and
// nothing else. Hence one run at a time per machine: a run's first
// Cleanup removes another's network.
//
// # Faults
//
// [Schedule] orders the seven [FaultKind]s by seed and picks their
// targets: a majority/minority partition (nft drop rules in every
// node's output chain), an asymmetric one (one node's output chain drops
// what it sends to another; the other way works), a non-transitive one
// (A and C drop each other, B reaches both), a slow link (tc tbf at
// 32kbit on a node's eth0; netem is not used), a pause (SIGSTOP for
// longer than SWIM's longest suspicion, then SIGCONT: the node wakes up
// declared failed), a crash (SIGKILL, then a restart on the same disk),
// and a graceful leave (SIGTERM: the node hands its data over and leaves)
// followed by a fresh node joining in its place. Each fault lasts
// [Config.Hold], is healed, and the harness waits until every node sees
// every member alive again, then for [Config.Calm].
//
// # Guarantees
//
// The checks, over the whole history and the stores of the final
// members (read from disk after the nodes are stopped):
//   - no acknowledged write lost, no deleted value back, every key's
//     home replicas identical after heal and repair: [kv.Check], with
//     every write whose request failed as indeterminate;
//   - no stale read ([kv.CheckReads]): a read includes every acknowledged put that finished
//     before it began, unless a write invoked before the read completed
//     had that put's dot in its context (it may have replaced it), and
//     returns no value that an acknowledged write finished before it
//     began had replaced. The store's quorums are sloppy, so reads during
//     a fault may be stale by design: those are reported; stale reads in
//     calm periods fail the run. A paused node that wakes up is checked
//     like every other: whatever it acknowledges goes through the same
//     checks.
//
// Every client runs at most [Config.MaxOps] operations, each bounded by
// a request timeout, and stops when the schedule ends; every wait of
// the harness is bounded.
package jepsen
