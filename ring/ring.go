package ring

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// DefaultVNodes is the number of points per unit of weight when
// [Config].VNodes is zero. It is the smallest power of two for which 99% of
// rings of ten equal nodes give no node more than 1.10 times the mean load;
// the package documentation has the measurements.
const DefaultVNodes = 1024

// MaxPoints bounds the number of points (virtual nodes) of one ring, so that
// a huge weight is an error rather than an exhausted heap.
const MaxPoints = 1 << 24

// Errors returned by [New] and [Ring.With], wrapped with the offending node.
var (
	ErrEmptyID     = errors.New("ring: empty node ID")
	ErrDuplicateID = errors.New("ring: duplicate node ID")
	ErrWeight      = errors.New("ring: weight must be finite and not negative")
	ErrVNodes      = errors.New("ring: VNodes must not be negative")
	ErrTooLarge    = errors.New("ring: more than MaxPoints points")
)

// Node is a member of a [Ring] or a [Rendezvous] set.
type Node struct {
	// ID names the node; it must be non-empty and unique. It is what
	// lookups return and what point hashes derive from.
	ID string
	// Weight scales the node's share of keys. Zero means 1; it must be
	// finite and not negative.
	Weight float64
	// Zone is the failure domain (rack, availability zone) that
	// [Ring.Replicas] spreads replicas over. Nodes with an empty Zone share
	// the zone "".
	Zone string
}

// weight returns the node's effective weight: Weight, or 1 for zero.
func (n Node) weight() float64 {
	if n.Weight == 0 {
		return 1
	}
	return n.Weight
}

// Config configures a [Ring]. The zero Config uses [DefaultVNodes].
type Config struct {
	// VNodes is the number of points per unit of weight; a node of weight w
	// has max(1, round(w*VNodes)) points. Zero means DefaultVNodes.
	VNodes int
}

// Ring is an immutable consistent-hash ring. Each node owns points on a
// 2^64 circle; a key belongs to the node owning the first point at or after
// the key's hash, wrapping around. A point therefore owns the hash range
// (previous point, point].
//
// A Ring is never modified after construction, so it is safe for concurrent
// use; [Ring.With] and [Ring.Without] return new rings. The zero Ring (and a
// nil *Ring) is empty: lookups return "" and Replicas returns nothing.
type Ring struct {
	vnodes int
	nodes  []Node  // sorted by ID, Weight normalised (0 reads as 1)
	want   []int32 // node index -> number of points it places
	zone   []int32 // node index -> zone index
	nzones int     // number of distinct zones
	zones  int     // number of distinct zones among nodes that own points
	live   int     // number of nodes that own at least one point
	counts []int32 // node index -> number of points it owns

	// hashes holds the points in strictly increasing order and owner the
	// node index of each. Equal point hashes of different nodes (or of one
	// node) are resolved in favour of the smallest node ID, so the ring is a
	// function of its node set alone.
	hashes []uint64
	owner  []int32

	// index[b] is the first point whose top bits are >= b, so a lookup
	// searches only the points that share the key's top bits.
	index []uint32
	shift uint
}

// KeyHash is the position of key on the circle: xxhash64 (seed 0) of its
// bytes. Ring lookups, [Moves] ranges and [Bounded] placement all use it.
func KeyHash(key []byte) uint64 { return xxhash.Sum64(key) }

// KeyHashString is [KeyHash] of a string, computed without conversion.
func KeyHashString(key string) uint64 { return xxhash.Sum64String(key) }

// PointHash is the position of the i-th point of the node with the given ID:
// the (i+1)-th output of the SplitMix64 generator (Steele, Lea and Flood
// 2014) seeded with xxhash64 (seed 0) of the ID, that is
// mix64(xxhash64(ID) + (i+1) * 0x9e3779b97f4a7c15) where mix64 is
// SplitMix64's finaliser. This derivation is frozen by the golden vectors in
// testdata: changing it moves keys.
func PointHash(id string, i uint32) uint64 { return pointHash(xxhash.Sum64String(id), i) }

// pointHash is PointHash for the ID whose xxhash64 is seed.
func pointHash(seed uint64, i uint32) uint64 { return mix64(seed + (uint64(i)+1)*golden) }

// golden is SplitMix64's increment, 2^64 divided by the golden ratio.
const golden = 0x9e3779b97f4a7c15

// mix64 is the SplitMix64 finaliser, a bijection on uint64 with full
// avalanche.
func mix64(x uint64) uint64 { return mixTail(mixHead(x)) }

// mixHead and mixTail split mix64 before its last step. mixTail leaves
// the top 33 bits of its argument as they are, so hashes compare by the
// top bits of their heads until those are equal.
func mixHead(x uint64) uint64 { return mixSpread(spread(x)) }

// spread is mix64's first step. It is linear over XOR: spread(a ^ b) =
// spread(a) ^ spread(b), so mixHead(a ^ b) = mixSpread(spread(a) ^
// spread(b)), and a rendezvous set that keeps its seeds spread hashes a
// key with each node at the cost of one spread per key.
func spread(x uint64) uint64 { return x ^ x>>30 }

// mixSpread is the rest of mixHead, after spread.
func mixSpread(y uint64) uint64 {
	y *= 0xbf58476d1ce4e5b9
	return (y ^ y>>27) * 0x94d049bb133111eb
}

func mixTail(z uint64) uint64 { return z ^ z>>31 }

// bits53 is the top 53 bits of mix64(x) for y = spread(x): the bits a
// rendezvous score is made of.
func bits53(y uint64) uint64 { return mixTail(mixSpread(y)) >> 11 }

// New builds a ring of nodes. The result depends only on the set of nodes
// and cfg, never on the order of nodes.
//
// New returns an error wrapping [ErrEmptyID], [ErrDuplicateID], [ErrWeight],
// [ErrVNodes] or [ErrTooLarge] when the input is invalid.
func New(nodes []Node, cfg Config) (*Ring, error) {
	if cfg.VNodes < 0 {
		return nil, fmt.Errorf("%w: %d", ErrVNodes, cfg.VNodes)
	}
	vnodes := cmp.Or(cfg.VNodes, DefaultVNodes)
	sorted, err := validate(nodes)
	if err != nil {
		return nil, err
	}
	want := make([]int32, len(sorted))
	total := 0
	for i, n := range sorted {
		f := max(1, math.Round(n.Weight*float64(vnodes)))
		if f > float64(MaxPoints-total) {
			return nil, fmt.Errorf("%w: node %q with weight %v", ErrTooLarge, n.ID, n.Weight)
		}
		want[i] = int32(f)
		total += int(f)
	}
	return build(sorted, want, vnodes), nil
}

// Validate reports whether nodes can form a [Ring] or [Rendezvous] set: an
// error wrapping [ErrEmptyID], [ErrDuplicateID] or [ErrWeight], or nil.
func Validate(nodes []Node) error {
	_, err := validate(nodes)
	return err
}

// validate checks nodes and returns a copy sorted by ID with weights
// normalised.
func validate(nodes []Node) ([]Node, error) {
	sorted := make([]Node, len(nodes))
	for i, n := range nodes {
		if n.ID == "" {
			return nil, fmt.Errorf("%w (node %d)", ErrEmptyID, i)
		}
		if math.IsNaN(n.Weight) || math.IsInf(n.Weight, 0) || n.Weight < 0 {
			return nil, fmt.Errorf("%w: node %q has weight %v", ErrWeight, n.ID, n.Weight)
		}
		n.Weight = n.weight()
		sorted[i] = n
	}
	slices.SortFunc(sorted, func(a, b Node) int { return cmp.Compare(a.ID, b.ID) })
	for i := 1; i < len(sorted); i++ {
		if sorted[i].ID == sorted[i-1].ID {
			return nil, fmt.Errorf("%w: %q", ErrDuplicateID, sorted[i].ID)
		}
	}
	return sorted, nil
}

type point struct {
	hash  uint64
	owner int32
}

// build places want[i] points for node i of nodes (sorted by ID) and
// derives the lookup structures.
func build(nodes []Node, want []int32, vnodes int) *Ring {
	r := &Ring{vnodes: vnodes, nodes: nodes, want: want}
	total := 0
	for _, w := range want {
		total += int(w)
	}
	pts := make([]point, 0, total)
	for i, n := range r.nodes {
		seed := xxhash.Sum64String(n.ID) // hashed once for all its points
		for v := range uint32(want[i]) {
			pts = append(pts, point{pointHash(seed, v), int32(i)})
		}
	}
	r.assemble(pts)
	return r
}

// assemble derives the lookup structures from the points of r.nodes, which
// must be in owner order (any order within one owner).
func (r *Ring) assemble(pts []point) {
	// Node indexes follow ID order, so (hash, owner) order breaks ties by ID.
	pts = slices.CompactFunc(sortPoints(pts), func(a, b point) bool { return a.hash == b.hash })

	r.hashes = make([]uint64, len(pts))
	r.owner = make([]int32, len(pts))
	r.counts = make([]int32, len(r.nodes))
	for i, p := range pts {
		r.hashes[i], r.owner[i] = p.hash, p.owner
		r.counts[p.owner]++
	}

	r.zone, r.nzones = zoneIndex(r.nodes)
	seen := make([]bool, r.nzones)
	for i, c := range r.counts {
		if c > 0 {
			r.live++
			if !seen[r.zone[i]] {
				seen[r.zone[i]] = true
				r.zones++
			}
		}
	}

	if len(pts) == 0 {
		return
	}
	k := bits.Len(uint(len(pts)))
	r.shift = uint(64 - k)
	r.index = make([]uint32, 1<<k+1)
	p := 0
	for b := range r.index {
		for p < len(pts) && pts[p].hash>>r.shift < uint64(b) {
			p++
		}
		r.index[b] = uint32(p)
	}
}

// sortPoints sorts pts, which must be in owner order, by (hash, owner): a
// least-significant-digit radix sort on the hash, eleven bits at a time, is
// stable and so keeps equal hashes in owner order. Passes in which every
// point has the same digit are skipped. It returns the sorted slice, pts or
// a buffer of the same length.
func sortPoints(pts []point) []point {
	const bits, passes = 11, 6
	var counts [passes][1 << bits]int
	for _, p := range pts {
		for d := range passes {
			counts[d][p.hash>>(bits*d)&(1<<bits-1)]++
		}
	}
	tmp := make([]point, len(pts))
	for d := range passes {
		c := &counts[d]
		if slices.Contains(c[:], len(pts)) {
			continue
		}
		sum := 0
		for i, n := range c {
			c[i] = sum
			sum += n
		}
		for _, p := range pts {
			k := p.hash >> (bits * d) & (1<<bits - 1)
			tmp[c[k]] = p
			c[k]++
		}
		pts, tmp = tmp, pts
	}
	return pts
}

// search returns the index of the point owning hash h: the first point at
// or after h, wrapping to 0. The ring must not be empty.
func (r *Ring) search(h uint64) int {
	b := h >> r.shift
	lo, hi := int(r.index[b]), int(r.index[b+1])
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.hashes[m] < h {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.hashes) {
		return 0
	}
	return lo
}

// LookupHash returns the ID of the node owning hash h, or "" if the ring is
// empty.
func (r *Ring) LookupHash(h uint64) string {
	if r == nil || len(r.hashes) == 0 {
		return ""
	}
	return r.nodes[r.owner[r.search(h)]].ID
}

// Lookup returns the ID of the node that owns key, or "" if the ring is
// empty. It does not allocate.
func (r *Ring) Lookup(key []byte) string { return r.LookupHash(xxhash.Sum64(key)) }

// LookupString is Lookup for a string key, hashed without conversion: it
// does not allocate and returns the same node as Lookup([]byte(key)).
func (r *Ring) LookupString(key string) string { return r.LookupHash(xxhash.Sum64String(key)) }

// nodeIndex returns the index of node id.
func (r *Ring) nodeIndex(id string) (int, bool) {
	return slices.BinarySearchFunc(r.nodes, id, func(n Node, id string) int { return cmp.Compare(n.ID, id) })
}

// Replicas returns the preference list of key: min(n, r.Len()) distinct
// node IDs (fewer only if every point of some node lost a hash collision),
// walking the ring clockwise from the key as Cassandra's
// NetworkTopologyStrategy walks it within a data centre. The first node of
// each zone met on the walk comes first, in walk order; once every zone is
// represented, the nodes skipped because their zone was taken follow, in
// walk order. Replicas(key, 1, nil)[0] == Lookup(key), and Replicas(key, n)
// is a prefix of Replicas(key, n+1).
//
// The result is stored in dst[:0]. Replicas does not allocate when dst has
// capacity n and ceil(nodes/64) + ceil(zones/64) <= 32: up to 1024 nodes in
// any number of zones, or 1984 nodes in up to 64 zones.
func (r *Ring) Replicas(key []byte, n int, dst []string) []string {
	return r.ReplicasHash(xxhash.Sum64(key), n, dst)
}

// ReplicasString is Replicas for a string key, hashed without conversion.
func (r *Ring) ReplicasString(key string, n int, dst []string) []string {
	return r.ReplicasHash(xxhash.Sum64String(key), n, dst)
}

// ReplicasHash is Replicas for a key whose [KeyHash] is h.
func (r *Ring) ReplicasHash(h uint64, n int, dst []string) []string {
	dst = dst[:0]
	if r == nil || len(r.hashes) == 0 || n <= 0 {
		return dst
	}
	start := r.search(h)
	n = min(n, r.live)
	if n == 1 {
		return append(dst, r.nodes[r.owner[start]].ID)
	}
	// One bit per node, then one per zone.
	nodeWords := (len(r.nodes) + 63) / 64
	var buf [32]uint64
	var seen []uint64
	if words := nodeWords + (r.nzones+63)/64; words <= len(buf) {
		seen = buf[:words]
	} else {
		seen = make([]uint64, words)
	}
	nodeSeen, zoneSeen := seen[:nodeWords], seen[nodeWords:]

	// First pass: the first node of each zone.
	zones := 0
	for i, o := start, r.owner; len(dst) < n && zones < r.zones; {
		node := uint32(o[i])
		z := uint32(r.zone[node])
		if zoneSeen[z/64]&(1<<(z%64)) == 0 {
			zoneSeen[z/64] |= 1 << (z % 64)
			nodeSeen[node/64] |= 1 << (node % 64)
			zones++
			dst = append(dst, r.nodes[node].ID)
		}
		if i++; i == len(o) {
			i = 0
		}
	}
	// Second pass: the nodes skipped for their zone, in walk order.
	for i, o := start, r.owner; len(dst) < n; {
		node := uint32(o[i])
		if nodeSeen[node/64]&(1<<(node%64)) == 0 {
			nodeSeen[node/64] |= 1 << (node % 64)
			dst = append(dst, r.nodes[node].ID)
		}
		if i++; i == len(o) {
			i = 0
		}
	}
	return dst
}

// With returns a ring with nodes added; a node whose ID is already in r
// replaces it (to change its weight or zone). r is unchanged. It returns the
// errors of [New].
func (r *Ring) With(nodes ...Node) (*Ring, error) {
	var cur []Node
	vnodes := DefaultVNodes
	if r != nil {
		cur, vnodes = r.nodes, r.vnodes
	}
	return New(mergeNodes(cur, nodes), Config{VNodes: vnodes})
}

// Without returns a ring without the nodes with the given IDs; IDs not in r
// are ignored. r is unchanged.
func (r *Ring) Without(ids ...string) *Ring {
	if r == nil {
		return &Ring{}
	}
	var nodes []Node
	var want []int32
	for i, n := range r.nodes {
		if !slices.Contains(ids, n.ID) {
			nodes, want = append(nodes, n), append(want, r.want[i])
		}
	}
	return build(nodes, want, r.vnodes)
}

// Nodes returns a copy of the ring's nodes sorted by ID, with a zero Weight
// reported as 1.
func (r *Ring) Nodes() []Node {
	if r == nil {
		return nil
	}
	return slices.Clone(r.nodes)
}

// Len returns the number of nodes.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.nodes)
}
