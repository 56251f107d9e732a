package kv

import (
	"cmp"
	"context"
	"time"
)

// Default periods of [Node.Maintain].
const (
	DefaultHandOffEvery     = time.Second
	DefaultAntiEntropyEvery = 5 * time.Second
	DefaultReapEvery        = 10 * time.Second
	DefaultReapAfter        = time.Minute
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

// Maintain runs the node's periodic repair until ctx is done: a pass of
// hinted handoff every HandOffEvery, every AntiEntropyEvery an
// anti-entropy exchange with the next live node of the ring (round
// robin), and every ReapEvery a pass of [Node.Reap] over the keys dead
// and unchanged for longer than ReapAfter. Errors are logged and retried at the next period. It returns
// when ctx is done, after the round in progress ends; it starts no
// goroutine of its own.
func (n *Node) Maintain(ctx context.Context, cfg MaintainConfig) {
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
			if d, err := n.HandOff(ctx); err != nil {
				n.log.Warn("hinted handoff", "delivered", d, "err", err)
			} else if d > 0 {
				n.log.Info("hinted handoff", "delivered", d)
			}
		case <-antiEntropy.C:
			var peers []string
			for _, m := range n.Ring().Nodes() {
				if m.ID != n.id && n.alive(m.ID) {
					peers = append(peers, m.ID)
				}
			}
			if len(peers) == 0 {
				continue
			}
			peer := peers[next%len(peers)]
			next++
			k, moved, err := n.AntiEntropy(ctx, peer)
			if err != nil {
				n.log.Warn("anti-entropy", "peer", peer, "err", err)
			} else if k > 0 {
				n.log.Info("anti-entropy", "peer", peer, "repaired", k, "bytes", moved)
			}
		case now := <-reapC:
			if k, err := n.Reap(ctx, now.Add(-grace)); err != nil {
				n.log.Warn("reap", "reaped", k, "err", err)
			} else if k > 0 {
				n.log.Info("reap", "reaped", k)
			}
		}
	}
}
