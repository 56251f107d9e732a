package jepsen

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
)

var (
	long   = flag.Bool("long", false, "run -seeds seeded schedules instead of one")
	seeds  = flag.Int("seeds", 20, "with -long, how many seeds")
	seed   = flag.Uint64("seed", 0, "the first schedule's seed; 0: a random one (printed)")
	faults = flag.Int("faults", 0, "faults per schedule; 0: one of each kind")
	hold   = flag.Duration("hold", 0, "how long each fault lasts; 0: the default")
	calm   = flag.Duration("calm", 0, "healthy time around each fault; 0: the default")
	out    = flag.String("out", "", "directory to write each run's report and SVG timeline into")
)

// TestJepsen runs kvnode processes in network namespaces and injects
// faults on a seeded schedule (see the package doc). It needs root, ip,
// nft and tc; without them it skips, except with CI=true, where it fails.
func TestJepsen(t *testing.T) {
	if err := Available(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but the fault harness cannot run: %v", err)
		}
		t.Skipf("the fault harness needs root with ip, nft and tc: %v", err)
	}
	if testing.Short() {
		t.Skip("runs a cluster of processes for minutes")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	first := *seed
	if first == 0 {
		first = rand.Uint64() >> 1
	}
	n := 1
	if *long {
		n = *seeds
	}
	bin, err := buildKVNode(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for k := range n {
		s := first + uint64(k)
		t.Run(fmt.Sprint("seed=", s), func(t *testing.T) {
			cmd := fmt.Sprintf("go test ./examples/jepsen/ -run Jepsen -v -seed %d", s)
			if *faults != 0 || *hold != 0 || *calm != 0 {
				cmd += fmt.Sprintf(" -faults %d -hold %v -calm %v", *faults, *hold, *calm)
			}
			t.Logf("seed %d; replay: %s", s, cmd)
			res, err := Run(ctx, Config{Seed: s, Faults: *faults, Hold: *hold, Calm: *calm, Bin: bin, Log: logWriter{t}})
			if err != nil && res == nil {
				t.Fatalf("harness: %v\nreplay: %s", err, cmd)
			}
			if err != nil {
				t.Errorf("harness: %v", err)
			}
			t.Log("\n" + res.Report())
			if *out != "" {
				if err := os.MkdirAll(*out, 0o755); err != nil {
					t.Fatal(err)
				}
				name := filepath.Join(*out, fmt.Sprint("seed-", s))
				if err := os.WriteFile(name+".txt", []byte(res.Report()), 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(name+".svg", res.SVG(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := res.Err(); err != nil {
				t.Errorf("verdict: %v\nreplay: %s", err, cmd)
			}
		})
		if ctx.Err() != nil {
			t.Fatal("interrupted")
		}
	}
}

// logWriter sends a run's progress lines to the test log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-min(len(p), 1)]))
	return len(p), nil
}
