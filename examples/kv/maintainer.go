package kv

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/merkle"
	"github.com/distkit/distkit/ring"
)

// maintainer owns a node's background repair: hinted handoff,
// anti-entropy exchanges, tombstone reaping, and the rebalance after a
// ring change. It reaches the other nodes only through peers and places
// copies through the replicator; the placement it works under is the one
// place returns when a pass begins. It is safe for concurrent use.
type maintainer struct {
	self    string
	peers   peers
	store   *Store
	rep     *replicator
	place   func() *placement
	timeout time.Duration
	stats   *nodeStats
	onReap  func(key []byte, tombstone Object)
	log     *slog.Logger
	metrics *Metrics // nil: none

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
	handOff := time.NewTicker(cmp.Or(cfg.HandOffEvery, DefaultHandOffEvery))
	defer handOff.Stop()
	antiEntropy := time.NewTicker(cmp.Or(cfg.AntiEntropyEvery, DefaultAntiEntropyEvery))
	defer antiEntropy.Stop()
	var reapC <-chan time.Time // nil: never
	grace := cmp.Or(cfg.ReapAfter, DefaultReapAfter)
	if grace > 0 {
		reap := time.NewTicker(cmp.Or(max(cfg.ReapEvery, 0), DefaultReapEvery))
		defer reap.Stop()
		reapC = reap.C
	}
	next := 0
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
		case <-antiEntropy.C:
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
			k, moved, err := m.antiEntropy(ctx, peer)
			if err != nil {
				m.log.Warn("anti-entropy", "peer", peer, "err", err)
			} else if k > 0 {
				m.log.Info("anti-entropy", "peer", peer, "repaired", k, "bytes", moved)
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

// handOffBatch is how many hints a pass of handoff sends per target.
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
		hints, err := m.store.Hints().For(t, handOffBatch)
		if err != nil {
			return delivered, err
		}
		alive, stranded := p.has(t) && m.peers.Alive(t), 0
		for _, h := range hints {
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

// antiEntropy is [Node.AntiEntropy].
func (m *maintainer) antiEntropy(ctx context.Context, peer string) (repaired, moved int, err error) {
	defer m.metrics.exchanged(peer, time.Now(), &repaired, &moved, &err)
	for _, g := range m.place().groups {
		if ids := strings.Split(g, ","); !slices.Contains(ids, peer) || !slices.Contains(ids, m.self) {
			continue
		}
		k, b, err := m.exchange(ctx, peer, g)
		repaired, moved = repaired+k, moved+b
		if err != nil {
			return repaired, moved, fmt.Errorf("kv: anti-entropy with %s: %w", peer, err)
		}
	}
	m.stats.keysRepaired.Add(int64(repaired))
	return repaired, moved, nil
}

// exchange repairs group g with peer.
func (m *maintainer) exchange(ctx context.Context, peer, g string) (repaired, moved int, err error) {
	res, err := merkle.Diff(ctx, m.store.Trees().Tree(g), merkle.PeerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		resp, err := m.peers.call(ctx, peer, &request{Op: opTree, Group: g, Tree: req})
		return resp.Tree, err
	}))
	if err != nil || len(res.Segments) == 0 {
		return 0, res.Bytes, err
	}
	mine, err := m.store.Scan(g, res.Segments)
	if err != nil {
		return 0, res.Bytes, err
	}
	resp, err := m.peers.call(ctx, peer, &request{Op: opScan, Group: g, Segments: res.Segments})
	if err != nil {
		return 0, res.Bytes, err
	}
	theirs := make(map[string][]byte, len(resp.Entries))
	for _, e := range resp.Entries {
		enc, err := EncodeObject(e.Object)
		if err != nil {
			return 0, res.Bytes, err
		}
		theirs[string(e.Key)] = enc
	}
	held := make(map[string]bool, len(mine))
	for _, e := range mine {
		held[string(e.Key)] = true
		enc, err := EncodeObject(e.Object)
		if err != nil {
			return repaired, res.Bytes, err
		}
		if t, ok := theirs[string(e.Key)]; ok && bytes.Equal(t, enc) {
			delete(theirs, string(e.Key))
			continue
		}
		if err := m.rep.send(ctx, peer, e); err != nil {
			return repaired, res.Bytes, err
		}
		repaired++
	}
	for _, e := range resp.Entries {
		if _, ok := theirs[string(e.Key)]; !ok {
			continue
		}
		if _, err := m.store.Merge(e.Key, e.Object); err != nil {
			return repaired, res.Bytes, err
		}
		if !held[string(e.Key)] {
			repaired++ // a key this node lacked; one it held differently was counted above
		}
	}
	return repaired, res.Bytes, nil
}

// rebalance is [Node.Rebalance] from the placement from to to.
func (m *maintainer) rebalance(ctx context.Context, from, to *placement) (int, error) {
	moves := ring.ReplicaMoves(from.ring, to.ring, to.n)
	keys, err := m.moved(moves)
	if err != nil {
		return 0, err
	}
	sent, failed := 0, 0
	var first error
	for _, k := range keys {
		mv := moves[k.move]
		var targets []string
		for _, id := range mv.To {
			if id != m.self && !slices.Contains(mv.From, id) {
				targets = append(targets, id)
			}
		}
		if len(targets) == 0 {
			continue
		}
		_, fallbacks := to.of(k.Key)
		taken, errs := m.rep.place(ctx, k.Key, k.Object, targets, without(fallbacks, m.self))
		sent += len(taken)
		for _, id := range targets {
			if err, ok := errs[id]; ok {
				if failed++; first == nil {
					first = fmt.Errorf("kv: rebalance of %q to %s: %w", k.Key, id, err)
				}
			}
		}
	}
	if failed > 0 {
		return sent, fmt.Errorf("%d copies not sent, the first: %w", failed, first)
	}
	return sent, nil
}

// movedKey is a key this node holds in a range of a plan, with its object
// and the index of its move.
type movedKey struct {
	Entry
	move int
}

// moved lists the keys this node holds whose hash lies in one of moves,
// in memory, with one scan of the store.
func (m *maintainer) moved(moves []ring.ReplicaMove) ([]movedKey, error) {
	if len(moves) == 0 {
		return nil, nil
	}
	var out []movedKey
	err := m.store.All(func(key []byte, o Object) error {
		h := ring.KeyHash(key)
		if i := slices.IndexFunc(moves, func(mv ring.ReplicaMove) bool { return mv.Contains(h) }); i >= 0 {
			out = append(out, movedKey{Entry{Key: slices.Clone(key), Object: o.Clone()}, i})
		}
		return nil
	})
	return out, err
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
