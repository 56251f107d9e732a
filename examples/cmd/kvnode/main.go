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
// a secret in that file, and seal their gossip with a key derived from it
// and the -cluster-name, so that membership and replica addresses come
// only from nodes holding the key; gossip packets refused are counted in
// /metrics (kv_gossip_*). Without it, keep their HTTP and gossip
// addresses on a private network. The file holds one key per line, each
// at least 16 bytes once surrounding whitespace is dropped; blank lines
// and lines starting with # are skipped. The first key is the primary: it
// signs RPCs and seals gossip; every key in the file is accepted (at most
// 8). On SIGHUP the node re-reads the file and switches to its keys; if
// the file cannot be read or holds a bad line, it keeps the keys it has
// and logs an error. A rotation without a partition takes three rounds,
// each a SIGHUP on every node: append the new key to every file; move it
// to the first line everywhere; delete the old key's line everywhere:
//
//	# round 1           # round 2           # round 3
//	old-secret-key-1    new-secret-key-2    new-secret-key-2
//	new-secret-key-2    old-secret-key-1
//
// With -tls-cert, -tls-key and -tls-ca, the node serves its HTTP API
// over TLS (1.3) and speaks mutual TLS with the other nodes: a replica
// RPC is served only to a peer whose certificate chains to the CA, and
// the node verifies its peers' certificates against the CA and their
// -peers or gossiped address, so each node's certificate must be issued
// for both server and client authentication and name its -listen host
// (IP or DNS). Clients of the key-value API need no certificate. A key
// file, if given too, still authenticates every RPC; without one,
// gossip (UDP; SWIM has no TCP part) stays unauthenticated, so use
// -cluster-key-file as well to keep membership to the cluster's nodes.
//
// -reap-after sets how long a deleted key's tombstone stays once every
// replica holds it.
// -replica-timeout bounds the wait for each replica of a read or a write
// (1s). Replica RPCs to one peer made while -rpc-batches-in-flight (2)
// batches to it are outstanding leave together in the next, up to
// -rpc-batch (128) per HTTP request; -rpc-batch 1 sends each alone.
// With -rpc-mux (on by default) they go instead on one long-lived
// connection to each peer, multiplexed, which cuts the cluster's CPU per
// operation by about a third; -rpc-mux=false keeps them on HTTP.
//
// -pprof serves net/http/pprof on an address of its own (off by
// default). -probe-interval sets SWIM's protocol period (1s, memberlist's
// LAN default); the failure detector's timeouts scale with it.
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
// Bulk repair is paged and may be throttled. -anti-entropy-rate and
// -handover-rate bound the bytes per second of anti-entropy exchanges and
// of rebalances and handovers (sizes such as 8MiB; 0: no bound);
// -repair-page-bytes bounds the keys and objects one page of them
// carries; -anti-entropy-every sets how often an exchange starts, and
// -progress-every how often a long one logs its progress.
//
// It logs JSON lines with log/slog to stderr, at -log-level and above
// (durations as strings such as "1.5s"; failures at warn or error), and
// serves /metrics (Prometheus), /healthz (503 with the reason when its
// disk or its membership loop fails), /readyz and /cluster (a summary per
// node; ?ranges=1 adds the hash ranges it replicates). On SIGTERM or SIGINT, it
// hands its data over to the other nodes and leaves the cluster, within
// -leave-timeout; otherwise, or on a second signal, it stops as a failed
// node would, its disk kept.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode"

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
	keyFile := fs.String("cluster-key-file", "", "file of the secrets the cluster's nodes share to authenticate replica RPCs and seal gossip: one key per line (at least 16 bytes each, surrounding whitespace dropped; blank and # lines skipped), the first signing, all accepted; re-read on SIGHUP; empty: RPCs unauthenticated")
	clusterName := fs.String("cluster-name", "kv", "the cluster's name, authenticated in its gossip with -cluster-key-file, so two clusters sharing a key never merge")
	rpcBatch := fs.Int("rpc-batch", kv.DefaultMaxBatch, "most replica RPCs to one peer sent as one HTTP request; 1: each its own request, as nodes without batches take")
	rpcBatches := fs.Int("rpc-batches-in-flight", kv.DefaultBatchesInFlight, "most batches of replica RPCs outstanding to one peer; RPCs made meanwhile wait for one to end and leave together")
	rpcMux := fs.Bool("rpc-mux", true, "send replica RPCs to each peer multiplexed on one long-lived connection, upgraded from HTTP on its listener; peers without it are called over HTTP")
	replicaTimeout := fs.Duration("replica-timeout", kv.DefaultTimeout, "how long a read or a write waits for each replica's answer before it counts the replica as failed (and writes a hint for it)")
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
	var repair kv.RepairConfig
	fs.Var(byteSize{&repair.AntiEntropyRate}, "anti-entropy-rate", "most bytes per second anti-entropy exchanges move, such as 8MiB; 0: no bound")
	fs.Var(byteSize{&repair.HandoverRate}, "handover-rate", "most bytes per second rebalances and handovers send, such as 8MiB; 0: no bound")
	repair.PageBytes = kv.DefaultPageBytes
	fs.Var(byteSize{&repair.PageBytes}, "repair-page-bytes", "most bytes of keys and objects in one page of an exchange, rebalance or handover")
	fs.DurationVar(&repair.ProgressEvery, "progress-every", kv.DefaultProgressLog, "how often a running exchange, rebalance or handover logs its progress")
	antiEntropyEvery := fs.Duration("anti-entropy-every", kv.DefaultAntiEntropyEvery, "how often an anti-entropy exchange starts with the next live node")
	tlsCert := fs.String("tls-cert", "", "PEM certificate of this node, issued by -tls-ca for server and client authentication and naming its -listen host: serve HTTPS and speak mutual TLS with the other nodes (with -tls-key and -tls-ca)")
	tlsKey := fs.String("tls-key", "", "PEM private key of -tls-cert")
	tlsCA := fs.String("tls-ca", "", "PEM certificate of the cluster's CA: peers' certificates must chain to it")
	pprofAddr := fs.String("pprof", "", "address (host:port) to serve net/http/pprof on, apart from the API; empty: off. Keep it on loopback: profiles reveal the process")
	probeInterval := fs.Duration("probe-interval", time.Second, "SWIM's protocol period; the probe timeout, suspicion timeouts and push-pull period (which heals partitions) scale with it")
	var level slog.Level
	fs.TextVar(&level, "log-level", slog.LevelInfo, "the least severe level logged: debug (each failed copy of a write), info, warn or error")
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
	if repair.PageBytes < 1 || repair.ProgressEvery <= 0 || *antiEntropyEvery <= 0 {
		return fmt.Errorf("-repair-page-bytes %d -progress-every %v -anti-entropy-every %v: each must be positive",
			repair.PageBytes, repair.ProgressEvery, *antiEntropyEvery)
	}
	if *probeInterval <= 0 {
		return fmt.Errorf("-probe-interval %v: want a positive duration", *probeInterval)
	}
	if *rpcBatch < 1 || *rpcBatch > kv.MaxBatchLen || *rpcBatches < 1 {
		return fmt.Errorf("-rpc-batch %d -rpc-batches-in-flight %d: want 1 to %d, and at least 1", *rpcBatch, *rpcBatches, kv.MaxBatchLen)
	}
	if *replicaTimeout <= 0 {
		return fmt.Errorf("-replica-timeout %v: want a positive duration", *replicaTimeout)
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
	var keys [][]byte
	if *keyFile != "" {
		// Checked here, not only by StartServer: a blank file must not
		// leave the key unset, which would serve RPCs unauthenticated.
		if keys, err = readClusterKeys(*keyFile); err != nil {
			return err
		}
	}
	var primary []byte
	var others [][]byte
	if len(keys) > 0 {
		primary, others = keys[0], keys[1:]
	}
	var peerTLS *kv.PeerTLS
	set := 0
	for _, f := range []string{*tlsCert, *tlsKey, *tlsCA} {
		if f != "" {
			set++
		}
	}
	switch set {
	case 0:
	case 3:
		if peerTLS, err = kv.LoadPeerTLS(*tlsCert, *tlsKey, *tlsCA); err != nil {
			return err
		}
	default:
		return fmt.Errorf("-tls-cert, -tls-key and -tls-ca go together: %d of 3 set", set)
	}
	log := newLogger(os.Stderr, level)
	if *pprofAddr != "" {
		stopProfiles, err := serveProfiles(*pprofAddr, log)
		if err != nil {
			return fmt.Errorf("-pprof %s: %w", *pprofAddr, err)
		}
		defer stopProfiles()
	}
	srv, err := kv.StartServer(kv.ServerConfig{
		ID: *id, Zone: *zone, Listen: *listen, Gossip: *gossip, Join: splitList(*join), Data: *data, Members: members,
		Quorum: quorum.Config{N: *n, R: *r, W: *w}, ReplicaTimeout: *replicaTimeout, Logger: log,
		RPCBatch: *rpcBatch, RPCBatchesInFlight: *rpcBatches, RPCMux: *rpcMux,
		Store:      kv.StoreConfig{NoSync: *noSync, MaxSiblings: *maxSiblings, MaxObjectLen: *maxObject},
		Maintain:   kv.MaintainConfig{ReapAfter: *reapAfter, ReapEvery: *reapEvery, AntiEntropyEvery: *antiEntropyEvery},
		ClusterKey: primary, OtherClusterKeys: others, ClusterName: *clusterName,
		ProbeInterval: *probeInterval,
		Limits:        limits,
		Repair:        repair,
		TLS:           peerTLS,
	})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-hup:
			reloadKeys(srv, *keyFile, log)
		}
	}
	stop() // a second signal kills the process: a hard stop, which loses nothing acknowledged
	log.Info("shutting down")
	shutdown, cancel := context.WithTimeout(context.Background(), *leaveTimeout)
	defer cancel()
	return srv.Shutdown(shutdown)
}

// byteSize is a flag of a number of bytes, with an optional unit: B, KiB,
// MiB, GiB (or K, M, G, the same), or KB, MB, GB (powers of 1000).
type byteSize struct{ n *int }

var byteUnits = map[string]int{"": 1, "B": 1, "K": 1 << 10, "KiB": 1 << 10, "M": 1 << 20, "MiB": 1 << 20,
	"G": 1 << 30, "GiB": 1 << 30, "KB": 1e3, "MB": 1e6, "GB": 1e9}

func (b byteSize) String() string {
	if b.n == nil {
		return "0"
	}
	return strconv.Itoa(*b.n)
}

func (b byteSize) Set(s string) error {
	num := strings.TrimRightFunc(s, unicode.IsLetter)
	unit, ok := byteUnits[s[len(num):]]
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if !ok || err != nil || n < 0 || n*float64(unit) > math.MaxInt32*float64(1<<10) {
		return fmt.Errorf("%q: want a number of bytes such as 512KiB or 8MiB", s)
	}
	*b.n = int(n * float64(unit))
	return nil
}

// readClusterKeys reads a -cluster-key-file ([parseClusterKeys]); its
// errors name the file.
func readClusterKeys(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-cluster-key-file: %w", err)
	}
	keys, err := parseClusterKeys(b)
	if err != nil {
		return nil, fmt.Errorf("-cluster-key-file %s: %w", path, err)
	}
	return keys, nil
}

// parseClusterKeys parses the keys of a key file: one key per line, the
// first the primary; surrounding whitespace is dropped, and blank lines
// and lines starting with # are skipped. A key shorter than
// kv.MinClusterKeyLen, a key given twice, no key or more than
// kv.MaxClusterKeys are refused with an error naming the line, never the
// key.
func parseClusterKeys(b []byte) ([][]byte, error) {
	var keys [][]byte
	lines := map[string]int{} // key → its line
	for i, line := range bytes.Split(b, []byte("\n")) {
		key := bytes.TrimSpace(line)
		if len(key) == 0 || key[0] == '#' {
			continue
		}
		if len(key) < kv.MinClusterKeyLen {
			return nil, fmt.Errorf("line %d: a key of %d bytes (without surrounding whitespace), want at least %d",
				i+1, len(key), kv.MinClusterKeyLen)
		}
		if j, dup := lines[string(key)]; dup {
			return nil, fmt.Errorf("line %d repeats the key of line %d", i+1, j)
		}
		if len(keys) == kv.MaxClusterKeys {
			return nil, fmt.Errorf("line %d: more than %d keys", i+1, kv.MaxClusterKeys)
		}
		lines[string(key)] = i + 1
		keys = append(keys, key)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no key (a key of 0 bytes), want one of at least %d bytes per line", kv.MinClusterKeyLen)
	}
	return keys, nil
}

// reloadKeys re-reads the cluster keys from path and installs them in
// srv; on any error it keeps the keys it has and logs why.
func reloadKeys(srv *kv.Server, path string, log *slog.Logger) {
	if path == "" {
		log.Warn("SIGHUP: no -cluster-key-file to reload")
		return
	}
	keys, err := readClusterKeys(path)
	if err == nil {
		err = srv.SetClusterKeys(keys[0], keys[1:]...)
	}
	if err != nil {
		log.Error("cluster keys not reloaded; the keys in use stay", "file", path, "err", err)
		return
	}
	log.Info("cluster keys reloaded", "file", path, "keys", len(keys), "primary", fingerprint(keys[0]))
}

// fingerprint names a key in logs without revealing it: the first 8 hex
// digits of its gossip key's SHA-256.
func fingerprint(key []byte) string {
	sum := sha256.Sum256(kv.GossipKey(key))
	return hex.EncodeToString(sum[:4])
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

// newLogger returns a logger of JSON lines to w at level and above, with
// durations as Go duration strings ("1.5s"), not nanoseconds.
func newLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}}))
}
