package hlc_test

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/internal/stamptest"
)

// model is a node of the paper's figure 5: l and c kept apart, c unbounded.
type model struct{ l, c int64 }

func (m *model) send(pt int64) {
	old := m.l
	m.l = max(old, pt)
	if m.l == old {
		m.c++
	} else {
		m.c = 0
	}
}

func (m *model) receive(pt, lm, cm int64) {
	old := m.l
	m.l = max(old, lm, pt)
	switch {
	case m.l == old && m.l == lm:
		m.c = max(m.c, cm) + 1
	case m.l == old:
		m.c++
	case m.l == lm:
		m.c = cm + 1
	default:
		m.c = 0
	}
}

// node is one simulated process: a Clock over a physical clock the test
// controls, its reference model, and what the test knows about it.
type node struct {
	clock     *hlc.Clock
	model     model
	pt        int64 // physical time, µs since the epoch
	lastPT    int64 // the physical reading the clock last recorded
	maxPT     int64 // the largest physical time the clock has read
	maxRemote int64 // the largest remote wall time it accepted
	maxAhead  int64 // the largest offset (remote - pt) it accepted
	last      hlc.Timestamp

	// Expected Stats.
	jumps, maxJump, maxOffsetSeen, rejected int64
}

// readPT is what the clock's physical clock returns; it mirrors the
// bookkeeping the Clock does on each read.
func (n *node) readPT() int64 {
	if n.pt < n.lastPT {
		n.jumps++
		n.maxJump = max(n.maxJump, n.lastPT-n.pt)
	}
	if n.pt < n.lastPT || n.pt-n.lastPT >= 1000 { // recorded going back, or a millisecond on
		n.lastPT = n.pt
	}
	n.maxPT = max(n.maxPT, n.pt)
	return n.pt
}

func packed(l, c int64) hlc.Timestamp { return hlc.Timestamp(uint64(l)<<12 | uint64(c)) }

// TestModel runs random histories of local, send and receive events on
// three nodes whose physical clocks are skewed and jump forward and
// backward, and checks every timestamp against the paper's (l, c)
// algorithm, the invariants, and the Stats counters.
func TestModel(t *testing.T) {
	const nodes, events = 3, 1500 // fewer events than 4096: c never carries
	base := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC).UnixMicro()
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 0x41c))
		backward := seed%2 == 0
		var maxOffset time.Duration
		if seed%3 != 0 {
			maxOffset = time.Duration(1+r.IntN(2000)) * time.Microsecond
		}
		ns := make([]*node, nodes)
		for i := range ns {
			n := &node{pt: base + r.Int64N(3000)}
			n.clock = hlc.New(hlc.Config{
				Source:    clock.Func(func() time.Time { return time.UnixMicro(n.pt) }),
				MaxOffset: maxOffset,
			})
			ns[i] = n
		}
		var inFlight []hlc.Timestamp
		fail := func(format string, args ...any) {
			t.Helper()
			t.Fatalf("seed %d: "+format, append([]any{seed}, args...)...)
		}
		for ev := range events {
			n := ns[r.IntN(nodes)]
			// Move the physical clock: mostly not at all or a little, so
			// that logical counters grow; sometimes a jump.
			switch k := r.IntN(100); {
			case k < 40:
			case k < 90:
				n.pt += r.Int64N(5)
			case k < 95:
				n.pt += r.Int64N(5000)
			case backward:
				n.pt -= r.Int64N(5000)
			}
			var got hlc.Timestamp
			if r.IntN(2) == 0 || len(inFlight) == 0 {
				pt := n.readPT()
				n.model.send(pt)
				got = n.clock.Now()
				if r.IntN(2) == 0 {
					inFlight = append(inFlight, got)
				}
			} else {
				remote := inFlight[r.IntN(len(inFlight))]
				pt := n.readPT()
				lm, cm := int64(remote>>12), int64(remote.Logical())
				ahead := lm - pt
				n.maxOffsetSeen = max(n.maxOffsetSeen, ahead)
				var err error
				got, err = n.clock.Update(remote)
				if maxOffset > 0 && time.Duration(ahead)*time.Microsecond > maxOffset {
					n.rejected++
					var oe *hlc.OffsetError
					if !errors.Is(err, hlc.ErrClockOffset) || !errors.As(err, &oe) {
						fail("event %d: Update(%v) at pt %d: error %v, want ErrClockOffset", ev, remote, pt, err)
					}
					if oe.Remote != remote || oe.Offset != time.Duration(ahead)*time.Microsecond ||
						oe.MaxOffset != maxOffset || !oe.Physical.Equal(time.UnixMicro(pt)) {
						fail("event %d: %+v", ev, oe)
					}
					if got != 0 || n.clock.Last() != n.last {
						fail("event %d: rejected Update changed the clock: %v, last %v", ev, got, n.clock.Last())
					}
					continue
				}
				if err != nil {
					fail("event %d: Update(%v): %v", ev, remote, err)
				}
				n.model.receive(pt, lm, cm)
				n.maxRemote = max(n.maxRemote, lm)
				n.maxAhead = max(n.maxAhead, ahead)
				if got <= remote {
					fail("event %d: receive %v not after remote %v", ev, got, remote)
				}
			}
			if want := packed(n.model.l, n.model.c); got != want {
				fail("event %d: got %v, model (%d, %d) = %v", ev, got, n.model.l, n.model.c, want)
			}
			if got <= n.last || n.clock.Last() != got {
				fail("event %d: %v after %v, Last %v", ev, got, n.last, n.clock.Last())
			}
			n.last = got
			l := int64(got >> 12)
			if l > max(n.maxPT, n.maxRemote) {
				fail("event %d: wall %d beyond every physical time %d and remote %d", ev, l, n.maxPT, n.maxRemote)
			}
			if !backward && l-n.pt > max(0, n.maxAhead) {
				fail("event %d: l - pt = %d, beyond the largest accepted offset %d", ev, l-n.pt, n.maxAhead)
			}
			if maxOffset > 0 && !backward && time.Duration(l-n.pt)*time.Microsecond > maxOffset {
				fail("event %d: l - pt = %dµs > MaxOffset %s", ev, l-n.pt, maxOffset)
			}
		}
		for i, n := range ns {
			want := hlc.Stats{
				BackwardJumps:   uint64(n.jumps),
				MaxBackwardJump: time.Duration(n.maxJump) * time.Microsecond,
				MaxRemoteOffset: time.Duration(n.maxOffsetSeen) * time.Microsecond,
				Rejected:        uint64(n.rejected),
			}
			if got := n.clock.Stats(); got != want {
				fail("node %d: Stats %+v, want %+v", i, got, want)
			}
			if !backward && n.jumps != 0 {
				fail("node %d: %d backward jumps without any", i, n.jumps)
			}
		}
	}
}

// manual is a physical clock the test sets.
type manual struct{ us int64 }

func (m *manual) Now() time.Time { return time.UnixMicro(m.us) }

func TestNowUpdateRules(t *testing.T) {
	pc := &manual{us: 1000}
	c := hlc.New(hlc.Config{Source: pc})
	at := func(us int64, logical uint16) hlc.Timestamp { return hlc.Make(time.UnixMicro(us), logical) }

	require.Equal(t, at(1000, 0), c.Now(), "physical time, logical 0")
	require.Equal(t, at(1000, 1), c.Now(), "same microsecond: logical counts")
	pc.us = 990 // backward: the wall part holds, the counter counts
	require.Equal(t, at(1000, 2), c.Now())
	ts, err := c.Update(at(1500, 7)) // remote ahead: remote+1
	require.NoError(t, err)
	require.Equal(t, at(1500, 8), ts)
	ts, err = c.Update(at(1200, 9)) // remote behind: last+1
	require.NoError(t, err)
	require.Equal(t, at(1500, 9), ts)
	pc.us = 2000
	ts, err = c.Update(at(1800, 3)) // physical time ahead of both: pt
	require.NoError(t, err)
	require.Equal(t, at(2000, 0), ts)
	require.Equal(t, hlc.Stats{BackwardJumps: 1, MaxBackwardJump: 10 * time.Microsecond, MaxRemoteOffset: 510 * time.Microsecond}, c.Stats())

	// Logical overflow carries into the next microsecond.
	c.Restore(at(2000, hlc.MaxLogical-1))
	require.Equal(t, at(2000, hlc.MaxLogical), c.Now())
	require.Equal(t, at(2001, 0), c.Now())
	require.Equal(t, at(2001, 1), c.Now())
}

func TestZeroClock(t *testing.T) {
	var c hlc.Clock
	require.Zero(t, c.Last())
	before := time.Now().Truncate(time.Microsecond)
	ts := c.Now()
	after := time.Now()
	require.False(t, ts.WallTime().Before(before) || ts.WallTime().After(after), "%v not in [%v, %v]", ts, before, after)
	require.Equal(t, ts, c.Last())
	// No offset check: a remote far ahead is accepted.
	far := hlc.Make(time.Now().Add(24*time.Hour), 5)
	got, err := c.Update(far)
	require.NoError(t, err)
	require.Equal(t, far+1, got)
	require.GreaterOrEqual(t, c.Stats().MaxRemoteOffset, 23*time.Hour)
}

func TestUpdateOffset(t *testing.T) {
	pc := &manual{us: 1_000_000}
	c := hlc.New(hlc.Config{Source: pc, MaxOffset: 500 * time.Millisecond})
	prev := c.Now()

	ok := hlc.Make(time.UnixMicro(1_500_000), 0) // exactly MaxOffset ahead: accepted
	got, err := c.Update(ok)
	require.NoError(t, err)
	require.Equal(t, ok+1, got)

	c.Restore(prev) // no effect: the clock is past prev
	require.Equal(t, got, c.Last())

	bad := hlc.Make(time.UnixMicro(1_500_001), 0)
	_, err = c.Update(bad)
	require.ErrorIs(t, err, hlc.ErrClockOffset)
	var oe *hlc.OffsetError
	require.ErrorAs(t, err, &oe)
	require.Equal(t, hlc.OffsetError{Remote: bad, Physical: time.UnixMicro(1_000_000).UTC(), Offset: 500001 * time.Microsecond, MaxOffset: 500 * time.Millisecond}, *oe)
	require.Contains(t, err.Error(), "500.001ms ahead")
	require.Equal(t, got, c.Last(), "a rejected update leaves the clock unchanged")
	require.Equal(t, hlc.Stats{MaxRemoteOffset: 500001 * time.Microsecond, Rejected: 1}, c.Stats())
}

func TestUpdateRange(t *testing.T) {
	var c hlc.Clock
	for _, remote := range []hlc.Timestamp{hlc.MaxTimestamp, hlc.Make(maxWall, 0)} {
		_, err := c.Update(remote)
		require.ErrorIs(t, err, hlc.ErrRange)
		require.Less(t, c.Last(), hlc.Make(maxWall, 0))
	}
	ts, err := c.Update(hlc.Make(maxWall, 0) - 1)
	require.NoError(t, err)
	require.Equal(t, hlc.Make(maxWall, 0), ts)
}

// TestExhausted: only a physical clock past 2112 brings a clock to the end
// of its range, 4096 events into the last microsecond; then TryNow returns
// ErrRange and Now panics, both leaving the clock unchanged.
func TestExhausted(t *testing.T) {
	c := hlc.New(hlc.Config{Source: clock.Func(func() time.Time { return time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC) })})
	for range hlc.MaxLogical {
		c.Now()
	}
	require.Equal(t, hlc.MaxTimestamp, c.Now())
	_, err := c.TryNow()
	require.ErrorIs(t, err, hlc.ErrRange)
	require.Panics(t, func() { c.Now() })
	_, err = c.Update(5)
	require.ErrorIs(t, err, hlc.ErrRange)
	require.Equal(t, hlc.MaxTimestamp, c.Last())
}

func TestNewPanics(t *testing.T) {
	require.PanicsWithValue(t, "hlc: negative MaxOffset", func() { hlc.New(hlc.Config{MaxOffset: -1}) })
	require.PanicsWithValue(t, "hlc: negative MaxRestoreAhead", func() { hlc.New(hlc.Config{MaxRestoreAhead: -1}) })
}

// TestRestoreRefuses: a floor in the last microsecond, or further ahead of
// the physical clock than MaxRestoreAhead (default 2*MaxOffset + 1 minute),
// is refused with a typed error and leaves the clock unchanged; a floor
// within the limit, or behind the clock, is accepted.
func TestRestoreRefuses(t *testing.T) {
	pc := &manual{us: 1_800_000_000_000_000}
	at := func(d time.Duration) hlc.Timestamp { return hlc.Make(time.UnixMicro(pc.us).Add(d), 0) }
	for _, tc := range []struct {
		cfg      hlc.Config
		ok, fail time.Duration
	}{
		{hlc.Config{}, time.Minute, time.Minute + time.Microsecond},
		{hlc.Config{MaxOffset: time.Second}, time.Minute + 2*time.Second, time.Minute + 2*time.Second + time.Microsecond},
		{hlc.Config{MaxRestoreAhead: 5 * time.Second, MaxOffset: time.Hour}, 5 * time.Second, 5*time.Second + time.Microsecond},
	} {
		tc.cfg.Source = pc
		c := hlc.New(tc.cfg)
		c.Now()
		last := c.Last()
		for _, floor := range []hlc.Timestamp{at(tc.fail), at(50 * 365 * 24 * time.Hour), hlc.MaxTimestamp, hlc.MaxTimestamp - hlc.MaxLogical} {
			err := c.Restore(floor)
			require.Error(t, err, "%+v: %v", tc.cfg, floor)
			require.Equal(t, last, c.Last(), "unchanged")
			if floor.WallTime().Year() < 2112 {
				var re *hlc.RestoreError
				require.ErrorAs(t, err, &re)
				require.ErrorIs(t, err, hlc.ErrRestoreAhead)
				require.Equal(t, floor, re.Floor)
			} else {
				require.ErrorIs(t, err, hlc.ErrRange)
			}
		}
		require.NoError(t, c.Restore(1))
		require.Equal(t, last, c.Last(), "a floor behind the clock changes nothing")
		require.NoError(t, c.Restore(at(tc.ok)))
		require.Equal(t, at(tc.ok), c.Last())
		require.Greater(t, c.Now(), at(tc.ok))
	}
}

// TestEnforceUpperBound: with EnforceUpperBound, no timestamp past the
// bound is issued: TryNow and Update return ErrUpperBound and Now panics,
// each leaving the clock unchanged; a new bound lets the clock go on.
// Without the option the bound is only recorded.
func TestEnforceUpperBound(t *testing.T) {
	pc := &manual{us: 1_800_000_000_000_000}
	c := hlc.New(hlc.Config{Source: pc, EnforceUpperBound: true})
	first := c.Now() // no bound set yet: nothing enforced
	c.SetUpperBound(first + 2)
	require.Equal(t, first+2, c.UpperBound())
	require.Equal(t, first+1, c.Now())
	require.Equal(t, first+2, c.Now())
	_, err := c.TryNow()
	require.ErrorIs(t, err, hlc.ErrUpperBound)
	require.Panics(t, func() { c.Now() })
	_, err = c.Update(first)
	require.ErrorIs(t, err, hlc.ErrUpperBound)
	pc.us += 10 // the physical clock passes the bound: still refused
	_, err = c.TryNow()
	require.ErrorIs(t, err, hlc.ErrUpperBound)
	require.Equal(t, first+2, c.Last())
	c.SetUpperBound(hlc.Make(time.UnixMicro(pc.us).Add(time.Second), 0))
	require.Equal(t, hlc.Make(time.UnixMicro(pc.us), 0), c.Now())

	free := hlc.New(hlc.Config{Source: pc})
	free.SetUpperBound(1)
	require.Greater(t, free.Now(), hlc.Timestamp(1))
}

// TestRestart follows the pattern of the package documentation: a clock
// restarted behind a persisted upper bound issues timestamps above it.
func TestRestart(t *testing.T) {
	const interval, maxOffset = time.Second, 250 * time.Millisecond
	pc := &manual{us: 10_000_000}
	c := hlc.New(hlc.Config{Source: pc, MaxOffset: maxOffset})
	_, err := c.Update(hlc.Make(time.UnixMicro(pc.us).Add(maxOffset), 0))
	require.NoError(t, err)
	bound := hlc.Make(c.Now().WallTime().Add(2*interval+maxOffset), 0)
	var issued hlc.Timestamp
	for range 100 { // within one interval
		pc.us += 10_000
		issued = c.Now()
	}
	require.Less(t, issued, bound)

	pc.us -= 5_000_000 // restart with the physical clock stepped back
	c = hlc.New(hlc.Config{Source: pc, MaxOffset: maxOffset})
	require.NoError(t, c.Restore(bound))
	require.Greater(t, c.Now(), issued)
}

// TestConcurrentUnique runs 8 goroutines issuing timestamps on one clock,
// most with Now, some with Update: all are distinct and each goroutine's
// increase.
func TestConcurrentUnique(t *testing.T) {
	const goroutines, perG = 8, 5000
	var c hlc.Clock
	results := make([][]hlc.Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			out := make([]hlc.Timestamp, 0, perG)
			for range perG {
				if r.IntN(8) == 0 {
					ts, err := c.Update(c.Last() + hlc.Timestamp(r.IntN(3)))
					require.NoError(t, err)
					out = append(out, ts)
				} else {
					out = append(out, c.Now())
				}
			}
			results[g] = out
		})
	}
	wg.Wait()
	stamptest.RequireUnique(t, results)
	require.Zero(t, c.Stats().BackwardJumps, "the system clock did not jump")
}

// TestConcurrentJumpCountedOnce has 8 goroutines issue timestamps from a
// physical clock that jumps back once: the jump is counted once, and the
// timestamps are distinct and increase per goroutine across it.
func TestConcurrentJumpCountedOnce(t *testing.T) {
	const goroutines, perG = 8, 1000
	var mu sync.Mutex
	us := int64(1_000_000)
	c := hlc.New(hlc.Config{Source: clock.Func(func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		us++
		if us == 1_002_000 {
			us = 0
		}
		return time.UnixMicro(us)
	})})
	results := make([][]hlc.Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			out := make([]hlc.Timestamp, perG)
			for i := range out {
				out[i] = c.Now()
			}
			results[g] = out
		})
	}
	wg.Wait()
	stamptest.RequireUnique(t, results)
	require.Equal(t, uint64(1), c.Stats().BackwardJumps)
	require.GreaterOrEqual(t, c.Stats().MaxBackwardJump, time.Second)
}

func TestAllocs(t *testing.T) {
	var c hlc.Clock
	require.Zero(t, testing.AllocsPerRun(1000, func() { c.Now() }))
	require.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = c.Update(c.Last()) }))
	withSource := hlc.New(hlc.Config{Source: clock.System{}, MaxOffset: time.Second})
	require.Zero(t, testing.AllocsPerRun(1000, func() { withSource.Now() }))
	require.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = withSource.Update(withSource.Last()) }))
	require.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = withSource.TryNow() }))
	enforced := hlc.New(hlc.Config{EnforceUpperBound: true})
	enforced.SetUpperBound(hlc.Make(time.Now().Add(time.Hour), 0))
	require.Zero(t, testing.AllocsPerRun(1000, func() { enforced.Now() }))
	require.Zero(t, testing.AllocsPerRun(1000, func() { _, _ = enforced.Update(enforced.Last()) }))
	require.Zero(t, testing.AllocsPerRun(1000, func() { _ = enforced.Restore(enforced.Last()) }))
}

var sink hlc.Timestamp

// mutexClock is the usual way to write a hybrid logical clock, as in
// CockroachDB's pkg/util/hlc: the physical clock read and the last
// timestamp advanced under a mutex. It is the baseline of BenchmarkNow.
type mutexClock struct {
	source func() time.Time
	mu     sync.Mutex
	last   hlc.Timestamp
}

func (c *mutexClock) Now() hlc.Timestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last = max(c.last+1, hlc.Make(c.source(), 0))
	return c.last
}

// BenchmarkNow measures, in one run, Clock.Now, a mutex HLC, and the
// physical clock both read (impl=source), each from one goroutine
// (serial) and from GOMAXPROCS goroutines on one clock (parallel). With
// source=system the physical clock is time.Now; with source=fixed it
// never advances, which shows the clocks' own cost, and is the path that
// runs wait-free: every call is a logical tick.
func BenchmarkNow(b *testing.B) {
	fixedTime := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	fixed := func() time.Time { return fixedTime }
	sources := []struct {
		name string
		now  func() time.Time
		cfg  hlc.Config
	}{
		{"system", time.Now, hlc.Config{}}, // the zero Config calls time.Now directly
		{"fixed", fixed, hlc.Config{Source: clock.Func(fixed)}},
	}
	impls := []struct {
		name string
		now  func(src func() time.Time, cfg hlc.Config) func()
	}{
		{"hlc", func(_ func() time.Time, cfg hlc.Config) func() {
			c := hlc.New(cfg)
			return func() { c.Now() }
		}},
		{"mutex", func(src func() time.Time, _ hlc.Config) func() {
			c := mutexClock{source: src}
			return func() { c.Now() }
		}},
		{"source", func(src func() time.Time, _ hlc.Config) func() { return func() { src() } }},
	}
	for _, src := range sources {
		for _, impl := range impls {
			name := "impl=" + impl.name + "/source=" + src.name
			b.Run(name+"/serial", func(b *testing.B) {
				now := impl.now(src.now, src.cfg)
				b.ReportAllocs()
				for b.Loop() {
					now()
				}
			})
			b.Run(name+"/parallel", func(b *testing.B) {
				now := impl.now(src.now, src.cfg)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						now()
					}
				})
			})
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	c := hlc.New(hlc.Config{MaxOffset: 500 * time.Millisecond})
	remote := c.Now()
	b.ReportAllocs()
	for b.Loop() {
		sink, _ = c.Update(remote)
	}
}

func BenchmarkString(b *testing.B) {
	ts := hlc.Make(time.Date(2026, 11, 27, 14, 6, 57, 0, time.UTC), 1)
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf, _ = ts.AppendText(buf[:0])
	}
}

// TestConcurrentLogicalTicks: with the physical clock standing still,
// every Now from every goroutine is a logical tick (the wait-free path):
// the N timestamps are exactly the N successors of the first reading, as
// max(last+1, pt) gives them one after the other, none lost or repeated.
func TestConcurrentLogicalTicks(t *testing.T) {
	const goroutines, perG = 4, 2000
	pt := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	c := hlc.New(hlc.Config{Source: clock.Func(func() time.Time { return pt })})
	results := make([][]hlc.Timestamp, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for range perG {
				results[g] = append(results[g], c.Now())
			}
		})
	}
	wg.Wait()
	seen := make(map[hlc.Timestamp]bool)
	for _, rs := range results {
		for i, ts := range rs {
			require.False(t, seen[ts], "timestamp %v issued twice", ts)
			seen[ts] = true
			if i > 0 {
				require.Greater(t, ts, rs[i-1])
			}
		}
	}
	first := hlc.Make(pt, 0)
	for i := range hlc.Timestamp(goroutines * perG) {
		require.True(t, seen[first+i], "missing %v", first+i)
	}
	require.Equal(t, first+goroutines*perG-1, c.Last())
}
