package detector_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/detector"
)

func BenchmarkPhiOf(b *testing.B) {
	b.ReportAllocs()
	e := time.Second
	for b.Loop() {
		e++
		detector.PhiOf(e, time.Second, 100*time.Millisecond)
	}
}

// benchDetector measures Heartbeat and Phi on a detector whose window is
// full, so that every heartbeat evicts.
func benchDetector(b *testing.B, d detector.Detector) {
	now := t0
	for range 2000 {
		now = now.Add(time.Second)
		d.Heartbeat(now)
	}
	b.Run("Heartbeat", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			now = now.Add(time.Second)
			d.Heartbeat(now)
		}
	})
	b.Run("Phi", func(b *testing.B) {
		b.ReportAllocs()
		probe := now
		for b.Loop() {
			probe = probe.Add(time.Nanosecond)
			d.Phi(probe)
		}
	})
}

func BenchmarkPhi(b *testing.B) { benchDetector(b, detector.NewPhi(detector.PhiConfig{})) }

func BenchmarkExponential(b *testing.B) {
	benchDetector(b, detector.NewExponential(detector.ExponentialConfig{}))
}

func BenchmarkTimeout(b *testing.B) { benchDetector(b, detector.NewTimeout(0)) }

// newBenchRegistry returns a registry of n Phi detectors that have all
// heartbeated once a second for a minute, and their IDs.
func newBenchRegistry(n int) (*detector.Registry[*detector.Phi], []string, time.Time) {
	reg := detector.NewRegistry(func() *detector.Phi { return detector.NewPhi(detector.PhiConfig{}) }, detector.RegistryConfig{})
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("10.0.%d.%d:7000", i/256, i%256)
	}
	now := t0
	for range 60 {
		now = now.Add(time.Second)
		for _, id := range ids {
			reg.Heartbeat(id, now)
		}
	}
	return reg, ids, now
}

func BenchmarkRegistryHeartbeat(b *testing.B) {
	reg, ids, now := newBenchRegistry(1000)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		now = now.Add(time.Millisecond)
		reg.Heartbeat(ids[i%len(ids)], now)
		i++
	}
}

// BenchmarkRegistrySuspects checks 1000 nodes, 10 of which are silent.
func BenchmarkRegistrySuspects(b *testing.B) {
	reg, ids, now := newBenchRegistry(1000)
	for _, id := range ids[10:] {
		reg.Heartbeat(id, now.Add(1500*time.Millisecond))
	}
	now = now.Add(2 * time.Second)
	dst := make([]string, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		dst = reg.AppendSuspects(dst[:0], now)
	}
	if len(dst) != 10 {
		b.Fatalf("%d suspects, want 10", len(dst))
	}
}
