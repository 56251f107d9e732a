package crdt

import (
	"cmp"
	"strings"

	"github.com/distkit/distkit/hlc"
	"github.com/distkit/distkit/internal/wire"
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
// The zero LWWRegister holds the zero value of T at timestamp 0 and is
// ready to use. Values are copied by assignment: a T holding pointers,
// slices or maps shares them with copies and deltas. An LWWRegister is not
// safe for concurrent use.
type LWWRegister[T any] struct {
	v  T
	ts hlc.Timestamp
	id string
}

// Set writes v at ts on replica id and returns the delta: the register
// holding this write. The write takes effect only if it is newer than the
// current one (it loses to a write with a larger timestamp), and the delta
// has the same effect wherever it is merged.
func (r *LWWRegister[T]) Set(v T, ts hlc.Timestamp, id string) LWWRegister[T] {
	w := LWWRegister[T]{v: v, ts: ts, id: id}
	r.Merge(w)
	return w
}

// Get returns the value and the timestamp of the winning write.
func (r LWWRegister[T]) Get() (T, hlc.Timestamp) { return r.v, r.ts }

// Writer returns the replica ID of the winning write.
func (r LWWRegister[T]) Writer() string { return r.id }

// Merge keeps the newer of r's and o's writes.
func (r *LWWRegister[T]) Merge(o LWWRegister[T]) {
	if o.newer(r) {
		*r = o
	}
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
func (r LWWRegister[T]) Clone() LWWRegister[T] { return r }

// EncodeMsgpack writes r as [value, timestamp, id].
func (r LWWRegister[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(3); err != nil {
		return err
	}
	if err := enc.Encode(r.v); err != nil {
		return err
	}
	if err := r.ts.EncodeMsgpack(enc); err != nil {
		return err
	}
	return enc.EncodeString(r.id)
}

// DecodeMsgpack replaces r with the register written by
// [LWWRegister.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error r is
// unchanged.
func (r *LWWRegister[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "LWWRegister", func(d *decoder) error {
		var w LWWRegister[T]
		if err := d.tuple(3); err != nil {
			return err
		}
		var err error
		if w.v, err = wire.DecodeCanonical[T](d.Decoder); err != nil {
			return err
		}
		if err := w.ts.DecodeMsgpack(d.Decoder); err != nil {
			return err
		}
		if w.id, err = wire.String(d.Decoder); err != nil {
			return err
		}
		*r = w
		return nil
	})
}
