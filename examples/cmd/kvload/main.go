// Command kvload drives a key-value store with a fixed mix of reads and
// writes from concurrent clients for a fixed time, and prints the
// throughput and the latency percentiles. It speaks to kvnode's HTTP
// API (-target kv) and to etcd's v3 JSON gateway (-target etcd) with
// identical work, so the two can be compared on the same machine:
//
//	kvload -target kv -addrs 127.0.0.1:7001,127.0.0.1:7002,127.0.0.1:7003
//	kvload -target etcd -addrs 127.0.0.1:2379,127.0.0.1:22379,127.0.0.1:32379
//
// Client i sends every request to address i mod len(addrs). Each
// operation picks a key uniformly among -keys keys and is a read with
// probability -reads, otherwise a write of -value random bytes. A
// write is blind by default (kv: no X-Context, so it leaves a sibling
// beside what the key held; etcd: a put); with -rmw it is a
// read-modify-write, as real clients write: a read, then a write with
// the read's X-Context (kv), or a txn that puts only if the key's
// mod_revision is still the one read (etcd, whose lost races are
// counted as conflicts). A kv read that returns siblings (300) or
// nothing (404) is a success; so is an etcd range that finds nothing.
//
// Latencies are those of successful operations (a read-modify-write
// counts as one, both requests included), kept exactly and sorted for
// the percentiles. The last line of the output, "RESULT" and key=value
// pairs, is for scripts.
//
// The run is bounded: it ends after -duration or -max-ops operations,
// whichever comes first, each request is bounded by -timeout, and a
// request still running when the time is up is abandoned (neither
// counted nor timed). It exits with status 1 when no operation
// succeeded, and with status 2 for a bad flag.
//
// kvload shares the machine with the stores it measures, so it spends
// little CPU per request: its HTTP client (fasthttp's) writes a request
// and reads its answer on the client's own goroutine, with no hand-off
// to a connection's goroutines, and reuses its buffers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Bounds of the flags.
const (
	maxClients  = 4096
	maxValue    = 1 << 20 // kvnode's largest PUT body
	maxKeys     = 1 << 30
	maxDuration = time.Hour
	maxTimeout  = time.Minute
	maxOpsLimit = 100_000_000
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "kvload:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errUsage is wrapped by the errors of bad flags.
var errUsage = errors.New("bad usage")

// config is a validated command line.
type config struct {
	target   string
	addrs    []string
	clients  int
	reads    float64
	value    int
	keys     int
	duration time.Duration
	timeout  time.Duration
	rmw      bool
	maxOps   int64
	seed     uint64
	prefix   string
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9._~-]{0,64}$`)

// parse parses and validates args.
func parse(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("kvload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.target, "target", "kv", "the store's API: kv (kvnode) or etcd (etcd's v3 JSON gateway)")
	addrs := fs.String("addrs", "127.0.0.1:7001", "the store's HTTP addresses, host:port, comma-separated; client i uses address i mod their number")
	fs.IntVar(&c.clients, "c", 16, "concurrent clients, each with one request in flight")
	fs.Float64Var(&c.reads, "reads", 0.5, "fraction of operations that are reads, 0 to 1")
	fs.IntVar(&c.value, "value", 100, "bytes per written value")
	fs.IntVar(&c.keys, "keys", 100_000, "distinct keys, picked uniformly")
	fs.DurationVar(&c.duration, "duration", 8*time.Second, "how long to run")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Second, "bound on each request")
	fs.BoolVar(&c.rmw, "rmw", false, "write as read-modify-write (kv: with the read's X-Context; etcd: a txn on its mod_revision)")
	fs.Int64Var(&c.maxOps, "max-ops", 10_000_000, "stop after this many operations")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the key and operation choices")
	fs.StringVar(&c.prefix, "prefix", "k", "prefix of the keys (letters, digits, . _ ~ -; at most 64)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return c, err
		}
		return c, fmt.Errorf("%w: %w", errUsage, err)
	}
	bad := func(format string, a ...any) (config, error) {
		return c, fmt.Errorf("%w: %s", errUsage, fmt.Sprintf(format, a...))
	}
	switch {
	case fs.NArg() > 0:
		return bad("unexpected arguments %q: every setting is a flag", fs.Args())
	case c.target != "kv" && c.target != "etcd":
		return bad("-target %q: want kv or etcd", c.target)
	case c.clients < 1 || c.clients > maxClients:
		return bad("-c %d: want 1 to %d clients", c.clients, maxClients)
	case math.IsNaN(c.reads) || c.reads < 0 || c.reads > 1:
		return bad("-reads %v: want a fraction from 0 to 1", c.reads)
	case c.value < 0 || c.value > maxValue:
		return bad("-value %d: want 0 to %d bytes", c.value, maxValue)
	case c.keys < 1 || c.keys > maxKeys:
		return bad("-keys %d: want 1 to %d", c.keys, maxKeys)
	case c.duration <= 0 || c.duration > maxDuration:
		return bad("-duration %v: want more than 0 and at most %v", c.duration, maxDuration)
	case c.timeout <= 0 || c.timeout > maxTimeout:
		return bad("-timeout %v: want more than 0 and at most %v", c.timeout, maxTimeout)
	case c.maxOps < 1 || c.maxOps > maxOpsLimit:
		return bad("-max-ops %d: want 1 to %d", c.maxOps, maxOpsLimit)
	case !prefixRE.MatchString(c.prefix):
		return bad("-prefix %q: want at most 64 letters, digits, '.', '_', '~' or '-'", c.prefix)
	}
	for _, a := range strings.Split(*addrs, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil || host == "" {
			return bad("-addrs entry %q: want host:port", a)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return bad("-addrs entry %q: port %q is not 1 to 65535", a, port)
		}
		c.addrs = append(c.addrs, a)
	}
	if len(c.addrs) == 0 {
		return bad("-addrs is empty: name at least one host:port")
	}
	return c, nil
}

// result is what a run measured.
type result struct {
	elapsed    time.Duration
	reads      int64 // successful reads (rmw: their reads not included)
	found      int64 // reads that found a value
	siblings   int64 // kv reads that returned siblings
	writes     int64 // successful writes
	conflicts  int64 // etcd read-modify-writes that lost their race
	errors     int64
	errorKinds map[string]int64 // a short description of each kind of error → count
	latencies  []time.Duration  // of the successful operations, sorted
}

// ok returns the successful operations.
func (r *result) ok() int64 { return r.reads + r.writes }

// quantile returns the q-quantile of the latencies (nearest rank).
func (r *result) quantile(q float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(r.latencies)))) - 1
	return r.latencies[max(0, min(i, len(r.latencies)-1))]
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	c, err := parse(args, os.Stderr)
	if err != nil {
		return err
	}
	res := load(ctx, c)
	report(stdout, c, res)
	if res.ok() == 0 {
		return fmt.Errorf("no operation succeeded (%d errors)", res.errors)
	}
	return nil
}

// load runs c's clients until c.duration or c.maxOps is reached, or ctx
// ends, and returns what they measured.
func load(ctx context.Context, c config) *result {
	client := newClient(c.clients, c.timeout)
	defer client.CloseIdleConnections()
	var s store = kvStore{client}
	if c.target == "etcd" {
		s = etcdStore{client}
	}
	start := time.Now()
	ctx, cancel := context.WithDeadline(ctx, start.Add(c.duration))
	defer cancel()
	var (
		claimed atomic.Int64
		wg      sync.WaitGroup
		workers = make([]*worker, c.clients)
	)
	for i := range workers {
		w := &worker{c: c, s: s, addr: c.addrs[i%len(c.addrs)], rng: rand.New(rand.NewPCG(c.seed, uint64(i))), kinds: map[string]int64{}}
		w.value = make([]byte, c.value)
		for j := range w.value {
			w.value[j] = byte(w.rng.Uint32())
		}
		workers[i] = w
		wg.Go(func() {
			for claimed.Add(1) <= c.maxOps && ctx.Err() == nil {
				w.op(ctx)
			}
		})
	}
	wg.Wait()
	res := &result{elapsed: min(time.Since(start), c.duration), errorKinds: map[string]int64{}}
	for _, w := range workers {
		res.reads += w.reads
		res.found += w.found
		res.siblings += w.siblings
		res.writes += w.writes
		res.conflicts += w.conflicts
		res.errors += w.errors
		for k, n := range w.kinds {
			res.errorKinds[k] += n
		}
		res.latencies = append(res.latencies, w.latencies...)
	}
	slices.Sort(res.latencies)
	return res
}

// worker is one client; only its goroutine touches it until load
// collects it.
type worker struct {
	c     config
	s     store
	addr  string
	rng   *rand.Rand
	value []byte

	reads, found, siblings, writes, conflicts, errors int64
	kinds                                             map[string]int64
	latencies                                         []time.Duration
}

// op runs one operation within ctx; one that ctx cut short is neither
// counted nor timed.
func (w *worker) op(ctx context.Context) {
	key := w.c.prefix + strconv.Itoa(w.rng.IntN(w.c.keys))
	isRead := w.rng.Float64() < w.c.reads
	if !isRead && len(w.value) >= 8 {
		// Every write changes the value, so no store can skip it.
		for i := range 8 {
			w.value[i] = byte(w.rng.Uint32())
		}
	}
	rctx, cancel := context.WithTimeout(ctx, w.c.timeout)
	defer cancel()
	begin := time.Now()
	var (
		r   read
		won = true
		err error
	)
	if isRead || w.c.rmw {
		r, err = w.s.get(rctx, w.addr, key)
	}
	if err == nil && !isRead {
		won, err = w.s.put(rctx, w.addr, key, w.value, w.c.rmw, r.version)
	}
	now := time.Now()
	if end, ok := ctx.Deadline(); ctx.Err() != nil || ok && !now.Before(end) {
		return // the run's time is up: abandoned
	}
	took := now.Sub(begin)
	switch {
	case err != nil:
		w.errors++
		w.kinds[errorKind(err)]++
		return
	case isRead:
		w.reads++
		if r.found {
			w.found++
		}
		if r.siblings {
			w.siblings++
		}
	default:
		w.writes++
		if !won {
			w.conflicts++
		}
	}
	w.latencies = append(w.latencies, took)
}

// errorKind names err's kind for the report: a status, a timeout, or the
// error's last part (the same for every request to one address).
func errorKind(err error) string {
	var se *statusError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("status %d: %.80s", se.code, se.body)
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// ms formats d in milliseconds.
func ms(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 2, 64) }

func report(w io.Writer, c config, r *result) {
	mode := "blind writes"
	if c.rmw {
		mode = "read-modify-write"
	}
	secs := r.elapsed.Seconds()
	rate := float64(r.ok()) / secs
	fmt.Fprintf(w, "target     %s at %s\n", c.target, strings.Join(c.addrs, ","))
	fmt.Fprintf(w, "load       %d clients, %.0f%% reads, %d-byte values, %d keys, %s, %v\n",
		c.clients, 100*c.reads, c.value, c.keys, mode, c.duration)
	fmt.Fprintf(w, "ops        %d ok in %.2fs: %.1f ops/s; %d errors\n", r.ok(), secs, rate, r.errors)
	fmt.Fprintf(w, "reads      %d (found %d, with siblings %d)\n", r.reads, r.found, r.siblings)
	fmt.Fprintf(w, "writes     %d (lost races %d)\n", r.writes, r.conflicts)
	fmt.Fprintf(w, "latency    p50 %s ms, p99 %s ms, p999 %s ms, max %s ms\n",
		ms(r.quantile(0.5)), ms(r.quantile(0.99)), ms(r.quantile(0.999)), ms(r.quantile(1)))
	for _, k := range slices.Sorted(maps.Keys(r.errorKinds)) {
		fmt.Fprintf(w, "error      %d× %s\n", r.errorKinds[k], k)
	}
	fmt.Fprintf(w, "RESULT target=%s ops=%d ops_per_s=%.1f p50_ms=%s p99_ms=%s p999_ms=%s errors=%d siblings=%d conflicts=%d\n",
		c.target, r.ok(), rate, ms(r.quantile(0.5)), ms(r.quantile(0.99)), ms(r.quantile(0.999)), r.errors, r.siblings, r.conflicts)
}
