package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/transparency-dev/merkle/compact"
	"github.com/transparency-dev/merkle/rfc6962"

	"github.com/distkit/distkit/merkle"
)

// The merkle pair compares three ways for two replicas of mergeKeys keys to
// find their differences:
//
//   - impl=distkit: merkle.Tree, the two-level XOR tree, sized for the keys
//     (merkleConfig), diffed with merkle.Diff through the full msgpack
//     encoding.
//   - impl=transparency-dev: an RFC 6962 SHA-256 tree over the key-sorted
//     entries, built with github.com/transparency-dev/merkle's compact
//     ranges (the tree it maintains is append-only, so a changed value
//     means a rebuild) and compared top-down: one round trip per level, two
//     child hashes per differing node.
//   - impl=all-hashes: the remote sends (key hash, value hash) for every
//     key, 16 bytes a key, and the local side merges it with its own list.
//
// Wire bytes count the hashes and node addresses exchanged, not the keys
// of the differing segments or leaves that every method fetches afterwards.
const mergeKeys = 100_000

var merkleConfig = merkle.Config{Branches: 1024, SegmentsPerBranch: 128} // 131,072 segments

// merkleReplica is one replica's entries and the three structures over them.
type merkleReplica struct {
	keys  [][]byte // sorted
	vals  []uint64
	tree  *merkle.Tree
	rfc   *rfcTree
	pairs []hashPair // sorted by key hash
}

type hashPair struct{ key, val uint64 }

func newMerkleReplica(keys [][]byte, vals []uint64) *merkleReplica {
	r := &merkleReplica{keys: keys, vals: vals, tree: merkle.New(merkleConfig), rfc: newRFCTree(keys, vals)}
	for i, k := range keys {
		r.tree.Add(k, vals[i])
		r.pairs = append(r.pairs, hashPair{xxhash.Sum64(k), vals[i]})
	}
	slices.SortFunc(r.pairs, func(a, b hashPair) int { return cmp.Compare(a.key, b.key) })
	return r
}

func merkleKey(i int) []byte { return fmt.Appendf(nil, "user:%010d:profile", i) }

// merkleReplicas are the benchmarks' replicas of mergeKeys keys.
var merkleReplicas = sync.OnceValues(func() (*merkleReplica, map[string]*merkleReplica) {
	return newMerkleReplicas(mergeKeys)
})

// newMerkleReplicas returns a local replica of n keys and two remote ones
// that differ from it in 10 keys: "values" in 10 values, "keys" by 5
// deleted and 5 inserted keys (which shifts the positions of the keys
// between them).
func newMerkleReplicas(n int) (*merkleReplica, map[string]*merkleReplica) {
	rng := rand.New(rand.NewPCG(14, uint64(n)))
	keys := make([][]byte, n)
	vals := make([]uint64, n)
	for i := range keys {
		keys[i], vals[i] = merkleKey(2*i), rng.Uint64() // even numbers: odd ones are free to insert
	}
	local := newMerkleReplica(keys, vals)

	changedVals := slices.Clone(vals)
	for _, i := range rng.Perm(n)[:10] {
		changedVals[i]++
	}
	var ks [][]byte
	var vs []uint64
	perm := rng.Perm(n)
	deleted, inserted := perm[:5], perm[5:10]
	for i := range keys {
		if slices.Contains(inserted, i) {
			ks, vs = append(ks, merkleKey(2*i+1)), append(vs, rng.Uint64())
		}
		if !slices.Contains(deleted, i) {
			ks, vs = append(ks, keys[i]), append(vs, vals[i])
		}
	}
	return local, map[string]*merkleReplica{
		"values": newMerkleReplica(keys, changedVals),
		"keys":   newMerkleReplica(ks, vs),
	}
}

// rfcTree is every node of an RFC 6962 tree, as transparency-dev/merkle's
// compact range reports them: levels[l][i] is node (l, i), the ephemeral
// nodes of the right border last in their levels.
type rfcTree struct{ levels [][][]byte }

var rfcFactory = &compact.RangeFactory{Hash: rfc6962.DefaultHasher.HashChildren}

func rfcLeaf(key []byte, val uint64) []byte {
	return rfc6962.DefaultHasher.HashLeaf(binary.BigEndian.AppendUint64(slices.Clip(key), val))
}

func newRFCTree(keys [][]byte, vals []uint64) *rfcTree {
	t := &rfcTree{}
	visit := func(id compact.NodeID, hash []byte) {
		for uint(len(t.levels)) <= id.Level {
			t.levels = append(t.levels, nil)
		}
		if id.Index != uint64(len(t.levels[id.Level])) {
			panic(fmt.Sprintf("node %+v visited out of order", id))
		}
		t.levels[id.Level] = append(t.levels[id.Level], hash)
	}
	r := rfcFactory.NewEmptyRange(0)
	for i, k := range keys {
		if err := r.Append(rfcLeaf(k, vals[i]), visit); err != nil {
			panic(err)
		}
	}
	if _, err := r.GetRootHash(visit); err != nil {
		panic(err)
	}
	return t
}

// node returns the hash of node id, or of its leftmost descendant that
// exists: the right border of an imperfect tree skips levels.
func (t *rfcTree) node(id compact.NodeID) ([]byte, compact.NodeID, bool) {
	for {
		if id.Index < uint64(len(t.levels[id.Level])) {
			return t.levels[id.Level][id.Index], id, true
		}
		if id.Level == 0 {
			return nil, id, false
		}
		id = compact.NewNodeID(id.Level-1, 2*id.Index)
	}
}

// rfcDiff compares local with remote top-down, as an exchange would: the
// root first, then in each round the two children of every node that
// differed. It returns the differing leaf positions, the bytes moved (32 a
// hash, 9 a node address: index and level) and the round trips.
func rfcDiff(local, remote *rfcTree) (leaves []uint64, wire, calls int) {
	top := compact.NewNodeID(uint(len(remote.levels)-1), 0)
	rootHash, _, _ := remote.node(top)
	wire, calls = 32, 1
	lh, _, ok := local.node(top)
	if ok && bytes.Equal(lh, rootHash) {
		return nil, wire, calls
	}
	frontier := []compact.NodeID{top}
	for len(frontier) > 0 {
		var next []compact.NodeID
		calls++
		for _, id := range frontier {
			wire += 9
			for _, c := range []compact.NodeID{compact.NewNodeID(id.Level-1, 2*id.Index), compact.NewNodeID(id.Level-1, 2*id.Index+1)} {
				rh, rid, ok := remote.node(c)
				if !ok {
					continue
				}
				wire += 32
				if lh, lid, ok := local.node(c); ok && lid == rid && bytes.Equal(lh, rh) {
					continue
				}
				if rid.Level == 0 {
					leaves = append(leaves, rid.Index)
				} else {
					next = append(next, rid)
				}
			}
		}
		frontier = next
	}
	return leaves, wire, calls
}

// allHashesDiff is the all-hashes exchange: remote's list goes over the
// wire in one msgpack bin and is merged with local's. It returns the
// number of keys that differ and the bytes moved.
func allHashesDiff(local, remote []hashPair) (differ, wire int) {
	buf := make([]byte, 0, 16*len(remote))
	for _, p := range remote {
		buf = binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(buf, p.key), p.val)
	}
	var enc bytes.Buffer
	encodeBin(&enc, buf)
	wire = enc.Len()
	raw := decodeBin(enc.Bytes())
	for len(local) > 0 || len(raw) > 0 {
		var r hashPair
		if len(raw) > 0 {
			r = hashPair{binary.LittleEndian.Uint64(raw), binary.LittleEndian.Uint64(raw[8:])}
		}
		switch {
		case len(raw) == 0 || len(local) > 0 && local[0].key < r.key:
			local, differ = local[1:], differ+1
		case len(local) == 0 || r.key < local[0].key:
			raw, differ = raw[16:], differ+1
		default:
			if local[0].val != r.val {
				differ++
			}
			local, raw = local[1:], raw[16:]
		}
	}
	return differ, wire
}

// encodeBin and decodeBin frame b as a msgpack bin 32.
func encodeBin(w *bytes.Buffer, b []byte) {
	w.WriteByte(0xc6)
	w.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
	w.Write(b)
}

func decodeBin(b []byte) []byte { return b[5 : 5+binary.BigEndian.Uint32(b[1:])] }

// TestMerkleExchanges checks that each method finds what it should: distkit
// the segments of the changed keys, all-hashes exactly the changed keys,
// the RFC 6962 descent the changed leaf positions (all shifted positions
// when keys were inserted and deleted), on replicas of 5,000 keys.
func TestMerkleExchanges(t *testing.T) {
	local, remotes := newMerkleReplicas(5_000)
	for name, remote := range remotes {
		res, err := merkle.Diff(context.Background(), local.tree, merkle.Loopback(remote.tree))
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Segments) == 0 || len(res.Segments) > 10 {
			t.Errorf("%s: distkit found %d dirty segments for 10 changed keys", name, len(res.Segments))
		}
		if n, _ := allHashesDiff(local.pairs, remote.pairs); n != 10 {
			t.Errorf("%s: all-hashes found %d differing keys, want 10", name, n)
		}
		leaves, _, _ := rfcDiff(local.rfc, remote.rfc)
		if name == "values" && len(leaves) != 10 || len(leaves) < 10 {
			t.Errorf("%s: RFC 6962 descent found %d differing leaves", name, len(leaves))
		}
	}
}

// BenchmarkMerkleUpdate is the cost of keeping the structure current when
// one value of a mergeKeys-key replica changes.
func BenchmarkMerkleUpdate(b *testing.B) {
	local, _ := merkleReplicas()
	key, i := local.keys[mergeKeys/2], mergeKeys/2
	b.Run("impl=distkit", func(b *testing.B) {
		t := local.tree.Clone()
		v := local.vals[i]
		b.ReportAllocs()
		for b.Loop() {
			t.Update(key, v, v+1)
			v++
		}
	})
	// rebuild: the tree is a function of the sorted entries only if it is
	// rebuilt (leaf hashes cached, one recomputed) after a change.
	b.Run("impl=transparency-dev-rebuild", func(b *testing.B) {
		leaves := slices.Clone(local.rfc.levels[0])
		v := local.vals[i]
		b.ReportAllocs()
		for b.Loop() {
			v++
			leaves[i] = rfcLeaf(key, v)
			r := rfcFactory.NewEmptyRange(0)
			for _, l := range leaves {
				if err := r.Append(l, nil); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := r.GetRootHash(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	// append: a log of changes, the tree transparency-dev/merkle is made
	// for. It costs O(1) amortised, but its root depends on the order of
	// the writes, so replicas holding equal data cannot compare roots.
	b.Run("impl=transparency-dev-append", func(b *testing.B) {
		r := rfcFactory.NewEmptyRange(0)
		v := local.vals[i]
		b.ReportAllocs()
		for b.Loop() {
			v++
			if err := r.Append(rfcLeaf(key, v), nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("impl=all-hashes", func(b *testing.B) {
		ps := slices.Clone(local.pairs)
		kh := xxhash.Sum64(key)
		b.ReportAllocs()
		for b.Loop() {
			j, ok := slices.BinarySearchFunc(ps, kh, func(p hashPair, h uint64) int { return cmp.Compare(p.key, h) })
			if !ok {
				b.Fatal("key missing")
			}
			ps[j].val++
		}
	})
}

// BenchmarkMerkleExchange is one comparison of two mergeKeys-key replicas
// that differ in 10 keys, by changed values or by inserted and deleted
// keys; wire-bytes/op and calls/op (round trips) are the metrics that
// matter.
func BenchmarkMerkleExchange(b *testing.B) {
	local, remotes := merkleReplicas()
	for _, change := range []string{"values", "keys"} {
		remote := remotes[change]
		b.Run("change="+change+"/impl=distkit", func(b *testing.B) {
			peer := merkle.Loopback(remote.tree)
			var res merkle.DiffResult
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if res, err = merkle.Diff(context.Background(), local.tree, peer); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(res.Bytes), "wire-bytes/op")
			b.ReportMetric(float64(res.Calls), "calls/op")
		})
		b.Run("change="+change+"/impl=transparency-dev", func(b *testing.B) {
			var wire, calls int
			b.ReportAllocs()
			for b.Loop() {
				_, wire, calls = rfcDiff(local.rfc, remote.rfc)
			}
			b.ReportMetric(float64(wire), "wire-bytes/op")
			b.ReportMetric(float64(calls), "calls/op")
		})
		b.Run("change="+change+"/impl=all-hashes", func(b *testing.B) {
			var wire int
			b.ReportAllocs()
			for b.Loop() {
				_, wire = allHashesDiff(local.pairs, remote.pairs)
			}
			b.ReportMetric(float64(wire), "wire-bytes/op")
			b.ReportMetric(1, "calls/op")
		})
	}
}
