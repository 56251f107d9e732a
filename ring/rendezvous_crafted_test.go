package ring

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cespare/xxhash/v2"
)

// inverse returns the multiplicative inverse of an odd c modulo 2^64.
func inverse(c uint64) uint64 {
	inv := c
	for range 6 {
		inv *= 2 - c*inv
	}
	return inv
}

// unshift inverts v = y ^ y>>s.
func unshift(v uint64, s uint) uint64 {
	y := v
	for k := s; k < 64; k += s {
		y ^= v >> k
	}
	return y
}

// seedFor returns the seed whose hash with kh has the given mix64 value,
// inverting mix64 step by step.
func seedFor(kh, mixed uint64) uint64 {
	z := unshift(mixed, 31)
	z = unshift(z*inverse(0x94d049bb133111eb), 27)
	z = unshift(z*inverse(0xbf58476d1ce4e5b9), 30)
	return kh ^ z
}

// rawSeed returns the seed (xxhash64 of the ID) that a set keeps spread
// as s, inverting spread.
func rawSeed(s uint64) uint64 { return unshift(s, 30) }

// TestSpreadSeeds: spread is linear over XOR and rawSeed inverts it, and
// the 53 bits a lookup computes for a node, from the spread key and the
// seed the set keeps, are the documented ones: the top 53 bits of the
// SplitMix64 finaliser of xxhash64(key) ^ xxhash64(ID), computed here
// step by step.
func TestSpreadSeeds(t *testing.T) {
	r := seeded(t, 16)
	for range 10_000 {
		a, b := r.Uint64(), r.Uint64()
		if spread(a^b) != spread(a)^spread(b) || rawSeed(spread(a)) != a {
			t.Fatalf("spread(%#x ^ %#x) = %#x, spread(a) ^ spread(b) = %#x, rawSeed(spread(a)) = %#x",
				a, b, spread(a^b), spread(a)^spread(b), rawSeed(spread(a)))
		}
	}
	finaliser := func(z uint64) uint64 {
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
	nodes := make([]Node, 50)
	for i := range nodes {
		nodes[i] = Node{ID: fmt.Sprint("node-", r.Uint64())}
	}
	h, err := NewRendezvous(nodes)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range h.nodes {
		for range 1000 {
			kh := r.Uint64()
			if got, want := bits53(spread(kh)^h.seeds[i]), finaliser(kh^xxhash.Sum64String(n.ID))>>11; got != want {
				t.Fatalf("%s, key hash %#x: 53 bits %#x, want %#x", n.ID, kh, got, want)
			}
		}
	}
}

// referenceLookup is the documented rule, computed directly: the highest
// score -w / ln(u), u = (x + 0.5) / 2^53 with x the top 53 bits of
// mix64(kh ^ seed), in float64, and +Inf where u rounds to 1; the smaller
// index on equal scores; with equal weights the larger x, the smaller
// index on equal x.
func referenceLookup(h *Rendezvous, kh uint64) int {
	best, bestX, bestS := -1, uint64(0), math.Inf(-1)
	for i, s := range h.seeds {
		x := mix64(kh^rawSeed(s)) >> 11
		u := (float64(x) + 0.5) / (1 << 53)
		score := -h.nodes[i].Weight / math.Log(u)
		if u == 1 {
			score = math.Inf(1)
		}
		if h.inv == nil {
			if best < 0 || x > bestX {
				best, bestX = i, x
			}
		} else if best < 0 || score > bestS {
			best, bestS = i, score
		}
	}
	return best
}

// seeded returns a generator of a random seed, which it logs.
func seeded(t testing.TB, stream uint64) *rand.Rand {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	return rand.New(rand.NewPCG(seed, stream))
}

// checkLookup fails unless Lookup and LookupN(1) for the key hashed to kh
// pick what referenceLookup computes.
func checkLookup(t testing.TB, h *Rendezvous, kh uint64) {
	t.Helper()
	want := h.nodes[referenceLookup(h, kh)].ID
	got, gotN := h.LookupHash(kh), h.LookupNHash(kh, 1, nil)[0]
	if got != want || gotN != want {
		xs := make([]uint64, len(h.seeds))
		for i, s := range h.seeds {
			xs[i] = mix64(kh^rawSeed(s)) >> 11
		}
		t.Fatalf("key hash %#x: Lookup = %s, LookupN(1) = %s, want %s\nweights %v\n53 bits %v", kh, got, gotN, want, weightsOf(h.nodes), xs)
	}
}

// TestRendezvousCraftedHashes places nodes at crafted hashes for one key:
// heads whose top bits tie, 53-bit values that tie, and values whose u
// round to the same float (so that the smaller ID must win with the
// smaller hash), and heads exactly at the bound that Lookup compares
// them with. Lookup skips work on the top bits of mix64's head; each case
// is where skipping wrongly would show.
func TestRendezvousCraftedHashes(t *testing.T) {
	r := seeded(t, 11)
	for range 3000 {
		kh := r.Uint64()
		n := 2 + r.IntN(200) // both sides of each size threshold
		if r.IntN(4) == 0 {
			n = 2 + r.IntN(1099)
		}
		top := r.Uint64() | 1<<63 // the contested region: the high hashes
		mixed := make([]uint64, n)
		for i := range mixed {
			switch r.IntN(6) {
			case 0: // anywhere
				mixed[i] = r.Uint64()
			case 1: // the same top 33 bits as top, so the same head top bits
				mixed[i] = top&^(1<<31-1) | r.Uint64()&(1<<31-1)
			case 2: // the same 53 bits as top
				mixed[i] = top&^(1<<11-1) | r.Uint64()&(1<<11-1)
			case 3: // one 53-bit step below top: u may round to the same value
				mixed[i] = top - 1<<11
			case 4: // a head of top's top 31 bits and nothing below them
				mixed[i] = mixTail(top &^ (1<<33 - 1))
			default: // top itself
				mixed[i] = top
			}
		}
		nodes := make([]Node, n)
		seeds := make([]uint64, n)
		weights := []float64{1, 1, 2, 0.5, 3}
		equal := r.IntN(2) == 0
		for i := range nodes {
			nodes[i] = Node{ID: fmt.Sprintf("n%04d", i), Weight: 1}
			if !equal {
				nodes[i].Weight = weights[r.IntN(len(weights))]
			}
			seeds[i] = seedFor(kh, mixed[i])
			if got := mix64(kh ^ seeds[i]); got != mixed[i] {
				t.Fatalf("seedFor: mix64 = %#x, want %#x", got, mixed[i])
			}
		}
		checkLookup(t, newRendezvous(nodes, seeds), kh)
	}
}

// TestRendezvousHeadAtBound: among n equal nodes, where n crosses every
// size threshold, node b's head is exactly the bound that an earlier best
// a sets (a's top 31 bits, then zeros) and b's 53 bits are one above a's,
// so b must win; a node c after b ties b's 53 bits, and b must stay. The
// other nodes' top 31 bits are below. A lookup that skips a head equal to
// the bound, or takes an equal hash for a better one, fails here.
func TestRendezvousHeadAtBound(t *testing.T) {
	r := seeded(t, 17)
	sizes := []int{2, 3, 4, 5, 6, 7, 8, 9, 63, 64, 65, 95, 96, 97, 98, 99, 100, 101, 127, 128, 129, 1000, 1100}
	for _, n := range sizes {
		for range 50 {
			kh := r.Uint64()
			head := r.Uint64()&^(1<<33-1) | 1<<62 // b's head: a bound
			xb := mixTail(head) >> 11
			if xb&(1<<22-1) == 0 {
				continue // no 53 bits one below b's with the same top 31 bits
			}
			mixed := make([]uint64, n)
			for i := range mixed {
				mixed[i] = r.Uint64() >> 2 // top 31 bits below head's
			}
			a := r.IntN(n)
			mixed[a] = (xb-1)<<11 | r.Uint64()&(1<<11-1)
			b := -1
			if a+1 < n {
				b = a + 1 + r.IntN(n-a-1)
				mixed[b] = mixTail(head)
			}
			if b >= 0 && b+1 < n {
				mixed[b+1+r.IntN(n-b-1)] = xb<<11 | r.Uint64()&(1<<11-1)
			}
			nodes := make([]Node, n)
			seeds := make([]uint64, n)
			for i := range nodes {
				nodes[i] = Node{ID: fmt.Sprintf("n%04d", i)}
				seeds[i] = seedFor(kh, mixed[i])
			}
			h := newRendezvous(nodes, seeds)
			want := nodes[max(a, b)].ID
			if got := h.LookupHash(kh); got != want {
				t.Fatalf("%d nodes, a = %d, b = %d: Lookup = %s, want %s", n, a, b, got, want)
			}
			checkLookup(t, h, kh)
		}
	}
}

// TestRendezvousWeightedNearTies crafts, for one key, 2 to 300 nodes of
// random weights whose scores -w / ln(u) nearly tie: each node's u is
// placed at, or a few 53-bit steps from, the u that would give it exactly
// the score of another node, so that scores equal after rounding or differ
// in their last bits. Weights come from a few classes, differ from each
// other by one ulp, or are huge or tiny (down to subnormal), where scores
// overflow to +Inf or round to 0 and tie; in a third of the sets the nodes
// share at most 8 such weights, as few classes. Lookup and LookupN(1) must
// pick what referenceLookup computes directly.
func TestRendezvousWeightedNearTies(t *testing.T) {
	r := seeded(t, 12)
	for range 20_000 {
		kh := r.Uint64()
		n := 2 + r.IntN(79) // both sides of the small-set threshold
		var pool []Node     // the weights to share, if any
		if r.IntN(3) == 0 {
			n = 2 + r.IntN(299)
			pool = make([]Node, 1+r.IntN(8))
			for i := range pool {
				pool[i].Weight = nearTieWeight(r, pool[:i])
			}
		}
		nodes := make([]Node, n)
		for i := range nodes {
			nodes[i] = Node{ID: fmt.Sprintf("n%03d", i), Weight: nearTieWeight(r, nodes[:i])}
			if pool != nil {
				nodes[i].Weight = pool[r.IntN(len(pool))].Weight
			}
		}
		if err := Validate(nodes); err != nil {
			t.Fatal(err)
		}
		xs := make([]uint64, n)
		for i := range xs {
			xs[i] = nearTieX(r, nodes[:i], xs[:i], nodes[i].Weight)
		}
		seeds := make([]uint64, n)
		for i := range seeds {
			seeds[i] = seedFor(kh, xs[i]<<11|r.Uint64()&(1<<11-1))
		}
		checkLookup(t, newRendezvous(nodes, seeds), kh)
	}
}

// TestRendezvousRandomKeys: on node sets of every size from 2 to 130 and
// of sizes around each threshold up to 1100, with hashed IDs and equal
// weights, the weights of nearTieWeight, a few weight classes or random
// weights, Lookup and LookupN(1) agree with referenceLookup on random
// keys.
func TestRendezvousRandomKeys(t *testing.T) {
	r := seeded(t, 13)
	var sizes []int
	for n := 2; n <= 130; n++ {
		sizes = append(sizes, n)
	}
	sizes = append(sizes, 200, 255, 256, 257, 511, 512, 513, 1000, 1023, 1024, 1025, 1100)
	for _, n := range sizes {
		sets, keys := 12, 200
		if n > 130 {
			sets, keys = 4, 100
		}
		for set := range sets {
			nodes := make([]Node, n)
			for i := range nodes {
				nodes[i] = Node{ID: fmt.Sprintf("node-%d-%d", i, r.Uint32())}
				switch set % 4 {
				case 1:
					nodes[i].Weight = nearTieWeight(r, nodes[:i])
				case 2:
					nodes[i].Weight = float64(1 + r.IntN(3))
				case 3:
					nodes[i].Weight = 0.01 + 100*r.Float64()
				}
			}
			h, err := NewRendezvous(nodes)
			if err != nil {
				t.Fatal(err)
			}
			for range keys {
				checkLookup(t, h, r.Uint64())
			}
		}
	}
}

func weightsOf(nodes []Node) []float64 {
	ws := make([]float64, len(nodes))
	for i, n := range nodes {
		ws[i] = n.Weight
	}
	return ws
}

// nearTieWeight draws a weight: a small class, a random one, one ulp from
// an earlier node's, or huge or tiny.
func nearTieWeight(r *rand.Rand, earlier []Node) float64 {
	switch k := r.IntN(10); {
	case k < 3:
		return []float64{1, 2, 3, 0.5}[r.IntN(4)]
	case k < 5:
		return 0.01 + 100*r.Float64()
	case k < 7 && len(earlier) > 0:
		w := earlier[r.IntN(len(earlier))].Weight
		if r.IntN(2) == 0 {
			return math.Nextafter(w, math.MaxFloat64)
		}
		return math.Max(math.Nextafter(w, 0), math.SmallestNonzeroFloat64)
	case k < 8 && extremeWeights:
		return []float64{math.MaxFloat64, math.MaxFloat64 / 3, 1e300, 1e290, 1e280}[r.IntN(5)]
	case k < 9 && extremeWeights:
		return []float64{math.SmallestNonzeroFloat64, 3 * math.SmallestNonzeroFloat64, 1e-310, 0x1p-1022, 1e-300, 1e-290}[r.IntN(6)]
	}
	return 1
}

// nearTieX draws a node's 53 bits: anywhere, near 2^53 (u near 1, where
// winners lie), with its low 22 bits all ones, just above 2^52 (u near
// 1/2), or within a few steps of the x that gives a node of weight w the
// exact score of an earlier node.
func nearTieX(r *rand.Rand, earlier []Node, xs []uint64, w float64) uint64 {
	const top = 1<<53 - 1
	switch k := r.IntN(7); {
	case k == 0:
		return r.Uint64() >> 11
	case k == 1:
		return top - r.Uint64N(1<<uint(r.IntN(53)))
	case k == 2: // low 22 bits all ones: the head's top 31 bits bound 1 - u tightly
		return top - r.Uint64N(1<<uint(r.IntN(32)))<<22
	case k == 3: // u just above 1/2, where costAbove stops
		return 1<<52 + r.Uint64N(1<<uint(r.IntN(50)))
	case len(earlier) == 0:
		return r.Uint64() >> 11
	default:
		j := r.IntN(len(earlier))
		// The same score: ln(u) = w/w_j ln(u_j).
		uj := (float64(xs[j]) + 0.5) / (1 << 53)
		u := math.Exp(w / earlier[j].Weight * math.Log(uj))
		x := u*(1<<53) - 0.5
		if !(x >= 0) {
			x = 0
		}
		c := int64(min(x, top)) + r.Int64N(7) - 3
		return uint64(min(max(c, 0), top))
	}
}

var extremeWeights = true

// TestKeyOrder: key keeps the node index in its low bits and orders as the
// bounds do when they differ by more than the index bits.
func TestKeyOrder(t *testing.T) {
	r := seeded(t, 14)
	for range 100_000 {
		c := math.Ldexp(r.Float64(), r.IntN(200)-100)
		i, j := r.IntN(keyMask+1), r.IntN(keyMask+1)
		if got := int(key(c, i) & keyMask); got != i {
			t.Fatalf("key(%v, %d) holds index %d", c, i, got)
		}
		above := math.Float64frombits(math.Float64bits(c) + 2*keyMask + 2)
		if key(c, i) >= key(above, j) {
			t.Fatalf("key(%v, %d) >= key(%v, %d)", c, i, above, j)
		}
		if k := key(c, i); math.Float64frombits(k) > c*(1+1e-13) {
			t.Fatalf("key(%v, %d) = %v, above the bound", c, i, math.Float64frombits(k))
		}
	}
}

// FuzzRendezvousWeightedLookup: for any weights (as float64 bits) and any
// 53-bit hashes the nodes get for one key, Lookup and LookupN(1) pick what
// referenceLookup computes directly. Each node takes 16 bytes: its weight's
// bits, then its hash's.
func FuzzRendezvousWeightedLookup(f *testing.F) {
	spec := func(pairs ...uint64) []byte {
		var b []byte
		for _, p := range pairs {
			b = binary.LittleEndian.AppendUint64(b, p)
		}
		return b
	}
	f.Add(uint64(1), spec(math.Float64bits(1), 1<<63, math.Float64bits(2), 1<<63))
	f.Add(uint64(2), spec(math.Float64bits(3), math.MaxUint64, math.Float64bits(1), math.MaxUint64, math.Float64bits(2), 0))
	f.Add(uint64(3), spec(math.Float64bits(math.MaxFloat64), math.MaxUint64-1<<11, 1, math.MaxUint64))
	f.Fuzz(func(t *testing.T, kh uint64, b []byte) {
		var nodes []Node
		var mixed []uint64
		for ; len(b) >= 16 && len(nodes) < 80; b = b[16:] {
			nodes = append(nodes, Node{ID: fmt.Sprintf("n%03d", len(nodes)), Weight: math.Float64frombits(binary.LittleEndian.Uint64(b))})
			mixed = append(mixed, binary.LittleEndian.Uint64(b[8:]))
		}
		if len(nodes) == 0 || Validate(nodes) != nil {
			return
		}
		sorted, _ := validate(nodes) // zero weights read as 1; IDs already sorted
		seeds := make([]uint64, len(mixed))
		for i, m := range mixed {
			seeds[i] = seedFor(kh, m)
		}
		checkLookup(t, newRendezvous(sorted, seeds), kh)
	})
}

// TestRendezvousUOne: where two nodes' 53 bits are all ones, so that their
// u rounds to 1 and both score +Inf, the one of smaller ID wins however
// heavy the other, on both sides of the small-set threshold and with
// equal weights, and LookupN keeps every node, the two first.
func TestRendezvousUOne(t *testing.T) {
	r := seeded(t, 15)
	const top = 1<<53 - 1
	for _, n := range []int{2, 3, 10, 64, 65, 100} {
		for _, equal := range []bool{false, true} {
			kh := r.Uint64()
			a, b := r.IntN(n-1), n-1
			nodes := make([]Node, n)
			seeds := make([]uint64, n)
			for i := range nodes {
				nodes[i] = Node{ID: fmt.Sprintf("n%03d", i), Weight: 1}
				if !equal {
					nodes[i].Weight = float64(1 + i%3)
				}
				x := r.Uint64N(top)
				if i == a || i == b {
					x = top
				}
				seeds[i] = seedFor(kh, x<<11|r.Uint64()&(1<<11-1))
			}
			if !equal {
				nodes[b].Weight = 5
			}
			h := newRendezvous(nodes, seeds)
			checkLookup(t, h, kh)
			if got := h.LookupHash(kh); got != nodes[a].ID {
				t.Fatalf("%d nodes (equal %v): Lookup = %s, want %s", n, equal, got, nodes[a].ID)
			}
			all := h.LookupNHash(kh, n, nil)
			if len(all) != n || all[0] != nodes[a].ID || all[1] != nodes[b].ID {
				t.Fatalf("%d nodes (equal %v): LookupN = %v, want all %d starting %s, %s", n, equal, all, n, nodes[a].ID, nodes[b].ID)
			}
		}
	}
}

// TestRendezvousTightBound: node b's 53 bits have their low 22 bits all
// ones, so that the lower bound of its cost read from its head is tight,
// and node a, of another weight, costs more than b by a factor 1 + 2^-33
// to 1 + 2^-31, while a's head gives a looser bound, below b's: a is
// proposed and b must win. The other nodes cost far more. A check that
// took a's upper bound for settled within 2^-30 of b's lower bound would
// pick a; sizes cross every path (few, classes, heavyFirst).
func TestRendezvousTightBound(t *testing.T) {
	r := seeded(t, 18)
	const top = 1<<53 - 1
	weights := []float64{1, 2, 3}
	for range 3000 {
		kh := r.Uint64()
		n := 2 + r.IntN(300)
		nodes := make([]Node, n)
		xs := make([]uint64, n)
		for i := range nodes {
			nodes[i] = Node{ID: fmt.Sprintf("n%03d", i), Weight: weights[r.IntN(len(weights))]}
			xs[i] = r.Uint64N(1 << 52) // u below 1/2: far behind
		}
		a, b := r.IntN(n), r.IntN(n-1)
		if b >= a {
			b++
		}
		nodes[a].Weight = weights[r.IntN(len(weights))]
		for nodes[b].Weight == nodes[a].Weight {
			nodes[b].Weight = weights[r.IntN(len(weights))]
		}
		xs[b] = top - (1<<16+r.Uint64N(1<<16))<<22 // 1 - u about 2^-14
		costB := -math.Log(uOf(xs[b])) / nodes[b].Weight
		costA := costB * (1 + math.Ldexp(1+3*r.Float64(), -33))
		xs[a] = uint64(math.Exp(-costA*nodes[a].Weight)*(1<<53) - 0.5)
		if costA := -math.Log(uOf(xs[a])) / nodes[a].Weight; !(costA > costB) {
			t.Fatalf("crafted costs: a %v, b %v", costA, costB)
		}
		seeds := make([]uint64, n)
		for i := range seeds {
			seeds[i] = seedFor(kh, xs[i]<<11|r.Uint64()&(1<<11-1))
		}
		h := newRendezvous(nodes, seeds)
		if got := h.LookupHash(kh); got != nodes[b].ID {
			t.Fatalf("%d nodes, weights %v and %v: Lookup = %s, want %s", n, nodes[a].Weight, nodes[b].Weight, got, nodes[b].ID)
		}
		checkLookup(t, h, kh)
	}
}
