package vclock

import (
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/vmihailenco/msgpack/v5"
)

// forged are the counters no decoder accepts: 2^63, 2^63+1 and 2^64-1.
var forged = []uint64{MaxCounter + 1, MaxCounter + 2, math.MaxUint64}

// TestHostileCounters: a counter above MaxCounter, in every place a
// decoder reads one, is refused with ErrMalformed and leaves the receiver
// as it was; MaxCounter itself is accepted. After the refusals the
// receivers keep working.
func TestHostileCounters(t *testing.T) {
	for _, n := range forged {
		cases := []struct {
			name string
			into func() any
			in   []any
		}{
			{"Dot", dotPtr, []any{"a", n}},
			{"VClock entry", clockPtr, []any{[]any{"a", n}}},
			{"VClock entry with a time", clockPtr, []any{[]any{"a", 1}, []any{"b", n, 5}}},
			{"DVVSet entry", setPtr, []any{[]any{[]any{"a", n, []any{"v"}}}, []any{}}},
			{"DVVSet second entry", setPtr, []any{[]any{[]any{"a", 1, []any{}}, []any{"b", n, []any{}}}, []any{}}},
		}
		for _, c := range cases {
			name := fmt.Sprintf("%s, counter %d", c.name, n)
			dst := c.into()
			before := marshal(t, dst)
			err := msgpack.Unmarshal(marshal(t, c.in), dst)
			require.ErrorIs(t, err, ErrMalformed, name)
			require.Equal(t, before, marshal(t, dst), "%s: receiver changed", name)
			// The receiver keeps working.
			switch v := dst.(type) {
			case *VClock:
				require.Equal(t, Dot{ID: "keep", Counter: 2}, v.Tick("keep"), name)
			case *DVVSet[string]:
				require.NoError(t, v.TryUpdate(v.Context(), "keep", "next"), name)
				require.Equal(t, []string{"next"}, v.Values(), name)
			}
		}
	}
	// MaxCounter is the largest counter accepted.
	var d Dot
	require.NoError(t, msgpack.Unmarshal(marshal(t, []any{"a", uint64(MaxCounter)}), &d))
	require.Equal(t, Dot{ID: "a", Counter: MaxCounter}, d)
}

// TestForgedContext: a client context with a counter at MaxCounter for the
// coordinating server: TryUpdate refuses the write with ErrExhausted and
// changes nothing, Update panics changing nothing, and the server's other
// IDs and later honest writes (with a sane context) still work.
func TestForgedContext(t *testing.T) {
	var s DVVSet[string]
	s.Update(VClock{}, "n1", "v1")
	var forgedCtx VClock
	forgedCtx.Add(Dot{ID: "n1", Counter: MaxCounter})
	before := marshal(t, s)
	require.ErrorIs(t, s.TryUpdate(forgedCtx, "n1", "evil"), ErrExhausted)
	require.Equal(t, before, marshal(t, s))
	require.Panics(t, func() { s.Update(forgedCtx, "n1", "evil") })
	require.Equal(t, before, marshal(t, s))
	require.NoError(t, s.TryUpdate(s.Context(), "n1", "v2"))
	require.NoError(t, s.TryUpdate(forgedCtx, "n2", "v3")) // another coordinator can still write
	require.ElementsMatch(t, []string{"v3"}, s.Values())
	// One below the bound is the last dot there is.
	var t2 DVVSet[string]
	var ctx VClock
	ctx.Add(Dot{ID: "n1", Counter: MaxCounter - 1})
	require.NoError(t, t2.TryUpdate(ctx, "n1", "last"))
	require.Equal(t, uint64(MaxCounter), t2.Context().Get("n1"))
	require.ErrorIs(t, t2.TryUpdate(t2.Context(), "n1", "more"), ErrExhausted)
}
