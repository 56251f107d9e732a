package detector_test

import (
	"cmp"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/distkit/distkit/detector"
)

var long = flag.Bool("long", false, "run the cluster simulation over many more seeds")

// arrival is one heartbeat reaching the monitoring node.
type arrival struct {
	at   time.Duration // virtual time since the start
	node int
}

// Cluster shape for the simulation: heartbeats every second from 50 nodes
// over a jittery network, checked ten times a second; node 0 crashes.
const (
	simNodes    = 50
	simInterval = time.Second
	simCheck    = 100 * time.Millisecond
	simDuration = 5 * time.Minute
	simCrash    = 4 * time.Minute // node 0 sends nothing from here on
)

// heartbeats returns every heartbeat arrival of a seeded run, in order of
// arrival. Each node sends every simInterval from a random phase, its
// sends jittered by ±20ms. The network delays each heartbeat by 1ms plus an
// exponential delay whose mean is the node's own, between 5ms and 150ms,
// and loses 1% of them. Once in 300 heartbeats (every five minutes or so)
// a sender stalls for 0.5s to 6s, a GC pause: it sends nothing meanwhile,
// then one heartbeat at the end.
func heartbeats(seed uint64) []arrival {
	r := rand.New(rand.NewPCG(seed, 5))
	var out []arrival
	for n := range simNodes {
		noise := 5*time.Millisecond + time.Duration(r.Int64N(int64(145*time.Millisecond)))
		send := time.Duration(r.Int64N(int64(simInterval)))
		for send < simDuration && (n != 0 || send < simCrash) {
			at := max(send+time.Duration(r.Int64N(int64(40*time.Millisecond)))-20*time.Millisecond, 0)
			if r.IntN(300) == 0 {
				stall := 500*time.Millisecond + time.Duration(r.Int64N(int64(5500*time.Millisecond)))
				at += stall
				send += stall.Truncate(simInterval)
			}
			if r.IntN(100) != 0 {
				delay := time.Millisecond + time.Duration(r.ExpFloat64()*float64(noise))
				out = append(out, arrival{at: at + delay, node: n})
			}
			send += simInterval
		}
	}
	slices.SortStableFunc(out, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	return out
}

// simResult is what one detector kind did in one run.
type simResult struct {
	latency        time.Duration // from node 0's last heartbeat to its suspicion; -1: never
	falseEpisodes  int           // a live node going from trusted to suspected
	falseSuspected time.Duration // summed time live nodes spent suspected
}

// simulate replays arrivals into a registry of detectors from newDetector,
// checking for suspects every simCheck.
func simulate[D detector.Detector](arrivals []arrival, newDetector func() D) simResult {
	reg := detector.NewRegistry(newDetector, detector.RegistryConfig{})
	ids := make([]string, simNodes)
	index := make(map[string]int, simNodes)
	for n := range ids {
		ids[n] = fmt.Sprintf("node-%02d", n)
		index[ids[n]] = n
	}
	res := simResult{latency: -1}
	var lastOfCrashed time.Duration
	was, is := make([]bool, simNodes), make([]bool, simNodes)
	var dst []string
	next := 0
	for now := simCheck; now <= simDuration; now += simCheck {
		for ; next < len(arrivals) && arrivals[next].at <= now; next++ {
			a := arrivals[next]
			reg.Heartbeat(ids[a.node], t0.Add(a.at))
			if a.node == 0 {
				lastOfCrashed = max(lastOfCrashed, a.at)
			}
		}
		dst = reg.AppendSuspects(dst[:0], t0.Add(now))
		clear(is)
		for _, id := range dst {
			is[index[id]] = true
		}
		if is[0] && now >= simCrash && res.latency < 0 {
			res.latency = now - lastOfCrashed
		}
		for n := 1; n < simNodes; n++ {
			if is[n] {
				res.falseSuspected += simCheck
				if !was[n] {
					res.falseEpisodes++
				}
			}
		}
		was, is = is, was
	}
	return res
}

// TestClusterSimulation compares the detectors on the same seeded
// heartbeat traces. Phi and Timeout get Akka Cluster's settings for a 1s
// heartbeat (a 3s acceptable pause; a deadline of 1s + 3s), Phi also
// Akka's plain defaults (no pause), and Exponential Cassandra's defaults. It reports detection latency and false positives
// side by side and asserts that they are sane: the crashed node is always
// detected, by the accrual detectors no sooner than a heartbeat interval
// and by Phi and Timeout within their pause budget, and the live nodes are
// suspected rarely.
func TestClusterSimulation(t *testing.T) {
	seeds := uint64(3)
	if *long {
		seeds = 50
	}
	kinds := []struct {
		name string
		run  func([]arrival) simResult
	}{
		{"phi", func(a []arrival) simResult {
			return simulate(a, func() *detector.Phi {
				return detector.NewPhi(detector.PhiConfig{AcceptablePause: 3 * time.Second})
			})
		}},
		{"phi, no pause", func(a []arrival) simResult {
			return simulate(a, func() *detector.Phi { return detector.NewPhi(detector.PhiConfig{}) })
		}},
		{"exponential", func(a []arrival) simResult {
			return simulate(a, func() *detector.Exponential { return detector.NewExponential(detector.ExponentialConfig{}) })
		}},
		{"timeout", func(a []arrival) simResult {
			return simulate(a, func() *detector.Timeout { return detector.NewTimeout(4 * time.Second) })
		}},
	}
	type total struct {
		maxLatency, sumLatency time.Duration
		episodes               int
		suspected              time.Duration
	}
	totals := make([]total, len(kinds))
	for seed := range seeds {
		arrivals := heartbeats(seed)
		for k, kind := range kinds {
			res := kind.run(arrivals)
			if res.latency < 0 {
				t.Fatalf("seed %d: %s never detected the crashed node", seed, kind.name)
			}
			tot := &totals[k]
			tot.maxLatency = max(tot.maxLatency, res.latency)
			tot.sumLatency += res.latency
			tot.episodes += res.falseEpisodes
			tot.suspected += res.falseSuspected
		}
	}
	liveTime := time.Duration(seeds) * (simNodes - 1) * simDuration
	t.Logf("%d seeds × %d nodes × %v, heartbeat %v, checks every %v", seeds, simNodes, simDuration, simInterval, simCheck)
	t.Logf("%-14s %14s %14s %16s %18s", "detector", "mean latency", "max latency", "false episodes", "false-suspect time")
	for k, kind := range kinds {
		tot := totals[k]
		t.Logf("%-14s %14v %14v %16d %17.4f%%", kind.name, tot.sumLatency/time.Duration(seeds), tot.maxLatency,
			tot.episodes, 100*float64(tot.suspected)/float64(liveTime))
	}
	phi, noPause, exp, timeout := totals[0], totals[1], totals[2], totals[3]
	for k, tot := range totals {
		if kinds[k].name != "phi, no pause" {
			require.Less(t, float64(tot.suspected)/float64(liveTime), 0.01, "%s: live nodes suspected over 1%% of the time", kinds[k].name)
		}
	}
	// Without an acceptable pause, Phi is tuned to the network's jitter
	// alone: fast, and fooled by every lost heartbeat.
	require.Less(t, noPause.maxLatency, phi.maxLatency)
	require.Greater(t, noPause.episodes, phi.episodes)
	// Phi: at least one missed interval, at most the mean, the pause and a
	// few standard deviations of the noisiest node.
	require.Greater(t, phi.sumLatency/time.Duration(seeds), simInterval+3*time.Second)
	require.Less(t, phi.maxLatency, 8*time.Second)
	// Timeout: the deadline, seen at the next check.
	require.LessOrEqual(t, timeout.maxLatency, 4*time.Second+simCheck)
	require.Greater(t, timeout.sumLatency/time.Duration(seeds), 4*time.Second)
	// Exponential: 8·ln 10 ≈ 18.4 mean intervals, a little over a second each.
	require.Greater(t, exp.sumLatency/time.Duration(seeds), 18*time.Second)
	require.Less(t, exp.maxLatency, 25*time.Second)
	require.LessOrEqual(t, exp.episodes, min(phi.episodes, timeout.episodes), "the slowest detector is the most forgiving")
}
