package crdt

import (
	"cmp"
	"fmt"

	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// DWFlag is a disable-wins flag, the dual of [EWFlag] (Almeida, Shoker and
// Baquero's DWFlag): Disable adds a dot, Enable removes the dots it has
// seen, and a concurrent Disable survives an Enable. It is enabled exactly
// while it holds no dot, so the zero DWFlag is enabled and ready to use.
// Deltas need causal delivery for causally consistent reads, as EWFlag's.
// A DWFlag is not safe for concurrent use.
type DWFlag struct {
	disabled EWFlag // enabled, in the dual, means disabled here
}

// Disable disables f on replica id and returns the delta. It panics,
// changing nothing, where [DWFlag.TryDisable] returns an error.
func (f *DWFlag) Disable(id string) DWFlag { return must(f.TryDisable(id)) }

// TryDisable is [DWFlag.Disable] that returns an error wrapping
// [vclock.ErrExhausted], leaving f unchanged, when id's dots have reached
// [vclock.MaxCounter].
func (f *DWFlag) TryDisable(id string) (DWFlag, error) {
	d, err := f.disabled.TryEnable(id)
	return DWFlag{d}, err
}

// Enable enables f and returns the delta: the dots f held, removed. It
// needs no replica ID.
func (f *DWFlag) Enable() DWFlag { return DWFlag{f.disabled.Disable()} }

// Value reports whether f is enabled.
func (f DWFlag) Value() bool { return !f.disabled.Value() }

// Merge sets f to the join of f and o.
func (f *DWFlag) Merge(o DWFlag) { f.disabled.Merge(o.disabled) }

// Clone returns an independent copy of f.
func (f DWFlag) Clone() DWFlag { return DWFlag{f.disabled.Clone()} }

// EncodeMsgpack writes f as an EWFlag of its disabling dots.
func (f DWFlag) EncodeMsgpack(enc *msgpack.Encoder) error { return f.disabled.EncodeMsgpack(enc) }

// DecodeMsgpack replaces f with the flag written by [DWFlag.EncodeMsgpack].
// Errors wrap [ErrMalformed]; on error f is unchanged.
func (f *DWFlag) DecodeMsgpack(dec *msgpack.Decoder) error { return f.disabled.DecodeMsgpack(dec) }

// ModifiedBy is [RemovedNodePruning.ModifiedBy].
func (f *DWFlag) ModifiedBy() []string { return f.disabled.ModifiedBy() }

// NeedPruningFrom is [RemovedNodePruning.NeedPruningFrom].
func (f *DWFlag) NeedPruningFrom(removed string) bool { return f.disabled.NeedPruningFrom(removed) }

// Prune is [RemovedNodePruning.Prune]; see [EWFlag.Prune].
func (f *DWFlag) Prune(removed, into string) { f.disabled.Prune(removed, into) }

// TryPrune is [RemovedNodePruning.TryPrune]; see [EWFlag.TryPrune].
func (f *DWFlag) TryPrune(removed, into string) error { return f.disabled.TryPrune(removed, into) }

// PruningCleanup is [RemovedNodePruning.PruningCleanup].
func (f *DWFlag) PruningCleanup(removed string) { f.disabled.PruningCleanup(removed) }

// The methods below make DWFlag a value of an ORMap: a key holding one is
// present while the flag is disabled.

func (f DWFlag) join(sc *dotContext, o DWFlag, oc *dotContext) DWFlag {
	return DWFlag{f.disabled.join(sc, o.disabled, oc)}
}
func (f DWFlag) empty() bool                                { return f.disabled.empty() }
func (f DWFlag) live() bool                                 { return f.disabled.live() }
func (f DWFlag) dots(yield func(vclock.Dot) bool)           { f.disabled.dots(yield) }
func (f DWFlag) clone() DWFlag                              { return f.Clone() }
func (f DWFlag) encodeStore(enc *encoder) error             { return f.disabled.encodeStore(enc) }
func (f DWFlag) context() dotContext                        { return f.disabled.ctx }
func (f DWFlag) withContext(c dotContext) DWFlag            { return DWFlag{f.disabled.withContext(c)} }
func (f DWFlag) countIDs(func(string) bool) bool            { return true }
func (f DWFlag) reset() (DWFlag, []vclock.Dot)              { return DWFlag{}, collect(f.dots) }
func (f DWFlag) compact(DWFlag) (DWFlag, int)               { return f, 0 }
func (f DWFlag) pruneCounts(string, string) (DWFlag, error) { return f, nil }
func (f DWFlag) mapDots(g func(vclock.Dot) (vclock.Dot, bool)) DWFlag {
	return DWFlag{f.disabled.mapDots(g)}
}
func (f DWFlag) recordTo(log *DWFlag) DWFlag {
	var l *EWFlag
	if log != nil {
		l = &log.disabled
	}
	return DWFlag{f.disabled.recordTo(l)}
}
func (f DWFlag) decodeStore(dec *decoder) (DWFlag, error) {
	d, err := f.disabled.decodeStore(dec)
	return DWFlag{d}, err
}

// MaxRegister holds the largest value ever set on any replica: Merge keeps
// the larger of two. It needs no replica ID and nothing from delivery.
//
// The zero MaxRegister holds no value and is ready to use. A MaxRegister
// is not safe for concurrent use.
type MaxRegister[T cmp.Ordered] struct {
	v   T
	set bool
}

// Set raises r to v when v is larger than its value (or r holds none) and
// returns the delta: r's value afterwards. It panics on a NaN.
func (r *MaxRegister[T]) Set(v T) MaxRegister[T] {
	if v != v {
		panic("crdt: NaN cannot be a MaxRegister value")
	}
	r.Merge(MaxRegister[T]{v: normKey(v), set: true})
	return *r
}

// Get returns the value and whether r holds one.
func (r MaxRegister[T]) Get() (T, bool) { return r.v, r.set }

// Merge sets r to the larger of r and o.
func (r *MaxRegister[T]) Merge(o MaxRegister[T]) {
	if o.set && (!r.set || o.v > r.v) {
		*r = o
	}
}

// Clone returns a copy of r.
func (r MaxRegister[T]) Clone() MaxRegister[T] { return r }

// EncodeMsgpack writes r as [] when it holds no value, else [value].
func (r MaxRegister[T]) EncodeMsgpack(enc *msgpack.Encoder) error {
	if !r.set {
		return enc.EncodeArrayLen(0)
	}
	if err := enc.EncodeArrayLen(1); err != nil {
		return err
	}
	return enc.Encode(r.v)
}

// DecodeMsgpack replaces r with the register written by
// [MaxRegister.EncodeMsgpack]. Errors wrap [ErrMalformed] (a NaN, an array
// of two or more values); on error r is unchanged. A negative zero reads
// as zero.
func (r *MaxRegister[T]) DecodeMsgpack(dec *msgpack.Decoder) error {
	return decode(dec, "MaxRegister", func(d *decoder) error {
		n, err := d.DecodeArrayLen()
		if err != nil {
			return err
		}
		switch n {
		case 0:
			*r = MaxRegister[T]{}
			return nil
		case 1:
			v, err := decodeKey[T](d)
			if err != nil {
				return err
			}
			var back MaxRegister[T]
			back.Set(v)
			*r = back
			return nil
		}
		return fmt.Errorf("array of %d values", n)
	})
}
