package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/distkit/distkit/merkle"
	"github.com/distkit/distkit/ring"
)

// handOffBatch is how many hints HandOff sends per target and round.
const handOffBatch = 256

// HandOff makes one pass of hinted handoff: it sends the hints held for
// every live target back to it, and drops each hint the target took (and
// that did not grow meanwhile). Hints for a node no longer in the ring
// (one that left) go to their keys' replicas instead. It returns how many hints it delivered,
// and the errors of the targets that failed, joined; a failed hint stays
// for the next pass. Call it periodically.
func (n *Node) HandOff(ctx context.Context) (int, error) {
	targets, err := n.store.Hints().Targets()
	if err != nil {
		return 0, err
	}
	delivered := 0
	var errs []error
	for _, t := range targets {
		if !inRing(n.Ring(), t) {
			k, err := n.rehome(ctx, t)
			delivered += k
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if !n.alive(t) {
			continue
		}
		hints, err := n.store.Hints().For(t, handOffBatch)
		if err != nil {
			return delivered, err
		}
		for _, h := range hints {
			if err := n.send(ctx, t, h); err != nil {
				errs = append(errs, fmt.Errorf("kv: handoff to %s: %w", t, err))
				break
			}
			dropped, err := n.store.Hints().Drop(t, h.Key, h.Object)
			if err != nil {
				return delivered, err
			}
			if dropped {
				delivered++
				n.stats.hintsDelivered.Add(1)
			}
		}
	}
	return delivered, errors.Join(errs...)
}

// send writes e to node to as a home replica, within the node's timeout.
func (n *Node) send(ctx context.Context, to string, e Entry) error {
	ctx, cancel := context.WithTimeout(ctx, n.timeout)
	defer cancel()
	_, err := n.call(ctx, to, &request{Op: opWrite, Key: e.Key, Object: e.Object})
	return err
}

// AntiEntropy runs one exchange with peer over every replica set of the
// ring that holds both: a [merkle.Diff] of their trees finds
// the dirty segments, both sides list those segments' keys, and each key
// whose objects differ is synced both ways. It returns the number of keys
// repaired and the exchange's bytes, and stops at the first error.
func (n *Node) AntiEntropy(ctx context.Context, peer string) (repaired, moved int, err error) {
	for _, g := range *n.groups.Load() {
		if !slices.Contains(strings.Split(g, ","), peer) || !slices.Contains(strings.Split(g, ","), n.id) {
			continue
		}
		k, b, err := n.exchange(ctx, peer, g)
		repaired, moved = repaired+k, moved+b
		if err != nil {
			return repaired, moved, fmt.Errorf("kv: anti-entropy with %s: %w", peer, err)
		}
	}
	n.stats.keysRepaired.Add(int64(repaired))
	return repaired, moved, nil
}

// exchange repairs group g with peer.
func (n *Node) exchange(ctx context.Context, peer, g string) (repaired, moved int, err error) {
	res, err := merkle.Diff(ctx, n.store.Trees().Tree(g), merkle.PeerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		resp, err := n.call(ctx, peer, &request{Op: opTree, Group: g, Tree: req})
		return resp.Tree, err
	}))
	if err != nil || len(res.Segments) == 0 {
		return 0, res.Bytes, err
	}
	mine, err := n.store.Scan(g, res.Segments)
	if err != nil {
		return 0, res.Bytes, err
	}
	resp, err := n.call(ctx, peer, &request{Op: opScan, Group: g, Segments: res.Segments})
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
		if err := n.send(ctx, peer, e); err != nil {
			return repaired, res.Bytes, err
		}
		repaired++
	}
	for _, e := range resp.Entries {
		if _, ok := theirs[string(e.Key)]; !ok {
			continue
		}
		if _, err := n.store.Merge(e.Key, e.Object); err != nil {
			return repaired, res.Bytes, err
		}
		if !held[string(e.Key)] {
			repaired++ // a key this node lacked; one it held differently was counted above
		}
	}
	return repaired, res.Bytes, nil
}

// Rebalance streams the keys this node holds whose replica set differs
// between the ring from and the node's current ring ([ring.ReplicaMoves])
// to the nodes that became their replicas, and returns how many copies it
// sent. Call it on every node of the old ring (a node leaving the ring
// included) after [Node.SetRing]. It keeps its own copies: a node never
// drops a key it held, so the dots it coordinates stay unique should it
// own the key again. It lists the keys to send in memory, with one scan
// of the store, and sends them one by one; a new replica that is down or
// fails gets its copy through a fallback with a hint, as a write would.
// It returns how many copies no node took, with the first failure, as an
// error; those keys still have their other replicas, and anti-entropy
// completes them.
func (n *Node) Rebalance(ctx context.Context, from *ring.Ring) (int, error) {
	moves := ring.ReplicaMoves(from, n.Ring(), n.quorum.N)
	keys, err := n.moved(moves)
	if err != nil {
		return 0, err
	}
	sent, failed := 0, 0
	var first error
	for _, k := range keys {
		m := moves[k.move]
		_, fallbacks := n.placement(k.Key)
		rep := &replication{n: n, key: k.Key, o: k.Object, fallbacks: without(fallbacks, n.id)}
		for _, to := range m.To {
			if to == n.id || slices.Contains(m.From, to) {
				continue
			}
			if err := rep.send(ctx, to); err != nil {
				if failed++; first == nil {
					first = fmt.Errorf("kv: rebalance of %q to %s: %w", k.Key, to, err)
				}
				continue
			}
			sent++
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
func (n *Node) moved(moves []ring.ReplicaMove) ([]movedKey, error) {
	if len(moves) == 0 {
		return nil, nil
	}
	var out []movedKey
	err := n.store.All(func(key []byte, o Object) error {
		h := ring.KeyHash(key)
		if i := slices.IndexFunc(moves, func(m ring.ReplicaMove) bool { return m.Contains(h) }); i >= 0 {
			out = append(out, movedKey{Entry{Key: slices.Clone(key), Object: o.Clone()}, i})
		}
		return nil
	})
	return out, err
}
