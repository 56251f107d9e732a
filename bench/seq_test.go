package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/crdt"
	"github.com/distkit/distkit/internal/cputime"
	"github.com/distkit/distkit/internal/editingtrace"
	"github.com/vmihailenco/msgpack/v5"
)

// The editing traces live with the crdt package's tests; see
// crdt/testdata/editing-traces/README.md for their source and licence.
const traceDir = "../crdt/testdata/editing-traces"

var traceNames = []string{"automerge-paper", "seph-blog1"}

func readTrace(tb testing.TB, name string) ([]editingtrace.Patch, string) {
	tb.Helper()
	ps, end, err := editingtrace.Load(filepath.Join(traceDir, name+".json.gz"), 0)
	if err != nil {
		tb.Fatal(err)
	}
	return ps, end
}

func replayText(ps []editingtrace.Patch) *crdt.Text {
	var t crdt.Text
	editingtrace.Apply(ps, func(pos, n int) { t.Delete(pos, n) }, func(pos int, s string) { t.Insert("a", pos, s) })
	return &t
}

// BenchmarkTextTrace replays the editing traces into a crdt.Text, one
// Insert or Delete per edit, as an editor makes them. Yjs and Automerge,
// which run under node, are measured by TestSequenceTraceTable.
func BenchmarkTextTrace(b *testing.B) {
	for _, name := range traceNames {
		es, end := readTrace(b, name)
		b.Run(name+"/impl=distkit", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if replayText(es).Len() != len([]rune(end)) {
					b.Fatal("wrong length")
				}
			}
		})
	}
}

// seqResult is one implementation's figures on one trace.
type seqResult struct {
	Impl      string  `json:"impl"`
	Version   string  `json:"version"`
	Trace     string  `json:"trace"`
	ReplayMS  float64 `json:"replay_ms"`
	ReplayCPU float64 `json:"replay_cpu_ms"`
	Bytes     int     `json:"bytes"`
	LoadMS    float64 `json:"load_ms"`
	LoadCPU   float64 `json:"load_cpu_ms"`
	Heap      int64   `json:"heap_bytes"`
	External  int64   `json:"external_bytes"`
}

// measure runs f n times and returns the medians of its wall and CPU time,
// in milliseconds.
func measure(n int, f func()) (wall, cpu float64) {
	var ws, cs []float64
	for range n {
		c0, t0 := cputime.Process(), time.Now()
		f()
		ws = append(ws, float64(time.Since(t0))/1e6)
		cs = append(cs, float64(cputime.Process()-c0)/1e6)
	}
	slices.Sort(ws)
	slices.Sort(cs)
	return ws[n/2], cs[n/2]
}

// heapInUse returns the bytes of live heap objects after a full GC.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

func distkitTrace(t *testing.T, name string) seqResult {
	es, end := readTrace(t, name)
	r := seqResult{Impl: "distkit", Version: "this tree", Trace: name}
	before := heapInUse()
	doc := replayText(es)
	r.Heap = heapInUse() - before
	if doc.String() != end {
		t.Fatalf("%s: distkit's replay differs from endContent", name)
	}
	r.ReplayMS, r.ReplayCPU = measure(5, func() { replayText(es) })
	buf, err := msgpack.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	r.Bytes = len(buf)
	var loaded crdt.Text
	r.LoadMS, r.LoadCPU = measure(5, func() {
		loaded = crdt.Text{}
		if err := msgpack.Unmarshal(buf, &loaded); err != nil {
			t.Fatal(err)
		}
	})
	if loaded.String() != end {
		t.Fatalf("%s: the loaded state differs from endContent", name)
	}
	runtime.KeepAlive(doc)
	return r
}

// nodeTraces runs seqjs/replay.mjs under node on the traces, or says why
// it cannot.
func nodeTraces(t *testing.T) ([]seqResult, string) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, "node is not installed, so Yjs and Automerge were not run"
	}
	if _, err := os.Stat("seqjs/node_modules/yjs"); err != nil {
		return nil, "seqjs/node_modules is missing (bench/run.sh installs it with npm ci), so Yjs and Automerge were not run"
	}
	args := []string{"--expose-gc", "seqjs/replay.mjs"}
	for _, name := range traceNames {
		args = append(args, filepath.Join(traceDir, name+".json.gz"))
	}
	cmd := exec.Command(node, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node seqjs/replay.mjs: %v", err)
	}
	var rs []seqResult
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r seqResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("node output %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs, ""
}

// TestSequenceTraceTable replays the editing traces with crdt.Text and,
// under node, with Yjs and Automerge, and reports replay time, the size of
// the encoded final state, the time to load it into an empty replica and
// the memory the replayed document holds; with -tables it also writes
// sequences.svg. It runs with -long (bench/run.sh sets it).
func TestSequenceTraceTable(t *testing.T) {
	if !*long || raceEnabled {
		t.Skip("the editing traces replay with -long and without the race detector")
	}
	var rs []seqResult
	for _, name := range traceNames {
		rs = append(rs, distkitTrace(t, name))
	}
	peers, why := nodeTraces(t)
	rs = append(rs, peers...)
	base := map[string]seqResult{}
	for _, r := range rs {
		if r.Impl == "distkit" {
			base[r.Trace] = r
		}
	}
	ratio := func(v, b float64) string {
		switch r := v / b; {
		case b <= 0 || v <= 0 || v == b:
			return ""
		case r >= 10:
			return fmt.Sprintf(" (×%.0f)", r)
		default:
			return fmt.Sprintf(" (×%.2f)", r)
		}
	}
	var rows [][]string
	for _, name := range traceNames {
		for _, r := range rs {
			if r.Trace != name {
				continue
			}
			b := base[name]
			mem := fmt.Sprintf("%.2f MB heap", float64(r.Heap)/1e6)
			if r.Impl == "automerge" {
				mem += fmt.Sprintf(" + %.0f MB wasm/external", float64(r.External)/1e6)
			}
			rows = append(rows, []string{
				name, r.Impl + " " + r.Version,
				fmt.Sprintf("%.0f ms%s", r.ReplayCPU, ratio(r.ReplayCPU, b.ReplayCPU)),
				fmt.Sprintf("%.0f ms", r.ReplayMS),
				fmt.Sprintf("%d%s", r.Bytes, ratio(float64(r.Bytes), float64(b.Bytes))),
				fmt.Sprintf("%.1f ms%s", r.LoadCPU, ratio(r.LoadCPU, b.LoadCPU)),
				fmt.Sprintf("%.1f ms", r.LoadMS),
				mem,
			})
		}
	}
	writeTable(t, "sequences: replaying the editing traces (crdt.Text vs Yjs vs Automerge)",
		[]string{"trace", "impl", "replay CPU", "replay wall", "state bytes", "load CPU", "load wall", "memory after replay"}, rows)
	note := `
Each trace is replayed edit by edit on one replica, as an editor makes the
edits (Yjs: one transaction per edit; Automerge: one change per edit).
CPU is the process's user+system time (GC included), the steadier figure
on this shared machine; wall is elapsed time. distkit's times are the
medians of 5 runs, the peers' a single run (Automerge takes minutes).
State bytes: msgpack of the crdt.Text, Y.encodeStateAsUpdate,
Automerge.save. Load: that state into an empty replica (msgpack.Unmarshal,
Y.applyUpdate, Automerge.load). Memory is measured differently on each
side: for distkit, Go's live heap (HeapAlloc after GC) held by the
document; for Yjs and Automerge, node's heapUsed after GC held by it, plus,
for Automerge, the whole process's external and ArrayBuffer memory after
the replay, where its WebAssembly heap lives (it never shrinks, so the
second trace's figure includes the first's peak). (×r) is the ratio to distkit: above 1, distkit
takes less.

![editing traces](sequences.svg)
`
	if why != "" {
		note += "\n" + why + ".\n"
		t.Log(why)
	}
	appendTables(t, note)
	if *tablesOut != "" {
		if err := os.WriteFile("sequences.svg", []byte(seqChart(rs)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// seqChart draws the results as grouped horizontal bars, one panel per
// trace and measure, each bar scaled to the largest of its panel.
func seqChart(rs []seqResult) string {
	type measureOf struct {
		title string
		value func(r seqResult) float64
		label func(v float64) string
	}
	measures := []measureOf{
		{"replay, CPU ms", func(r seqResult) float64 { return r.ReplayCPU }, func(v float64) string { return fmt.Sprintf("%.0f ms", v) }},
		{"encoded state, KB", func(r seqResult) float64 { return float64(r.Bytes) / 1e3 }, func(v float64) string { return fmt.Sprintf("%.0f KB", v) }},
		{"load into an empty replica, CPU ms", func(r seqResult) float64 { return r.LoadCPU }, func(v float64) string { return fmt.Sprintf("%.1f ms", v) }},
	}
	colors := map[string]string{"distkit": "#2b6cb0", "yjs": "#d69e2e", "automerge": "#9b2c2c"}
	const width, barH, gap, labelW, barW = 900, 16, 4, 110, 600
	var b strings.Builder
	y := 30
	body := func() {
		for _, name := range traceNames {
			for _, m := range measures {
				fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s: %s</text>`+"\n", y, name, m.title)
				y += 8
				top := 0.0
				for _, r := range rs {
					if r.Trace == name {
						top = math.Max(top, m.value(r))
					}
				}
				for _, r := range rs {
					if r.Trace != name || top == 0 {
						continue
					}
					v := m.value(r)
					w := math.Max(1, v/top*barW)
					fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`, y+barH-4, r.Impl)
					fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`, labelW, y, w, barH, colors[r.Impl])
					fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(labelW)+w+6, y+barH-4, m.label(v))
					y += barH + gap
				}
				y += 18
			}
		}
	}
	body()
	height := y
	var out strings.Builder
	fmt.Fprintf(&out, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&out, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&out, `<text x="10" y="18" font-size="14">Editing traces: crdt.Text vs Yjs vs Automerge (shorter is better; generated by bench/run.sh)</text>`+"\n")
	out.WriteString(b.String())
	out.WriteString("</svg>\n")
	return out.String()
}
