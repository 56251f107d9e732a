package jepsen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/distkit/distkit/examples/kv"
)

// Config configures [Run]. Zero fields take the defaults in brackets. It
// is a plain value.
type Config struct {
	Seed    uint64
	Nodes   int           // kvnode processes [5]
	Faults  int           // faults in the schedule [one of each kind, 7]
	Hold    time.Duration // how long a fault lasts [8s]; a pause lasts beyond the failure detector's timeout
	Calm    time.Duration // healthy time before the first fault and after each recovery [10s]
	Clients int           // concurrent clients [8]
	Keys    int           // keys they share [16]
	MaxOps  int           // operations per client, at most [100000]
	Bin     string        // the kvnode binary; "": built into Dir
	Dir     string        // working directory (data, logs); "": a temporary one, removed
	Log     io.Writer     // progress; nil: discarded
}

func (c Config) withDefaults() Config {
	c.Nodes = cmp.Or(c.Nodes, 5)
	c.Faults = cmp.Or(c.Faults, int(numKinds))
	c.Hold = cmp.Or(c.Hold, 8*time.Second)
	c.Calm = cmp.Or(c.Calm, 10*time.Second)
	c.Clients = cmp.Or(c.Clients, 8)
	c.Keys = cmp.Or(c.Keys, 16)
	c.MaxOps = cmp.Or(c.MaxOps, 100000)
	if c.Log == nil {
		c.Log = io.Discard
	}
	return c
}

// Bounds of the waits of a run.
const (
	formTimeout    = 60 * time.Second // the cluster forms, or recovers from a fault
	repairTime     = 3 * kv.DefaultAntiEntropyEvery
	requestTimeout = 3 * time.Second
)

// Result is a finished run: its schedule with the measured times, the
// history, and the verdicts.
type Result struct {
	Seed     uint64
	Duration time.Duration
	Faults   []Fault
	History  []Op
	Verdict  kv.Verdict  // acknowledged writes lost, deleted values back, replicas differing
	Stale    []StaleRead // reads that missed an earlier acknowledged write
	Calm     time.Duration
}

// Err is the run's verdict: nil when no acknowledged write was lost, no
// deleted value came back, the replicas were identical after heal and
// repair, and no read in a calm period (no fault active, the cluster
// recovered for Calm/2) was stale. Stale reads during faults are
// reported, not failed: the store's sloppy quorums allow them.
func (r *Result) Err() error {
	errs := []error{r.Verdict.Err()}
	calm := 0
	var first StaleRead
	for _, s := range r.Stale {
		if s.Calm {
			if calm == 0 {
				first = s
			}
			calm++
		}
	}
	if calm > 0 {
		errs = append(errs, fmt.Errorf("%d stale reads with no fault active, first: %v", calm, first))
	}
	return errors.Join(errs...)
}

// Run runs one seeded schedule: it cleans leftovers of an earlier run,
// builds the namespaces, the bridge and kvnode, starts the cluster,
// drives the clients while it injects and heals the faults, then heals
// everything, lets repair run, stops the nodes and checks the history
// and the replicas' stores. Everything it created is removed before it
// returns, also on failure and when ctx is cancelled. The error is the
// harness's (setup, a node that would not start); the verdict is
// [Result.Err].
func Run(ctx context.Context, cfg Config) (res *Result, err error) {
	cfg = cfg.withDefaults()
	if cfg.Nodes < 3 || cfg.Nodes > 200 {
		return nil, fmt.Errorf("jepsen: %d nodes, want 3 to 200", cfg.Nodes)
	}
	if cfg.Clients < 1 || cfg.Keys < 1 || cfg.MaxOps < 1 || cfg.Hold < 0 || cfg.Calm < 0 {
		return nil, fmt.Errorf("jepsen: %d clients, %d keys, %d operations per client, hold %v, calm %v: want positive counts and non-negative durations",
			cfg.Clients, cfg.Keys, cfg.MaxOps, cfg.Hold, cfg.Calm)
	}
	if err := Cleanup(ctx); err != nil {
		return nil, fmt.Errorf("leftovers of an earlier run: %w", err)
	}
	defer func() {
		// A cancelled ctx must not stop the cleanup.
		if cerr := Cleanup(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if cfg.Dir == "" {
		// Removed by the deferred Cleanup.
		if cfg.Dir, err = os.MkdirTemp("", Prefix+"run"); err != nil {
			return nil, err
		}
	}
	if cfg.Bin == "" {
		if cfg.Bin, err = buildKVNode(ctx, cfg.Dir); err != nil {
			return nil, err
		}
	}
	if err := setupNet(ctx, cfg.Nodes); err != nil {
		return nil, err
	}
	c, err := newCluster(cfg.Dir, cfg.Bin, cfg.Nodes)
	if err != nil {
		return nil, err
	}
	defer c.stopAll()
	for _, s := range c.slots {
		if err := c.start(s); err != nil {
			return nil, err
		}
	}
	if d, err := c.waitConverged(ctx, formTimeout); err != nil {
		return nil, fmt.Errorf("forming the cluster: %w", err)
	} else {
		fmt.Fprintf(cfg.Log, "cluster of %d formed in %v\n", cfg.Nodes, d.Round(time.Millisecond))
	}

	res = &Result{Seed: cfg.Seed, Faults: Schedule(cfg.Seed, cfg.Faults, cfg.Nodes), Calm: cfg.Calm}
	rec := &recorder{start: time.Now()}
	clientCtx, stopClients := context.WithCancel(ctx)
	defer stopClients()
	addrs := make([]string, len(c.slots))
	for i, s := range c.slots {
		addrs[i] = s.addr()
	}
	// Node IDs change when one joins; the clients record the slot's
	// current one.
	var idsMu sync.Mutex
	ids := make([]string, len(c.slots))
	for i, s := range c.slots {
		ids[i] = s.id
	}
	idOf := func(i int) string {
		idsMu.Lock()
		defer idsMu.Unlock()
		return ids[i]
	}
	clientsDone := make(chan struct{})
	go func() {
		runClients(clientCtx, cfg.Seed, workload{clients: cfg.Clients, keys: cfg.Keys, maxOps: cfg.MaxOps, timeout: requestTimeout},
			addrs, idOf, rec)
		close(clientsDone)
	}()
	since := func() time.Duration { return time.Since(rec.start) }

	if err := wait(ctx, cfg.Calm); err != nil {
		return nil, err
	}
	for i := range res.Faults {
		f := &res.Faults[i]
		before := c.views(ctx)
		f.Start = since()
		fmt.Fprintf(cfg.Log, "%7.1fs inject %v\n", f.Start.Seconds(), f)
		if err := c.inject(ctx, *f); err != nil {
			return nil, fmt.Errorf("inject %v: %w", f, err)
		}
		// Detected: a node that answers sees the cluster otherwise than
		// before the fault.
		hold := holdFor(f.Kind, cfg.Hold)
		for end := time.Now().Add(hold); time.Now().Before(end); {
			if f.Detected == 0 && noticed(before, c.views(ctx)) {
				f.Detected = since()
			}
			if err := wait(ctx, probeInterval); err != nil {
				return nil, err
			}
		}
		f.Heal = since()
		if err := c.heal(ctx, *f); err != nil {
			return nil, fmt.Errorf("heal %v: %w", f, err)
		}
		if f.Kind == LeaveJoin {
			idsMu.Lock()
			ids[f.Targets[0]] = c.slots[f.Targets[0]].id
			idsMu.Unlock()
		}
		d, err := c.waitConverged(ctx, formTimeout)
		if err == nil {
			f.Recovered = since()
		}
		fmt.Fprintf(cfg.Log, "%7.1fs healed %v, converged after %v (%v)\n", since().Seconds(), f, d.Round(time.Millisecond), err)
		if err := wait(ctx, cfg.Calm); err != nil {
			return nil, err
		}
	}
	stopClients()
	<-clientsDone
	res.Duration = since()
	res.History = rec.history()

	// Heal and repair: read every key from every node at r=N (read
	// repair), then give anti-entropy a few rounds.
	if _, err := c.waitConverged(ctx, formTimeout); err != nil {
		return nil, fmt.Errorf("after the faults: %w", err)
	}
	keys := make([]string, cfg.Keys)
	for k := range keys {
		keys[k] = fmt.Sprintf("k%d", k)
		for _, s := range c.slots {
			c.readRepair(ctx, s, keys[k])
		}
	}
	if err := wait(ctx, repairTime); err != nil {
		return nil, err
	}
	c.stopAll()
	objs, err := replicaObjects(c.slots, keys, 3)
	if err != nil {
		return nil, err
	}
	acked, indeterminate := acks(res.History)
	res.Verdict = kv.Check(acked, indeterminate, objs)
	res.Stale = checkReads(res.History, res.calm)
	return res, nil
}

// calm reports whether [from, to] is clear of every fault, from its
// injection to Calm/2 after its recovery.
func (r *Result) calm(from, to time.Duration) bool {
	for _, f := range r.Faults {
		end := cmp.Or(f.Recovered, r.Duration) + r.Calm/2
		if from < end && to > f.Start {
			return false
		}
	}
	return true
}

// readRepair reads key through s with r=3; its outcome does not matter.
func (c *cluster) readRepair(ctx context.Context, s *slot, key string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+s.addr()+"/kv/"+key+"?r=3", nil)
	if err != nil {
		return
	}
	if resp, err := c.client.Do(req); err == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
	}
}

// wait waits d or until ctx is done.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
