package jepsen

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/distkit/distkit/examples/internal/timeline"
)

// window is the part of the run a fault covers: from its injection to
// its recovery (or its heal, if it never recovered).
func (f Fault) window() (from, to time.Duration) {
	return f.Start, max(f.Heal, f.Recovered)
}

// opStats is availability and latency over a set of operations.
type opStats struct {
	total, failed int
	p50, p99      time.Duration
}

func statsOf(ops []Op) opStats {
	var s opStats
	var lat []time.Duration
	for _, o := range ops {
		if o.Cut {
			continue
		}
		s.total++
		if !o.OK {
			s.failed++
		}
		lat = append(lat, o.Latency())
	}
	slices.Sort(lat)
	s.p50, s.p99 = timeline.Quantile(lat, 0.50), timeline.Quantile(lat, 0.99)
	return s
}

// Report is the run's text report: per fault, its window, availability
// (failed/total operations invoked in it), p50/p99 latency, the time
// the failure detector took to notice it and the time from the heal until
// every node saw every member alive; then the same for the calm periods,
// and the verdicts.
func (r *Result) Report() string {
	var b strings.Builder
	fmt.Fprintf(&b, "seed %d: %d faults, %d operations in %.1fs\n", r.Seed, len(r.Faults), len(r.History), r.Duration.Seconds())
	fmt.Fprintf(&b, "%-14s %-9s %-13s %6s %7s %7s %8s %8s %8s %8s\n",
		"fault", "targets", "window (s)", "ops", "failed", "avail", "p50", "p99", "detect", "recover")
	row := func(name, targets, window string, s opStats, detect, recover string) {
		avail := "-"
		if s.total > 0 {
			avail = fmt.Sprintf("%.1f%%", 100*float64(s.total-s.failed)/float64(s.total))
		}
		fmt.Fprintf(&b, "%-14s %-9s %-13s %6d %7d %7s %8s %8s %8s %8s\n",
			name, targets, window, s.total, s.failed, avail, ms(s.p50), ms(s.p99), detect, recover)
	}
	for _, f := range r.Faults {
		from, to := f.window()
		s := statsOf(slices.DeleteFunc(slices.Clone(r.History), func(o Op) bool { return o.Invoke < from || o.Invoke >= to }))
		detect, recover := "never", "never"
		if f.Detected > 0 {
			detect = ms(f.Detected - f.Start)
		}
		if f.Recovered > 0 {
			recover = ms(f.Recovered - f.Heal)
		}
		row(f.Kind.String(), strings.ReplaceAll(fmt.Sprint(f.Targets), " ", ","),
			fmt.Sprintf("%.1f-%.1f", from.Seconds(), to.Seconds()), s, detect, recover)
	}
	calm := statsOf(slices.DeleteFunc(slices.Clone(r.History), func(o Op) bool { return !r.calm(o.Invoke, o.Complete) }))
	row("calm", "-", "-", calm, "-", "-")
	v := r.Verdict
	fmt.Fprintf(&b, "writes: %d acknowledged over %d keys; lost %d, deleted values back %d, keys whose replicas differ %d\n",
		v.Acks, v.Keys, len(v.Lost), len(v.Resurrected), len(v.Diverged))
	calmStale := 0
	for _, s := range r.Stale {
		if s.Calm {
			calmStale++
		}
	}
	reads := 0
	for _, o := range r.History {
		if o.Kind == Read && o.OK {
			reads++
		}
	}
	fmt.Fprintf(&b, "reads: %d; stale during faults %d, stale when calm %d\n", reads, len(r.Stale)-calmStale, calmStale)
	for i, s := range r.Stale {
		if i == 3 {
			fmt.Fprintf(&b, "  ... %d more\n", len(r.Stale)-i)
			break
		}
		fmt.Fprintf(&b, "  %v\n", s)
	}
	if err := r.Err(); err != nil {
		fmt.Fprintf(&b, "verdict: FAIL: %v\n", err)
	} else {
		fmt.Fprintf(&b, "verdict: ok\n")
	}
	return b.String()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond)) }

// SVG is the run's timeline, as a standalone SVG document: per second,
// operations acknowledged and failed (top) and p50 and p99 latency on a
// log scale (bottom), with every fault's window shaded and named.
// Operations cut short by the end of the run are left out.
func (r *Result) SVG() []byte {
	c := timeline.Chart{Title: fmt.Sprintf("kvnode under faults, seed %d", r.Seed), Duration: r.Duration}
	for _, o := range r.History {
		if !o.Cut {
			c.Ops = append(c.Ops, timeline.Op{Invoke: o.Invoke, Latency: o.Latency(), Failed: !o.OK})
		}
	}
	for _, f := range r.Faults {
		from, to := f.window()
		c.Windows = append(c.Windows, timeline.Window{From: from, To: to, Label: f.String(), Color: int(f.Kind)})
	}
	return c.SVG()
}
