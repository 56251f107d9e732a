// Package timeline draws a run of a store under load as an SVG timeline:
// operations per second, acknowledged and failed (top panel), and p50
// and p99 latency on a log scale (bottom panel), with fault windows
// shaded and named across both. The fault harness and the demo of the
// examples share it.
//
// # Usage
//
//	svg := timeline.Chart{Title: "kvdemo", Duration: run, Ops: ops, Windows: faults}.SVG()
//
// # Guarantees
//
// SVG is a pure function of the chart: the same chart gives the same
// bytes, a well-formed standalone SVG document, with every label
// escaped. Operations are counted in the bucket of their invocation;
// buckets are as wide as the chart's [Chart.Step] and rates are scaled
// to per second.
package timeline

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"slices"
	"time"
)

// Op is one operation on the timeline: when it was invoked (since the
// start of the run), how long it took, and whether it failed. It is a
// plain value.
type Op struct {
	Invoke, Latency time.Duration
	Failed          bool
}

// Window is a shaded span of the run, such as a fault's, with its label
// and the index of its colour in a fixed palette (taken modulo its
// length). It is a plain value.
type Window struct {
	From, To time.Duration
	Label    string
	Color    int
}

// Chart is a timeline to draw. It is a plain value.
type Chart struct {
	Title    string
	Duration time.Duration // of the run; at least one bucket is drawn
	Ops      []Op
	Windows  []Window
}

// Quantile returns the q-quantile of sorted by nearest rank; 0 for no
// values.
func Quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[max(0, min(len(sorted)-1, int(math.Ceil(q*float64(len(sorted))))-1))]
}

// Step is the width of the chart's buckets: one second for runs of 30
// seconds or more, and for shorter runs the widest of 500, 200 and 100
// milliseconds that gives 30 buckets (100ms at least).
func (c Chart) Step() time.Duration {
	for _, s := range []time.Duration{time.Second, 500 * time.Millisecond, 200 * time.Millisecond} {
		if c.Duration >= 30*s {
			return s
		}
	}
	return 100 * time.Millisecond
}

// palette holds the windows' colours.
var palette = []string{"#f4a261", "#e76f51", "#e9c46a", "#2a9d8f", "#8ab17d", "#b56576", "#6d597a"}

// SVG returns the chart as a standalone SVG document.
func (c Chart) SVG() []byte {
	const (
		w, h          = 1000.0, 460.0
		left, right   = 60.0, 20.0
		top1, bottom1 = 30.0, 200.0 // throughput panel
		top2, bottom2 = 240.0, 420.0
	)
	step := c.Step()
	n := max(1, int((c.Duration+step-1)/step))
	perSec := float64(time.Second) / float64(step)
	okN, failN := make([]int, n), make([]int, n)
	lat := make([][]time.Duration, n)
	for _, o := range c.Ops {
		i := max(0, min(n-1, int(o.Invoke/step)))
		if o.Failed {
			failN[i]++
		} else {
			okN[i]++
		}
		lat[i] = append(lat[i], o.Latency)
	}
	maxRate := max(1, float64(max(slices.Max(okN), slices.Max(failN)))*perSec)
	span := float64(n) * step.Seconds()
	x := func(s float64) float64 { return left + (w-left-right)*min(max(s, 0), span)/span }
	yOps := func(k int) float64 { return bottom1 - (bottom1-top1)*float64(k)*perSec/maxRate }
	// latency from 1ms to 10s, log scale
	yLat := func(d time.Duration) float64 {
		l := math.Log10(max(1, float64(d)/float64(time.Millisecond)))
		return bottom2 - (bottom2-top2)*min(l, 4)/4
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="16" font-size="13">%s: operations per second (top), latency p50/p99 (bottom)</text>`+"\n",
		left, html.EscapeString(c.Title))
	for i, win := range c.Windows {
		x0, x1 := x(win.From.Seconds()), x(win.To.Seconds())
		col := palette[((win.Color%len(palette))+len(palette))%len(palette)]
		for _, p := range [][2]float64{{top1, bottom1}, {top2, bottom2}} {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.0f" width="%.1f" height="%.0f" fill="%s" fill-opacity="0.3"/>`+"\n", x0, p[0], x1-x0, p[1]-p[0], col)
		}
		// Inside the top panel, staggered so that neighbours' names do
		// not overlap.
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" font-size="10">%s</text>`+"\n", x0+2, top1+12+float64(i%2)*12, html.EscapeString(win.Label))
	}
	poly := func(color string, pts func(i int) (float64, bool)) {
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="`, color)
		for i := range n {
			if y, ok := pts(i); ok {
				fmt.Fprintf(&b, "%.1f,%.1f ", x((float64(i)+0.5)*step.Seconds()), y)
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
			return yLat(Quantile(slices.Sorted(slices.Values(lat[i])), q.q)), true
		})
	}
	// axes and labels
	for _, p := range [][2]float64{{top1, bottom1}, {top2, bottom2}} {
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="none" stroke="#555"/>`+"\n", left, p[0], w-left-right, p[1]-p[0])
	}
	fmt.Fprintf(&b, `<text x="4" y="%.0f">%.0f/s</text><text x="4" y="%.0f">0</text>`+"\n", top1+10, maxRate, bottom1)
	for e, label := range []string{"1ms", "10ms", "100ms", "1s", "10s"} {
		y := bottom2 - (bottom2-top2)*float64(e)/4
		fmt.Fprintf(&b, `<text x="4" y="%.0f">%s</text><line x1="%.0f" x2="%.0f" y1="%.0f" y2="%.0f" stroke="#ddd"/>`+"\n", y+4, label, left, w-right, y, y)
	}
	tick := ticks(span)
	for s := 0.0; s <= span+1e-9; s += tick {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%gs</text>`+"\n", x(s), bottom2+14, math.Round(s*10)/10)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#1d3557">acknowledged / p50</text><text x="%.0f" y="%.0f" fill="#d62828">failed / p99</text>`+"\n",
		left, h-8, left+160, h-8)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// ticks returns the spacing of the time axis' labels, in seconds: the
// smallest of 1, 2, 5, 10, 30 and 60 seconds that labels a span of span
// seconds at most ten times (and, past that, multiples of a minute).
func ticks(span float64) float64 {
	for _, t := range []float64{1, 2, 5, 10, 30, 60} {
		if span/t <= 10 {
			return t
		}
	}
	return 60 * math.Ceil(span/600)
}
