package crdt

import (
	"strings"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// Text is a replicated text: a sequence CRDT of Unicode code points in
// which every replica inserts and deletes at positions of its own copy and
// all copies converge to the same text. Positions count runes.
//
// Each inserted rune gets an ID from the inserting replica and remembers
// its neighbours at insertion (its origins); concurrent inserts at one
// place are ordered the same way everywhere, by FugueMax's rule (Weidner
// and Kleppmann, "The Art of the Fugue", 2023), so that runs of text typed
// concurrently at one place never interleave. A deleted rune leaves a
// tombstone (its ID, without the rune) until [Text.Compact] discards it.
//
// Merge is a true join: deltas merge into each other and into any replica
// in any order, any number of times. A rune whose origins have not arrived
// waits, invisible, until they do; the deletion of a rune not yet arrived
// waits for the rune.
//
// The zero Text is the empty document, ready to use. A Text is not safe
// for concurrent use.
type Text struct {
	s seq[rune]
}

// Insert inserts s before the rune at pos (at the end when pos is Len())
// as replica id, and returns the delta. It panics when pos is out of range,
// or, changing nothing, when id's element counter would pass
// [vclock.MaxCounter]; [Text.TryInsert] returns that error instead.
func (t *Text) Insert(id string, pos int, s string) Text { return must(t.TryInsert(id, pos, s)) }

// TryInsert is [Text.Insert] that returns an error wrapping
// [vclock.ErrExhausted], leaving t unchanged, when id's element counter
// would pass [vclock.MaxCounter] (which only a forged counter from a peer
// can bring about). It panics when pos is out of range.
func (t *Text) TryInsert(id string, pos int, s string) (Text, error) {
	var d Text
	if s == "" {
		if pos < 0 || pos > t.Len() {
			panic("crdt: insert position out of range")
		}
		return d, nil
	}
	sp, err := t.s.insert(id, pos, []rune(s))
	if err != nil {
		return d, err
	}
	d.s.deltaOf(sp)
	return d, nil
}

// Delete deletes the n runes from pos and returns the delta. It panics when
// pos or n is negative or pos+n is beyond Len().
func (t *Text) Delete(pos, n int) Text {
	return Text{s: seq[rune]{dead: t.s.remove(pos, n)}}
}

// Merge joins o into t: afterwards t holds every insert and deletion of
// either. o is unchanged and shares no storage with t.
func (t *Text) Merge(o Text) { t.s.merge(&o.s) }

// String returns the text.
func (t Text) String() string {
	var b strings.Builder
	b.Grow(t.Len())
	t.s.each(func(sp *span[rune]) bool {
		for _, r := range sp.items {
			b.WriteRune(r)
		}
		return true
	})
	return b.String()
}

// Len returns the number of runes.
func (t Text) Len() int { return t.s.Len() }

// Clone returns a deep copy of t.
func (t Text) Clone() Text { return Text{s: t.s.clone()} }

// Version returns, for every replica, the largest element counter t has
// seen: the frontier to pass to Compact once every replica has seen it.
func (t Text) Version() vclock.VClock { return t.s.version() }

// Compact records stable as causally stable and discards the tombstones of
// the runes it covers (stable is first limited to Version()); it returns
// how many. The state remembers stable, and merges join it: a replica then
// ignores the runes stable covers that it does not hold, which are the
// discarded ones. Compaction is local: it changes what a replica keeps, not
// the text, so replicas that compacted differently hold the same text but
// may encode differently, until they compact with the same frontier.
//
// Compact is safe, that is, replicas still converge to the same text, when
//  1. every replica has merged every insert that stable covers, and the
//     deletion of every rune this replica discards; and
//  2. every insert not covered by stable that will still reach this
//     replica was made by a replica that had already compacted with stable
//     (a new insert names its neighbours, tombstones included, as origins,
//     and a discarded tombstone cannot be found again).
//
// Both hold when replicas compact at a quiescent point: all have exchanged
// their states, stable is their common Version(), and each compacts before
// it inserts again. A rune that names a discarded origin waits forever
// (see Pending).
func (t *Text) Compact(stable vclock.VClock) int { return t.s.compact(stable) }

// Pending returns the number of runes that arrived before one of their
// origins and wait, invisible, for it. Every Merge retries them, at a cost
// in proportion to their number: a count that keeps growing means deltas
// whose predecessors were lost (merge a full state from a peer) or a
// forged state. A rune whose right origin is not after its left one,
// which no replica inserts, waits for good on every replica alike.
func (t Text) Pending() int { return t.s.pendingLen() }

// EncodeMsgpack writes t in the canonical, run-length encoded form
// described in the package's wire format.
func (t Text) EncodeMsgpack(enc *msgpack.Encoder) error { return t.s.encode(enc, encodeRunes) }

// DecodeMsgpack reads a Text. Errors wrap [ErrMalformed] and leave t
// unchanged.
func (t *Text) DecodeMsgpack(dec *msgpack.Decoder) error { return t.s.decode(dec, decodeRunes) }
