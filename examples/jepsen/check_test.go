package jepsen

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/vclock"
)

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func put(v string, from, to float64, ok bool, ctx vclock.VClock, dot vclock.Dot) Op {
	return Op{Kind: Put, Key: "k", Value: []byte(v), Invoke: sec(from), Complete: sec(to), OK: ok, Context: ctx, Dot: dot}
}

func read(from, to float64, values ...string) Op {
	o := Op{Kind: Read, Key: "k", Invoke: sec(from), Complete: sec(to), OK: true}
	for _, v := range values {
		o.Values = append(o.Values, []byte(v))
	}
	return o
}

// The harness's read check is kv.CheckReads over its history: each stale
// read names the operations themselves, and is calm when no fault was
// active around it.
func TestCheckReads(t *testing.T) {
	d1 := vclock.Dot{ID: "n1", Counter: 1}
	ops := []Op{
		put("a", 0, 1, true, vclock.VClock{}, d1),
		read(2, 3),      // stale: missed a, during a fault
		read(6, 7, "a"), // fine
		read(8, 9),      // stale: missed a, calm
	}
	ops[1].Node, ops[3].Node = "n2", "n3"
	stale := checkReads(ops, func(from, _ time.Duration) bool { return from > sec(5) })
	if len(stale) != 2 || stale[0].Read.Node != "n2" || stale[0].Calm || stale[1].Read.Node != "n3" || !stale[1].Calm ||
		string(stale[0].Write.Value) != "a" || stale[0].Back {
		t.Fatalf("stale reads %+v", stale)
	}
	if s := stale[1].String(); !strings.Contains(s, "read of k at n3") || !strings.Contains(s, `missed put "a"`) {
		t.Errorf("String() = %q", s)
	}
}

// Every failed write is indeterminate for kv.Check, whether it failed
// at the store or was cut short, and a lost acknowledged write fails the
// verdict.
func TestAcksAndVerdict(t *testing.T) {
	d1 := vclock.Dot{ID: "n1", Counter: 1}
	ops := []Op{
		put("a", 0, 1, true, vclock.VClock{}, d1),
		{Kind: Delete, Key: "k", Invoke: sec(2), Complete: sec(3), Context: vclock.VClock{}, Cut: true},
		read(0, 1, "a"),
	}
	acked, ind := acks(ops)
	if len(acked) != 1 || string(acked[0].Version.Value) != "a" || acked[0].Dot != d1 {
		t.Fatalf("acked %+v", acked)
	}
	if len(ind) != 1 || !ind[0].Version.Deleted {
		t.Fatalf("indeterminate %+v", ind)
	}
	// The replicas lost "a" and nothing replaced it knowingly.
	r := &Result{History: ops, Verdict: kv.Check(acked, nil, map[string][]kv.Object{"k": {{}, {}, {}}})}
	if err := r.Err(); !errors.Is(err, kv.ErrLost) {
		t.Fatalf("Err() = %v, want %v", err, kv.ErrLost)
	}
	r.Verdict = kv.Verdict{}
	r.Stale = []StaleRead{{Read: read(6, 7), Write: ops[0]}}
	if err := r.Err(); err != nil {
		t.Fatalf("a stale read during a fault fails the run: %v", err)
	}
	r.Stale[0].Calm = true
	if err := r.Err(); err == nil || !strings.Contains(err.Error(), "1 stale reads with no fault active") {
		t.Fatalf("Err() = %v, want a calm stale read", err)
	}
}

// Each round of the schedule has every kind once, with distinct targets
// within the slots, and the same seed gives the same schedule.
func TestSchedule(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for range 200 {
		s, n, count := rng.Uint64(), 3+rng.IntN(8), rng.IntN(30)
		f := Schedule(s, count, n)
		if len(f) != count {
			t.Fatalf("Schedule(%d, %d, %d): %d faults", s, count, n, len(f))
		}
		for r := 0; r+int(numKinds) <= count; r += int(numKinds) {
			kinds := map[FaultKind]bool{}
			for _, x := range f[r : r+int(numKinds)] {
				kinds[x.Kind] = true
			}
			if len(kinds) != int(numKinds) {
				t.Fatalf("Schedule(%d, %d, %d): round %d has kinds %v", s, count, n, r, kinds)
			}
		}
		for _, x := range f {
			seen := map[int]bool{}
			for _, i := range x.Targets {
				if i < 0 || i >= n || seen[i] {
					t.Fatalf("Schedule(%d, %d, %d): %v", s, count, n, x)
				}
				seen[i] = true
			}
			want := map[FaultKind]int{Partition: n / 2, Asymmetric: 2, Nontransitive: 3}[x.Kind]
			if len(x.Targets) != max(want, 1) {
				t.Fatalf("Schedule(%d, %d, %d): %v", s, count, n, x)
			}
		}
		if again := Schedule(s, count, n); !slices.EqualFunc(f, again, func(a, b Fault) bool {
			return a.Kind == b.Kind && slices.Equal(a.Targets, b.Targets)
		}) {
			t.Fatalf("Schedule(%d, %d, %d) not deterministic", s, count, n)
		}
	}
	if f := Schedule(1, 7, 2); f != nil {
		t.Fatalf("Schedule over 2 slots: %v", f)
	}
}

// The report has a row per fault and the calm one with exact counts, and
// the SVG is well-formed XML with a shaded window per fault.
func TestReport(t *testing.T) {
	r := &Result{Seed: 3, Duration: sec(40), Calm: sec(4),
		Faults: []Fault{{Kind: Pause, Targets: []int{2}, Start: sec(10), Detected: sec(11), Heal: sec(17), Recovered: sec(18)}}}
	for i := range 400 {
		at := float64(i) / 10
		o := read(at, at+0.01)
		o.OK = at < 12 || at >= 14
		r.History = append(r.History, o)
	}
	r.History = append(r.History, Op{Kind: Put, Invoke: sec(39), Complete: sec(40), Cut: true})
	rep := r.Report()
	for _, want := range []string{
		"seed 3: 1 faults, 401 operations in 40.0s",
		"pause          [2]       10.0-18.0         80      20   75.0%     10ms     10ms   1000ms   1000ms",
		"calm           -         -                300       0  100.0%",
		"verdict: ok",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("report lacks %q:\n%s", want, rep)
		}
	}
	svg := r.SVG()
	dec := xml.NewDecoder(bytes.NewReader(svg))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG: %v\n%s", err, svg)
		}
	}
	if n := bytes.Count(svg, []byte(`fill-opacity="0.3"`)); n != 2 {
		t.Fatalf("SVG shades %d rectangles, want 2 (a fault in two panels)", n)
	}
}

// A change in any answering node's view is noticed; a node that did not
// answer before or does not answer now is no evidence.
func TestNoticed(t *testing.T) {
	before := map[string]string{"n0": "n0=alive,n1=alive", "n1": "n0=alive,n1=alive"}
	for _, c := range []struct {
		now  map[string]string
		want bool
	}{
		{map[string]string{"n0": "n0=alive,n1=alive"}, false},
		{map[string]string{}, false},
		{map[string]string{"n2": "n0=alive"}, false},
		{map[string]string{"n0": "n0=alive,n1=suspect"}, true},
		{map[string]string{"n1": "n1=alive"}, true},
	} {
		if got := noticed(before, c.now); got != c.want {
			t.Errorf("noticed(%v, %v) = %v", before, c.now, got)
		}
	}
}

// A configuration that would make the clients or the schedule misbehave
// is refused before anything is created.
func TestRunRefusesBadConfig(t *testing.T) {
	for _, c := range []Config{{Nodes: 2}, {Nodes: 500}, {Keys: -1}, {Clients: -3}, {MaxOps: -1}, {Hold: -time.Second}} {
		if _, err := Run(t.Context(), c); err == nil || !strings.Contains(err.Error(), "jepsen: ") {
			t.Errorf("Run(%+v) = %v, want a configuration error", c, err)
		}
	}
}
