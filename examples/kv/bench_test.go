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
	ctx := context.Background()
	n := c.node("n1")
	value := make([]byte, 100)
	b.ReportAllocs()
	for b.Loop() {
		r, err := n.Get(ctx, []byte("k"), 0)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := n.Put(ctx, []byte("k"), r.Context, value, 0); err != nil {
			b.Fatal(err)
		}
	}
}
