package ring

import (
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
// splitmix64 finaliser, and u = (top 53 bits + 0.5) / 2^53. Lookups cost
// O(nodes); prefer [Ring] beyond a few hundred nodes.
//
// A Rendezvous is immutable and safe for concurrent use. The zero value
// (and a nil *Rendezvous) is an empty set: lookups return "".
type Rendezvous struct {
	nodes  []Node   // sorted by ID, Weight normalised
	seeds  []uint64 // xxhash64 of each ID
	weight []float64
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
	h := &Rendezvous{nodes: sorted, seeds: make([]uint64, len(sorted)), weight: make([]float64, len(sorted))}
	for i, n := range sorted {
		h.seeds[i] = xxhash.Sum64String(n.ID)
		h.weight[i] = n.Weight
	}
	return h, nil
}

// Nodes returns a copy of the nodes sorted by ID, with a zero Weight
// reported as 1.
func (h *Rendezvous) Nodes() []Node {
	if h == nil {
		return nil
	}
	return slices.Clone(h.nodes)
}

// score is node i's weighted score for a key hashed to kh.
func (h *Rendezvous) score(kh uint64, i int) float64 {
	x := mix64(kh ^ h.seeds[i])
	u := (float64(x>>11) + 0.5) / (1 << 53)
	return -h.weight[i] / math.Log(u)
}

// Lookup returns the ID of the node with the highest score for key, or ""
// for an empty set. It does not allocate.
func (h *Rendezvous) Lookup(key []byte) string {
	if h == nil {
		return ""
	}
	kh := xxhash.Sum64(key)
	best, bestScore := -1, 0.0
	for i := range h.nodes {
		if s := h.score(kh, i); best < 0 || s > bestScore {
			best, bestScore = i, s
		}
	}
	if best < 0 {
		return ""
	}
	return h.nodes[best].ID
}

// LookupN returns the preference list of key: the min(n, nodes) node IDs
// with the highest scores, best first, so that LookupN(key, 1)[0] ==
// Lookup(key) and LookupN(key, n) is a prefix of LookupN(key, n+1). Removing
// a node removes it from every list and shifts the rest up; nothing else
// changes. The result is stored in dst[:0]; LookupN does not allocate when
// dst has capacity n and n <= 32.
func (h *Rendezvous) LookupN(key []byte, n int, dst []string) []string {
	dst = dst[:0]
	if h == nil {
		return dst
	}
	n = min(n, len(h.nodes))
	if n <= 0 {
		return dst
	}
	type ranked struct {
		score float64
		node  int
	}
	var buf [32]ranked
	top := buf[:0]
	if n > len(buf) {
		top = make([]ranked, 0, n)
	}
	kh := xxhash.Sum64(key)
	for i := range h.nodes {
		s := h.score(kh, i)
		if len(top) == n && s <= top[n-1].score {
			continue
		}
		// Insert after every entry with a score >= s: earlier (smaller) IDs
		// win ties.
		at := len(top)
		for at > 0 && top[at-1].score < s {
			at--
		}
		if len(top) < n {
			top = append(top, ranked{})
		}
		copy(top[at+1:], top[at:len(top)-1])
		top[at] = ranked{s, i}
	}
	for _, t := range top {
		dst = append(dst, h.nodes[t.node].ID)
	}
	return dst
}
