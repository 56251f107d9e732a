package quorum_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/quorum"
)

var twoZones = quorum.Placement{
	Zones: map[string][]string{"us": {"d", "e"}, "eu": {"a", "b", "c"}},
	Local: "eu",
}

func TestLevelRequirement(t *testing.T) {
	eu := quorum.ZoneNeed{Zone: "eu", Replicas: []string{"a", "b", "c"}, Acks: 2}
	us := quorum.ZoneNeed{Zone: "us", Replicas: []string{"d", "e"}, Acks: 2}
	for _, tc := range []struct {
		level quorum.Level
		any   int
		zones []quorum.ZoneNeed
		min   int
	}{
		{quorum.LevelOne, 1, nil, 1},
		{quorum.LevelTwo, 2, nil, 2},
		{quorum.LevelThree, 3, nil, 3},
		{quorum.LevelQuorum, 3, nil, 3}, // 5/2 + 1, counted across zones
		{quorum.LevelAll, 5, nil, 5},
		{quorum.LevelLocalOne, 0, []quorum.ZoneNeed{{Zone: "eu", Replicas: eu.Replicas, Acks: 1}}, 1},
		{quorum.LevelLocalQuorum, 0, []quorum.ZoneNeed{eu}, 2},
		{quorum.LevelEachQuorum, 0, []quorum.ZoneNeed{eu, us}, 4},
	} {
		req, err := tc.level.Requirement(twoZones)
		require.NoError(t, err, "%v", tc.level)
		require.Equal(t, tc.level, req.Level)
		require.Equal(t, tc.any, req.Any, "%v", tc.level)
		require.Equal(t, tc.zones, req.Zones, "%v", tc.level)
		require.Equal(t, tc.min, req.Min(), "%v", tc.level)
		want := []string{"a", "b", "c", "d", "e"}
		if tc.level == quorum.LevelLocalOne || tc.level == quorum.LevelLocalQuorum {
			want = want[:3]
		}
		require.Equal(t, want, req.Replicas(), "%v", tc.level)
	}
}

func TestLevelSatisfied(t *testing.T) {
	for _, tc := range []struct {
		level quorum.Level
		acks  []string
		ok    bool
	}{
		{quorum.LevelOne, []string{"e"}, true},
		{quorum.LevelOne, []string{"x"}, false}, // a stranger
		{quorum.LevelTwo, []string{"a", "a"}, false},
		{quorum.LevelTwo, []string{"a", "d"}, true},
		{quorum.LevelQuorum, []string{"a", "b", "d"}, true},
		{quorum.LevelQuorum, []string{"a", "b", "b", "x"}, false},
		{quorum.LevelAll, []string{"e", "d", "c", "b", "a"}, true},
		{quorum.LevelAll, []string{"e", "d", "c", "b"}, false},
		{quorum.LevelLocalOne, []string{"d", "e"}, false}, // remote only
		{quorum.LevelLocalOne, []string{"d", "c"}, true},
		{quorum.LevelLocalQuorum, []string{"a", "d", "e"}, false},
		{quorum.LevelLocalQuorum, []string{"c", "a"}, true},
		{quorum.LevelEachQuorum, []string{"a", "b", "c", "d"}, false},
		{quorum.LevelEachQuorum, []string{"a", "b", "d", "e"}, true},
		{quorum.LevelEachQuorum, []string{"a", "b", "d", "d"}, false},
	} {
		req, err := tc.level.Requirement(twoZones)
		require.NoError(t, err)
		require.Equal(t, tc.ok, req.Satisfied(tc.acks), "%v %v", tc.level, tc.acks)
	}
	require.True(t, quorum.Requirement{}.Satisfied(nil), "zero Requirement")
}

func TestLevelErrors(t *testing.T) {
	for _, tc := range []struct {
		level quorum.Level
		p     quorum.Placement
		want  error
		msg   string
	}{
		{0, twoZones, quorum.ErrInvalid, "Level(0) is not a consistency level"},
		{99, twoZones, quorum.ErrInvalid, "Level(99)"},
		{quorum.LevelOne, quorum.Placement{}, quorum.ErrInvalid, "no replicas"},
		{quorum.LevelOne, quorum.Placement{Zones: map[string][]string{"x": {"a"}, "y": {"a"}}}, quorum.ErrInvalid, `replica "a" is listed twice`},
		{quorum.LevelThree, quorum.Placement{Zones: map[string][]string{"x": {"a", "b"}}}, quorum.ErrUnavailable, "THREE needs 3 replicas, the placement has 2"},
		{quorum.LevelLocalQuorum, quorum.Placement{Zones: twoZones.Zones, Local: "ap"}, quorum.ErrUnavailable, `local zone "ap" has no replicas`},
		{quorum.LevelLocalOne, quorum.Placement{Zones: map[string][]string{"eu": nil, "us": {"d"}}, Local: "eu"}, quorum.ErrUnavailable, "LOCAL_ONE"},
	} {
		_, err := tc.level.Requirement(tc.p)
		require.ErrorIs(t, err, tc.want, "%v %+v", tc.level, tc.p)
		require.Contains(t, err.Error(), tc.msg)
	}
}

func TestParseLevel(t *testing.T) {
	for l := quorum.LevelOne; l <= quorum.LevelEachQuorum; l++ {
		got, err := quorum.ParseLevel(l.String())
		require.NoError(t, err)
		require.Equal(t, l, got)
	}
	got, err := quorum.ParseLevel("local_quorum")
	require.NoError(t, err)
	require.Equal(t, quorum.LevelLocalQuorum, got)
	_, err = quorum.ParseLevel("SERIAL")
	require.ErrorIs(t, err, quorum.ErrInvalid)
	require.Equal(t, "Level(0)", quorum.Level(0).String())
}

// TestLevelModel checks Requirement and Satisfied against Cassandra's
// definitions, written out directly, on random placements and random
// acknowledgement lists (with strangers and repeats).
func TestLevelModel(t *testing.T) {
	for seed := uint64(0); seed < 500; seed++ {
		r := rand.New(rand.NewPCG(seed, 11))
		p := quorum.Placement{Zones: map[string][]string{}, Local: fmt.Sprint("z", r.IntN(4))}
		zoneOf := map[string]string{}
		all := []string{"stranger"}
		for z := range 1 + r.IntN(3) {
			name := fmt.Sprint("z", z)
			for i := range r.IntN(5) {
				id := fmt.Sprintf("%s-r%d", name, i)
				p.Zones[name] = append(p.Zones[name], id)
				zoneOf[id] = name
				all = append(all, id)
			}
		}
		level := quorum.Level(1 + r.IntN(8))
		req, err := level.Requirement(p)
		total := len(zoneOf)
		if total == 0 {
			require.ErrorIs(t, err, quorum.ErrInvalid, "seed %d", seed)
			continue
		}
		local := len(p.Zones[p.Local])
		need := map[quorum.Level]int{quorum.LevelOne: 1, quorum.LevelTwo: 2, quorum.LevelThree: 3, quorum.LevelQuorum: total/2 + 1, quorum.LevelAll: total}
		isLocal := level == quorum.LevelLocalOne || level == quorum.LevelLocalQuorum
		if n, ok := need[level]; ok && n > total || isLocal && local == 0 {
			require.ErrorIs(t, err, quorum.ErrUnavailable, "seed %d", seed)
			continue
		}
		require.NoError(t, err, "seed %d", seed)
		for range 20 {
			var acks []string
			for range r.IntN(2 * len(all)) {
				acks = append(acks, all[r.IntN(len(all))])
			}
			// The model: distinct replicas per zone.
			distinct := map[string]bool{}
			perZone := map[string]int{}
			for _, a := range acks {
				if z, ok := zoneOf[a]; ok && !distinct[a] {
					distinct[a] = true
					perZone[z]++
				}
			}
			var want bool
			switch level {
			case quorum.LevelLocalOne:
				want = perZone[p.Local] >= 1
			case quorum.LevelLocalQuorum:
				want = perZone[p.Local] >= local/2+1
			case quorum.LevelEachQuorum:
				want = true
				for z, rs := range p.Zones {
					want = want && (len(rs) == 0 || perZone[z] >= len(rs)/2+1)
				}
			default:
				want = len(distinct) >= need[level]
			}
			require.Equal(t, want, req.Satisfied(acks), "seed %d: %v over %v, acks %v", seed, level, p, acks)
			if level != quorum.LevelEachQuorum && want {
				require.GreaterOrEqual(t, len(distinct), req.Min(), "seed %d", seed)
			}
		}
		// Gather over Replicas with need Min, and GatherFor for every level,
		// succeed exactly when the replicas that are up satisfy the
		// requirement.
		var up []string
		for id := range zoneOf {
			if r.IntN(3) > 0 {
				up = append(up, id)
			}
		}
		get := func(_ context.Context, id string) (string, error) {
			if slices.Contains(up, id) {
				return id, nil
			}
			return "", errors.New("down")
		}
		gathers := map[string]func() ([]quorum.Reply[string], error){
			"GatherFor": func() ([]quorum.Reply[string], error) { return quorum.GatherFor(context.Background(), req, get) },
		}
		if level != quorum.LevelEachQuorum {
			gathers["Gather"] = func() ([]quorum.Reply[string], error) {
				return quorum.Gather(context.Background(), req.Replicas(), req.Min(), get)
			}
		}
		for name, gather := range gathers {
			rs, err := gather()
			require.Equal(t, req.Satisfied(up), err == nil, "seed %d: %s %v up %v: %v", seed, name, level, up, err)
			if err != nil {
				require.ErrorIs(t, err, quorum.ErrNoQuorum, "seed %d", seed)
				continue
			}
			var acks []string
			for _, rep := range rs {
				if rep.Err == nil {
					acks = append(acks, rep.Replica)
				}
			}
			require.True(t, req.Satisfied(acks), "seed %d: %s", seed, name)
		}
		require.True(t, slices.IsSortedFunc(req.Zones, func(a, b quorum.ZoneNeed) int { return cmp.Compare(a.Zone, b.Zone) }),
			"seed %d: zones in name order", seed)
	}
}

func TestSatisfiedAllocs(t *testing.T) {
	req, err := quorum.LevelEachQuorum.Requirement(twoZones)
	require.NoError(t, err)
	acks := []string{"a", "d", "b", "e"}
	require.Zero(t, testing.AllocsPerRun(100, func() { req.Satisfied(acks) }))
}

func BenchmarkRequirementSatisfied(b *testing.B) {
	req, err := quorum.LevelEachQuorum.Requirement(twoZones)
	require.NoError(b, err)
	acks := []string{"a", "d", "b", "e"}
	b.ReportAllocs()
	for b.Loop() {
		if !req.Satisfied(acks) {
			b.Fatal("not satisfied")
		}
	}
}
