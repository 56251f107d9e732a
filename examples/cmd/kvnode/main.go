// Command kvnode runs one node of the replicated key-value store of
// package kv: its HTTP API on -listen, SWIM failure detection
// over UDP on -gossip (joining through -join), its data in -data.
//
// The ring follows SWIM's membership: a node that joins is added, one that
// leaves (SIGTERM) is removed, and the keys whose replicas changed are
// streamed to their new replicas. -peers optionally gives the ring to
// start with, as id=host:port (HTTP addresses) with an optional @zone, so
// that a fresh cluster places keys alike from its first request.
//
//	kvnode -id n1 -listen 127.0.0.1:7001 -gossip 127.0.0.1:7101 -zone z1 -data /tmp/n1
//	kvnode -id n2 -listen 127.0.0.1:7002 -gossip 127.0.0.1:7102 -zone z2 -data /tmp/n2 \
//	    -join 127.0.0.1:7101
//
// With -cluster-key-file, the nodes authenticate their replica RPCs with
// the secret in that file (the same on every node); without it, keep
// their HTTP addresses on a private network. -reap-after sets how long a
// deleted key's tombstone stays once every replica holds it.
// -probe-interval sets SWIM's protocol period (1s, memberlist's LAN
// default); the failure detector's timeouts scale with it.
//
// It logs JSON lines with log/slog to stderr and, on SIGTERM or SIGINT,
// hands its data over to the other nodes and leaves the cluster, within
// -leave-timeout; otherwise, or on a second signal, it stops as a failed
// node would, its disk kept.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/quorum"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "kvnode:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("kvnode", flag.ContinueOnError)
	id := fs.String("id", "", "this node's ID (required)")
	listen := fs.String("listen", "127.0.0.1:7001", "HTTP address to serve on")
	gossip := fs.String("gossip", "127.0.0.1:7946", "UDP address for SWIM")
	join := fs.String("join", "", "gossip addresses of other nodes, comma-separated")
	data := fs.String("data", "", "data directory (required)")
	zone := fs.String("zone", "", "this node's zone (overrides its @zone in -peers)")
	peers := fs.String("peers", "", "the ring to start with: id=host:port[@zone], comma-separated")
	n := fs.Int("n", 3, "replicas per key")
	r := fs.Int("r", 2, "read quorum")
	w := fs.Int("w", 2, "write quorum")
	noSync := fs.Bool("unsafe-no-fsync", false, "skip fsync: acknowledged writes may be lost in a machine crash")
	keyFile := fs.String("cluster-key-file", "", "file holding the secret the cluster's nodes share to authenticate replica RPCs (at least 16 bytes; surrounding whitespace is ignored); empty: RPCs unauthenticated")
	leaveTimeout := fs.Duration("leave-timeout", time.Minute, "how long a node shutting down may take to hand its data over before it stops as a failed node would, keeping its disk")
	reapAfter := fs.Duration("reap-after", kv.DefaultReapAfter, "how long a deleted key's tombstone is kept once every replica has it; negative: forever")
	probeInterval := fs.Duration("probe-interval", time.Second, "SWIM's protocol period; the probe timeout, suspicion timeouts and push-pull period (which heals partitions) scale with it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *data == "" {
		fs.Usage()
		return fmt.Errorf("-id and -data are required")
	}
	if *probeInterval <= 0 {
		return fmt.Errorf("-probe-interval %v: want a positive duration", *probeInterval)
	}
	members, err := parsePeers(*peers, *id)
	if err != nil {
		return err
	}
	if *zone == "" {
		if i := slices.IndexFunc(members, func(m kv.Member) bool { return m.ID == *id }); i >= 0 {
			*zone = members[i].Zone
		}
	}
	var clusterKey []byte
	if *keyFile != "" {
		b, err := os.ReadFile(*keyFile)
		if err != nil {
			return fmt.Errorf("-cluster-key-file: %w", err)
		}
		// Checked here, not only by StartServer: a blank file must not
		// leave the key unset, which would serve RPCs unauthenticated.
		if clusterKey = bytes.TrimSpace(b); len(clusterKey) < kv.MinClusterKeyLen {
			return fmt.Errorf("-cluster-key-file %s: a key of %d bytes (without surrounding whitespace), want at least %d",
				*keyFile, len(clusterKey), kv.MinClusterKeyLen)
		}
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv, err := kv.StartServer(kv.ServerConfig{
		ID: *id, Zone: *zone, Listen: *listen, Gossip: *gossip, Join: splitList(*join), Data: *data, Members: members,
		Quorum: quorum.Config{N: *n, R: *r, W: *w}, Logger: log,
		Store:      kv.StoreConfig{NoSync: *noSync},
		Maintain:   kv.MaintainConfig{ReapAfter: *reapAfter},
		ClusterKey: clusterKey, ProbeInterval: *probeInterval,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	stop() // a second signal kills the process: a hard stop, which loses nothing acknowledged
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), *leaveTimeout)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// splitList splits a comma-separated flag, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// parsePeers parses -peers (empty: none).
func parsePeers(s, id string) ([]kv.Member, error) {
	var out []kv.Member
	for _, p := range splitList(s) {
		name, addr, ok := strings.Cut(p, "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("-peers entry %q: want id=host:port[@zone]", p)
		}
		addr, z, _ := strings.Cut(addr, "@")
		out = append(out, kv.Member{ID: name, Addr: addr, Zone: z})
	}
	return out, nil
}
