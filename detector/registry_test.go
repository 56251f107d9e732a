package detector_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/detector"
)

func newPhiRegistry(cfg detector.RegistryConfig) *detector.Registry[*detector.Phi] {
	return detector.NewRegistry(func() *detector.Phi { return detector.NewPhi(detector.PhiConfig{}) }, cfg)
}

func TestRegistryBasics(t *testing.T) {
	reg := newPhiRegistry(detector.RegistryConfig{})
	require.Empty(t, reg.Suspects(at(0)))
	_, ok := reg.Phi("a", at(0))
	require.False(t, ok)

	for _, ms := range []int64{0, 1000, 2000} {
		reg.Heartbeat("c", at(ms))
		reg.Heartbeat("a", at(ms))
		reg.Heartbeat("b", at(ms))
	}
	reg.Heartbeat("b", at(3000))
	require.Equal(t, 3, reg.Len())
	require.Empty(t, reg.Suspects(at(3000)))

	ref := detector.NewPhi(detector.PhiConfig{})
	for _, ms := range []int64{0, 1000, 2000} {
		ref.Heartbeat(at(ms))
	}
	phi, ok := reg.Phi("a", at(3500))
	require.True(t, ok)
	require.Equal(t, ref.Phi(at(3500)), phi)

	require.Equal(t, []string{"a", "c"}, reg.Suspects(at(4000)), "sorted; b heartbeat a second later")
	require.Equal(t, []string{"x", "a", "b", "c"}, reg.AppendSuspects([]string{"x"}, at(5000)))

	require.True(t, reg.Remove("a"))
	require.False(t, reg.Remove("a"))
	require.Equal(t, 2, reg.Len())
	require.Equal(t, []string{"b", "c"}, reg.Suspects(at(5000)))
	_, ok = reg.Phi("a", at(5000))
	require.False(t, ok)

	reg.Heartbeat("a", at(5000)) // monitored afresh
	require.Equal(t, []string{"b", "c"}, reg.Suspects(at(5000)))
	fresh := detector.NewPhi(detector.PhiConfig{})
	fresh.Heartbeat(at(5000))
	phi, _ = reg.Phi("a", at(5800))
	require.Equal(t, fresh.Phi(at(5800)), phi)
}

// TestRegistryModel runs seeded random histories of heartbeats, removals,
// checks and local pauses against a reference model: a map of independent
// detectors and the local-pause rule written out directly.
func TestRegistryModel(t *testing.T) {
	const maxPause = 3 * time.Second
	for seed := uint64(0); seed < 30; seed++ {
		r := rand.New(rand.NewPCG(seed, 3))
		newDet := func() *detector.Phi { return detector.NewPhi(detector.PhiConfig{Threshold: 3, MaxSamples: 10}) }
		reg := detector.NewRegistry(newDet, detector.RegistryConfig{MaxLocalPause: maxPause})
		model := map[string]*detector.Phi{}
		var lastTick, pausedAt time.Time
		ticked, paused := false, false
		now := t0
		var dst []string
		for step := range 3000 {
			if r.IntN(50) == 0 {
				now = now.Add(time.Duration(r.Int64N(int64(3 * maxPause)))) // a local pause, maybe
			} else {
				now = now.Add(time.Duration(r.Int64N(int64(400 * time.Millisecond))))
			}
			id := fmt.Sprintf("n%d", r.IntN(12))
			switch op := r.IntN(10); {
			case op < 6:
				reg.Heartbeat(id, now)
				if model[id] == nil {
					model[id] = newDet()
				}
				model[id].Heartbeat(now)
			case op < 7:
				_, had := model[id]
				require.Equal(t, had, reg.Remove(id), "seed %d step %d", seed, step)
				delete(model, id)
			default:
				if ticked && now.Sub(lastTick) > maxPause {
					pausedAt, paused = now, true
				}
				lastTick, ticked = now, true
				var want []string
				if !paused || now.Sub(pausedAt) >= maxPause {
					for id, d := range model {
						if !d.Available(now) {
							want = append(want, id)
						}
					}
					slices.Sort(want)
				}
				dst = reg.AppendSuspects(dst[:0], now)
				if !slices.Equal(want, dst) {
					t.Fatalf("seed %d step %d: suspects %v, model %v", seed, step, dst, want)
				}
				require.Equal(t, len(model), reg.Len())
			}
		}
	}
}

// TestRegistryLocalPause: the local process freezes for 10s. Without the
// guard, every node is suspected when it wakes; with it, none is until the
// heartbeats that queued up have arrived, and a node that really died is
// still suspected once the guard lifts.
func TestRegistryLocalPause(t *testing.T) {
	run := func(cfg detector.RegistryConfig) (atWake []string, after []string) {
		reg := newPhiRegistry(cfg)
		ids := make([]string, 20)
		for i := range ids {
			ids[i] = fmt.Sprintf("node-%02d", i)
		}
		now := at(0)
		for range 30 { // 30s of normal running: heartbeats and a check each second
			for _, id := range ids {
				reg.Heartbeat(id, now)
			}
			require.Empty(t, reg.Suspects(now))
			now = now.Add(time.Second)
		}
		now = now.Add(10 * time.Second) // frozen: nothing runs
		atWake = reg.Suspects(now)      // the first thing the woken process does
		for range 8 {                   // the queued heartbeats arrive, then normal running; node-00 is dead
			for _, id := range ids[1:] {
				reg.Heartbeat(id, now)
			}
			now = now.Add(time.Second)
			after = reg.Suspects(now)
		}
		return atWake, after
	}
	atWake, after := run(detector.RegistryConfig{MaxLocalPause: -1})
	require.Len(t, atWake, 20, "no guard: the local pause looks like a cluster-wide failure")
	require.Equal(t, []string{"node-00"}, after)

	atWake, after = run(detector.RegistryConfig{}) // 5s guard
	require.Empty(t, atWake)
	require.Equal(t, []string{"node-00"}, after)
}

func TestRegistryTick(t *testing.T) {
	reg := newPhiRegistry(detector.RegistryConfig{MaxLocalPause: 5 * time.Second})
	require.False(t, reg.Tick(at(0)))
	require.False(t, reg.Tick(at(5000)), "a gap of exactly MaxLocalPause is normal")
	require.False(t, reg.Tick(at(4000)), "out of order")
	require.True(t, reg.Tick(at(10001)), "a gap above MaxLocalPause starts a pause")
	require.True(t, reg.Tick(at(15000)))
	require.False(t, reg.Tick(at(15001)), "withheld for MaxLocalPause")
	require.False(t, reg.Tick(at(16000)))

	reg.Heartbeat("a", at(16000))
	require.True(t, reg.Tick(at(30000)))
	require.Empty(t, reg.Suspects(at(30000)))
	require.Equal(t, []string{"a"}, reg.Suspects(at(35000)))

	off := newPhiRegistry(detector.RegistryConfig{MaxLocalPause: -1})
	require.False(t, off.Tick(at(0)))
	require.False(t, off.Tick(at(1000000)))
}

func TestRegistryNilConstructor(t *testing.T) {
	require.Equal(t, "detector: NewRegistry with a nil detector constructor",
		panicMessage(func() { detector.NewRegistry[*detector.Phi](nil, detector.RegistryConfig{}) }))
}

// TestRegistryConcurrent hammers one registry from several goroutines;
// run with -race.
func TestRegistryConcurrent(t *testing.T) {
	reg := detector.NewRegistry(func() *detector.Phi { return detector.NewPhi(detector.PhiConfig{MaxSamples: 8}) }, detector.RegistryConfig{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 4))
			now := t0
			var dst []string
			for range 2000 {
				now = now.Add(time.Duration(r.IntN(100)) * time.Millisecond)
				id := fmt.Sprintf("n%d", r.IntN(20))
				switch r.IntN(10) {
				case 0:
					reg.Remove(id)
				case 1:
					dst = reg.AppendSuspects(dst[:0], now)
				case 2:
					reg.Phi(id, now)
				default:
					reg.Heartbeat(id, now)
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, reg.Len(), 20)
}

func TestRegistryAllocs(t *testing.T) {
	reg := newPhiRegistry(detector.RegistryConfig{MaxLocalPause: -1})
	ids := make([]string, 100)
	now := t0
	for i := range ids {
		ids[i] = fmt.Sprintf("node-%d", i)
		reg.Heartbeat(ids[i], now)
	}
	i := 0
	allocs := testing.AllocsPerRun(1000, func() {
		now = now.Add(10 * time.Millisecond)
		reg.Heartbeat(ids[i%len(ids)], now)
		i++
	})
	require.Zero(t, allocs, "heartbeat of a known node")

	dst := make([]string, 0, len(ids))
	allocs = testing.AllocsPerRun(100, func() {
		now = now.Add(time.Minute)
		dst = reg.AppendSuspects(dst[:0], now)
	})
	require.Zero(t, allocs, "suspects into a large enough dst")
	require.Len(t, dst, len(ids))
}
