package timeline

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

// wellFormed fails the test unless svg parses as XML.
func wellFormed(t *testing.T, svg []byte) {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			return
		} else if err != nil {
			t.Fatalf("SVG: %v\n%s", err, svg)
		}
	}
}

// A chart of random operations and windows is well-formed, shades each
// window once per panel, escapes the labels, and draws one point per
// bucket for throughput; the same chart gives the same bytes.
func TestSVG(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 50 {
		c := Chart{Title: `a <run> & "more"`, Duration: time.Duration(1+rng.IntN(120_000)) * time.Millisecond}
		for range rng.IntN(2000) {
			c.Ops = append(c.Ops, Op{Invoke: time.Duration(rng.Int64N(int64(c.Duration) + int64(time.Second))),
				Latency: time.Duration(rng.Int64N(int64(20 * time.Second))), Failed: rng.IntN(5) == 0})
		}
		for i := range rng.IntN(6) {
			from := time.Duration(rng.Int64N(int64(c.Duration)))
			c.Windows = append(c.Windows, Window{From: from, To: from + time.Duration(rng.Int64N(int64(c.Duration))), Label: fmt.Sprintf("<fault %d>", i), Color: rng.IntN(20) - 10})
		}
		svg := c.SVG()
		wellFormed(t, svg)
		if n := bytes.Count(svg, []byte(`fill-opacity="0.3"`)); n != 2*len(c.Windows) {
			t.Fatalf("%d shaded rectangles for %d windows", n, len(c.Windows))
		}
		if bytes.Contains(svg, []byte("<fault")) || bytes.Contains(svg, []byte("<run>")) {
			t.Fatalf("a label is not escaped")
		}
		// Throughput, acknowledged and failed, has a point per bucket;
		// each latency line one per bucket with operations.
		step := c.Step()
		buckets := max(1, int((c.Duration+step-1)/step))
		busy := map[int]bool{}
		for _, o := range c.Ops {
			busy[max(0, min(buckets-1, int(o.Invoke/step)))] = true
		}
		var points []int
		for l := range strings.Lines(string(svg)) {
			if strings.HasPrefix(l, "<polyline") {
				points = append(points, strings.Count(l, ","))
			}
		}
		if want := []int{buckets, buckets, len(busy), len(busy)}; !slices.Equal(points, want) {
			t.Fatalf("polylines of %v points, want %v", points, want)
		}
		if !bytes.Equal(svg, c.SVG()) {
			t.Fatal("SVG is not deterministic")
		}
	}
}

// Exact values: the points of a known chart.
func TestSVGPoints(t *testing.T) {
	c := Chart{Title: "t", Duration: 60 * time.Second, Ops: []Op{
		{Invoke: 0, Latency: 10 * time.Millisecond},
		{Invoke: 500 * time.Millisecond, Latency: 100 * time.Millisecond},
		{Invoke: 59 * time.Second, Latency: time.Second, Failed: true},
	}}
	if c.Step() != time.Second {
		t.Fatalf("Step() = %v", c.Step())
	}
	svg := string(c.SVG())
	// Bucket 0 (centred at x = 60 + 920 × 0.5/60) holds two acknowledged
	// operations, the scale's top: y = 30. Its p50 is 10ms (y = 420 -
	// 180/4 = 375) and its p99 100ms (y = 330). The last bucket holds one
	// failure at 1s: half the scale (y = 115) and y = 285.
	for _, want := range []string{`points="67.7,30.0 83.0,200.0 `, `points="67.7,200.0 `, `972.3,115.0 "`,
		`points="67.7,375.0 972.3,285.0 "`, `points="67.7,330.0 972.3,285.0 "`, `2/s`, `>60s<`} {
		if !strings.Contains(svg, want) {
			t.Errorf("SVG lacks %q:\n%s", want, svg)
		}
	}
}

func TestQuantile(t *testing.T) {
	s := []time.Duration{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for q, want := range map[float64]time.Duration{0: 1, 0.5: 5, 0.99: 10, 1: 10, 0.11: 2} {
		if got := Quantile(s, q); got != want {
			t.Errorf("Quantile(%v) = %v, want %v", q, got, want)
		}
	}
	if Quantile(nil, 0.5) != 0 {
		t.Error("Quantile of nothing")
	}
}
