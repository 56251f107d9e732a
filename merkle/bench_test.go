package merkle_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"slices"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/merkle"
)

// million is a replica of 1,000,000 keys with the default config, shared by
// the benchmarks.
var million = sync.OnceValue(func() *replica { return newReplica(merkle.Config{}, 1_000_000, 42) })

func BenchmarkAdd(b *testing.B) {
	t := merkle.New(merkle.Config{})
	key := []byte("user:0000000000000042:profile")
	b.ReportAllocs()
	var v uint64
	for b.Loop() {
		v++
		t.Add(key, v)
	}
}

func BenchmarkUpdate(b *testing.B) {
	t := merkle.New(merkle.Config{})
	key := []byte("user:0000000000000042:profile")
	b.ReportAllocs()
	var v uint64
	for b.Loop() {
		t.Update(key, v, v+1)
		v++
	}
}

func BenchmarkBuild1M(b *testing.B) {
	rep := million()
	entries := func(yield func([]byte, uint64) bool) {
		for i, k := range rep.keys {
			if !yield(k, rep.vals[i]) {
				return
			}
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		merkle.Build(merkle.Config{}, entries)
	}
}

// BenchmarkDiff10of1M is one exchange between replicas of 1,000,000 keys
// that differ in 10, through the full encoding (Loopback).
func BenchmarkDiff10of1M(b *testing.B) {
	rep := million()
	remote, changed := diverge(rep, 10, 1)
	peer := merkle.Loopback(remote)
	var res merkle.DiffResult
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if res, err = merkle.Diff(context.Background(), rep.tree, peer); err != nil {
			b.Fatal(err)
		}
	}
	if len(res.Segments) != len(segmentsOf(remote, changed)) {
		b.Fatalf("found %d segments", len(res.Segments))
	}
	b.ReportMetric(float64(res.Bytes), "wire-bytes/op")
	b.ReportMetric(float64(res.Calls), "calls/op")
}

// BenchmarkNaive10of1M is the baseline: the remote replica sends the hash
// of every key with its value hash (16 bytes a key, in one msgpack bin,
// sorted by key hash) and the local one merges it with its own sorted list
// to find the differences. Keeping the sorted lists costs nothing here,
// which flatters the baseline.
func BenchmarkNaive10of1M(b *testing.B) {
	rep := million()
	_, changed := diverge(rep, 10, 1)
	local := pairs(rep.keys, rep.vals, nil)
	remote := pairs(rep.keys, rep.vals, changed)
	var wire, found int
	b.ReportAllocs()
	for b.Loop() {
		msg, err := msgpack.Marshal(encodePairs(remote))
		if err != nil {
			b.Fatal(err)
		}
		var raw []byte
		if err := msgpack.Unmarshal(msg, &raw); err != nil {
			b.Fatal(err)
		}
		wire, found = len(msg), naiveDiff(local, raw)
	}
	if found != len(changed) {
		b.Fatalf("found %d differences, want %d", found, len(changed))
	}
	b.ReportMetric(float64(wire), "wire-bytes/op")
	b.ReportMetric(1, "calls/op")
}

type pair struct{ key, val uint64 }

// pairs returns the sorted (key hash, value hash) list of the replica's
// entries, with the changed keys toggled: present keys get another value
// or vanish in turn, absent keys appear.
func pairs(keys [][]byte, vals []uint64, changed [][]byte) []pair {
	ps := make([]pair, len(keys))
	for i, k := range keys {
		ps[i] = pair{xxhash.Sum64(k), vals[i]}
	}
	slices.SortFunc(ps, func(a, b pair) int { return cmp.Compare(a.key, b.key) })
	for i, k := range changed {
		h := xxhash.Sum64(k)
		j, ok := slices.BinarySearchFunc(ps, h, func(p pair, h uint64) int { return cmp.Compare(p.key, h) })
		switch {
		case !ok:
			ps = slices.Insert(ps, j, pair{h, 1})
		case i%2 == 0:
			ps[j].val++
		default:
			ps = slices.Delete(ps, j, j+1)
		}
	}
	return ps
}

func encodePairs(ps []pair) []byte {
	out := make([]byte, 0, 16*len(ps))
	for _, p := range ps {
		out = binary.LittleEndian.AppendUint64(out, p.key)
		out = binary.LittleEndian.AppendUint64(out, p.val)
	}
	return out
}

// naiveDiff counts the keys whose entries differ between local and the
// encoded sorted list raw.
func naiveDiff(local []pair, raw []byte) int {
	n := 0
	for len(local) > 0 || len(raw) > 0 {
		var r pair
		if len(raw) > 0 {
			r = pair{binary.LittleEndian.Uint64(raw), binary.LittleEndian.Uint64(raw[8:])}
		}
		switch {
		case len(raw) == 0 || len(local) > 0 && local[0].key < r.key:
			local, n = local[1:], n+1
		case len(local) == 0 || r.key < local[0].key:
			raw, n = raw[16:], n+1
		default:
			if local[0].val != r.val {
				n++
			}
			local, raw = local[1:], raw[16:]
		}
	}
	return n
}
