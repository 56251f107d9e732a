package bench

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/internal/cputime"
)

// mapIdempotency is the idempotency store most services start with: a map
// from key to record behind one mutex. A first call inserts an in-progress
// record with its own copy of the fingerprint (the caller's slice is not
// the store's to keep), runs fn outside the lock and stores its result;
// later calls get the result, ErrInProgress or ErrMismatch. Records are
// forgotten one key at a time, as expiry deletes them. It has none of the
// Guard's leases, deadlines, size bound, sharding or fencing.
type mapIdempotency struct {
	mu sync.Mutex
	m  map[string]*mapRecord
}

type mapRecord struct {
	fingerprint []byte
	done        bool
	response    []byte
}

func (s *mapIdempotency) Do(ctx context.Context, key string, fingerprint []byte,
	fn func(ctx context.Context) ([]byte, error)) ([]byte, error) {
	s.mu.Lock()
	if r, ok := s.m[key]; ok {
		s.mu.Unlock()
		switch {
		case !bytes.Equal(r.fingerprint, fingerprint):
			return nil, idempotency.ErrMismatch
		case !r.done:
			return nil, idempotency.ErrInProgress
		}
		return r.response, nil
	}
	if s.m == nil {
		s.m = map[string]*mapRecord{}
	}
	r := &mapRecord{fingerprint: bytes.Clone(fingerprint)}
	s.m[key] = r
	s.mu.Unlock()

	resp, err := fn(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		delete(s.m, key)
		return nil, err
	}
	r.done, r.response = true, resp
	return resp, nil
}

// forget drops the records of keys, one at a time: the map's stand-in
// for expiry.
func (s *mapIdempotency) forget(keys []string) {
	s.mu.Lock()
	for _, k := range keys {
		delete(s.m, k)
	}
	s.mu.Unlock()
}

var (
	idemResponse    = []byte(`{"id":"ch_1","amount":1000,"currency":"eur"}`)
	idemFingerprint = []byte("sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f0")
)

func idemFn(context.Context) ([]byte, error) { return idemResponse, nil }

// idemImpl is one implementation under benchmark: do runs a call, expire
// forgets the finished records of keys (distkit: they expired on their
// own, and the store evicts them as it meets them).
type idemImpl struct {
	name   string
	do     func(ctx context.Context, key string, fingerprint []byte, fn func(context.Context) ([]byte, error)) ([]byte, error)
	expire func(keys []string)
}

// idemImpls returns fresh instances of distkit's Guard over a MemStore,
// on the system clock as in production, and of the mutex-and-map store.
// With expire, the Guard keeps records for a nanosecond, so that a key
// is new again once the pool wraps (the record expires on its own and
// the store sweeps it when it next touches the key's shard); without, it
// keeps them an hour.
func idemImpls(expire bool) []idemImpl {
	retain := time.Hour
	if expire {
		retain = time.Nanosecond
	}
	g := idempotency.New(&idempotency.MemStore{}, idempotency.Config{Lock: time.Minute, Retain: retain})
	var m mapIdempotency
	return []idemImpl{
		{"distkit", g.Do, func([]string) {}},
		{"mutex-map", m.Do, m.forget},
	}
}

// idemKeys is a pool of keys; next cycles through it and expires the
// records of the previous round at each wrap, so every key is new. A pool
// serves one goroutine at a time, so that a key is never in use twice.
type idemKeys struct {
	keys []string
	n    atomic.Int64
}

func newIdemKeys(prefix string, n int) *idemKeys {
	p := &idemKeys{keys: make([]string, n)}
	for i := range p.keys {
		p.keys[i] = fmt.Sprintf("%sorder-%08d", prefix, i)
	}
	return p
}

// cursor returns a pool over p's keys that starts at key i.
func (p *idemKeys) cursor(i int) *idemKeys {
	c := &idemKeys{keys: p.keys}
	c.n.Store(int64(i))
	return c
}

func (p *idemKeys) next(expire func([]string)) string {
	i := int(p.n.Add(1)-1) % len(p.keys)
	if i == 0 {
		expire(p.keys)
	}
	return p.keys[i]
}

// fail keeps the first error of a parallel benchmark. It takes err's
// address only here, so that the loops that call it allocate nothing for
// it while they succeed.
func fail(failed *atomic.Pointer[error], err error) {
	failed.CompareAndSwap(nil, &err)
}

// reportCPU reports the CPU time per operation the process spent since
// start, GC included, as cpu-ns/op.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cputime.Process()-start)/float64(b.N), "cpu-ns/op")
}

// TestIdempotencyImpls checks both implementations for what the
// benchmarks rely on: a first call runs fn, a retry replays without
// running it, another payload is refused.
func TestIdempotencyImpls(t *testing.T) {
	for _, impl := range idemImpls(false) {
		runs := 0
		fn := func(ctx context.Context) ([]byte, error) { runs++; return idemFn(ctx) }
		for range 2 {
			out, err := impl.do(t.Context(), "k", idemFingerprint, fn)
			if err != nil || !bytes.Equal(out, idemResponse) {
				t.Fatalf("%s: Do = %q, %v", impl.name, out, err)
			}
		}
		if _, err := impl.do(t.Context(), "k", []byte("sha256:ffffffffffffffffffffffffffffffff"), fn); err != idempotency.ErrMismatch {
			t.Errorf("%s: other payload: %v, want ErrMismatch", impl.name, err)
		}
		if runs != 1 {
			t.Errorf("%s: fn ran %d times, want 1", impl.name, runs)
		}
	}
}

// BenchmarkIdempotencyFirst is a first call with a new key: claim, run,
// record.
func BenchmarkIdempotencyFirst(b *testing.B) {
	for _, impl := range idemImpls(true) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			keys := newIdemKeys("", 1<<14)
			b.ReportAllocs()
			cpu := cputime.Process()
			for b.Loop() {
				if _, err := impl.do(context.Background(), keys.next(impl.expire), idemFingerprint, idemFn); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkIdempotencyFirstParallel is BenchmarkIdempotencyFirst from
// GOMAXPROCS goroutines.
func BenchmarkIdempotencyFirstParallel(b *testing.B) {
	for _, impl := range idemImpls(true) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			pools := make([]*idemKeys, runtime.GOMAXPROCS(0)) // one per goroutine of RunParallel
			for i := range pools {
				pools[i] = newIdemKeys(fmt.Sprintf("g%d-", i), 1<<14)
			}
			var goroutines atomic.Int64
			var failed atomic.Pointer[error]
			b.ReportAllocs()
			cpu := cputime.Process()
			b.RunParallel(func(pb *testing.PB) {
				keys := pools[goroutines.Add(1)-1]
				for pb.Next() {
					if _, err := impl.do(context.Background(), keys.next(impl.expire), idemFingerprint, idemFn); err != nil {
						fail(&failed, err)
					}
				}
			})
			reportCPU(b, cpu)
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
		})
	}
}

// finishedKeys returns a pool of 1024 keys whose calls impl has finished.
func finishedKeys(b *testing.B, impl idemImpl) *idemKeys {
	keys := newIdemKeys("", 1024)
	for range keys.keys {
		if _, err := impl.do(context.Background(), keys.next(func([]string) {}), idemFingerprint, idemFn); err != nil {
			b.Fatal(err)
		}
	}
	return keys
}

// BenchmarkIdempotencyReplay is a retry of a finished call, over 1024
// keys, from one goroutine.
func BenchmarkIdempotencyReplay(b *testing.B) {
	for _, impl := range idemImpls(false) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			keys := finishedKeys(b, impl)
			b.ReportAllocs()
			cpu := cputime.Process()
			for b.Loop() {
				out, err := impl.do(context.Background(), keys.next(func([]string) {}), idemFingerprint, idemFn)
				if err != nil || len(out) == 0 {
					b.Fatalf("replay returned %q, %v", out, err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkIdempotencyReplayParallel is BenchmarkIdempotencyReplay from
// GOMAXPROCS goroutines.
func BenchmarkIdempotencyReplayParallel(b *testing.B) {
	for _, impl := range idemImpls(false) {
		b.Run("impl="+impl.name, func(b *testing.B) {
			keys := finishedKeys(b, impl)
			var goroutines atomic.Int64
			var failed atomic.Pointer[error]
			b.ReportAllocs()
			cpu := cputime.Process()
			b.RunParallel(func(pb *testing.PB) {
				// Each goroutine has its own cursor over the keys, so that
				// the goroutines contend on the store alone.
				keys := keys.cursor(int(goroutines.Add(1)-1) * 509)
				for pb.Next() {
					out, err := impl.do(context.Background(), keys.next(func([]string) {}), idemFingerprint, idemFn)
					if err != nil || len(out) == 0 {
						fail(&failed, fmt.Errorf("replay returned %q, %w", out, err))
					}
				}
			})
			reportCPU(b, cpu)
			if err := failed.Load(); err != nil {
				b.Fatal(*err)
			}
		})
	}
}
