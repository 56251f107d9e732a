package ring

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Errors returned by [NewBounded] and [Bounded.Add].
var (
	ErrLoadFactor   = errors.New("ring: bounded load factor must be a finite number >= 1")
	ErrEmptyRing    = errors.New("ring: bounded load needs a ring with nodes")
	ErrDuplicateKey = errors.New("ring: key already assigned")
)

// Reassignment reports that Key moved from node From to node To.
type Reassignment struct {
	Key, From, To string
}

// Bounded assigns keys (or requests, connections) to the nodes of a [Ring]
// with bounded loads, after Mirrokni, Thorup and Zadimoghaddam, "Consistent
// Hashing with Bounded Loads" (SODA 2018). With m keys assigned, node i may
// hold at most
//
//	Capacity(i) = ceil(c * m * p_i / P)
//
// keys, where p_i is the number of ring points node i owns and P their
// total; for equal weights that is the paper's ceil(c * m / n). A new key
// goes to the first node with room on the ring walk from its hash (the order
// of [Ring.Replicas] on a ring with a single zone), so it lands on its
// ring owner unless that node is full. Because c >= 1, the capacities
// always sum to at least m: an arrival always fits.
//
// A departure lowers m and so may lower a capacity below a node's load. Remove
// then moves keys off each such node (the last in its internal list, so the
// choice is a function of the history of calls) to the next node with room on
// their own walk, restoring the bound, and reports the moves. Keys never move for any other reason; in particular a key that
// overflowed past a full node stays where it is when room appears.
//
// The bound holds after every call: no node ever holds more than its
// Capacity. A Bounded is not safe for concurrent use; the zero value is not
// usable, build one with [NewBounded].
type Bounded struct {
	ring  *Ring
	c     float64
	total float64    // points in the ring
	keys  [][]string // node index -> keys held, in no particular order
	where map[string]slot
	moved []Reassignment

	// classes groups the nodes by point count, the only input of their
	// capacity besides m, so that a departure checks a group's nodes only
	// when the group's capacity drops.
	classes []class
}

type class struct {
	points int32
	nodes  []int32
}

// slot locates a key: its node and its position in keys[node].
type slot struct {
	node, pos int32
}

// NewBounded returns an empty assignment over the nodes of r with load
// factor c: with c = 1.25 no node holds more than 25% above its share of the
// average (rounded up). Smaller c balances better but makes arrivals walk
// further and departures move keys more often. It returns an error wrapping [ErrLoadFactor] if c is
// below 1, infinite or NaN, and [ErrEmptyRing] if r has no nodes.
func NewBounded(r *Ring, c float64) (*Bounded, error) {
	if math.IsNaN(c) || math.IsInf(c, 0) || c < 1 {
		return nil, fmt.Errorf("%w: %v", ErrLoadFactor, c)
	}
	if r == nil || len(r.hashes) == 0 {
		return nil, ErrEmptyRing
	}
	b := &Bounded{
		ring:  r,
		c:     c,
		total: float64(len(r.hashes)),
		keys:  make([][]string, len(r.nodes)),
		where: map[string]slot{},
	}
	for i, p := range r.counts {
		k := slices.IndexFunc(b.classes, func(c class) bool { return c.points == p })
		if k < 0 {
			k = len(b.classes)
			b.classes = append(b.classes, class{points: p})
		}
		b.classes[k].nodes = append(b.classes[k].nodes, int32(i))
	}
	return b, nil
}

// Ring returns the ring the assignment uses.
func (b *Bounded) Ring() *Ring { return b.ring }

// Len returns the number of keys assigned.
func (b *Bounded) Len() int { return len(b.where) }

// capacity is the capacity of a node with the given number of points when
// m keys are assigned. It is capped at 2^62, far above any load, so that a
// huge c converts to a valid int.
func (b *Bounded) capacity(points int32, m int) int {
	return int(min(math.Ceil(b.c*float64(m)*float64(points)/b.total), 1<<62))
}

// Capacity returns the most keys node id may hold now, or 0 if id is not a
// node of the ring.
func (b *Bounded) Capacity(id string) int {
	i, ok := b.ring.nodeIndex(id)
	if !ok {
		return 0
	}
	return b.capacity(b.ring.counts[i], len(b.where))
}

// Load returns the number of keys assigned to node id.
func (b *Bounded) Load(id string) int {
	i, ok := b.ring.nodeIndex(id)
	if !ok {
		return 0
	}
	return len(b.keys[i])
}

// Locate returns the node key is assigned to, if it is assigned.
func (b *Bounded) Locate(key string) (string, bool) {
	s, ok := b.where[key]
	if !ok {
		return "", false
	}
	return b.ring.nodes[s.node].ID, true
}

// Add assigns key and returns its node. It returns an error wrapping
// [ErrDuplicateKey] if key is already assigned. Add does not allocate
// once the assignment has held as many keys before.
func (b *Bounded) Add(key string) (string, error) {
	if _, ok := b.where[key]; ok {
		return "", fmt.Errorf("%w: %q", ErrDuplicateKey, key)
	}
	node := b.place(key, len(b.where)+1)
	return b.ring.nodes[node].ID, nil
}

// place puts key on the first node with room for m keys on its walk and
// returns that node.
func (b *Bounded) place(key string, m int) int {
	o := b.ring.owner
	i := b.ring.search(KeyHashString(key))
	// Capacities sum to at least m > current load, so some node has room.
	for len(b.keys[o[i]]) >= b.capacity(b.ring.counts[o[i]], m) {
		if i++; i == len(o) {
			i = 0
		}
	}
	node := int(o[i])
	b.where[key] = slot{int32(node), int32(len(b.keys[node]))}
	b.keys[node] = append(b.keys[node], key)
	return node
}

// Remove unassigns key and reports whether it was assigned. If the lower
// key count lowers a capacity below a node's load, keys move to restore
// the bound; the returned reassignments list them, in order. The slice is
// valid until the next call on b. Remove does not allocate.
func (b *Bounded) Remove(key string) ([]Reassignment, bool) {
	b.moved = b.moved[:0]
	s, ok := b.where[key]
	if !ok {
		return b.moved, false
	}
	b.unlink(key, s)
	m := len(b.where)
	for _, c := range b.classes {
		limit := b.capacity(c.points, m)
		if limit == b.capacity(c.points, m+1) {
			continue // no load was above this before, none is now
		}
		for _, i := range c.nodes {
			for ks := b.keys[i]; len(ks) > limit; ks = b.keys[i] {
				k := ks[len(ks)-1]
				b.unlink(k, b.where[k])
				to := b.place(k, m)
				b.moved = append(b.moved, Reassignment{Key: k, From: b.ring.nodes[i].ID, To: b.ring.nodes[to].ID})
			}
		}
	}
	return b.moved, true
}

// Rebalance moves the assignment onto r, the ring after a membership or
// weight change, with as few moves as the bound allows, and reports the
// moves, as Remove does; the slice is valid until the next call on b. A key
// moves only if its node left, or if its node now holds more than its
// Capacity on r (then the last keys in its internal list move): the moves
// number exactly the keys of departed nodes plus each remaining node's
// excess. Moved keys go, in the order reported, to the first node with
// room on their walk of r. Keys that stay keep their node even where r
// would place them elsewhere, as after Remove; so a node that joins takes
// keys only as other nodes overflow or leave, and new arrivals.
//
// Rebalance returns an error wrapping [ErrEmptyRing], and leaves b
// unchanged, if r has no nodes.
func (b *Bounded) Rebalance(r *Ring) ([]Reassignment, error) {
	next, err := NewBounded(r, b.c)
	if err != nil {
		return nil, err
	}
	m := len(b.where)
	next.where = make(map[string]slot, m)
	moved := b.moved[:0] // first the keys to place, From set
	for i, ks := range b.keys {
		from := b.ring.nodes[i].ID
		j, ok := r.nodeIndex(from)
		for _, k := range ks {
			if ok && len(next.keys[j]) < next.capacity(r.counts[j], m) {
				next.where[k] = slot{int32(j), int32(len(next.keys[j]))}
				next.keys[j] = append(next.keys[j], k)
				continue
			}
			moved = append(moved, Reassignment{Key: k, From: from})
		}
	}
	for i := range moved {
		moved[i].To = r.nodes[next.place(moved[i].Key, m)].ID
	}
	*b = *next
	b.moved = moved
	return moved, nil
}

// unlink removes key, held at s, from its node.
func (b *Bounded) unlink(key string, s slot) {
	ks := b.keys[s.node]
	last := len(ks) - 1
	if int(s.pos) != last {
		ks[s.pos] = ks[last]
		b.where[ks[s.pos]] = s
	}
	ks[last] = ""
	b.keys[s.node] = ks[:last]
	delete(b.where, key)
}
