package ring

import (
	"cmp"
	"math"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Rendezvous is weighted highest-random-weight hashing (Thaler and Ravishankar
// 1998) with the logarithmic weighting of Schindelhauer and Schomaker: node i
// scores -w_i / ln(u_i) for a key, where u_i in (0, 1) is derived from the
// key and the node, and the highest score wins. Each node then receives a
// share w_i / sum(w) of the keys, and a change of one node's weight or
// membership moves keys only to or from that node. Equal scores go to the
// smaller node ID.
//
// The per-node hash is mix(KeyHash(key) ^ xxhash64(ID)), where mix is the
// splitmix64 finaliser, and u = (top 53 bits + 0.5) / 2^53. Scores are
// computed in float64 (u rounded, math.Log), and where they round to equal
// values (also where they overflow to +Inf or lose precision as subnormals,
// with weights above about 2e292 or below 8e-307) the smaller ID wins; where
// u rounds to 1 (53 bits all ones), the score is +Inf. When every node has
// the same weight the score grows with those 53 bits, so lookups take the
// largest and compute no logarithm (where rounding would make two scores
// equal, the larger hash wins). Otherwise Lookup rules most nodes out with
// the bound -ln(u) >= 1 - u and constants computed per node once, estimates
// -ln(u) without a logarithm for the rest, and computes exact scores only to
// separate estimates too close to call, so its result is the documented one.
// Since the last step of mix leaves the top 33 bits as they are, both
// compare most nodes by the top bits of the step before it and finish the
// hash only for the few that can win. Lookups cost O(nodes); prefer [Ring]
// beyond a few hundred nodes.
//
// The hash is public and unkeyed, like the [Ring]'s: whoever knows the node
// IDs can compute where a key lands and choose keys that all land on one
// node. Where clients choose keys and that matters, look up a secret-keyed
// hash of the key instead ([KeyedHash] with [Rendezvous.LookupHash]).
//
// A Rendezvous is immutable and safe for concurrent use. The zero value
// (and a nil *Rendezvous) is an empty set: lookups return "".
type Rendezvous struct {
	nodes []Node    // sorted by ID, Weight normalised
	seeds []uint64  // spread(xxhash64(ID)) of each node (see spread)
	inv   []float64 // 1/Weight of each node; nil when all weights are equal
	lin   []float64 // inv scaled for headCost, where few serves lookups
	// How Lookup finds the best node (see pathOf); zero for an empty set.
	path path
	// When weights are unequal: node indexes by descending weight, then
	// ID, and their spread seeds in that order.
	heavy      []int32
	heavySeeds []uint64
	groups     []weightGroup // the runs of equal weight in heavy
	zone       []int32       // node index -> zone index
	nzones     int
}

// NewRendezvous returns the rendezvous set of nodes. The result does not
// depend on the order of nodes. It returns an error wrapping [ErrEmptyID],
// [ErrDuplicateID] or [ErrWeight] when the input is invalid, and never
// panics.
func NewRendezvous(nodes []Node) (*Rendezvous, error) {
	sorted, err := validate(nodes)
	if err != nil {
		return nil, err
	}
	seeds := make([]uint64, len(sorted))
	for i, n := range sorted {
		seeds[i] = xxhash.Sum64String(n.ID)
	}
	h := newRendezvous(sorted, seeds)
	return h, nil
}

// newRendezvous returns the set of the valid nodes sorted, whose IDs hash
// to seeds, which it spreads in place.
func newRendezvous(sorted []Node, seeds []uint64) *Rendezvous {
	for i, s := range seeds {
		seeds[i] = spread(s)
	}
	h := &Rendezvous{nodes: sorted, seeds: seeds}
	if slices.ContainsFunc(sorted, func(n Node) bool { return n.Weight != sorted[0].Weight }) {
		h.inv = make([]float64, len(sorted))
		h.heavy = make([]int32, len(sorted))
		for i, n := range sorted {
			h.inv[i] = 1 / n.Weight
			h.heavy[i] = int32(i)
		}
		// Heavy nodes win more often: met first, they rule out more.
		slices.SortStableFunc(h.heavy, func(a, b int32) int { return cmp.Compare(sorted[b].Weight, sorted[a].Weight) })
		h.heavySeeds = make([]uint64, len(sorted))
		for k, i := range h.heavy {
			h.heavySeeds[k] = seeds[i]
			if k == 0 || sorted[i].Weight != h.groups[len(h.groups)-1].weight {
				h.groups = append(h.groups, weightGroup{start: k, weight: sorted[i].Weight, inv: h.inv[i], lin: linOf(h.inv[i])})
			}
			h.groups[len(h.groups)-1].end = k + 1
		}
	}
	h.path = h.pathOf()
	if h.path == pathFew {
		h.lin = make([]float64, len(sorted))
		for i, inv := range h.inv {
			h.lin[i] = linOf(inv)
		}
	}
	h.zone, h.nzones = zoneIndex(sorted)
	return h
}

// Between minFast and maxFast, every score, cost, bound and 1/weight that
// lookups compute is a normal float64, so that the relative rounding
// margins of cost and offer hold.
const (
	minFast = 0x1p-1000
	maxFast = 0x1p960
)

// zoneIndex numbers the distinct zones of nodes in order of first
// appearance and returns each node's zone number and the number of zones.
func zoneIndex(nodes []Node) ([]int32, int) {
	zone := make([]int32, len(nodes))
	ids := map[string]int32{}
	for i, n := range nodes {
		z, ok := ids[n.Zone]
		if !ok {
			z = int32(len(ids))
			ids[n.Zone] = z
		}
		zone[i] = z
	}
	return zone, len(ids)
}

// With returns a set with nodes added; a node whose ID is already in h
// replaces it (to change its weight or zone). h is unchanged. It returns
// the errors of [NewRendezvous].
func (h *Rendezvous) With(nodes ...Node) (*Rendezvous, error) {
	return NewRendezvous(mergeNodes(h.Nodes(), nodes))
}

// mergeNodes returns cur with the nodes of add appended, each replacing the
// node of cur with its ID.
func mergeNodes(cur, add []Node) []Node {
	merged := make([]Node, 0, len(cur)+len(add))
	for _, n := range cur {
		if !slices.ContainsFunc(add, func(m Node) bool { return m.ID == n.ID }) {
			merged = append(merged, n)
		}
	}
	return append(merged, add...)
}

// Without returns a set without the nodes with the given IDs; IDs not in h
// are ignored. h is unchanged.
func (h *Rendezvous) Without(ids ...string) *Rendezvous {
	rest := slices.DeleteFunc(h.Nodes(), func(n Node) bool { return slices.Contains(ids, n.ID) })
	out, _ := NewRendezvous(rest) // a subset of valid nodes is valid
	return out
}

// Nodes returns a copy of the nodes sorted by ID, with a zero Weight
// reported as 1.
func (h *Rendezvous) Nodes() []Node {
	if h == nil {
		return nil
	}
	return slices.Clone(h.nodes)
}

// Len returns the number of nodes.
func (h *Rendezvous) Len() int {
	if h == nil {
		return 0
	}
	return len(h.nodes)
}

// u is node i's u for a key whose spread hash is k (spread(kh)), as
// documented, and x its 53 bits.
func (h *Rendezvous) u(k uint64, i int) (x, u float64) {
	bits := bits53(k ^ h.seeds[i])
	return float64(int64(bits)), uOf(bits) // exact: 53 bits
}

// uOf is the documented u of the 53 bits x, rounded to float64.
func uOf(x uint64) float64 { return (float64(int64(x)) + 0.5) / (1 << 53) }

// score returns node i's score for a key of spread hash k and true, or false,
// without computing it, when the score is certainly at most floor. The
// score is the documented -w / ln(u), or for equal weights the 53 bits u
// derives from, which order alike. Since -ln(u) >= 1 - u, a weighted score
// is at most w / (1 - u), which rules out all but the few nodes whose u is
// close to 1 once a good score is known; the margin of 1e-9 covers
// rounding.
func (h *Rendezvous) score(k uint64, i int, floor float64) (float64, bool) {
	x, u := h.u(k, i)
	if h.inv == nil {
		return x, x > floor
	}
	w := h.nodes[i].Weight
	if (1-u)*floor > w*(1+1e-9) {
		return 0, false
	}
	s := logScore(w, u)
	return s, s > floor
}

// logScore is the score of weight w at u in (0, 1]: -w / ln(u), and +Inf
// at u = 1 (where w / -ln(u) would divide by -0 and give -Inf).
func logScore(w, u float64) float64 { return w / (0 - math.Log(u)) }

// cost returns bounds lo <= -ln(u) <= hi for u in (0, 1), without a
// logarithm. For u >= 1/2, with v = 1 - u (exact), lo sums the first four
// terms of -ln(1 - v) = v + v^2/2 + v^3/3 + ..., and the rest is at most
// v^5 / (5 (1 - v)) <= 0.4 v^5, so the bounds lie within 0.4 v^4 of each
// other relatively: 2.5e-4 at u = 0.9, the nodes that can win. Below 1/2,
// where nodes rarely win, they are v <= -ln(u) <= 1/u - 1, wide but
// enough to rule out most nodes against one that can. Both widen by 1e-12
// relative to cover rounding.
func cost(u float64) (lo, hi float64) {
	v := 1 - u
	if v > 0.5 {
		return v * (1 - 1e-12), v / u * (1 + 1e-12)
	}
	lo = v * (1 + v*(0.5+v*(1.0/3+v*0.25)))
	v2 := v * v
	return lo * (1 - 1e-12), (lo + 0.4*v2*v2*v) * (1 + 1e-12)
}

// path is the way Lookup finds the best node of a set.
//
// With unequal weights, Lookup finds, for a key of spread hash k, the
// node of least cost -ln(u) / w, the highest score. With x a node's 53
// bits, 1 - u >= d / 2^53 for d = 2^53 - 1 - x, so its cost is at least
// d / (w 2^53) since -ln(u) >= 1 - u, and the top 31 bits of x are those
// of the node's head (mixSpread). Sets of 20 to 256 nodes of a few
// weights (classes) keep the two largest heads of each weight, and other
// sets of up to 128 nodes (few) bound every node's cost from its head, in
// one pass; both settle the lookup when the least bound's node is clearly
// ahead. Otherwise (heavyFirst) nodes are met heaviest first, and within
// a run of one weight the bound is a bound on the top bits of the head
// (see headBound), so that once a good node is known the others cost
// about what they cost with equal weights. The result is the documented
// one, whatever the path (see offer). With weights outside [minFast,
// maxFast] it computes every score (lookupScores).
type path uint8

const (
	pathEmpty      path = iota
	pathEqual           // lookupEqual
	pathEqualQuads      // lookupEqualQuads
	pathFew             // few
	pathClasses         // classes
	pathHeavyFirst      // heavyFirst
	pathScores          // lookupScores
)

// lookupScores is Lookup for a key of spread hash k by every node's score.
func (h *Rendezvous) lookupScores(k uint64) int {
	var buf [1]ranked
	return h.best(k, 1, buf[:0], all)[0].node
}

// pathOf returns the path of h, whose nodes, inv and groups are set.
func (h *Rendezvous) pathOf() path {
	n := len(h.nodes)
	switch {
	case n == 0:
		return pathEmpty
	case h.inv == nil && n < quadsFrom:
		return pathEqual
	case h.inv == nil:
		return pathEqualQuads
	case slices.ContainsFunc(h.nodes, func(n Node) bool { return n.Weight < minFast || n.Weight > maxFast }):
		return pathScores
	case len(h.groups) <= maxClasses && n >= classesFrom && n <= classesUpTo:
		return pathClasses
	case n <= keyMask+1:
		return pathFew
	}
	return pathHeavyFirst
}

// heavyFirst is Lookup for any unequal weights in [minFast, maxFast]
// (see path).
func (h *Rendezvous) heavyFirst(k uint64) int {
	w := weighted{best: -1, ceil: math.Inf(1)}
	for _, g := range h.groups {
		bound := w.headBound(g.weight)
		for j, s := range h.heavySeeds[g.start:g.end] {
			if z := mixSpread(k ^ s); z >= bound && w.offerHead(h, int(h.heavy[g.start+j]), z) {
				bound = w.headBound(g.weight)
			}
		}
	}
	return w.best
}

// weightGroup is a run of nodes of one weight in Rendezvous.heavy, from
// index start to before index end, with 1/weight and linOf of that.
type weightGroup struct {
	start, end       int
	weight, inv, lin float64
}

// Lookup takes classes for sets of classesFrom to classesUpTo nodes of at
// most maxClasses weights. Above, heavyFirst is faster: it skips most
// nodes' bounds. Below, few is faster where the processor predicts few's
// branch on a new least, over keys it has met many times; over keys it has
// not met, classes is faster there too.
const (
	maxClasses  = 8
	classesFrom = 20
	classesUpTo = 256
)

// classes is Lookup for at most maxClasses distinct weights. For each run
// of one weight it finds the two largest heads (top2). Within a run the
// lower bound of a node's cost (headCost) falls as its head rises, so the
// least cost lies with one of the runs' leaders, and the leader of least
// lower bound proposes itself. It wins when an upper bound of its cost
// (costAbove, which may lie below the cost by a few ulps) is below the
// lower bound of every other run's leader and of its own run's second:
// every other cost is then above its lower bound by a factor 1 + 2^-41
// (see headCost and key), so above the winner's by a factor 1 + 2^-42 at
// least, far more than the rounding of scores, which therefore order
// alike. Otherwise heavyFirst decides.
func (h *Rendezvous) classes(k uint64) int {
	var lead, next [maxClasses]uint64
	least, second := uint64(noKey), uint64(noKey)
	for g, run := range h.groups {
		lead[g], next[g] = top2(k, h.heavySeeds[run.start:run.end])
		least, second = lower2(least, second, key(headCost(^lead[g]>>33, run.lin), g))
	}
	g := least & keyMask
	run := h.groups[g]
	pos := run.start + int(lead[g]&posMask^posMask)
	above := costAbove(bits53(k^h.heavySeeds[pos])) * run.inv
	if math.Float64frombits(second) > above && headCost(^next[g]>>33, run.lin) > above {
		return int(h.heavy[pos])
	}
	return h.heavyFirst(k)
}

// top2 returns the largest and the second largest key (0 if seeds has one
// node) of the nodes of seeds for a key of spread hash k. A node's key is
// its head (mixSpread) with the low 31 bits replaced by its position in
// seeds, complemented (posMask ^ j); the top 33 bits, which headCost
// reads, are the head's. A key of 0 bounds a cost from below like any
// head, so a missing second can only defer a lookup to heavyFirst. Keys
// go through min and max, which the compiler makes without a branch.
func top2(k uint64, seeds []uint64) (first, second uint64) {
	first = mixSpread(k^seeds[0]) | posMask
	for j, s := range seeds[1:] {
		c := mixSpread(k^s) | posMask ^ uint64(j+1)
		second = max(second, min(first, c))
		first = max(first, c)
	}
	return first, second
}

// posMask is the bits of a top2 key that hold the node's position.
const posMask = 1<<31 - 1

// few is Lookup for up to keyMask+1 nodes. A first pass finds the least
// and the second least lower bound (headCost) of the nodes' costs, packed
// with their node index into keys. The node of the least key wins when an
// upper bound of its cost (costAbove) is below the second least bound,
// since then every other cost is above its cost by more than 2^-42
// relatively (see headCost), far more than the rounding of costAbove and
// of scores. Otherwise, in under one lookup in a hundred at 10 nodes and
// fewer at more, a second pass offers it and every node the bound allows.
// The least key only proposes a node; the check, or else the second pass,
// decides.
func (h *Rendezvous) few(k uint64) int {
	seeds, lin := h.seeds, h.lin[:len(h.seeds)]
	// The first node outside the loop, so that the compiler keeps the
	// hash's constants in registers through it.
	least, second := key(headCost(^mixSpread(k^seeds[0])>>33, lin[0]), 0), uint64(noKey)
	for i := 1; i < len(seeds); i++ {
		c := key(headCost(^mixSpread(k^seeds[i])>>33, lin[i]), i)
		least, second = lower2(least, second, c)
	}
	first := int(least & keyMask)
	x := bits53(k ^ h.seeds[first])
	if math.Float64frombits(second) > costAbove(x)*h.inv[first] {
		return first
	}
	return h.fewExact(k, first, x)
}

// fewExact is few's second pass, which offers node first, of 53 bits x,
// and every node that headCost allows.
func (h *Rendezvous) fewExact(k uint64, first int, x uint64) int {
	w := weighted{best: -1, ceil: math.Inf(1)}
	w.offer(h, first, x)
	for i, s := range h.seeds {
		if z := mixSpread(k ^ s); i != first && headCost(^z>>33, h.lin[i]) <= w.ceil {
			w.offer(h, i, mixTail(z)>>11)
		}
	}
	return w.best
}

// costAbove returns an upper bound of -ln(u) for the u of the 53 bits x.
// As u >= x / 2^53, 1 - u <= v = (2^53 - x) 2^-53 (exact), and for v <=
// 1/2, -ln(u) <= -ln(1 - v) = v + v^2/2 + v^3/3 + v^4/4 + ... <= v + v^2/2 +
// v^3/3 + v^4 / (4 (1 - v)) <= v + v^2/2 + v^3/3 + v^4/2, above by at most
// v^3/4 relatively and 2^-53 absolutely, and below by no more than its
// rounding (a few ulps). For v > 1/2, where winners are rare, it returns
// math.Log's -ln(u), raised by 2^-50 relatively to cover its error (below
// one ulp).
func costAbove(x uint64) float64 {
	v := float64(int64(1<<53-x)) * 0x1p-53
	if v > 0.5 {
		return -math.Log(uOf(x)) * (1 + 0x1p-50)
	}
	v2 := v * v
	return v + v2*(0.5+v*(1.0/3)) + v2*v2*0.5
}

// headCost is a lower bound of the cost of a node whose head (mixSpread)
// is z, for t = ^z >> 33 and lin = linOf(1/weight). With T the head's
// top 31 bits, which are x's, 1 - u >= v = (2^31 - 1 - T) 2^-31 =
// t 2^-31, so -ln(u) = -ln(1 - (1 - u)) >= v + v^2/2 + v^3/3, and
// headCost computes that over the weight, times 1 - 2^-40 (in lin). Its roundings,
// and those of lin, are below 2^-50 relatively, so a bound that is not
// zero is below the cost by a factor 1 + 2^-41 at least, which covers the
// index that key writes into its low bits (2^-45 relatively) with 2^-42
// to spare. Where nodes can win, v is small, and with 1 - u close to v the
// bound is within about v^3/4 of the cost.
func headCost(t uint64, lin float64) float64 {
	f := float64(int64(t)) // v = f 2^-31: v/2 = f 2^-32, v^2/3 = f^2 2^-62 / 3
	return f * lin * (1 + f*(0x1p-32+f*(0x1p-62/3)))
}

// linOf returns the factor headCost takes for a node of 1/weight inv.
func linOf(inv float64) float64 { return inv * 0x1p-31 * (1 - 0x1p-40) }

// lower2 returns the least and second least of least <= second and key
// c. The compiler makes min and max of integers without a branch, which
// would be mispredicted at each new least.
func lower2(least, second, c uint64) (uint64, uint64) {
	return min(least, c), min(second, max(least, c))
}

// noKey is above every key of few and of classes; as few's float bits, a
// NaN, not a bound.
const noKey = math.MaxInt64

// keyMask is the bits of a key that hold the node index: few serves up to
// keyMask+1 nodes.
const keyMask = 1<<7 - 1

// key packs node i (<= keyMask) into the low bits of a cost bound c >= 0 so
// that keys order as the bounds do, up to their last 7 bits, and the least
// key names its node. A positive bound stays a bound (see headCost). A zero
// bound (the head's top 31 bits all ones) keys as a subnormal float, which
// is no bound, but few's check compares it only with a positive upper
// bound, which no subnormal exceeds.
func key(c float64, i int) uint64 { return math.Float64bits(c)&^keyMask | uint64(i) }

// offerHead offers node i, whose mixHead is z, unless its bound rules it
// out, and reports whether it did.
func (w *weighted) offerHead(h *Rendezvous, i int, z uint64) bool {
	x := mixTail(z) >> 11
	if float64(int64(1<<53-1-x))*h.inv[i]*0x1p-53 > w.ceil {
		return false
	}
	w.offer(h, i, x)
	return true
}

// headBound returns a bound below which the mixHead of a node of the
// given weight cannot make the node's cost as low as w.ceil. With T the
// head's top 31 bits, which are the top 31 of x, d >= (2^31 - 1 - T) 2^22,
// so the cost is above ceil when T < t = 2^31 - 1 - ceil weight 2^31. The
// bound takes T >= floor(t) - 1, a margin far above the rounding of t.
func (w *weighted) headBound(weight float64) uint64 {
	t := 1<<31 - 1 - w.ceil*weight*(1<<31)
	if !(t >= 2) { // also NaN, for an infinite ceil
		return 0
	}
	return (uint64(t) - 1) << 33
}

// weighted is the state of heavyFirst and fewExact: the best node so far,
// its u, and bounds lo <= cost <= hi, with ceil = hi plus rounding.
type weighted struct {
	best            int
	u, lo, hi, ceil float64
}

// offer makes node i, whose 53 bits are x, the best if its cost is lower,
// or equal with a smaller ID. Costs are bounded with [cost] and compared
// by their intervals, which the margins of cost keep apart unless the
// costs are within about 1e-12 of each other; only where the intervals
// overlap are the exact scores computed and compared.
func (w *weighted) offer(h *Rendezvous, i int, x uint64) {
	u := uOf(x)
	lo, hi := cost(u)
	lo, hi = lo*h.inv[i], hi*h.inv[i]
	if w.best >= 0 {
		if lo >= w.hi && lo > 0 { // a cost of 0 (u = 1) may tie
			return
		}
		if hi >= w.lo {
			si, sb := logScore(h.nodes[i].Weight, u), logScore(h.nodes[w.best].Weight, w.u)
			if si < sb || si == sb && i > w.best {
				return
			}
		}
	}
	*w = weighted{best: i, u: u, lo: lo, hi: hi, ceil: hi * (1 + 1e-9)}
}

// Lookup returns the ID of the node with the highest score for key, or ""
// for an empty set. It does not allocate.
func (h *Rendezvous) Lookup(key []byte) string { return h.LookupHash(xxhash.Sum64(key)) }

// LookupString is Lookup for a string key, hashed without conversion.
func (h *Rendezvous) LookupString(key string) string {
	return h.LookupHash(xxhash.Sum64String(key))
}

// LookupHash is Lookup for a key whose [KeyHash] (or [KeyedHash]) is kh.
func (h *Rendezvous) LookupHash(kh uint64) string {
	if h == nil {
		return ""
	}
	var i int
	switch k := spread(kh); h.path {
	case pathEmpty:
		return ""
	case pathEqual:
		i = h.lookupEqual(k)
	case pathEqualQuads:
		i = h.lookupEqualQuads(k)
	case pathFew:
		i = h.few(k)
	case pathClasses:
		i = h.classes(k)
	case pathHeavyFirst:
		i = h.heavyFirst(k)
	default:
		i = h.lookupScores(k)
	}
	return h.nodes[i].ID
}

// lookupEqual is Lookup for equal weights, for a key of spread hash k:
// the node of the largest 53 bits x = mix64(kh ^ seed) >> 11, the first
// (smallest ID) on a tie. The top 31 bits of x are those of the node's
// head (mixSpread), so from quadsFrom nodes on (lookupEqualQuads), a
// node whose head is below bound, the best's top 31 bits, cannot win, and
// its tail is not computed. Nodes go four a round there, their heads
// compared with bound at once, so that the branch is taken rarely and the
// four hashes are computed side by side.
func (h *Rendezvous) lookupEqual(k uint64) int {
	// Few nodes: a new best is frequent, and a branch on it would be
	// mispredicted more than skipping tails saves. Each node's mix64 has
	// its low 11 bits, below x, replaced by its index complemented, so
	// that the largest of these keys is the first node of the largest x,
	// and one conditional move a node keeps it.
	seeds := h.seeds
	best := mixTail(mixSpread(k^seeds[0])) | idxMask
	for i := 1; i < len(seeds); i++ {
		best = max(best, mixTail(mixSpread(k^seeds[i]))|idxMask^uint64(i))
	}
	return int(best&idxMask ^ idxMask)
}

// idxMask is the bits of mix64 below a node's 53 bits, where lookupEqual
// puts the node's index: it serves fewer nodes than that.
const idxMask = 1<<11 - 1

// lookupEqualQuads is lookupEqual from quadsFrom nodes on (see there).
func (h *Rendezvous) lookupEqualQuads(k uint64) int {
	seeds := h.seeds
	best, top := 0, bits53(k^seeds[0])
	bound := top >> 22 << 33
	i := 1
	for ; i+3 < len(seeds); i += 4 {
		z := [4]uint64{mixSpread(k ^ seeds[i]), mixSpread(k ^ seeds[i+1]), mixSpread(k ^ seeds[i+2]), mixSpread(k ^ seeds[i+3])}
		if max(z[0], z[1], z[2], z[3]) < bound {
			continue
		}
		for j, z := range z {
			if x := mixTail(z) >> 11; x > top {
				best, top = i+j, x
			}
		}
		bound = top >> 22 << 33
	}
	for ; i < len(seeds); i++ {
		if x := bits53(k ^ seeds[i]); x > top {
			best, top = i, x
		}
	}
	return best
}

// quadsFrom is the number of equal-weight nodes from which lookupEqual
// compares heads with a bound.
const quadsFrom = 96

// A compile-time check that lookupEqual's keys hold the index of every
// node it serves: the conversion of a negative constant would not compile.
const _ = uint(idxMask + 1 - quadsFrom)

// LookupN returns the preference list of key: the min(n, nodes) node IDs
// with the highest scores, best first, so that LookupN(key, 1)[0] ==
// Lookup(key) and LookupN(key, n) is a prefix of LookupN(key, n+1). Removing
// a node removes it from every list and shifts the rest up; nothing else
// changes. Zones are ignored; [Rendezvous.Replicas] spreads over them. The
// result is stored in dst[:0]; LookupN does not allocate when dst has
// capacity n and n <= 32.
func (h *Rendezvous) LookupN(key []byte, n int, dst []string) []string {
	return h.LookupNHash(xxhash.Sum64(key), n, dst)
}

// LookupNString is LookupN for a string key, hashed without conversion.
func (h *Rendezvous) LookupNString(key string, n int, dst []string) []string {
	return h.LookupNHash(xxhash.Sum64String(key), n, dst)
}

// LookupNHash is LookupN for a key whose [KeyHash] (or [KeyedHash]) is kh.
func (h *Rendezvous) LookupNHash(kh uint64, n int, dst []string) []string {
	dst = dst[:0]
	if h == nil {
		return dst
	}
	var buf [32]ranked
	top := h.best(spread(kh), min(n, len(h.nodes)), buf[:0], all)
	for _, t := range top {
		dst = append(dst, h.nodes[t.node].ID)
	}
	return dst
}

// all keeps every node.
func all(int) bool { return true }

type ranked struct {
	score float64
	node  int
}

// best returns the up to n nodes accepted by keep with the highest scores
// for the key of spread hash k, best first (ties to the smaller ID),
// stored in buf[:0] when it has room.
func (h *Rendezvous) best(k uint64, n int, buf []ranked, keep func(int) bool) []ranked {
	if n <= 0 {
		return buf[:0]
	}
	top := buf[:0]
	if n > cap(buf) {
		top = make([]ranked, 0, n)
	}
	for i := range h.nodes {
		if !keep(i) {
			continue
		}
		floor := math.Inf(-1)
		if len(top) == n {
			floor = top[n-1].score
		}
		if s, ok := h.score(k, i, floor); ok {
			top = insertRanked(top, n, ranked{s, i})
		}
	}
	return top
}

// insertRanked inserts r into top, kept sorted by descending score and of
// length at most n, after every entry with a score >= r's: nodes are
// offered in ID order, so earlier (smaller) IDs win ties.
func insertRanked(top []ranked, n int, r ranked) []ranked {
	at := len(top)
	for at > 0 && top[at-1].score < r.score {
		at--
	}
	if at == n {
		return top
	}
	if len(top) < n {
		top = append(top, ranked{})
	}
	copy(top[at+1:], top[at:len(top)-1])
	top[at] = r
	return top
}

// Replicas returns the zone-aware preference list of key, as
// [Ring.Replicas] does for a ring: min(n, nodes) distinct node IDs, first
// the best-scoring node of each zone, by descending score, then the other
// nodes by descending score. Its first min(n, zones) entries lie in
// distinct zones, Replicas(key, 1)[0] == Lookup(key), Replicas(key, n) is a
// prefix of Replicas(key, n+1), and with a single zone it equals LookupN.
// Removing a node removes it from every list and promotes its zone's next
// node; nodes of other zones keep their relative order.
//
// The result is stored in dst[:0]. Replicas does not allocate when dst has
// capacity n, n <= 32 and zones <= 32.
func (h *Rendezvous) Replicas(key []byte, n int, dst []string) []string {
	return h.ReplicasHash(xxhash.Sum64(key), n, dst)
}

// ReplicasString is Replicas for a string key, hashed without conversion.
func (h *Rendezvous) ReplicasString(key string, n int, dst []string) []string {
	return h.ReplicasHash(xxhash.Sum64String(key), n, dst)
}

// ReplicasHash is Replicas for a key whose [KeyHash] (or [KeyedHash]) is kh.
func (h *Rendezvous) ReplicasHash(kh uint64, n int, dst []string) []string {
	dst = dst[:0]
	if h == nil {
		return dst
	}
	n = min(n, len(h.nodes))
	if n <= 0 {
		return dst
	}
	k := spread(kh)
	// The best node of each zone.
	var zbuf [32]ranked
	leaders := zbuf[:0]
	if h.nzones > len(zbuf) {
		leaders = make([]ranked, 0, h.nzones)
	}
	leaders = leaders[:h.nzones]
	for z := range leaders {
		leaders[z] = ranked{math.Inf(-1), -1}
	}
	for i := range h.nodes {
		z := h.zone[i]
		if s, ok := h.score(k, i, leaders[z].score); ok || leaders[z].node < 0 {
			leaders[z] = ranked{s, i}
		}
	}
	var buf [32]ranked
	top := buf[:0]
	if k := min(n, h.nzones); k > len(buf) {
		top = make([]ranked, 0, k)
	}
	var leader [32]uint64 // one bit per node, up to 2048 nodes
	isLeader := func(i int) bool { return i < 64*len(leader) && leader[i/64]&(1<<(i%64)) != 0 }
	slices.SortFunc(leaders, byScore)
	for _, l := range leaders {
		if len(top) < n {
			top = append(top, l)
		}
		if l.node < 64*len(leader) {
			leader[l.node/64] |= 1 << (l.node % 64)
		}
	}
	for _, t := range top {
		dst = append(dst, h.nodes[t.node].ID)
	}
	if len(dst) == n {
		return dst
	}
	// The others, best first.
	if len(h.nodes) > 64*len(leader) {
		isLeader = func(i int) bool { return slices.ContainsFunc(leaders, func(l ranked) bool { return l.node == i }) }
	}
	for _, t := range h.best(k, n-len(dst), buf[:0], func(i int) bool { return !isLeader(i) }) {
		dst = append(dst, h.nodes[t.node].ID)
	}
	return dst
}

// byScore orders ranked nodes best first: descending score, then
// ascending node index.
func byScore(a, b ranked) int {
	switch {
	case a.score > b.score:
		return -1
	case a.score < b.score:
		return 1
	}
	return a.node - b.node
}
