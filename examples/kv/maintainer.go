package kv

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/distkit/distkit/ring"
)

// maintainer owns a node's background repair: hinted handoff,
// anti-entropy exchanges, tombstone reaping, and the rebalance after a
// ring change. It reaches the other nodes only through peers and places
// copies through the replicator; the placement it works under is the one
// place returns when a pass begins. It is safe for concurrent use.
type maintainer struct {
	self     string
	peers    peers
	store    *Store
	rep      *replicator
	mover    *mover
	place    func() *placement
	timeout  time.Duration
	cfg      RepairConfig // with its defaults
	aeRate   throttle     // the bandwidth of anti-entropy
	stats    *nodeStats
	progress *progress
	onReap   func(key []byte, tombstone Object)
	log      *slog.Logger
	metrics  *Metrics // nil: none

	reapMu   sync.Mutex // guards reapFrom
	reapFrom []byte     // the data key the next pass of reap starts at; nil: the first
}

// Default periods of [Node.Maintain].
const (
	DefaultHandOffEvery     = time.Second
	DefaultAntiEntropyEvery = 5 * time.Second
	DefaultReapEvery        = 10 * time.Second
	// DefaultReapAfter is ten times [AuthWindow], so that a recorded
	// replica RPC cannot be replayed after the tombstones it predates
	// were reaped.
	DefaultReapAfter = 10 * AuthWindow
)

// MaintainConfig sets the periods of [Node.Maintain]; zero fields take
// the defaults. It is a plain value.
type MaintainConfig struct {
	HandOffEvery     time.Duration // 0: DefaultHandOffEvery
	AntiEntropyEvery time.Duration // 0: DefaultAntiEntropyEvery
	ReapEvery        time.Duration // 0: DefaultReapEvery
	// ReapAfter is how long a key stays dead, its tombstones unchanged,
	// before they are reaped (the grace period of [Node.Reap]); 0: DefaultReapAfter;
	// negative: tombstones are kept forever.
	ReapAfter time.Duration
}

// run is [Node.Maintain].
func (m *maintainer) run(ctx context.Context, cfg MaintainConfig) {
	var wg sync.WaitGroup
	defer wg.Wait()
	// Exchanges run on their own: a long one (a replica that lost its
	// disk, a throttled repair) holds back neither handoff nor reaping.
	wg.Go(func() { m.antiEntropyLoop(ctx, cmp.Or(cfg.AntiEntropyEvery, DefaultAntiEntropyEvery)) })
	handOff := time.NewTicker(cmp.Or(cfg.HandOffEvery, DefaultHandOffEvery))
	defer handOff.Stop()
	var reapC <-chan time.Time // nil: never
	grace := cmp.Or(cfg.ReapAfter, DefaultReapAfter)
	if grace > 0 {
		reap := time.NewTicker(cmp.Or(max(cfg.ReapEvery, 0), DefaultReapEvery))
		defer reap.Stop()
		reapC = reap.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-handOff.C:
			if d, err := m.handOff(ctx); err != nil {
				m.log.Warn("hinted handoff", "delivered", d, "err", err)
			} else if d > 0 {
				m.log.Info("hinted handoff", "delivered", d)
			}
		case now := <-reapC:
			if k, err := m.reap(ctx, now.Add(-grace)); err != nil {
				m.log.Warn("reap", "reaped", k, "err", err)
			} else if k > 0 {
				m.log.Info("reap", "reaped", k)
			}
		}
	}
}

// antiEntropyLoop runs an exchange every period with the next live node
// of the ring, round robin, until ctx is done; each exchange logs its
// progress and its outcome.
func (m *maintainer) antiEntropyLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var peers []string
		for _, x := range m.place().ring.Nodes() {
			if x.ID != m.self && m.peers.Alive(x.ID) {
				peers = append(peers, x.ID)
			}
		}
		if len(peers) == 0 {
			continue
		}
		peer := peers[next%len(peers)]
		next++
		_, _, _ = m.antiEntropy(ctx, peer)
	}
}

// handOffBatch is how many hints a pass of handoff sends per target, at
// most.
const handOffBatch = 256

// handOff is [Node.HandOff].
func (m *maintainer) handOff(ctx context.Context) (int, error) {
	targets, err := m.store.Hints().Targets()
	if err != nil {
		return 0, err
	}
	p := m.place()
	delivered := 0
	var errs []error
	for _, t := range targets {
		// At most one page a pass per target: its memory is bounded by
		// the page, not by the hints held.
		hints, err := m.store.Hints().page(t, nil, m.cfg.PageBytes)
		if err != nil {
			return delivered, err
		}
		alive, stranded := p.has(t) && m.peers.Alive(t), 0
		for _, it := range hints.items[:min(len(hints.items), handOffBatch)] {
			h := it.Entry
			if !slices.Contains(p.home(h.Key), t) {
				// The ring changed since the hint was taken: t is no
				// longer a home replica of the key (or no longer in the
				// ring), so the key's current replicas take it instead.
				ok, err := m.rep.passOn(ctx, p, t, h)
				if err != nil {
					return delivered, err
				}
				if !ok {
					stranded++
					continue
				}
				delivered++
				m.stats.hintsDelivered.Add(1)
				continue
			}
			if !alive {
				continue
			}
			if err := m.rep.send(ctx, t, h); err != nil {
				errs = append(errs, fmt.Errorf("kv: handoff to %s: %w", t, err))
				alive = false // the rest wait for the next pass
				continue
			}
			dropped, err := m.store.Hints().Drop(t, h.Key, h.Object)
			if err != nil {
				return delivered, err
			}
			if dropped {
				delivered++
				m.stats.hintsDelivered.Add(1)
			}
		}
		if stranded > 0 {
			errs = append(errs, fmt.Errorf("kv: %d hints held for %s, no longer their keys' replica, found no current replica", stranded, t))
		}
	}
	return delivered, errors.Join(errs...)
}

// rebalance is [Node.Rebalance] from the placement from to to.
func (m *maintainer) rebalance(ctx context.Context, from, to *placement) (int, error) {
	moves := ring.ReplicaMoves(from.ring, to.ring, to.n)
	if len(moves) == 0 {
		return 0, nil
	}
	moveOf := func(key []byte) int {
		h := ring.KeyHash(key)
		return slices.IndexFunc(moves, func(mv ring.ReplicaMove) bool { return mv.Contains(h) })
	}
	var (
		mu     sync.Mutex // guards failed and first
		failed int
		first  error
	)
	sent, err := m.mover.each(ctx, &m.progress.rebalance, func(key []byte) bool { return moveOf(key) >= 0 }, func(it item) int {
		mv := moves[moveOf(it.Key)]
		var targets []string
		for _, id := range mv.To {
			if id != m.self && !slices.Contains(mv.From, id) {
				targets = append(targets, id)
			}
		}
		if len(targets) == 0 || m.mover.rate.wait(ctx, it.size()*len(targets)) != nil {
			return 0
		}
		_, fallbacks := to.of(it.Key)
		taken, errs := m.rep.place(ctx, it.Key, it.Object, targets, without(fallbacks, m.self))
		mu.Lock()
		defer mu.Unlock()
		for _, id := range targets {
			if err, ok := errs[id]; ok {
				if failed++; first == nil {
					first = fmt.Errorf("kv: rebalance of %q to %s: %w", it.Key, id, err)
				}
			}
		}
		return len(taken)
	})
	if err == nil && failed > 0 {
		err = fmt.Errorf("%d copies not sent, the first: %w", failed, first)
	}
	return sent, err
}

// reapBatch is how many due tombstones a pass of reaping takes.
const reapBatch = 1024

// reap is [Node.Reap].
func (m *maintainer) reap(ctx context.Context, before time.Time) (int, error) {
	m.reapMu.Lock()
	from := m.reapFrom
	m.reapMu.Unlock()
	p := m.place()
	due, next, err := m.store.tombstonesFrom(from, before, func(key []byte) bool { return p.home(key)[0] == m.self }, reapBatch)
	if err != nil {
		return 0, err
	}
	reaped := 0
	for _, e := range due {
		ok, err := m.reapKey(ctx, p, e)
		if err != nil {
			m.setReapFrom(m.store.after(e.Key)) // the next pass goes on after it
			return reaped, fmt.Errorf("kv: reap of %q: %w", e.Key, err)
		}
		if ok {
			reaped++
		}
	}
	m.setReapFrom(next)
	return reaped, nil
}

// setReapFrom sets where the next pass of reaping starts.
func (m *maintainer) setReapFrom(from []byte) {
	m.reapMu.Lock()
	m.reapFrom = from
	m.reapMu.Unlock()
}

// reapKey reaps e's key, whose first home replica in p this node is, on
// every home replica in p if every replica and fallback agrees, and
// reports whether it did.
func (m *maintainer) reapKey(ctx context.Context, p *placement, e Entry) (bool, error) {
	home, fallbacks := p.of(e.Key)
	home = without(home, m.self)
	others := slices.Concat(home, without(fallbacks, m.self))
	if slices.ContainsFunc(others, func(id string) bool { return !m.peers.Alive(id) }) {
		return false, nil // it may hold a stale copy or a hint
	}
	ask := func(o op, to string) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, m.timeout)
		defer cancel()
		resp, err := m.peers.call(ctx, to, &request{Op: o, Key: e.Key, Object: e.Object})
		return resp.Found, err
	}
	for _, to := range others {
		if ok, err := ask(opReapable, to); err != nil || !ok {
			return false, err
		}
	}
	for _, to := range home {
		if ok, err := ask(opReap, to); err != nil || !ok {
			return false, err
		}
	}
	return m.reapLocal(e.Key, e.Object)
}

// reapLocal reaps key's dead object o from this node's store and reports
// whether the key is now absent here.
func (m *maintainer) reapLocal(key []byte, o Object) (bool, error) {
	reaped, err := m.store.Reap(key, o)
	if err != nil {
		return false, err
	}
	if reaped {
		m.stats.tombstonesReaped.Add(1)
		if m.onReap != nil {
			m.onReap(key, o)
		}
		return true, nil
	}
	_, found, err := m.store.Get(key)
	return !found, err
}
