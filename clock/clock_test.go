package clock_test

import (
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/internal/stamptest"
)

func TestLamportZero(t *testing.T) {
	var l clock.Lamport
	require.Equal(t, uint64(0), l.Time())
	require.Equal(t, uint64(1), l.Tick())
	require.Equal(t, uint64(1), l.Time())
}

func TestLamportWitness(t *testing.T) {
	var l clock.Lamport
	require.Equal(t, uint64(11), l.Witness(10), "remote ahead: remote+1")
	require.Equal(t, uint64(12), l.Witness(3), "remote behind: local+1")
	require.Equal(t, uint64(13), l.Witness(12), "remote equal: local+1")
	require.Equal(t, uint64(14), l.Tick())
}

// TestLamportModel checks Tick and Witness against the textbook definition
// on random seeded event sequences.
func TestLamportModel(t *testing.T) {
	for seed := uint64(0); seed < 50; seed++ {
		r := rand.New(rand.NewPCG(seed, seed))
		var l clock.Lamport
		var model uint64
		for range 1000 {
			var got uint64
			if r.IntN(2) == 0 {
				model++
				got = l.Tick()
			} else {
				remote := r.Uint64N(2*min(model, clock.MaxCounter/4) + 20)
				model = max(model, remote) + 1
				got = l.Witness(remote)
				if got <= remote {
					t.Fatalf("seed %d: Witness(%d) = %d, not above remote", seed, remote, got)
				}
			}
			if got != model || l.Time() != model {
				t.Fatalf("seed %d: got %d, time %d, model %d", seed, got, l.Time(), model)
			}
		}
	}
}

// TestLamportConcurrentUnique runs 8 goroutines ticking and witnessing the
// same clock: every returned timestamp is distinct, and each goroutine sees
// its own timestamps strictly increase.
func TestLamportConcurrentUnique(t *testing.T) {
	const goroutines, perG = 8, 5000
	var l clock.Lamport
	results := make([][]uint64, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 1))
			out := make([]uint64, 0, perG)
			for range perG {
				if r.IntN(4) == 0 {
					out = append(out, l.Witness(l.Time()+r.Uint64N(3)))
				} else {
					out = append(out, l.Tick())
				}
			}
			results[g] = out
		})
	}
	wg.Wait()
	stamptest.RequireUnique(t, results)
}

func TestFuncAndSystem(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	require.Equal(t, at, clock.Func(func() time.Time { return at }).Now())
	before := time.Now()
	got := clock.System{}.Now()
	require.False(t, got.Before(before))
}

func BenchmarkLamportTick(b *testing.B) {
	var l clock.Lamport
	b.ReportAllocs()
	for b.Loop() {
		l.Tick()
	}
}

func BenchmarkLamportWitness(b *testing.B) {
	var l clock.Lamport
	b.ReportAllocs()
	for b.Loop() {
		l.Witness(l.Time())
	}
}

// TestLamportExhausted: a remote timestamp of math.MaxUint64 (a corrupt or
// hostile peer) leaves no greater value to return. The clock panics rather
// than wrap around to 0, which would silently order later events before
// earlier ones, and keeps its time.
func TestLamportExhausted(t *testing.T) {
	var l clock.Lamport
	require.Equal(t, uint64(clock.MaxCounter+1), l.Witness(clock.MaxCounter))
	for range 3 {
		l.Tick()
	}
	require.Equal(t, uint64(clock.MaxCounter+4), l.Time())

	var m clock.Lamport
	require.PanicsWithValue(t, "clock: Lamport time out of range: remote time 18446744073709551615 above 9223372036854775807",
		func() { m.Witness(math.MaxUint64) })
	require.Zero(t, m.Time())
}

// TestLamportReceiveHostile: Receive refuses remote times above
// MaxCounter (2^63, 2^63+1, 2^64-1) with ErrRange, leaving the clock
// unchanged, and accepts MaxCounter itself; Witness panics instead; the
// clock keeps ticking after the refusals.
func TestLamportReceiveHostile(t *testing.T) {
	var l clock.Lamport
	l.Tick()
	for _, remote := range []uint64{clock.MaxCounter + 1, clock.MaxCounter + 2, math.MaxUint64} {
		got, err := l.Receive(remote)
		require.ErrorIs(t, err, clock.ErrRange, "%d", remote)
		require.Zero(t, got)
		require.Panics(t, func() { l.Witness(remote) })
		require.Equal(t, uint64(1), l.Time())
	}
	require.Equal(t, uint64(2), l.Tick())
	got, err := l.Receive(7)
	require.NoError(t, err)
	require.Equal(t, uint64(8), got)
	got, err = l.Receive(clock.MaxCounter)
	require.NoError(t, err)
	require.Equal(t, uint64(clock.MaxCounter+1), got)
}
