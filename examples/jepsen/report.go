package jepsen

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
	"time"
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
	s.p50, s.p99 = quantile(lat, 0.50), quantile(lat, 0.99)
	return s
}

// quantile of sorted (0 for none), nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(math.Ceil(q*float64(len(sorted))))-1)]
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
func (r *Result) SVG() []byte {
	const (
		w, h          = 1000.0, 460.0
		left, right   = 60.0, 20.0
		top1, bottom1 = 30.0, 200.0 // throughput panel
		top2, bottom2 = 240.0, 420.0
	)
	secs := max(1, int(math.Ceil(r.Duration.Seconds())))
	okN, failN := make([]int, secs), make([]int, secs)
	lat := make([][]time.Duration, secs)
	for _, o := range r.History {
		if o.Cut {
			continue
		}
		i := min(secs-1, int(o.Invoke/time.Second))
		if o.OK {
			okN[i]++
		} else {
			failN[i]++
		}
		lat[i] = append(lat[i], o.Latency())
	}
	maxOps := max(1, slices.Max(okN), slices.Max(failN))
	x := func(s float64) float64 { return left + (w-left-right)*s/float64(secs) }
	yOps := func(n int) float64 { return bottom1 - (bottom1-top1)*float64(n)/float64(maxOps) }
	// latency from 1ms to 10s, log scale
	yLat := func(d time.Duration) float64 {
		l := math.Log10(max(1, float64(d)/float64(time.Millisecond)))
		return bottom2 - (bottom2-top2)*min(l, 4)/4
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="13">kvnode under faults, seed %d: operations per second (top), latency p50/p99 (bottom)</text>`+"\n", left, r.Seed)
	colors := []string{"#f4a261", "#e76f51", "#e9c46a", "#2a9d8f", "#8ab17d", "#b56576", "#6d597a"}
	for i, f := range r.Faults {
		from, to := f.window()
		x0, x1 := x(from.Seconds()), x(to.Seconds())
		c := colors[int(f.Kind)%len(colors)]
		for _, p := range [][2]float64{{top1, bottom1}, {top2, bottom2}} {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s" fill-opacity="0.3"/>`+"\n", x0, p[0], x1-x0, p[1]-p[0], c)
		}
		// Inside the top panel, staggered so that neighbours' names do
		// not overlap.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="10">%s</text>`+"\n",
			x0+2, top1+12+float64(i%2)*12, html.EscapeString(f.String()))
	}
	poly := func(color string, pts func(i int) (float64, bool)) {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, color)
		for i := range secs {
			if y, ok := pts(i); ok {
				fmt.Fprintf(&b, "%.1f,%.1f ", x(float64(i)+0.5), y)
			}
		}
		b.WriteString("\"/>\n")
	}
	poly("#1d3557", func(i int) (float64, bool) { return yOps(okN[i]), true })
	poly("#d62828", func(i int) (float64, bool) { return yOps(failN[i]), true })
	for _, q := range []struct {
		q     float64
		color string
	}{{0.5, "#1d3557"}, {0.99, "#d62828"}} {
		poly(q.color, func(i int) (float64, bool) {
			if len(lat[i]) == 0 {
				return 0, false
			}
			s := slices.Sorted(slices.Values(lat[i]))
			return yLat(quantile(s, q.q)), true
		})
	}
	// axes and labels
	for _, p := range [][2]float64{{top1, bottom1}, {top2, bottom2}} {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#555"/>`+"\n", left, p[0], w-left-right, p[1]-p[0])
	}
	fmt.Fprintf(&b, `<text x="4" y="%.0f">%d/s</text><text x="4" y="%.0f">0</text>`+"\n", top1+10, maxOps, bottom1)
	for e, label := range []string{"1ms", "10ms", "100ms", "1s", "10s"} {
		y := bottom2 - (bottom2-top2)*float64(e)/4
		fmt.Fprintf(&b, `<text x="4" y="%.0f">%s</text><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#ddd"/>`+"\n", y+4, label, left, w-right, y, y)
	}
	for s := 0; s <= secs; s += 30 {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%ds</text>`+"\n", x(float64(s)), bottom2+14, s)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#1d3557">acknowledged / p50</text><text x="%.0f" y="%.0f" fill="#d62828">failed / p99</text>`+"\n",
		left, h-8, left+160, h-8)
	b.WriteString("</svg>\n")
	return b.Bytes()
}
