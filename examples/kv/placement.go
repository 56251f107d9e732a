package kv

import (
	"cmp"
	"slices"
	"strings"

	"github.com/distkit/distkit/ring"
)

// placement is where keys live under one ring: a key's home replicas are
// the first n nodes of ring.Replicas (distinct zones first), its
// fallbacks the next few, and its replica group the name of its home
// set. A placement is immutable once built, so every request, repair and
// handover that loaded one sees ring, N, fallbacks and groups that agree;
// a [Node] publishes a new one with a single atomic store.
type placement struct {
	ring      *ring.Ring
	n         int      // home replicas per key
	fallbacks int      // fallbacks per key, after the home replicas
	groups    []string // the ring's replica sets, sorted, as groupOf names them
}

// newPlacement returns the placement of r with n home replicas and
// fallbacks fallbacks per key.
func newPlacement(r *ring.Ring, n, fallbacks int) *placement {
	// The plan from an empty ring lists every range with its replicas.
	var groups []string
	for _, m := range ring.ReplicaMoves(nil, r, n) {
		groups = append(groups, groupOf(m.To))
	}
	slices.Sort(groups)
	return &placement{ring: r, n: n, fallbacks: fallbacks, groups: slices.Compact(groups)}
}

// of returns key's home replicas and its fallbacks.
func (p *placement) of(key []byte) (home, fallbacks []string) {
	all := p.ring.Replicas(key, p.n+p.fallbacks, make([]string, 0, p.n+p.fallbacks))
	k := min(p.n, len(all))
	return all[:k], all[k:]
}

// home returns key's home replicas.
func (p *placement) home(key []byte) []string {
	return p.ring.Replicas(key, p.n, make([]string, 0, p.n))
}

// group returns the name of key's replica group: the anti-entropy tree
// its replicas keep it in. For N up to 8 it allocates nothing: it finds
// the name among the placement's groups.
func (p *placement) group(key []byte) string {
	var buf [8]string
	if p.n > len(buf) {
		return groupOf(p.home(key))
	}
	home := p.ring.Replicas(key, p.n, buf[:0])
	slices.Sort(home)
	// A search by hand: through slices.BinarySearchFunc's function value
	// home, and so buf, would escape to the heap.
	for lo, hi := 0, len(p.groups); lo < hi; {
		mid := int(uint(lo+hi) >> 1)
		switch c := compareGroup(p.groups[mid], home); {
		case c == 0:
			return p.groups[mid]
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return groupOf(home)
}

// compareGroup compares the group name g with the name of the sorted IDs
// ids (joined by commas), without building the name.
func compareGroup(g string, ids []string) int {
	for i, id := range ids {
		if i > 0 {
			if g == "" {
				return -1
			}
			if g[0] != ',' {
				return cmp.Compare(g[0], ',')
			}
			g = g[1:]
		}
		n := min(len(g), len(id))
		if c := strings.Compare(g[:n], id[:n]); c != 0 {
			return c
		}
		if len(g) < len(id) {
			return -1
		}
		g = g[len(id):]
	}
	if g != "" {
		return 1
	}
	return 0
}

// has reports whether node id is in the ring.
func (p *placement) has(id string) bool { return inRing(p.ring, id) }

// without returns the placement of the ring without node id, with the
// same N and fallbacks: where a leaving node's data goes.
func (p *placement) without(id string) *placement {
	return newPlacement(p.ring.Without(id), p.n, p.fallbacks)
}

// inRing reports whether node id is in r.
func inRing(r *ring.Ring, id string) bool {
	return slices.ContainsFunc(r.Nodes(), func(m ring.Node) bool { return m.ID == id })
}

// groupOf names a replica set: its sorted IDs joined by commas.
func groupOf(replicas []string) string {
	return strings.Join(slices.Sorted(slices.Values(replicas)), ",")
}

// without returns a copy of ids without the IDs in drop.
func without(ids []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(ids), func(id string) bool { return slices.Contains(drop, id) })
}
