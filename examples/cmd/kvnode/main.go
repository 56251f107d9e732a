// Command kvnode runs one node of the replicated key-value store of
// package kv: the HTTP API of issue 13 on -listen, SWIM failure detection
// over UDP on -gossip (joining through -join), its data in -data.
//
// The ring is static for now: -peers lists every node of the cluster as
// id=host:port (its HTTP address), with an optional @zone (this node's
// entry gives its ID's place; its address is -listen).
//
//	kvnode -id n1 -listen 127.0.0.1:7001 -gossip 127.0.0.1:7101 -data /tmp/n1 \
//	    -join 127.0.0.1:7102,127.0.0.1:7103 \
//	    -peers n1=127.0.0.1:7001@z1,n2=127.0.0.1:7002@z2,n3=127.0.0.1:7003@z3
//
// It logs JSON lines with log/slog to stderr and shuts down cleanly on
// SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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
	peers := fs.String("peers", "", "every node as id=host:port[@zone], comma-separated (required)")
	n := fs.Int("n", 3, "replicas per key")
	r := fs.Int("r", 2, "read quorum")
	w := fs.Int("w", 2, "write quorum")
	noSync := fs.Bool("unsafe-no-fsync", false, "skip fsync: acknowledged writes may be lost in a machine crash")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *data == "" || *peers == "" {
		fs.Usage()
		return fmt.Errorf("-id, -data and -peers are required")
	}
	members, err := parsePeers(*peers, *id, *listen, *zone)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	srv, err := kv.StartServer(kv.ServerConfig{
		ID: *id, Listen: *listen, Gossip: *gossip, Join: splitList(*join), Data: *data, Members: members,
		Quorum: quorum.Config{N: *n, R: *r, W: *w}, Logger: log,
		Store: kv.StoreConfig{NoSync: *noSync},
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	<-ctx.Done()
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
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

// parsePeers parses -peers; the entry of id takes listen as its address
// and zone, when set, as its zone. id must be listed.
func parsePeers(s, id, listen, zone string) ([]kv.Member, error) {
	var out []kv.Member
	self := false
	for _, p := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(p), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("-peers entry %q: want id=host:port[@zone]", p)
		}
		addr, z, _ := strings.Cut(addr, "@")
		m := kv.Member{ID: name, Addr: addr, Zone: z}
		if name == id {
			self = true
			m.Addr = listen
			if zone != "" {
				m.Zone = zone
			}
		}
		out = append(out, m)
	}
	if !self {
		return nil, fmt.Errorf("-peers does not list -id %q", id)
	}
	return out, nil
}
