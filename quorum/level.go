package quorum

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrUnavailable is returned by [Level.Requirement] when the placement has
// too few replicas for the level, as Cassandra's UnavailableException: THREE
// over two replicas, or a LOCAL_ level whose local zone holds none.
var ErrUnavailable = errors.New("quorum: consistency level cannot be met")

// Level is a Cassandra consistency level: how many acknowledgements, from
// which zones (datacenters), an operation waits for. The zero Level is not
// a level; [Level.Requirement] rejects it. A Level is a plain value, safe for
// concurrent use.
type Level int

// The consistency levels, with Cassandra's meaning. "Replicas" are a key's
// replicas in every zone; "local" ones are those in the coordinator's zone.
const (
	LevelOne         Level = iota + 1 // one replica, in any zone
	LevelTwo                          // two replicas, in any zones
	LevelThree                        // three replicas, in any zones
	LevelQuorum                       // a majority of all replicas, counted across zones
	LevelAll                          // every replica
	LevelLocalOne                     // one replica of the local zone
	LevelLocalQuorum                  // a majority of the local zone's replicas
	LevelEachQuorum                   // a majority of every zone's replicas
)

var levelNames = [...]string{
	LevelOne:         "ONE",
	LevelTwo:         "TWO",
	LevelThree:       "THREE",
	LevelQuorum:      "QUORUM",
	LevelAll:         "ALL",
	LevelLocalOne:    "LOCAL_ONE",
	LevelLocalQuorum: "LOCAL_QUORUM",
	LevelEachQuorum:  "EACH_QUORUM",
}

func (l Level) valid() bool { return l >= LevelOne && l <= LevelEachQuorum }

// String returns Cassandra's name of the level, such as "LOCAL_QUORUM", or
// "Level(n)" for a value that is not a level.
func (l Level) String() string {
	if !l.valid() {
		return fmt.Sprintf("Level(%d)", int(l))
	}
	return levelNames[l]
}

// ParseLevel returns the level named s, Cassandra's spelling in any case
// ("quorum", "LOCAL_ONE"). An unknown name is an error wrapping
// [ErrInvalid].
func ParseLevel(s string) (Level, error) {
	for l := LevelOne; l <= LevelEachQuorum; l++ {
		if strings.EqualFold(s, levelNames[l]) {
			return l, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown consistency level %q", ErrInvalid, s)
}

// Placement is where a key's replicas live: replica IDs grouped by zone
// (datacenter, availability zone), and the zone of the coordinator that
// serves the request, which LOCAL_ levels count in. Every replica ID must
// appear once. A Placement is only read, never modified, by this package;
// its zero value has no replicas.
type Placement struct {
	Zones map[string][]string
	Local string
}

// ZoneNeed is a requirement on one zone: at least Acks distinct
// acknowledgements from its Replicas. It is a plain value; Replicas is the
// Placement's slice, shared, not copied.
type ZoneNeed struct {
	Zone     string
	Replicas []string
	Acks     int
}

// Requirement is what a [Level] demands of a [Placement]: at least Any
// distinct acknowledgements from the placement's replicas, and, for each
// entry of Zones, at least its Acks from that zone.
//
// ONE, TWO, THREE, QUORUM and ALL set Any and leave Zones empty; LOCAL_ONE
// and LOCAL_QUORUM set one ZoneNeed for the local zone; EACH_QUORUM one per
// zone, in zone name order. A Requirement is immutable and safe for
// concurrent use; its zero value is satisfied by anything.
type Requirement struct {
	Level Level
	Any   int
	Zones []ZoneNeed

	zoneOf   map[string]int // replica -> index into Zones, or -1 when no zone counts it
	replicas []string       // the replicas that count, zones in name order
}

// Requirement returns what l demands of p. It fails with an error wrapping
// [ErrInvalid] for an invalid level or a placement without replicas or with
// a replica listed twice, and with one wrapping [ErrUnavailable] when p has
// too few replicas (in total, or in the local zone for LOCAL_ levels) for l.
func (l Level) Requirement(p Placement) (Requirement, error) {
	if !l.valid() {
		return Requirement{}, fmt.Errorf("%w: %v is not a consistency level", ErrInvalid, l)
	}
	names := make([]string, 0, len(p.Zones))
	total := 0
	for z, rs := range p.Zones {
		names = append(names, z)
		total += len(rs)
	}
	if total == 0 {
		return Requirement{}, fmt.Errorf("%w: placement has no replicas", ErrInvalid)
	}
	slices.Sort(names)
	req := Requirement{Level: l, zoneOf: make(map[string]int, total)}
	for _, z := range names {
		for _, r := range p.Zones[z] {
			if _, dup := req.zoneOf[r]; dup {
				return Requirement{}, fmt.Errorf("%w: replica %q is listed twice in the placement", ErrInvalid, r)
			}
			req.zoneOf[r] = -1
			req.replicas = append(req.replicas, r)
		}
	}
	addZone := func(z string, acks int) {
		for _, r := range p.Zones[z] {
			req.zoneOf[r] = len(req.Zones)
		}
		req.Zones = append(req.Zones, ZoneNeed{Zone: z, Replicas: p.Zones[z], Acks: acks})
	}
	switch l {
	case LevelOne, LevelTwo, LevelThree:
		req.Any = int(l - LevelOne + 1)
	case LevelQuorum:
		req.Any = Majority(total)
	case LevelAll:
		req.Any = total
	case LevelLocalOne, LevelLocalQuorum:
		local := len(p.Zones[p.Local])
		if local == 0 {
			return Requirement{}, fmt.Errorf("%w: %v: local zone %q has no replicas", ErrUnavailable, l, p.Local)
		}
		addZone(p.Local, 1)
		if l == LevelLocalQuorum {
			req.Zones[0].Acks = Majority(local)
		}
	case LevelEachQuorum:
		for _, z := range names {
			if n := len(p.Zones[z]); n > 0 {
				addZone(z, Majority(n))
			}
		}
	}
	if req.Zones != nil {
		req.replicas = req.replicas[:0]
		for _, z := range req.Zones {
			req.replicas = append(req.replicas, z.Replicas...)
		}
	}
	if req.Any > total {
		return Requirement{}, fmt.Errorf("%w: %v needs %d replicas, the placement has %d", ErrUnavailable, l, req.Any, total)
	}
	return req, nil
}

// Replicas returns, in a new slice, the replicas whose acknowledgements r
// counts: the placement's replicas, or for LOCAL_ levels the local zone's,
// zones in name order and each zone's replicas in placement order. For every
// level but EACH_QUORUM, Gather(ctx, r.Replicas(), r.Min(), call) succeeds
// exactly when its successful replies satisfy r; [GatherFor] covers every
// level.
func (r Requirement) Replicas() []string { return slices.Clone(r.replicas) }

// Min returns the fewest acknowledgements that can satisfy r: the larger of
// Any and the sum of the zones' Acks.
func (r Requirement) Min() int {
	sum := 0
	for _, z := range r.Zones {
		sum += z.Acks
	}
	return max(r.Any, sum)
}

// Satisfied reports whether the replicas in acks, the ones that
// acknowledged, meet r. Replicas outside the placement and repeated IDs
// count once or not at all, so a retried acknowledgement cannot fake a
// quorum. For every level but EACH_QUORUM, Satisfied(acks) is true exactly
// when acks holds Min() distinct replicas that r counts. It does not
// allocate for up to 16 zones and takes time quadratic in len(acks).
func (r Requirement) Satisfied(acks []string) bool {
	var buf [16]int
	perZone := buf[:]
	if len(r.Zones) > len(buf) {
		perZone = make([]int, len(r.Zones))
	}
	counted := 0
	for i, a := range acks {
		z, ok := r.zoneOf[a]
		if !ok || slices.Contains(acks[:i], a) {
			continue
		}
		counted++
		if z >= 0 {
			perZone[z]++
		}
	}
	if counted < r.Any {
		return false
	}
	for i, z := range r.Zones {
		if perZone[i] < z.Acks {
			return false
		}
	}
	return true
}
