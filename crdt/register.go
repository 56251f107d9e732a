package crdt

import (
	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// MVRegister is a multi-value register: a write replaces every value its
// replica has seen, and writes concurrent with each other are all kept, so
// that a reader sees the conflict and resolves it by writing again. Each
// value carries the dot of its write (the paper's DotFun); the register
// keeps a causal context of every write it has seen, so it never keeps
// more values than there were concurrent writers.
//
// Values are copied by assignment: a T holding pointers, slices or maps
// shares them with copies and deltas. Deltas need causal delivery for
// causally consistent reads; see the package documentation.
//
// The zero MVRegister holds no value and is ready to use. An MVRegister is
// not safe for concurrent use.
type MVRegister[T any] struct {
	causal[dotFun[T]]
	log *MVRegister[T] // nil, or where mutators merge their deltas
}

// Set writes v on replica id, replacing every value r holds, and returns
// the delta: v with its new dot, and a context of that dot and the dots of
// the values it replaces.
//
// Set panics, changing nothing, where [MVRegister.TrySet] returns an error.
func (r *MVRegister[T]) Set(id string, v T) MVRegister[T] { return must(r.TrySet(id, v)) }

// TrySet is [MVRegister.Set] that returns an error wrapping
// [vclock.ErrExhausted], leaving r unchanged, when id's dots have reached
// [vclock.MaxCounter] (which only a forged counter from a peer can bring
// about).
func (r *MVRegister[T]) TrySet(id string, v T) (MVRegister[T], error) {
	st, ctx, err := write(&r.ctx, r.store, id, v)
	if err != nil {
		return MVRegister[T]{}, err
	}
	r.store = st
	d := MVRegister[T]{causal: causal[dotFun[T]]{store: st, ctx: ctx}}
	if r.log != nil {
		r.log.Merge(d)
	}
	return d, nil
}

// Values returns the current values, one per concurrent write, ordered by
// the writes' dots (replica ID, then counter). It is empty before the
// first write.
func (r MVRegister[T]) Values() []T { return r.store.values() }

// Merge sets r to the join of r and o: the values of both that the other
// side has not overwritten.
func (r *MVRegister[T]) Merge(o MVRegister[T]) { r.merge(&o.causal) }

// Clone returns a copy of r that shares no state with it (values are
// copied by assignment).
func (r MVRegister[T]) Clone() MVRegister[T] { return MVRegister[T]{causal: r.copyState()} }

// EncodeMsgpack writes r as [[[id, counter, value]...], context].
func (r MVRegister[T]) EncodeMsgpack(enc *msgpack.Encoder) error { return r.encode(enc) }

// DecodeMsgpack replaces r with the register written by
// [MVRegister.EncodeMsgpack]. Errors wrap [ErrMalformed]; on error r is
// unchanged.
func (r *MVRegister[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "MVRegister", r.decode)
}

// The methods below make MVRegister a value of an ORMap: they act on the
// values alone, the map's context standing for the register's.

func (r MVRegister[T]) join(sc *dotContext, o MVRegister[T], oc *dotContext) MVRegister[T] {
	r.store = r.store.join(sc, o.store, oc)
	return r
}
func (r MVRegister[T]) empty() bool                            { return r.store.empty() }
func (r MVRegister[T]) dots(yield func(vclock.Dot) bool)       { r.store.dots(yield) }
func (r MVRegister[T]) clone() MVRegister[T]                   { return r.Clone() }
func (r MVRegister[T]) encodeStore(enc *encoder) error         { return r.store.encodeStore(enc) }
func (r MVRegister[T]) context() dotContext                    { return r.ctx }
func (r MVRegister[T]) withContext(c dotContext) MVRegister[T] { r.ctx = c; return r }
func (r MVRegister[T]) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) MVRegister[T] {
	r.store = r.store.mapDots(f)
	return r
}
func (r MVRegister[T]) decodeStore(dec *decoder) (MVRegister[T], error) {
	st, err := r.store.decodeStore(dec)
	return MVRegister[T]{causal: causal[dotFun[T]]{store: st}}, err
}
func (r MVRegister[T]) recordTo(log *MVRegister[T]) MVRegister[T]         { r.log = log; return r }
func (r MVRegister[T]) reset() (MVRegister[T], []vclock.Dot)              { return MVRegister[T]{}, collect(r.dots) }
func (r MVRegister[T]) compact(MVRegister[T]) (MVRegister[T], int)        { return r, 0 }
func (r MVRegister[T]) pruneCounts(string, string) (MVRegister[T], error) { return r, nil }

// EWFlag is an enable-wins flag (riak_dt_od_flag): Enable adds a dot,
// Disable removes the dots it has seen, and a concurrent Enable survives
// a Disable. Deltas need causal delivery for causally consistent reads;
// see the package documentation.
//
// The zero EWFlag is disabled and ready to use. An EWFlag is not safe for
// concurrent use.
type EWFlag struct {
	causal[dotSet]
	log *EWFlag // nil, or where mutators merge their deltas
}

// Enable enables f on replica id and returns the delta: a new dot, and a
// context of it and the dots it supersedes. It panics, changing nothing,
// where [EWFlag.TryEnable] returns an error.
func (f *EWFlag) Enable(id string) EWFlag { return must(f.TryEnable(id)) }

// TryEnable is [EWFlag.Enable] that returns an error wrapping
// [vclock.ErrExhausted], leaving f unchanged, when id's dots have reached
// [vclock.MaxCounter] (which only a forged counter from a peer can bring
// about).
func (f *EWFlag) TryEnable(id string) (EWFlag, error) {
	st, ctx, err := write(&f.ctx, f.store, id, struct{}{})
	if err != nil {
		return EWFlag{}, err
	}
	f.store = st
	return f.record(EWFlag{causal: causal[dotSet]{store: st, ctx: ctx}}), nil
}

// Disable disables f and returns the delta: no dot, and a context of the
// dots f held. Disable needs no replica ID: it creates no dot.
func (f *EWFlag) Disable() EWFlag {
	d := EWFlag{causal: causal[dotSet]{ctx: contextOf(collect(f.store.dots))}}
	f.store = nil
	return f.record(d)
}

// record merges the delta d into f's log, if it has one, and returns d.
func (f *EWFlag) record(d EWFlag) EWFlag {
	if f.log != nil {
		f.log.Merge(d)
	}
	return d
}

// Value reports whether f is enabled.
func (f EWFlag) Value() bool { return !f.store.empty() }

// Merge sets f to the join of f and o.
func (f *EWFlag) Merge(o EWFlag) { f.merge(&o.causal) }

// Clone returns an independent copy of f.
func (f EWFlag) Clone() EWFlag { return EWFlag{causal: f.copyState()} }

// EncodeMsgpack writes f as [dots, context].
func (f EWFlag) EncodeMsgpack(enc *msgpack.Encoder) error { return f.encode(enc) }

// DecodeMsgpack replaces f with the flag written by [EWFlag.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error f is unchanged.
func (f *EWFlag) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "EWFlag", f.decode)
}

// The methods below make EWFlag a value of an ORMap: they act on the dots
// alone, the map's context standing for the flag's.

func (f EWFlag) join(sc *dotContext, o EWFlag, oc *dotContext) EWFlag {
	f.store = f.store.join(sc, o.store, oc)
	return f
}
func (f EWFlag) empty() bool                      { return f.store.empty() }
func (f EWFlag) dots(yield func(vclock.Dot) bool) { f.store.dots(yield) }
func (f EWFlag) clone() EWFlag                    { return f.Clone() }
func (f EWFlag) encodeStore(enc *encoder) error   { return f.store.encodeStore(enc) }
func (f EWFlag) context() dotContext              { return f.ctx }
func (f EWFlag) withContext(c dotContext) EWFlag  { f.ctx = c; return f }
func (f EWFlag) mapDots(g func(vclock.Dot) (vclock.Dot, bool)) EWFlag {
	f.store = f.store.mapDots(g)
	return f
}
func (f EWFlag) decodeStore(dec *decoder) (EWFlag, error) {
	st, err := f.store.decodeStore(dec)
	return EWFlag{causal: causal[dotSet]{store: st}}, err
}
func (f EWFlag) recordTo(log *EWFlag) EWFlag                { f.log = log; return f }
func (f EWFlag) reset() (EWFlag, []vclock.Dot)              { return EWFlag{}, collect(f.dots) }
func (f EWFlag) compact(EWFlag) (EWFlag, int)               { return f, 0 }
func (f EWFlag) pruneCounts(string, string) (EWFlag, error) { return f, nil }
