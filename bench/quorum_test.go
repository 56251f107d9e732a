package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/quorum"
)

// dskitQuorum is grafana/dskit's ring.DoUntilQuorum in its non-zone-aware
// mode, written plainly: github.com/grafana/dskit/ring pulls 227 modules
// into the build (gRPC, OpenTelemetry, Prometheus, Consul and etcd
// clients) and does not build as a dependency at all, because it needs
// grafana's fork of memberlist through a replace directive that only
// applies inside dskit itself.
//
// The design: one goroutine per instance, all started at once; each gets a
// context of its own (context.WithCancelCause), kept in a map to cancel it
// individually. With request minimisation, the goroutines beyond the first
// len(instances)-maxErrors wait at a gate, released one at a time by a
// failure or by each tick of the hedging ticker (dskit chooses the first
// instances at random; here they go in list order, as Gather's do, so both
// call the same replicas). Results arrive on a channel with room for all;
// successes are kept in a map until len(instances)-maxErrors of them, then
// the other contexts are cancelled and a goroutine left behind drains the
// channel, passing late successes to cleanup.
func dskitQuorum[T any](ctx context.Context, instances []string, maxErrors int, minimize bool, hedging time.Duration,
	f func(ctx context.Context, instance string) (T, error), cleanup func(T)) ([]T, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		instance string
		v        T
		err      error
	}
	n, need := len(instances), len(instances)-maxErrors
	results := make(chan result, n)
	remaining := n
	defer func() {
		go func() {
			for ; remaining > 0; remaining-- {
				if r := <-results; r.err == nil {
					cleanup(r.v)
				}
			}
		}()
	}()

	gates := make([]chan struct{}, n)
	cancels := make(map[string]context.CancelCauseFunc, n)
	released := 0
	release := func() {
		if released < n {
			close(gates[released])
			released++
		}
	}
	for i, inst := range instances {
		gates[i] = make(chan struct{})
		ictx, icancel := context.WithCancelCause(ctx)
		cancels[inst] = icancel
		go func() {
			select {
			case <-gates[i]:
			case <-ictx.Done():
				results <- result{instance: inst, err: context.Cause(ictx)}
				return
			}
			v, err := f(ictx, inst)
			results <- result{inst, v, err}
		}()
	}
	for range need {
		release()
	}
	if !minimize {
		for range n - need {
			release()
		}
	}
	var hedge <-chan time.Time
	if minimize && hedging > 0 {
		t := time.NewTicker(hedging)
		defer t.Stop()
		hedge = t.C
	}

	got := make(map[string]T, n)
	failed := 0
	for len(got) < need {
		select {
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-hedge:
			release()
		case r := <-results:
			remaining--
			if r.err == nil {
				got[r.instance] = r.v
				continue
			}
			cancels[r.instance](fmt.Errorf("this instance returned an error: %w", r.err))
			if failed++; failed > maxErrors {
				for _, c := range cancels {
					c(errors.New("quorum cannot be reached"))
				}
				for _, v := range got {
					cleanup(v)
				}
				return nil, r.err
			}
			release()
		}
	}
	out := make([]T, 0, need)
	for _, inst := range instances {
		if v, ok := got[inst]; ok {
			out = append(out, v)
		}
		cancels[inst](errors.New("quorum reached, result not required from this instance"))
	}
	return out, nil
}

// quorumCall is a replica call: it answers after delay[replica] (0: at
// once), with an error for the replicas in fail, and gives up when its
// context ends.
func quorumCall(delay map[string]time.Duration, fail map[string]bool) func(ctx context.Context, replica string) (int, error) {
	return func(ctx context.Context, replica string) (int, error) {
		if d := delay[replica]; d > 0 {
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		if fail[replica] {
			return 0, errors.New("replica down")
		}
		return 1, nil
	}
}

func replicaNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("r%d", i)
	}
	return names
}

// quorumImpls are the two fan-outs, run for a majority of replicas with
// hedging (minimisation, with a hedge every hedge > 0) or without (every
// replica at once). Each returns the number of values it gathered.
var quorumImpls = []struct {
	impl string
	run  func(ctx context.Context, replicas []string, hedge bool, delay time.Duration, call func(context.Context, string) (int, error)) (int, error)
}{
	{"distkit", func(ctx context.Context, replicas []string, hedge bool, delay time.Duration, call func(context.Context, string) (int, error)) (int, error) {
		var opts []quorum.Option
		if hedge {
			opts = append(opts, quorum.Hedge(delay))
		}
		replies, err := quorum.Gather(ctx, replicas, quorum.Majority(len(replicas)), call, opts...)
		return len(replies), err
	}},
	{"dskit-design", func(ctx context.Context, replicas []string, hedge bool, delay time.Duration, call func(context.Context, string) (int, error)) (int, error) {
		vs, err := dskitQuorum(ctx, replicas, len(replicas)-quorum.Majority(len(replicas)), hedge, delay, call, func(int) {})
		return len(vs), err
	}},
}

// BenchmarkQuorumGather is the overhead of one fan-out to 3 or 9 replicas
// that answer at once, or with replica r0 hanging until cancelled, waiting
// for a majority.
func BenchmarkQuorumGather(b *testing.B) {
	for _, n := range []int{3, 9} {
		replicas := replicaNames(n)
		for _, slow := range []bool{false, true} {
			delay := map[string]time.Duration{}
			name := fmt.Sprintf("replicas=%d/instant", n)
			if slow {
				delay["r0"], name = time.Hour, fmt.Sprintf("replicas=%d/one-hanging", n)
			}
			call := quorumCall(delay, nil)
			for _, q := range quorumImpls {
				b.Run(name+"/impl="+q.impl, func(b *testing.B) {
					b.ReportAllocs()
					for b.Loop() {
						if _, err := q.run(context.Background(), replicas, false, 0, call); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}

// TestQuorumBehaviourTable runs both fan-outs in virtual time on 3
// replicas that answer in 1 ms, waiting for 2: all healthy, r0 slow (1 s),
// r0 failing, with and without hedging (start 2 calls, one more per
// failure and every 5 ms). It reports when each decided and how many calls
// it started, and asserts distkit's exactly.
func TestQuorumBehaviourTable(t *testing.T) {
	const ms = time.Millisecond
	replicas := replicaNames(3)
	scenarios := []struct {
		name        string
		delay       map[string]time.Duration
		fail        map[string]bool
		hedge       bool
		took        time.Duration // distkit's, exactly
		calls       int
		wantSuccess bool
	}{
		{"healthy", map[string]time.Duration{"r0": ms, "r1": ms, "r2": ms}, nil, false, ms, 3, true},
		{"healthy, hedged", map[string]time.Duration{"r0": ms, "r1": ms, "r2": ms}, nil, true, ms, 2, true},
		{"r0 slow", map[string]time.Duration{"r0": time.Second, "r1": ms, "r2": ms}, nil, false, ms, 3, true},
		{"r0 slow, hedged", map[string]time.Duration{"r0": time.Second, "r1": ms, "r2": ms}, nil, true, 6 * ms, 3, true},
		{"r0 fails", map[string]time.Duration{"r0": ms, "r1": ms, "r2": ms}, map[string]bool{"r0": true}, false, ms, 3, true},
		{"r0 fails, hedged", map[string]time.Duration{"r0": ms, "r1": ms, "r2": ms}, map[string]bool{"r0": true}, true, 2 * ms, 3, true},
		{"r0, r1 fail", map[string]time.Duration{"r0": ms, "r1": ms, "r2": ms}, map[string]bool{"r0": true, "r1": true}, false, ms, 3, false},
	}
	var rows [][]string
	for _, sc := range scenarios {
		row := []string{sc.name}
		for _, q := range quorumImpls {
			synctest.Test(t, func(t *testing.T) {
				inner := quorumCall(sc.delay, sc.fail)
				started := make(chan struct{}, len(replicas)) // one token per call made
				call := func(ctx context.Context, r string) (int, error) {
					started <- struct{}{}
					return inner(ctx, r)
				}
				start := time.Now()
				_, err := q.run(t.Context(), replicas, sc.hedge, 5*ms, call)
				took := time.Since(start)
				synctest.Wait() // every goroutine left has returned or is blocked for good
				calls := len(started)
				if q.impl == "distkit" && (took != sc.took || calls != sc.calls || (err == nil) != sc.wantSuccess) {
					t.Errorf("%s: distkit decided after %v with %d calls (err %v), want %v with %d calls", sc.name, took, calls, err, sc.took, sc.calls)
				}
				outcome := "quorum"
				if err != nil {
					outcome = "no quorum"
				}
				row = append(row, fmt.Sprintf("%s after %v, %d calls", outcome, took, calls))
			})
		}
		rows = append(rows, row)
	}
	header := []string{"scenario (3 replicas, need 2)"}
	for _, q := range quorumImpls {
		header = append(header, q.impl)
	}
	writeTable(t, "Quorum fan-out behaviour (virtual time; replicas answer in 1 ms; hedge every 5 ms)", header, rows)
	quorumTailTable(t)
}

// quorumTailTable runs 2,000 reads in virtual time, each asking 3 replicas
// for 2 answers, the replicas called in the order r0, r1, r2. Every call
// takes a uniformly random 1 to 2 ms, except that r0 pauses for 1 s in
// 1.5% of its calls (seeded, the same draws for every method). It reports
// the latency percentiles of the reads and the calls they made, for the
// fan-out that calls only 2 replicas and replaces failures, fixed hedging
// every 5 ms (distkit's and the dskit design's), and adaptive hedging at
// per-replica latency quantiles with at most 10% hedged reads (each read
// with a Tracker of its own method). It asserts that adaptive hedging at
// the 99th percentile cuts distkit's p99 tenfold at least, and that
// adaptive hedging adds at most 10% calls (plus quorum.HedgeBurst).
func quorumTailTable(t *testing.T) {
	const (
		ms     = time.Millisecond
		reads  = 2000
		budget = 0.1
	)
	replicas := replicaNames(3)
	seed := uint64(20261205)
	rnd := rand.New(rand.NewPCG(seed, 1))
	lat := make([]map[string]time.Duration, reads)
	for g := range lat {
		lat[g] = map[string]time.Duration{}
		for _, r := range replicas {
			d := ms + time.Duration(rnd.Int64N(int64(ms)))
			if r == "r0" && rnd.Float64() < 0.015 {
				d = time.Second
			}
			lat[g][r] = d
		}
	}
	type method struct {
		name string
		run  func(ctx context.Context, call func(context.Context, string) (int, error)) error
	}
	gather := func(opts ...func() []quorum.Option) func(ctx context.Context, call func(context.Context, string) (int, error)) error {
		var extra []quorum.Option
		for _, o := range opts {
			extra = append(extra, o()...)
		}
		return func(ctx context.Context, call func(context.Context, string) (int, error)) error {
			_, err := quorum.Gather(ctx, replicas, 2, call, extra...)
			return err
		}
	}
	adaptive := func(q float64) func() []quorum.Option {
		return func() []quorum.Option {
			return []quorum.Option{quorum.Hedge(0), quorum.HedgeAt(q, budget), quorum.Track(new(quorum.Tracker))}
		}
	}
	methods := []method{
		{"distkit, 2 calls, no timed hedge", gather(func() []quorum.Option { return []quorum.Option{quorum.Hedge(0)} })},
		{"distkit, hedge every 5 ms", gather(func() []quorum.Option { return []quorum.Option{quorum.Hedge(5 * ms)} })},
		{"dskit-design, hedge every 5 ms", func(ctx context.Context, call func(context.Context, string) (int, error)) error {
			_, err := dskitQuorum(ctx, replicas, 1, true, 5*ms, call, func(int) {})
			return err
		}},
		{"distkit, HedgeAt(0.99, 10%)", gather(adaptive(0.99))},
		{"distkit, HedgeAt(0.95, 10%)", gather(adaptive(0.95))},
	}
	var rows [][]string
	p99 := map[string]time.Duration{}
	for _, m := range methods {
		synctest.Test(t, func(t *testing.T) {
			took := make([]time.Duration, reads)
			calls := 0
			for g := range reads {
				started := make(chan struct{}, len(replicas))
				call := func(ctx context.Context, r string) (int, error) {
					started <- struct{}{}
					return quorumCall(lat[g], nil)(ctx, r)
				}
				start := time.Now()
				if err := m.run(t.Context(), call); err != nil {
					t.Fatal(err)
				}
				took[g] = time.Since(start)
				synctest.Wait()
				calls += len(started)
			}
			slices.Sort(took)
			at := func(q float64) time.Duration { return took[int(q*reads)-1] }
			show := func(q float64) string { return fmt.Sprintf("%.2f ms", float64(at(q))/float64(ms)) }
			p99[m.name] = at(0.99)
			extra := float64(calls-2*reads) / reads
			rows = append(rows, []string{m.name, show(0.5), show(0.99), show(0.999),
				fmt.Sprintf("%.3f", float64(calls)/reads), fmt.Sprintf("%.1f%%", 100*extra)})
			if m.name[:len("distkit, HedgeAt")] == "distkit, HedgeAt" && extra > budget+float64(quorum.HedgeBurst)/reads {
				t.Errorf("%s: %.1f%% extra calls, above the budget of %.0f%%", m.name, 100*extra, 100*budget)
			}
		})
	}
	if base, got := p99["distkit, 2 calls, no timed hedge"], p99["distkit, HedgeAt(0.99, 10%)"]; got >= base/10 {
		t.Errorf("adaptive hedging: p99 %v, want well under %v", got, base)
	}
	writeTable(t, fmt.Sprintf("Quorum tail latency (virtual time; %d reads of 2 of 3 replicas; calls take 1-2 ms, r0 pauses 1 s in 1.5%% of its calls; seed %d)", reads, seed),
		[]string{"method", "p50", "p99", "p99.9", "calls/read", "extra calls"}, rows)
}
