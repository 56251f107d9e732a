package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The demo with short phases: every phase runs, converge prints its
// rounds, the report repeats the live lines unchanged, the checks pass,
// and -report writes a well-formed SVG with the four fault windows.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster on loopback")
	}
	var out strings.Builder
	svg := filepath.Join(t.TempDir(), "run.svg")
	if err := run([]string{"-phase", "300ms", "-clients", "4", "-keys", "20", "-faults", "kill,partition,leave,join", "-data", t.TempDir(), "-report", svg}, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	text := out.String()
	for _, want := range []string{"steady load", "kill n5", "partition n4", "heal", "leave n1", "handed over", "restart n5", "join n6",
		"converge               round 1:", "hints pending 0", "reads ", "verdict: PASS"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	live, report, ok := strings.Cut(text, "\nreport")
	if !ok {
		t.Fatalf("no report:\n%s", text)
	}
	for _, name := range []string{"steady load", "kill n5", "partition n4", "heal", "leave n1", "restart n5", "join n6"} {
		if a, b := lineOf(live, name+" "), lineOf(report, name+" "); a == "" || a != b {
			t.Errorf("the live line of %q and the report's differ:\n%s\n%s", name, a, b)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	for {
		if _, err := dec.Token(); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("SVG: %v", err)
		}
	}
	if n := bytes.Count(b, []byte(`fill-opacity="0.3"`)); n != 2*4 {
		t.Errorf("the SVG shades %d rectangles, want 8 (kill, partition, leave and join in two panels)", n)
	}
}

// lineOf returns the first line of text that starts with prefix.
func lineOf(text, prefix string) string {
	for l := range strings.Lines(text) {
		if strings.HasPrefix(l, prefix) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func TestDemoFlags(t *testing.T) {
	for _, args := range [][]string{{"-nodes", "2"}, {"-faults", "flood"}, {"-n", "3", "-w", "4"}} {
		if err := run(args, &strings.Builder{}); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

// gate is a RoundTripper that holds each request until released.
type gate struct {
	entered, release chan struct{}
}

func (g gate) RoundTrip(*http.Request) (*http.Response, error) {
	g.entered <- struct{}{}
	<-g.release
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok"))}, nil
}

// A kill is a hard stop: a request the killed node had under way loses
// its answer, it sends nothing more, and dialling it is refused as
// dialling a dead process is (so coordinators fail over at once).
func TestKillAbandonsInFlight(t *testing.T) {
	nw := &network{cut: map[string]bool{}, killed: map[string]bool{}}
	g := gate{entered: make(chan struct{}), release: make(chan struct{})}
	a := faultyTransport{nw: nw, from: "a:1", next: g}
	req := func(to string) *http.Request {
		r, err := http.NewRequest(http.MethodPost, "http://"+to+"/internal/rpc", nil)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	done := make(chan error)
	go func() {
		resp, err := a.RoundTrip(req("b:1"))
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-g.entered // replication under way
	nw.kill(true, "a:1")
	close(g.release)
	if err := <-done; err == nil || !strings.Contains(err.Error(), "lost the answer") {
		t.Fatalf("a copy in flight when its sender was killed: %v, want its answer lost", err)
	}
	entered := make(chan struct{}, 1)
	a.next = gate{entered: entered, release: g.release}
	if _, err := a.RoundTrip(req("b:1")); err == nil || len(entered) != 0 {
		t.Fatalf("the killed node sent a request (%v)", err)
	}
	b := faultyTransport{nw: nw, from: "b:1", next: a.next}
	_, err := b.RoundTrip(req("a:1"))
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" || !errors.Is(err, syscall.ECONNREFUSED) || len(entered) != 0 {
		t.Fatalf("a request to the killed node: %v, want a refused dial", err)
	}
	nw.kill(false, "a:1") // restarted
	if resp, err := b.RoundTrip(req("a:1")); err != nil || len(entered) != 1 {
		t.Fatalf("a request to the restarted node: %v", err)
	} else {
		resp.Body.Close()
	}
}
