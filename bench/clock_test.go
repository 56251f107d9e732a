package bench

import (
	"sync"
	"testing"

	"github.com/distkit/distkit/clock"
)

// mutexLamport is the common way to write a Lamport clock: a counter
// behind a mutex.
type mutexLamport struct {
	mu sync.Mutex
	t  uint64
}

func (l *mutexLamport) Tick() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t++
	return l.t
}

func BenchmarkLamportTick(b *testing.B) {
	b.Run("impl=distkit", func(b *testing.B) {
		var l clock.Lamport
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Tick()
			}
		})
	})
	b.Run("impl=mutex", func(b *testing.B) {
		var l mutexLamport
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				l.Tick()
			}
		})
	})
}
