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
// the secret in that file (the same on every node), and seal their gossip
// with a key derived from it and the -cluster-name, so that membership
// and replica addresses come only from nodes holding the key; gossip
// packets refused are counted in /metrics (kv_gossip_*). Without it, keep
// their HTTP and gossip addresses on a private network. -reap-after sets how long a
// deleted key's tombstone stays once every replica holds it.
// -pprof serves net/http/pprof on an address of its own (off by
// default). -probe-interval sets SWIM's protocol period (1s, memberlist's LAN
// default); the failure detector's timeouts scale with it.
//
// Clients' input is bounded: -max-context-bytes and -max-context-entries
// bound a write's X-Context (refused with 431 and 400); -max-concurrent
// and -max-concurrent-rpc bound the requests served at once (503 with
// Retry-After beyond), and -body-timeout the reading of a body (408).
// -max-siblings and -max-object-bytes bound a key: a write that would
// grow it past either is refused (409, 413) until a client reads the key
// and writes the value it resolves the siblings to. A context's
// writers and counters beyond what the coordinator's copy of the key has
// seen are pruned, never merged into the key.
//
// It logs JSON lines with log/slog to stderr and, on SIGTERM or SIGINT,
// hands its data over to the other nodes and leaves the cluster, within
// -leave-timeout; otherwise, or on a second signal, it stops as a failed
// node would, its disk kept.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
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
		if errors.Is(err, flag.ErrHelp) {
			return // -h printed the usage, as asked
		}
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
	clusterName := fs.String("cluster-name", "kv", "the cluster's name, authenticated in its gossip with -cluster-key-file, so two clusters sharing a key never merge")
	leaveTimeout := fs.Duration("leave-timeout", time.Minute, "how long a node shutting down may take to hand its data over before it stops as a failed node would, keeping its disk")
	reapAfter := fs.Duration("reap-after", kv.DefaultReapAfter, "how long a deleted key's tombstone is kept once every replica has it; negative: forever")
	maxSiblings := fs.Int("max-siblings", kv.DefaultMaxSiblings, "most siblings a write may leave a key with (more: 409, read and resolve)")
	maxObject := fs.Int("max-object-bytes", kv.DefaultMaxObjectLen, "most bytes of values a key may hold, siblings included (more: 413)")
	reapEvery := fs.Duration("reap-every", kv.DefaultReapEvery, "how often a pass of reaping looks for tombstones due")
	var limits kv.Limits
	fs.IntVar(&limits.MaxContextLen, "max-context-bytes", kv.DefaultMaxContextLen, "longest X-Context field a write may send, in bytes (longer: 431)")
	fs.IntVar(&limits.MaxContextEntries, "max-context-entries", kv.DefaultMaxContextEntries, "most writers an X-Context may name (more: 400)")
	fs.IntVar(&limits.MaxConcurrent, "max-concurrent", kv.DefaultMaxConcurrent, "most client requests served at once (more: 503 with Retry-After)")
	fs.IntVar(&limits.MaxConcurrentRPC, "max-concurrent-rpc", kv.DefaultMaxConcurrentRPC, "most replica RPCs served at once (more: 503)")
	fs.DurationVar(&limits.BodyTimeout, "body-timeout", kv.DefaultBodyTimeout, "how long a request's body may take to arrive (longer: 408)")
	pprofAddr := fs.String("pprof", "", "address (host:port) to serve net/http/pprof on, apart from the API; empty: off. Keep it on loopback: profiles reveal the process")
	probeInterval := fs.Duration("probe-interval", time.Second, "SWIM's protocol period; the probe timeout, suspicion timeouts and push-pull period (which heals partitions) scale with it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *id == "" || *data == "" {
		fs.Usage()
		return fmt.Errorf("-id and -data are required")
	}
	if *n < 1 || *r < 1 || *w < 1 {
		return fmt.Errorf("-n %d -r %d -w %d: each must be at least 1", *n, *r, *w)
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
	if *pprofAddr != "" {
		stopProfiles, err := serveProfiles(*pprofAddr, log)
		if err != nil {
			return fmt.Errorf("-pprof %s: %w", *pprofAddr, err)
		}
		defer stopProfiles()
	}
	srv, err := kv.StartServer(kv.ServerConfig{
		ID: *id, Zone: *zone, Listen: *listen, Gossip: *gossip, Join: splitList(*join), Data: *data, Members: members,
		Quorum: quorum.Config{N: *n, R: *r, W: *w}, Logger: log,
		Store:      kv.StoreConfig{NoSync: *noSync, MaxSiblings: *maxSiblings, MaxObjectLen: *maxObject},
		Maintain:   kv.MaintainConfig{ReapAfter: *reapAfter, ReapEvery: *reapEvery},
		ClusterKey: clusterKey, ClusterName: *clusterName,
		ProbeInterval: *probeInterval,
		Limits:        limits,
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

// serveProfiles serves net/http/pprof's handlers on their own listener at
// addr, never on the API's mux, and returns the function that closes it.
func serveProfiles(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof", "err", err)
		}
	}()
	log.Info("serving profiles", "addr", ln.Addr().String())
	return func() { srv.Close(); <-done }, nil
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
