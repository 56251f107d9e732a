package detector_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/detector"
)

func TestTimeout(t *testing.T) {
	var zero detector.Timeout // 4s
	fd := detector.NewTimeout(2 * time.Second)
	for _, d := range []*detector.Timeout{&zero, fd} {
		require.Equal(t, 0.0, d.Phi(at(100000)))
		require.True(t, d.Available(at(100000)))
	}
	zero.Heartbeat(at(1000))
	fd.Heartbeat(at(1000))
	fd.Heartbeat(at(500)) // stale: ignored
	require.Equal(t, 0.0, fd.Phi(at(1000)))
	require.Equal(t, 0.0, fd.Phi(at(900)))
	require.Equal(t, 0.5, fd.Phi(at(2000)))
	require.Equal(t, 1.0, fd.Phi(at(3000)))
	require.True(t, fd.Available(at(3000)), "the deadline itself is still in time")
	require.False(t, fd.Available(at(3000).Add(1)))
	require.Equal(t, 0.25, zero.Phi(at(2000)))
	require.True(t, zero.Available(at(5000)))
	require.False(t, zero.Available(at(5001)))
	require.Equal(t, time.Duration(2*time.Second+1), firstSuspected(fd, at(1000)))

	msg := panicMessage(func() { detector.NewTimeout(-1) })
	require.True(t, strings.HasPrefix(msg, "detector: NewTimeout"), msg)
}
