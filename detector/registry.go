package detector

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Detector is a heartbeat failure detector for one monitored node, the
// interface a [Registry] is generic over. [Phi], [Exponential] and
// [Timeout] implement it. Implementations must be safe for concurrent use.
type Detector interface {
	// Heartbeat records a heartbeat from the node that arrived at now.
	Heartbeat(now time.Time)
	// Phi returns the suspicion level at now: 0 before the first
	// heartbeat, non-decreasing while no heartbeat arrives, never NaN.
	Phi(now time.Time) float64
	// Available reports whether the node is trusted at now.
	Available(now time.Time) bool
}

var (
	_ Detector = (*Phi)(nil)
	_ Detector = (*Exponential)(nil)
	_ Detector = (*Timeout)(nil)
)

// defaultMaxLocalPause is Cassandra's default max_local_pause.
const defaultMaxLocalPause = 5 * time.Second

// RegistryConfig configures a [Registry]. The zero value means the
// defaults.
type RegistryConfig struct {
	// MaxLocalPause is the local-pause guard: the longest gap between two
	// ticks of the registry's own process (see [Registry.Tick]) that is
	// taken for normal scheduling. A longer gap means the local process
	// was itself stopped (a GC stall, a frozen VM), so that the silence of
	// the other nodes is its own fault; suspicions are then withheld for
	// MaxLocalPause after the gap is seen, while the heartbeats that queued
	// up arrive. 0: 5s, Cassandra's default. Negative: no guard.
	MaxLocalPause time.Duration
}

// Registry monitors a whole cluster: one detector of kind D per node,
// created by the registry's constructor function at the node's first
// heartbeat, and a local-pause guard over all of them, as in Cassandra's
// FailureDetector.
//
// A Registry is safe for concurrent use: heartbeats for different nodes
// proceed in parallel. There is no useful zero value; use [NewRegistry].
type Registry[D Detector] struct {
	newDetector func() D

	mu    sync.RWMutex
	nodes []entry[D]     // in no particular order
	index map[string]int // node ID to its position in nodes

	guardMu   sync.Mutex
	maxPause  time.Duration // ≤ 0: no guard
	lastTick  time.Time
	ticked    bool
	pausedAt  time.Time // when the last local pause was seen
	hasPaused bool
}

type entry[D Detector] struct {
	id string
	d  D
}

// NewRegistry returns an empty registry that makes each node's detector
// with newDetector, for example
//
//	detector.NewRegistry(func() *detector.Phi { return detector.NewPhi(cfg) }, detector.RegistryConfig{})
//
// It panics if newDetector is nil.
func NewRegistry[D Detector](newDetector func() D, cfg RegistryConfig) *Registry[D] {
	if newDetector == nil {
		panic("detector: NewRegistry with a nil detector constructor")
	}
	return &Registry[D]{
		newDetector: newDetector,
		index:       make(map[string]int),
		maxPause:    cmp.Or(cfg.MaxLocalPause, defaultMaxLocalPause),
	}
}

// Heartbeat records a heartbeat from node id that arrived at now, starting
// to monitor the node if it is new (or was removed). It allocates only for
// a new node.
func (r *Registry[D]) Heartbeat(id string, now time.Time) {
	r.mu.RLock()
	i, ok := r.index[id]
	if ok {
		r.nodes[i].d.Heartbeat(now)
		r.mu.RUnlock()
		return
	}
	r.mu.RUnlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok = r.index[id]
	if !ok {
		i = len(r.nodes)
		r.nodes = append(r.nodes, entry[D]{id: id, d: r.newDetector()})
		r.index[id] = i
	}
	r.nodes[i].d.Heartbeat(now)
}

// Phi returns node id's suspicion level at now, and false if the node is
// not monitored. The local-pause guard does not apply: Phi is the
// detector's raw level, for metrics and custom policies.
func (r *Registry[D]) Phi(id string, now time.Time) (float64, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	i, ok := r.index[id]
	if !ok {
		return 0, false
	}
	return r.nodes[i].d.Phi(now), true
}

// Remove stops monitoring node id, forgetting its history. It reports
// whether the node was monitored.
func (r *Registry[D]) Remove(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	i, ok := r.index[id]
	if !ok {
		return false
	}
	last := len(r.nodes) - 1
	if i != last {
		r.nodes[i] = r.nodes[last]
		r.index[r.nodes[i].id] = i
	}
	r.nodes[last] = entry[D]{}
	r.nodes = r.nodes[:last]
	delete(r.index, id)
	return true
}

// Len returns the number of monitored nodes.
func (r *Registry[D]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.nodes)
}

// Tick tells the registry that its own process ran at now, and reports
// whether suspicions are withheld at now by the local-pause guard: a gap
// of more than MaxLocalPause since the previous tick withholds them for
// MaxLocalPause from now. [Registry.Suspects] and [Registry.AppendSuspects]
// tick too, so a process that checks for suspects at least every
// MaxLocalPause needs no other ticks. Ticks out of order (an earlier now
// than the latest) never start a pause.
func (r *Registry[D]) Tick(now time.Time) (withheld bool) {
	if r.maxPause <= 0 {
		return false
	}
	r.guardMu.Lock()
	defer r.guardMu.Unlock()
	if r.ticked && now.Sub(r.lastTick) > r.maxPause {
		r.pausedAt, r.hasPaused = now, true
	}
	if !r.ticked || now.After(r.lastTick) {
		r.lastTick, r.ticked = now, true
	}
	return r.hasPaused && now.Sub(r.pausedAt) < r.maxPause
}

// Suspects ticks (see [Registry.Tick]) and returns the IDs of the nodes
// whose detectors are not available at now, sorted; none while the
// local-pause guard withholds suspicions.
func (r *Registry[D]) Suspects(now time.Time) []string {
	return r.AppendSuspects(nil, now)
}

// AppendSuspects is [Registry.Suspects] appending to dst: with enough
// capacity in dst it allocates nothing.
func (r *Registry[D]) AppendSuspects(dst []string, now time.Time) []string {
	if r.Tick(now) {
		return dst
	}
	start := len(dst)
	r.mu.RLock()
	for i := range r.nodes {
		if !r.nodes[i].d.Available(now) {
			dst = append(dst, r.nodes[i].id)
		}
	}
	r.mu.RUnlock()
	slices.Sort(dst[start:])
	return dst
}
