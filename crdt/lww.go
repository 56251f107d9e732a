package crdt

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// LWWRegister is a last-writer-wins register (riak_dt_lwwreg): it holds
// the value of the write with the largest hybrid logical timestamp, ties
// broken by the larger replica ID. Writes should take their timestamps
// from an [hlc.Clock], which never issues the same timestamp twice, so
// that (timestamp, ID) identifies a write. If two different values are
// nevertheless written with the same timestamp and ID, the larger wins in
// the package's fixed order on values (see "Values" in the package
// documentation), so Merge agrees with itself in both argument orders for
// every T, including maps, structs with unexported fields and values
// msgpack cannot encode.
//
// In an [ORMap], removing a key resets its register: the register keeps
// the timestamp and ID of the newest write the remover saw (a tombstone)
// and from then on hides every write up to it, so that a concurrent
// write survives the remove exactly when it is newer than everything the
// remover saw (until [ORMap.Compact] at a causally stable state discards
// the tombstone). A hidden write is dropped; the register then reads as
// the zero register. A write with timestamp 0 and ID "" is no write: in a
// map it leaves its key absent.
//
// The zero LWWRegister holds the zero value of T at timestamp 0 and is
// ready to use. Values are copied by assignment: a T holding pointers,
// slices or maps shares them with copies and deltas. An LWWRegister is not
// safe for concurrent use.
type LWWRegister[T any] struct {
	v  T
	ts hlc.Timestamp
	id string
	// The newest write a remove has seen: writes up to it are hidden.
	floorTS hlc.Timestamp
	floorID string
	floored bool
	log     *LWWRegister[T] // nil, or where Set merges its deltas
}

// Set writes v at ts on replica id and returns the delta: the register
// holding this write (and, in a map, the newest write its removes hid).
// The write takes effect only if it is newer than the
// current one (it loses to a write with a larger timestamp) and than
// every write a remove has hidden, and the delta has the same effect
// wherever it is merged.
func (r *LWWRegister[T]) Set(v T, ts hlc.Timestamp, id string) LWWRegister[T] {
	// The delta carries what r's removes hid, so that a write they hide
	// stays hidden on a replica that compacted them away.
	w := LWWRegister[T]{v: v, ts: ts, id: id, floorTS: r.floorTS, floorID: r.floorID, floored: r.floored}
	w.dropHidden()
	r.Merge(w)
	if r.log != nil {
		r.log.Merge(w)
	}
	return w
}

// Get returns the value and the timestamp of the winning write.
func (r LWWRegister[T]) Get() (T, hlc.Timestamp) { return r.v, r.ts }

// Writer returns the replica ID of the winning write.
func (r LWWRegister[T]) Writer() string { return r.id }

// Merge keeps the newer of r's and o's writes, unless a remove either
// has seen hides it.
func (r *LWWRegister[T]) Merge(o LWWRegister[T]) {
	if o.newer(r) {
		r.v, r.ts, r.id = o.v, o.ts, o.id
	}
	if o.floored && (!r.floored || cmp.Or(o.floorTS.Compare(r.floorTS), strings.Compare(o.floorID, r.floorID)) > 0) {
		r.floorTS, r.floorID, r.floored = o.floorTS, o.floorID, true
	}
	r.dropHidden()
}

// dropHidden drops r's write if a remove has hidden it.
func (r *LWWRegister[T]) dropHidden() {
	if r.hidden() {
		var zero T
		r.v, r.ts, r.id = zero, 0, ""
	}
}

// hidden reports whether r's write is one a remove has seen (or older).
func (r *LWWRegister[T]) hidden() bool {
	return r.floored && cmp.Or(r.ts.Compare(r.floorTS), strings.Compare(r.id, r.floorID)) <= 0
}

// newer reports whether r's write beats o's: by timestamp, then ID, then
// value (see LWWRegister).
func (r *LWWRegister[T]) newer(o *LWWRegister[T]) bool {
	if c := cmp.Or(r.ts.Compare(o.ts), strings.Compare(r.id, o.id)); c != 0 {
		return c > 0
	}
	return wire.Compare(&r.v, &o.v) > 0
}

// Clone returns a copy of r.
func (r LWWRegister[T]) Clone() LWWRegister[T] {
	r.log = nil
	return r
}

// EncodeMsgpack writes r as [value, timestamp, id], or, once a remove has
// hidden writes, [value, timestamp, id, hidden timestamp, hidden id].
func (r LWWRegister[T]) EncodeMsgpack(enc *msgpack.Encoder) error { return r.encodeStore(enc) }

func (r LWWRegister[T]) encodeStore(enc *encoder) error {
	n := 3
	if r.floored {
		n = 5
	}
	if err := enc.EncodeArrayLen(n); err != nil {
		return err
	}
	if err := enc.Encode(r.v); err != nil {
		return err
	}
	if err := r.ts.EncodeMsgpack(enc); err != nil {
		return err
	}
	if err := enc.EncodeString(r.id); err != nil {
		return err
	}
	if !r.floored {
		return nil
	}
	if err := r.floorTS.EncodeMsgpack(enc); err != nil {
		return err
	}
	return enc.EncodeString(r.floorID)
}

// DecodeMsgpack replaces r with the register written by
// [LWWRegister.EncodeMsgpack]. Errors wrap [ErrMalformed] (also for a
// write a remove hides, which is never kept); on error r is unchanged.
func (r *LWWRegister[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "LWWRegister", func(d *decoder) error {
		w, err := r.decodeStore(d)
		if err == nil {
			*r = w
		}
		return err
	})
}

func (r LWWRegister[T]) decodeStore(d *decoder) (LWWRegister[T], error) {
	var w LWWRegister[T]
	n, err := wire.ArrayLen(d.Decoder)
	if err != nil {
		return w, err
	}
	if n != 3 && n != 5 {
		return w, fmt.Errorf("array of %d elements, want 3 or 5", n)
	}
	if w.v, err = wire.DecodeCanonical[T](d.Decoder); err != nil {
		return w, err
	}
	if err := w.ts.DecodeMsgpack(d.Decoder); err != nil {
		return w, err
	}
	if w.id, err = wire.String(d.Decoder); err != nil {
		return w, err
	}
	if n == 3 {
		return w, nil
	}
	if err := w.floorTS.DecodeMsgpack(d.Decoder); err != nil {
		return w, err
	}
	if w.floorID, err = d.id(); err != nil {
		return w, err
	}
	var zero T
	w.floored = true
	switch {
	case w.floorTS == 0 && w.floorID == "":
		return w, fmt.Errorf("a remove that hides no write")
	case w.hidden() && (w.ts != 0 || w.id != "" || wire.Compare(&w.v, &zero) != 0):
		return w, fmt.Errorf("a hidden write kept")
	}
	return w, nil
}

// The methods below make LWWRegister a value of an ORMap. It has no dots
// and ignores the map's context.

func (r LWWRegister[T]) join(_ *dotContext, o LWWRegister[T], _ *dotContext) LWWRegister[T] {
	r.Merge(o)
	return r
}
func (r LWWRegister[T]) live() bool                                  { return r.ts != 0 || r.id != "" }
func (r LWWRegister[T]) empty() bool                                 { return !r.live() && !r.floored }
func (r LWWRegister[T]) dots(func(vclock.Dot) bool)                  {}
func (r LWWRegister[T]) clone() LWWRegister[T]                       { return r.Clone() }
func (r LWWRegister[T]) context() dotContext                         { return dotContext{} }
func (r LWWRegister[T]) withContext(dotContext) LWWRegister[T]       { return r }
func (r LWWRegister[T]) recordTo(log *LWWRegister[T]) LWWRegister[T] { r.log = log; return r }
func (r LWWRegister[T]) countIDs(func(string) bool) bool             { return true }
func (r LWWRegister[T]) pruneCounts(string, string) (LWWRegister[T], error) {
	return r, nil
}
func (r LWWRegister[T]) mapDots(func(vclock.Dot) (vclock.Dot, bool)) LWWRegister[T] {
	return r
}

// compact returns r without the newest hidden write when stable holds it
// or a newer one, and 1 if it dropped it; see ORMap.Compact.
func (r LWWRegister[T]) compact(stable LWWRegister[T]) (LWWRegister[T], int) {
	if !r.floored || !stable.floored ||
		cmp.Or(r.floorTS.Compare(stable.floorTS), strings.Compare(r.floorID, stable.floorID)) > 0 {
		return r, 0
	}
	r.floorTS, r.floorID, r.floored = 0, "", false
	return r, 1
}

// reset returns the delta of a remove: the register hiding every write up
// to its own.
func (r LWWRegister[T]) reset() (LWWRegister[T], []vclock.Dot) {
	if !r.live() {
		return LWWRegister[T]{}, nil
	}
	return LWWRegister[T]{floorTS: r.ts, floorID: r.id, floored: true}, nil
}
