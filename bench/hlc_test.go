package bench

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/hlc"
)

// mutexHLC is the common way to write a hybrid logical clock, as in
// CockroachDB's pkg/util/hlc: wall nanoseconds and a logical counter behind
// a mutex, the physical clock read under the lock. It is the baseline for
// hlc.Clock, written plainly here.
type mutexHLC struct {
	source  func() time.Time // nil: time.Now
	mu      sync.Mutex
	wall    int64 // Unix nanoseconds
	logical int32
}

func (c *mutexHLC) physical() int64 {
	if c.source == nil {
		return time.Now().UnixNano()
	}
	return c.source().UnixNano()
}

type mutexTimestamp struct {
	wall    int64
	logical int32
}

func (c *mutexHLC) Now() mutexTimestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	if pt := c.physical(); pt > c.wall {
		c.wall, c.logical = pt, 0
	} else {
		c.logical++
	}
	return mutexTimestamp{c.wall, c.logical}
}

func (c *mutexHLC) Update(r mutexTimestamp) mutexTimestamp {
	c.mu.Lock()
	defer c.mu.Unlock()
	pt := c.physical()
	switch {
	case pt > c.wall && pt > r.wall:
		c.wall, c.logical = pt, 0
	case r.wall > c.wall:
		c.wall, c.logical = r.wall, r.logical+1
	case c.wall > r.wall:
		c.logical++
	default:
		c.logical = max(c.logical, r.logical) + 1
	}
	return mutexTimestamp{c.wall, c.logical}
}

func (t mutexTimestamp) less(u mutexTimestamp) bool {
	return t.wall < u.wall || t.wall == u.wall && t.logical < u.logical
}

// TestMutexHLC checks that the baseline is a clock worth measuring: strictly
// increasing, and past every remote timestamp it receives.
func TestMutexHLC(t *testing.T) {
	var c mutexHLC
	prev := c.Now()
	for i := range 10_000 {
		next := c.Now()
		if i%3 == 0 {
			remote := mutexTimestamp{next.wall + int64(i%7)*1000, int32(i % 5)}
			next = c.Update(remote)
			if !remote.less(next) {
				t.Fatalf("Update(%v) = %v, not past the remote", remote, next)
			}
		}
		if !prev.less(next) {
			t.Fatalf("step %d: %v after %v", i, next, prev)
		}
		prev = next
	}
}

// sinkTime keeps the compiler from dropping time.Now calls.
var sinkTime atomic.Int64

// BenchmarkHLCNow is one local event: distkit's lock-free clock, the mutex
// clock, and the bare physical clock read both of them make.
func BenchmarkHLCNow(b *testing.B) {
	b.Run("impl=distkit", func(b *testing.B) {
		var c hlc.Clock
		b.ReportAllocs()
		for b.Loop() {
			c.Now()
		}
	})
	b.Run("impl=mutex", func(b *testing.B) {
		var c mutexHLC
		b.ReportAllocs()
		for b.Loop() {
			c.Now()
		}
	})
	b.Run("impl=time.Now", func(b *testing.B) {
		b.ReportAllocs()
		var t time.Time
		for b.Loop() {
			t = time.Now()
		}
		sinkTime.Store(t.UnixNano())
	})
}

// tickingClock is a physical clock that costs next to nothing to read: it
// advances one microsecond per reading. It shows each clock's own cost,
// which a slow time.Now (such as kvm-clock's) hides.
type tickingClock struct{ us atomic.Int64 }

func (c *tickingClock) Now() time.Time { return time.UnixMicro(1_800_000_000_000_000 + c.us.Add(1)) }

// BenchmarkHLCNowCheapClock is Now over a tickingClock, in parallel: the
// clocks' own cost and contention, without the system clock's.
func BenchmarkHLCNowCheapClock(b *testing.B) {
	b.Run("impl=distkit", func(b *testing.B) {
		var src tickingClock
		c := hlc.New(hlc.Config{Source: &src})
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Now()
			}
		})
	})
	b.Run("impl=mutex", func(b *testing.B) {
		var src tickingClock
		c := mutexHLC{source: src.Now}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Now()
			}
		})
	})
}

// BenchmarkHLCNowParallel is Now from GOMAXPROCS goroutines on one clock.
func BenchmarkHLCNowParallel(b *testing.B) {
	b.Run("impl=distkit", func(b *testing.B) {
		var c hlc.Clock
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Now()
			}
		})
	})
	b.Run("impl=mutex", func(b *testing.B) {
		var c mutexHLC
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				c.Now()
			}
		})
	})
	b.Run("impl=time.Now", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			var t time.Time
			for pb.Next() {
				t = time.Now()
			}
			sinkTime.Store(t.UnixNano())
		})
	})
}

// BenchmarkHLCUpdate is one receive event, the remote timestamp 1 ms ahead
// of the local clock so that the remote rule applies.
func BenchmarkHLCUpdate(b *testing.B) {
	b.Run("impl=distkit", func(b *testing.B) {
		var c hlc.Clock
		remote := hlc.Make(time.Now().Add(time.Millisecond), 0)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := c.Update(remote); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=mutex", func(b *testing.B) {
		var c mutexHLC
		remote := mutexTimestamp{time.Now().Add(time.Millisecond).UnixNano(), 0}
		b.ReportAllocs()
		for b.Loop() {
			c.Update(remote)
		}
	})
}
