package swim

import (
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/distkit/distkit/internal/minheap"
	"time"
)

// Replay protection within one key.
//
// GCM proves that a packet was sealed under a cluster key, not when, nor
// that it was not delivered before: a captured packet (an alive message
// of a member long gone, say) opens as well later. So every sealed packet
// carries, inside the ciphertext, the time it was sealed, and a receiver
// accepts it only within Config.ReplayWindow of its own clock, and only
// once: it remembers the nonce of every packet it accepted until the
// packet's time leaves the window. The memory is bounded (replayCacheSize
// nonces); when it is full, the oldest nonce is forgotten and every
// packet sealed at or before its time is refused from then on (the
// cache's floor), so no replay is ever accepted, at the cost of refusing
// honest packets older than the floor under a flood of packets.

// ErrReplay is returned (wrapped) by [Core.Receive] for a sealed packet
// that opens but was accepted before, or was sealed further than
// Config.ReplayWindow from the receiver's clock; it is dropped, counted in
// [Stats].Replayed or [Stats].Stale, and changes nothing.
var ErrReplay = errors.New("swim: replayed or stale packet")

// stampLen is the length of a sealed packet's time: Unix nanoseconds,
// big-endian, below 2^63.
const stampLen = 8

// replayCacheSize bounds the nonces a core remembers: 64 bytes each at
// most, 512 KiB in all. With the default ReplayWindow, a nonce is kept up
// to a minute, so the floor starts refusing packets only above about 130
// packets a second sustained.
const replayCacheSize = 8192

// stamp appends the sealing time of a packet to dst.
func stamp(dst []byte, now time.Time) []byte {
	return binary.BigEndian.AppendUint64(dst, uint64(max(now.UnixNano(), 0)))
}

// replayCache remembers the nonces of the sealed packets a core accepted
// whose time is within the window. The zero value is empty.
type replayCache struct {
	seen  map[[nonceSize]byte]struct{}
	byAge minheap.Heap[replayEntry] // the same nonces, oldest time first
	floor int64                     // packets sealed at or before it are refused
}

type replayEntry struct {
	at    int64
	nonce [nonceSize]byte
}

// Before orders the replay cache's entries by the time they were sealed.
func (e replayEntry) Before(o replayEntry) bool { return e.at < o.at }

// forgetOldest drops the oldest nonce, raising the floor to its time.
func (r *replayCache) forgetOldest() {
	e := r.byAge.Pop()
	delete(r.seen, e.nonce)
	r.floor = max(r.floor, e.at)
}

// fresh checks the sealed packet whose opened plaintext is plain, at now:
// its time must be within the ReplayWindow of now and above the cache's
// floor, and its nonce not seen before; then it is remembered. It
// returns an error wrapping ErrReplay (counted) otherwise. The keyring
// opened the packet, so it holds a nonce and a time.
func (c *Core) fresh(now time.Time, sealed, plain []byte) error {
	r := &c.seen
	window := int64(c.cfg.ReplayWindow)
	at, t := binary.BigEndian.Uint64(plain), now.UnixNano()
	for len(r.byAge) > 0 && r.byAge[0].at < t-window {
		r.forgetOldest()
	}
	if at >= 1<<63 || int64(at) < t-window || int64(at) > t+window || int64(at) <= r.floor {
		c.stats.Stale++
		return fmt.Errorf("%w: sealed at %d, %v from the receiver's clock (window %v, floor %d)",
			ErrReplay, at, time.Duration(int64(at)-t), c.cfg.ReplayWindow, r.floor)
	}
	var nonce [nonceSize]byte
	copy(nonce[:], sealed[1:])
	if _, ok := r.seen[nonce]; ok {
		c.stats.Replayed++
		return fmt.Errorf("%w: accepted before", ErrReplay)
	}
	if r.seen == nil {
		r.seen = make(map[[nonceSize]byte]struct{})
	}
	if len(r.byAge) >= replayCacheSize {
		r.forgetOldest()
	}
	r.seen[nonce] = struct{}{}
	r.byAge.Push(replayEntry{at: int64(at), nonce: nonce})
	return nil
}
