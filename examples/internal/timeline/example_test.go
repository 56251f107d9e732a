package timeline_test

import (
	"bytes"
	"fmt"
	"time"

	"github.com/distkit/distkit/examples/internal/timeline"
)

// A minute of operations with a fault window: the chart is drawn in
// one-second buckets and shades the window in both panels.
func ExampleChart_SVG() {
	c := timeline.Chart{Title: "demo", Duration: time.Minute, Windows: []timeline.Window{{From: 10 * time.Second, To: 20 * time.Second, Label: "kill n3"}}}
	for i := range 600 {
		c.Ops = append(c.Ops, timeline.Op{Invoke: time.Duration(i) * 100 * time.Millisecond, Latency: 5 * time.Millisecond, Failed: i%100 == 0})
	}
	svg := c.SVG()
	fmt.Println(c.Step(), bytes.Count(svg, []byte("fill-opacity")), bytes.Contains(svg, []byte(">kill n3<")))
	// Output: 1s 2 true
}

func ExampleQuantile() {
	lat := []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond, 100 * time.Millisecond}
	fmt.Println(timeline.Quantile(lat, 0.5), timeline.Quantile(lat, 0.99))
	// Output: 2ms 100ms
}
