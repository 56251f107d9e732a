package crdt

import (
	"cmp"
	"errors"
	"fmt"
	"slices"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// ErrMalformed is wrapped by every decoding error: the input is truncated,
// is not the encoding of the type, or is not in canonical form (unsorted or
// repeated elements, keys or dots, zero or negative counters, counters
// above vclock.MaxCounter, times in a version vector, NaN or -0.0
// elements, a live dot missing from the causal context, a length longer
// than the input, a msgpack form longer than needed, a bin ID).
var ErrMalformed = errors.New("crdt: malformed encoding")

// The wire format, all msgpack:
//
//	GCounter     [[id, count]...] by increasing id, counts >= 1 (a vclock.VClock)
//	PNCounter    [increments GCounter, decrements GCounter]
//	GSet         [element...] increasing
//	LWWRegister  [value, timestamp, id]
//	ORSet        [{element: dots...}, context]
//	MVRegister   [[[id, counter, value]...], context]
//	EWFlag       [dots, context]
//	ORMap        [{key: nested state...}, context]
//	Map          [{name: {type tag: nested state...}...}, context], tags 1-7
//	             in FieldType order, no empty field, nesting <= MaxMapDepth
//	dots         [[id, counter]...] increasing
//	context      [version vector (a vclock.VClock), dot cloud (dots)]
//
// Maps are written with keys in increasing order and a nested state is
// its store without a context (the map's context covers it). Every
// encoder writes the canonical form, so equal states encode to equal
// bytes (as long as values of T encode deterministically), and decoders
// accept only the canonical form: the shortest msgpack headers and
// integers, str (never bin) IDs, no nil where an array or map belongs,
// elements, keys and values of basic types (booleans, numbers, strings,
// byte slices) exactly as msgpack's default encoder writes them. So
// whatever a decoder accepts encodes back to the bytes it read, and equal
// states have equal bytes, which Merkle hashing of states relies on.
// Values of other types (structs, maps, any) are decoded as msgpack reads
// them and are canonical only if their writer's encoding was.

// encoder is the msgpack encoder; the alias keeps signatures short.
type encoder = msgpack.Encoder

// decoder wraps a msgpack decoder with the checks every decoder of this
// package makes, and interns replica IDs so that a decoded state keeps one
// copy of each.
type decoder struct {
	*msgpack.Decoder
	ids   map[string]string
	depth int // how many Maps enclose what is being read
}

// arrayLen reads an array header and checks it; see [wire.CheckLen].
func (d *decoder) arrayLen(minSize int) (count, prealloc int, err error) {
	n, err := wire.ArrayLen(d.Decoder)
	if err != nil {
		return 0, 0, err
	}
	return wire.CheckLen(d.Decoder, n, minSize)
}

// mapLen reads a map header and checks it; see [wire.CheckLen].
func (d *decoder) mapLen(minSize int) (count, prealloc int, err error) {
	n, err := wire.MapLen(d.Decoder)
	if err != nil {
		return 0, 0, err
	}
	return wire.CheckLen(d.Decoder, n, minSize)
}

// tuple reads the header of an array of exactly n elements.
func (d *decoder) tuple(n int) error {
	k, err := wire.ArrayLen(d.Decoder)
	if err != nil {
		return err
	}
	if k != n {
		return fmt.Errorf("array of %d elements, want %d", k, n)
	}
	return nil
}

// id reads a replica ID, interned.
func (d *decoder) id() (string, error) {
	s, err := wire.String(d.Decoder)
	if err != nil {
		return "", err
	}
	if i, ok := d.ids[s]; ok {
		return i, nil
	}
	if d.ids == nil {
		d.ids = make(map[string]string)
	}
	d.ids[s] = s
	return s, nil
}

// counter reads an unsigned integer of at least 1 and at most
// vclock.MaxCounter.
func (d *decoder) counter() (uint64, error) {
	n, err := wire.Uint(d.Decoder)
	switch {
	case err != nil:
	case n == 0:
		err = fmt.Errorf("zero counter")
	default:
		err = vclock.CheckCounter(n)
	}
	return n, err
}

// dotFields reads a dot's ID and counter (the array header already read).
func (d *decoder) dotFields() (vclock.Dot, error) {
	id, err := d.id()
	if err != nil {
		return vclock.Dot{}, err
	}
	n, err := d.counter()
	return vclock.Dot{ID: id, Counter: n}, err
}

// decodeKey reads an element or key in canonical form, rejecting NaN and
// -0.0; see normKey. Like every value of a type parameter, it is read
// through wire.DecodeCanonical, so a length it claims must be backed by
// input before anything is allocated for it (a K may have its own
// decoder).
func decodeKey[K cmp.Ordered](d *decoder) (K, error) {
	k, err := wire.DecodeCanonical[K](d.Decoder)
	if err != nil {
		return k, err
	}
	if k != k {
		return k, fmt.Errorf("NaN element")
	}
	if n := normKey(k); wire.Compare(&n, &k) != 0 {
		return k, fmt.Errorf("negative zero element")
	}
	return k, nil
}

// normKey returns the form of x that sets and maps keep: -0.0 becomes
// +0.0, the same key (it is ==), so that replicas that added either
// encode alike. It panics on a floating-point NaN, which is not equal to
// itself and so cannot be found again: programmer misuse.
func normKey[K cmp.Ordered](x K) K {
	var zero K
	switch {
	case x != x:
		panic("crdt: NaN cannot be an element or key")
	case x == zero:
		return zero
	}
	return x
}

// clock reads a vclock.VClock. The clocks of this package record no
// times, so an entry that carries one is not canonical.
func (d *decoder) clock() (vclock.VClock, error) {
	var v vclock.VClock
	if err := v.DecodeMsgpack(d.Decoder); err != nil {
		return v, err
	}
	for id := range v.All() {
		if _, ok := v.Time(id); ok {
			return vclock.VClock{}, fmt.Errorf("entry %q with a time", id)
		}
	}
	return v, nil
}

// decode runs f on a decoder reading from dec and wraps its error.
func decode(dec *msgpack.Decoder, what string, f func(d *decoder) error) error {
	if err := f(&decoder{Decoder: dec}); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

// encode writes [vv, cloud].
func (c *dotContext) encode(enc *encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.Encode(c.vv); err != nil {
		return err
	}
	if err := enc.EncodeArrayLen(len(c.cloud)); err != nil {
		return err
	}
	for _, dt := range c.cloud {
		if err := enc.Encode(dt); err != nil {
			return err
		}
	}
	return nil
}

func (d *decoder) context() (dotContext, error) {
	var c dotContext
	if err := d.tuple(2); err != nil {
		return c, err
	}
	vv, err := d.clock()
	if err != nil {
		return c, err
	}
	n, prealloc, err := d.arrayLen(3)
	if err != nil {
		return c, err
	}
	if n > 0 {
		c.cloud = make([]vclock.Dot, 0, prealloc)
	}
	for range n {
		if err := d.tuple(2); err != nil {
			return c, err
		}
		dt, err := d.dotFields()
		if err != nil {
			return c, err
		}
		if k := len(c.cloud); k > 0 && compareDots(c.cloud[k-1], dt) >= 0 {
			return c, fmt.Errorf("cloud dot %v after %v: not sorted or repeated", dt, c.cloud[k-1])
		}
		if dt.Counter <= vv.Get(dt.ID)+1 {
			return c, fmt.Errorf("cloud dot %v not beyond the version vector", dt)
		}
		c.cloud = append(c.cloud, dt)
	}
	c.vv = vv
	return c, nil
}

// encode writes [store, context].
func (c *causal[S]) encode(enc *encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := c.store.encodeStore(enc); err != nil {
		return err
	}
	return c.ctx.encode(enc)
}

// decode reads [store, context] and checks the invariant that every dot of
// the store is in the context, once.
func (c *causal[S]) decode(d *decoder) error {
	if err := d.tuple(2); err != nil {
		return err
	}
	var zero S
	store, err := zero.decodeStore(d)
	if err != nil {
		return err
	}
	ctx, err := d.context()
	if err != nil {
		return err
	}
	if err := checkDots(store.dots, &ctx); err != nil {
		return err
	}
	c.store, c.ctx = store, ctx
	return nil
}

// checkDots checks that every dot is in ctx and none repeats.
func checkDots(dots func(yield func(vclock.Dot) bool), ctx *dotContext) error {
	all := collect(dots)
	for _, dt := range all {
		if !ctx.contains(dt) {
			return fmt.Errorf("live dot %v missing from the context", dt)
		}
	}
	slices.SortFunc(all, compareDots)
	for i := 1; i < len(all); i++ {
		if all[i] == all[i-1] {
			return fmt.Errorf("dot %v held twice", all[i])
		}
	}
	return nil
}
