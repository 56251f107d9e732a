package detector_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/detector"
)

// Cassandra's ArrivalWindowTest: four 111ms intervals push the initial 2s
// out of a 4-sample window.
func TestExponentialCassandraSpec(t *testing.T) {
	fd := detector.NewExponential(detector.ExponentialConfig{MaxSamples: 4})
	for _, ms := range []int64{111, 222, 333, 444, 555} {
		fd.Heartbeat(at(ms))
	}
	require.InDelta(t, 0.4342, fd.Phi(at(666)), 0.01)
	require.InDelta(t, 9.566, fd.Phi(at(3000)), 0.01)
}

func TestExponentialModel(t *testing.T) {
	var zero detector.Exponential
	require.Equal(t, 0.0, zero.Phi(at(5000)))
	require.True(t, zero.Available(at(5000)))

	zero.Heartbeat(at(0)) // records the default 2s
	require.InDelta(t, 1/math.Ln10, zero.Phi(at(2000)), 1e-15)
	zero.Heartbeat(at(1000))
	zero.Heartbeat(at(2000)) // window 2s, 1s, 1s
	require.InDelta(t, 3/math.Ln10, zero.Phi(at(6000)), 1e-15)
	zero.Heartbeat(at(9000)) // 7s > MaxInterval = 2s: not recorded
	require.InDelta(t, 3/math.Ln10, zero.Phi(at(13000)), 1e-15)
	zero.Heartbeat(at(8000)) // stale: ignored
	require.InDelta(t, 3/math.Ln10, zero.Phi(at(13000)), 1e-15)
	require.Equal(t, 0.0, zero.Phi(at(9000)))
	require.Equal(t, 0.0, zero.Phi(at(8500)), "before the last heartbeat")
}

// After steady 1s heartbeats the node is suspected exactly when
// t/(1s·ln 10) exceeds the threshold: at 8·ln 10 s = 18.42s.
func TestExponentialThresholdCrossing(t *testing.T) {
	fd := detector.NewExponential(detector.ExponentialConfig{FirstHeartbeat: time.Second})
	last := at(0)
	for range 10 {
		fd.Heartbeat(last)
		last = last.Add(time.Second)
	}
	last = last.Add(-time.Second)
	want := 8 * math.Ln10 * float64(time.Second)
	require.InDelta(t, want, float64(firstSuspected(fd, last)), 1)
	require.True(t, fd.Available(last.Add(18420*time.Millisecond)))
	require.False(t, fd.Available(last.Add(18421*time.Millisecond)))
}

// With every recorded interval 0, any silence at all is infinitely
// suspicious, and none is not.
func TestExponentialZeroMean(t *testing.T) {
	fd := detector.NewExponential(detector.ExponentialConfig{MaxSamples: 1})
	fd.Heartbeat(at(0))
	fd.Heartbeat(at(0))
	require.Equal(t, 0.0, fd.Phi(at(0)))
	require.Equal(t, math.Inf(1), fd.Phi(at(1)))
	require.False(t, fd.Available(at(1)))
}

func TestExponentialConfigPanics(t *testing.T) {
	for _, cfg := range []detector.ExponentialConfig{
		{Threshold: -1},
		{Threshold: math.NaN()},
		{MaxSamples: -1},
		{FirstHeartbeat: -1},
		{MaxInterval: -1},
	} {
		msg := panicMessage(func() { detector.NewExponential(cfg) })
		require.True(t, strings.HasPrefix(msg, "detector: ExponentialConfig."), "%+v: %q", cfg, msg)
	}
}
