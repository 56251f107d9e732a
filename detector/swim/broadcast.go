package swim

import (
	"cmp"
	"slices"
)

// broadcast is an encoded alive, suspect or dead message waiting to be
// piggybacked.
type broadcast struct {
	id        string // the member it is about: a newer update replaces it
	msg       []byte
	transmits int
	order     uint64 // enqueue order: newer updates go first among equals
}

// broadcastQueue holds the updates to disseminate, one per member. Updates
// that were sent fewer times go first (then newer ones), as in memberlist's
// TransmitLimitedQueue; an update is dropped after limit transmissions.
type broadcastQueue struct {
	items []broadcast
	order uint64
}

// enqueue adds msg about member id, replacing any older update about id.
func (q *broadcastQueue) enqueue(id string, msg []byte) {
	q.order++
	b := broadcast{id: id, msg: msg, order: q.order}
	if i := slices.IndexFunc(q.items, func(b broadcast) bool { return b.id == id }); i >= 0 {
		q.items[i] = b
		return
	}
	q.items = append(q.items, b)
}

// fill appends to dst as many queued updates as fit in room bytes, at most
// MaxUpdates, counts a transmission for each, drops those that reached
// limit, and returns dst and the number of updates appended.
func (q *broadcastQueue) fill(dst []byte, room, limit int) ([]byte, int) {
	slices.SortFunc(q.items, func(a, b broadcast) int { return byTransmits(&a, &b) })
	dst, n := pack(q.items, func(b *broadcast) *broadcast { return b }, dst, room, MaxUpdates)
	q.items = slices.DeleteFunc(q.items, func(b broadcast) bool { return b.transmits >= limit })
	return dst, n
}

// Len returns the number of queued updates.
func (q *broadcastQueue) Len() int { return len(q.items) }

// byTransmits orders broadcasts as memberlist's TransmitLimitedQueue:
// fewest transmissions first, then newest.
func byTransmits(a, b *broadcast) int {
	if c := cmp.Compare(a.transmits, b.transmits); c != 0 {
		return c
	}
	return cmp.Compare(b.order, a.order)
}

// pack appends to dst, in the order of items, the messages of the
// broadcasts (at returns each item's) that fit in room bytes, at most n,
// counts a transmission for each, and returns dst and the number
// appended.
func pack[T any](items []T, at func(*T) *broadcast, dst []byte, room, n int) ([]byte, int) {
	added := 0
	for i := range items {
		b := at(&items[i])
		if added == n {
			break
		}
		if len(b.msg) > room {
			continue
		}
		dst = append(dst, b.msg...)
		room -= len(b.msg)
		b.transmits++
		added++
	}
	return dst, added
}
