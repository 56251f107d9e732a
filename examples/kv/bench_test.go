package kv

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

func benchObject() Object {
	var o Object
	for i := range 3 {
		o.Update(vclock.VClock{}, fmt.Sprintf("n%d.e", i), Version{Value: make([]byte, 100)})
	}
	return o
}

func BenchmarkEncodeObject(b *testing.B) {
	o := benchObject()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeObject(o); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeObject(b *testing.B) {
	enc, _ := EncodeObject(benchObject())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeObject(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// withFsync runs f as two sub-benchmarks, on a fresh store with fsync and
// on one without.
func withFsync(b *testing.B, f func(b *testing.B, s *Store)) {
	for _, noSync := range []bool{false, true} {
		b.Run(fmt.Sprintf("nosync=%v", noSync), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "kv.db"), StoreConfig{NoSync: noSync, MaxBatchDelay: 1})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			f(b, s)
		})
	}
}

// BenchmarkStoreUpdate is one coordinated write of a 100-byte value, with
// and without fsync.
func BenchmarkStoreUpdate(b *testing.B) {
	withFsync(b, func(b *testing.B, s *Store) {
		v := Version{Value: make([]byte, 100)}
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			key := fmt.Appendf(nil, "k%d", i%1000)
			i++
			o, _, _ := s.Get(key)
			if _, err := s.Update(key, o.Context(), "n1.e", v); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkNodePutGet is a read and a write-back of one key through a
// 3-node in-process cluster (N=3, R=2, W=2) without fsync: the cost of
// coordination, encoding and replication.
func BenchmarkNodePutGet(b *testing.B) {
	c := newCluster(b, 1, 3, quorum.Config{N: 3, R: 2, W: 2})
	defer c.close()
	n := c.node("n1")
	b.ReportAllocs()
	for b.Loop() {
		putGet(b, n)
	}
}

// putGet reads key "k" through n and writes a 100-byte value back with
// the read's context.
func putGet(t testing.TB, n *Node) {
	ctx := context.Background()
	r, err := n.Get(ctx, []byte("k"), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.Put(ctx, []byte("k"), r.Context, make([]byte, 100), 0); err != nil {
		t.Fatal(err)
	}
}

// maxPutGetAllocs bounds the allocations of a read and a write-back
// through a 3-node cluster, every replica's work included (153 when it
// was set, 3% below the bound). The stores' share is small: a write
// appends to the log and keeps its object in memory, where the reads
// find it, and neither opens a bbolt transaction; most of the rest
// decode and encode objects and messages and run the replica fan-out.
const maxPutGetAllocs = 158

// TestNodePutGetAllocs pins the allocations of [BenchmarkNodePutGet]'s
// operation. It waits for the background replication after each write,
// so that every replica holds it before the next read (no read repair)
// and the count is the same at every run.
func TestNodePutGetAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	c := newCluster(t, 1, 3, quorum.Config{N: 3, R: 2, W: 2})
	defer c.close()
	n := c.node("n1")
	putGet(t, n)
	n.Wait()
	got := testing.AllocsPerRun(200, func() {
		putGet(t, n)
		n.Wait()
	})
	t.Logf("%.0f allocations per read and write-back", got)
	if got > maxPutGetAllocs {
		t.Errorf("%.0f allocations per read and write-back, want at most %d", got, maxPutGetAllocs)
	}
}
