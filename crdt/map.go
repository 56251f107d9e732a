package crdt

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/distkit/distkit/internal/wire"
	"github.com/distkit/distkit/vclock"
	"github.com/vmihailenco/msgpack/v5"
)

// FieldType is the type of a [Map] field: a field is named by its name
// and its type together, so "x" as a counter and "x" as a set are two
// fields, as in riak_dt_map. The numbers are the wire tags.
type FieldType uint8

// The field types of a [Map], in wire order.
const (
	FieldCounter    FieldType = 1 + iota // a ResetCounter (riak_dt_emcntr)
	FieldRegister                        // an LWWRegister[string] (riak_dt_lwwreg)
	FieldMVRegister                      // an MVRegister[string]
	FieldEWFlag                          // an EWFlag (riak_dt_od_flag)
	FieldDWFlag                          // a DWFlag
	FieldSet                             // an ORSet[string] (riak_dt_orswot)
	FieldMap                             // a nested Map (riak_dt_map)
	lastField       = FieldMap
)

var fieldNames = [...]string{"", "counter", "register", "mvregister", "ewflag", "dwflag", "set", "map"}

// String returns the type's name: "counter", "register", "mvregister",
// "ewflag", "dwflag", "set" or "map".
func (t FieldType) String() string {
	if t == 0 || t > lastField {
		return "FieldType(" + strconv.Itoa(int(t)) + ")"
	}
	return fieldNames[t]
}

// Field names one field of a [Map]: a name and a type.
type Field struct {
	Name string
	Type FieldType
}

// MaxMapDepth is how deeply [Map]s nest: a map holds maps up to this many
// levels below it. Decoders refuse deeper nesting, and UpdateMap refuses
// to create it, so that no peer can make a merge or an encoding recurse
// without bound.
const MaxMapDepth = 32

// ErrTooDeep is returned by [Map.TryUpdateMap] when the nested map would
// lie more than [MaxMapDepth] levels deep.
var ErrTooDeep = errors.New("crdt: maps nested too deeply")

// Map is riak_dt_map: a map whose fields are named by a name and a type
// ([Field]) and hold a counter, an LWW register, an MV register, an
// enable-wins or disable-wins flag, an OR-set or a nested Map, with the
// reset-remove semantics of [ORMap]: removing a field resets it for what
// the remover had observed, and an update concurrent with the remove
// survives with only its own effects. Fields of one name and different
// types are independent: removing "x" as a set leaves "x" as a counter.
//
// Registers and set elements are strings, which hold any bytes (riak_dt
// stores binaries): encode structured values into them. A field is
// present while it holds an effect no remove has reset; a disabled EWFlag,
// an enabled DWFlag, an empty set or a reset counter is absent, exactly as
// if removed, and reads as the zero value of its type (so an absent
// DWFlag reads as enabled).
//
// Map is an [ORMap] from names to the fields of that name: one causal
// context for the whole map, the same deltas, merges, index, pruning and
// compaction. Deltas need causal delivery for causally consistent reads
// of its sets, flags, MV registers and maps; see the package
// documentation.
//
// The zero Map is empty and ready to use. A Map is not safe for
// concurrent use.
type Map struct {
	m     ORMap[string, fieldValues]
	depth int // how many maps hold this one: 0 for a map of its own
}

// fieldValues holds the fields of one name, one of each type, most of
// them empty. It is a value of an ORMap, whose methods it implements by
// applying each of its fields' own.
type fieldValues struct {
	counter  ResetCounter
	register LWWRegister[string]
	mv       MVRegister[string]
	ew       EWFlag
	dw       DWFlag
	set      ORSet[string]
	m        ORMap[string, fieldValues]
	// active is the field an update is changing, whose context is the
	// map's context afterwards; 0 outside updates and in their logs.
	active FieldType
}

var (
	_ Nested[fieldValues] = fieldValues{}
	_ RemovedNodePruning  = (*Map)(nil)
)

// UpdateCounter applies f to the counter name (the zero counter if absent)
// and returns the delta, which the map collects from the counter's
// mutators f calls, as [ORMap.Update] does. It panics, changing nothing,
// where f's mutator panics; see [Map.TryUpdateCounter].
//
//	delta := m.UpdateCounter("likes", func(c *crdt.ResetCounter) { c.Inc("a", 1) })
func (m *Map) UpdateCounter(name string, f func(c *ResetCounter)) Map {
	return must(m.update(name, false, func(u *fieldValues) error { u.active = FieldCounter; f(&u.counter); return nil }))
}

// TryUpdateCounter is [Map.UpdateCounter] for an f that uses TryInc and
// TryDec and returns their error: then TryUpdateCounter returns it and m
// is unchanged.
func (m *Map) TryUpdateCounter(name string, f func(c *ResetCounter) error) (Map, error) {
	return m.update(name, true, func(u *fieldValues) error { u.active = FieldCounter; return f(&u.counter) })
}

// UpdateRegister applies f to the LWW register name and returns the
// delta; see [Map.UpdateCounter]. A register's Set cannot fail.
//
//	delta := m.UpdateRegister("name", func(r *crdt.LWWRegister[string]) { r.Set("Ann", now, "a") })
func (m *Map) UpdateRegister(name string, f func(r *LWWRegister[string])) Map {
	return must(m.update(name, false, func(u *fieldValues) error { u.active = FieldRegister; f(&u.register); return nil }))
}

// UpdateMVRegister applies f to the MV register name and returns the
// delta; see [Map.UpdateCounter].
func (m *Map) UpdateMVRegister(name string, f func(r *MVRegister[string])) Map {
	return must(m.update(name, false, func(u *fieldValues) error { u.active = FieldMVRegister; f(&u.mv); return nil }))
}

// TryUpdateMVRegister is [Map.UpdateMVRegister] for an f that uses TrySet
// and returns its error: then it is returned and m is unchanged.
func (m *Map) TryUpdateMVRegister(name string, f func(r *MVRegister[string]) error) (Map, error) {
	return m.update(name, true, func(u *fieldValues) error { u.active = FieldMVRegister; return f(&u.mv) })
}

// UpdateEWFlag applies f to the enable-wins flag name and returns the
// delta; see [Map.UpdateCounter].
func (m *Map) UpdateEWFlag(name string, f func(fl *EWFlag)) Map {
	return must(m.update(name, false, func(u *fieldValues) error { u.active = FieldEWFlag; f(&u.ew); return nil }))
}

// TryUpdateEWFlag is [Map.UpdateEWFlag] for an f that uses TryEnable and
// returns its error: then it is returned and m is unchanged.
func (m *Map) TryUpdateEWFlag(name string, f func(fl *EWFlag) error) (Map, error) {
	return m.update(name, true, func(u *fieldValues) error { u.active = FieldEWFlag; return f(&u.ew) })
}

// UpdateDWFlag applies f to the disable-wins flag name and returns the
// delta; see [Map.UpdateCounter].
func (m *Map) UpdateDWFlag(name string, f func(fl *DWFlag)) Map {
	return must(m.update(name, false, func(u *fieldValues) error { u.active = FieldDWFlag; f(&u.dw); return nil }))
}

// TryUpdateDWFlag is [Map.UpdateDWFlag] for an f that uses TryDisable and
// returns its error: then it is returned and m is unchanged.
func (m *Map) TryUpdateDWFlag(name string, f func(fl *DWFlag) error) (Map, error) {
	return m.update(name, true, func(u *fieldValues) error { u.active = FieldDWFlag; return f(&u.dw) })
}

// UpdateSet applies f to the set name and returns the delta; see
// [Map.UpdateCounter].
//
//	delta := m.UpdateSet("tags", func(s *crdt.ORSet[string]) { s.Add("a", "go") })
func (m *Map) UpdateSet(name string, f func(s *ORSet[string])) Map {
	return must(m.update(name, false, func(u *fieldValues) error { u.active = FieldSet; f(&u.set); return nil }))
}

// TryUpdateSet is [Map.UpdateSet] for an f that uses TryAdd and returns
// its error: then it is returned and m is unchanged.
func (m *Map) TryUpdateSet(name string, f func(s *ORSet[string]) error) (Map, error) {
	return m.update(name, true, func(u *fieldValues) error { u.active = FieldSet; return f(&u.set) })
}

// UpdateMap applies f to the nested map name and returns the delta; f
// updates and removes the nested map's fields with its methods, whose
// deltas the outer map collects. It panics, changing nothing, where
// [Map.TryUpdateMap] returns an error; f must not keep the pointer.
//
//	delta := m.UpdateMap("profile", func(p *crdt.Map) {
//		p.UpdateRegister("name", func(r *crdt.LWWRegister[string]) { r.Set("Ann", now, "a") })
//	})
func (m *Map) UpdateMap(name string, f func(n *Map)) Map {
	return must(m.updateMap(name, false, func(n *Map) error { f(n); return nil }))
}

// TryUpdateMap is [Map.UpdateMap] for an f that uses the Try updates and
// returns their error: then TryUpdateMap returns it and m is unchanged.
// It returns [ErrTooDeep], changing nothing, if the nested map would lie
// more than [MaxMapDepth] levels below the outermost map.
func (m *Map) TryUpdateMap(name string, f func(n *Map) error) (Map, error) {
	return m.updateMap(name, true, f)
}

// updateMap runs f on the nested map name, on a copy if copy; see
// ORMap.update.
func (m *Map) updateMap(name string, copy bool, f func(n *Map) error) (Map, error) {
	if m.depth >= MaxMapDepth {
		return Map{}, fmt.Errorf("%w: more than %d levels", ErrTooDeep, MaxMapDepth)
	}
	return m.update(name, copy, func(u *fieldValues) error {
		u.active = FieldMap
		n := Map{m: u.m, depth: m.depth + 1}
		err := f(&n)
		u.m = n.m
		return err
	})
}

// update runs f on the fields of name; see ORMap.update. f marks the
// field it changes active.
func (m *Map) update(name string, copy bool, f func(u *fieldValues) error) (Map, error) {
	d, err := m.m.update(name, copy, f)
	return Map{m: d}, err
}

// Remove removes the field f and returns the delta: the reset of f for
// everything m holds of it, as [ORMap.Remove] resets a key. The other
// fields of its name are untouched. Removing an absent field changes
// nothing and returns the empty map. It panics if f.Type is not one of
// the FieldType constants.
func (m *Map) Remove(f Field) Map {
	checkType(f.Type)
	d := m.m.remove(f.Name,
		func(u fieldValues) bool { return u.liveField(f.Type) },
		func(u fieldValues) (fieldValues, []vclock.Dot) { return u.resetField(f.Type) })
	return Map{m: d}
}

// checkType panics on a FieldType that is not a constant: misuse.
func checkType(t FieldType) {
	if t == 0 || t > lastField {
		panic("crdt: unknown field type " + t.String())
	}
}

// Contains reports whether the field f is present.
func (m Map) Contains(f Field) bool {
	u, ok := m.m.peek(f.Name)
	return ok && f.Type != 0 && f.Type <= lastField && u.liveField(f.Type)
}

// Fields returns the present fields, by name and then type.
func (m Map) Fields() []Field {
	var out []Field
	for _, name := range m.m.Keys() {
		u := m.m.store[name]
		for t := FieldCounter; t <= lastField; t++ {
			if u.liveField(t) {
				out = append(out, Field{name, t})
			}
		}
	}
	return out
}

// Len returns the number of present fields. It visits every name.
func (m Map) Len() int {
	n := 0
	for _, u := range m.m.store {
		for t := FieldCounter; t <= lastField; t++ {
			if u.liveField(t) {
				n++
			}
		}
	}
	return n
}

// field returns the fields of name as m holds them, and whether the one
// of type t is present.
func (m Map) field(name string, t FieldType) (fieldValues, bool) {
	u, ok := m.m.peek(name)
	return u, ok && u.liveField(t)
}

// Counter returns a copy of the counter name; the zero counter if it is
// absent. Change it with [Map.UpdateCounter].
func (m Map) Counter(name string) ResetCounter {
	u, ok := m.field(name, FieldCounter)
	if !ok {
		return ResetCounter{}
	}
	return u.counter.Clone()
}

// Register returns a copy of the LWW register name; the zero register if
// it is absent.
func (m Map) Register(name string) LWWRegister[string] {
	u, ok := m.field(name, FieldRegister)
	if !ok {
		return LWWRegister[string]{}
	}
	return u.register.Clone()
}

// MVRegister returns a read-only copy of the MV register name, as
// [ORMap.Get] returns values; the zero register if it is absent.
func (m Map) MVRegister(name string) MVRegister[string] {
	u, _ := m.field(name, FieldMVRegister)
	return readOnly(u.mv)
}

// EWFlag returns a read-only copy of the enable-wins flag name: disabled
// if it is absent.
func (m Map) EWFlag(name string) EWFlag {
	u, _ := m.field(name, FieldEWFlag)
	return readOnly(u.ew)
}

// DWFlag returns a read-only copy of the disable-wins flag name: enabled
// if it is absent.
func (m Map) DWFlag(name string) DWFlag {
	u, _ := m.field(name, FieldDWFlag)
	return readOnly(u.dw)
}

// Set returns a read-only copy of the set name; the empty set if it is
// absent.
func (m Map) Set(name string) ORSet[string] {
	u, _ := m.field(name, FieldSet)
	return readOnly(u.set)
}

// Map returns a read-only copy of the nested map name; the empty map if
// it is absent. Its reads work as m's; change it with [Map.UpdateMap].
func (m Map) Map(name string) Map {
	u, _ := m.field(name, FieldMap)
	return Map{m: readOnly(u.m), depth: m.depth + 1}
}

// Merge sets m to the join of m and o, name by name and field by field;
// see [ORMap.Merge] for its cost.
func (m *Map) Merge(o Map) { m.m.Merge(o.m) }

// Clone returns an independent copy of m.
func (m Map) Clone() Map { return Map{m: m.m.Clone(), depth: m.depth} }

// Compact discards the tombstones of removed counters and registers that
// stable covers; see [ORMap.Compact] for what stable must be.
func (m *Map) Compact(stable Map) int { return m.m.Compact(stable.m) }

// ModifiedBy is [RemovedNodePruning.ModifiedBy].
func (m *Map) ModifiedBy() []string { return m.m.ModifiedBy() }

// NeedPruningFrom is [RemovedNodePruning.NeedPruningFrom].
func (m *Map) NeedPruningFrom(removed string) bool { return m.m.NeedPruningFrom(removed) }

// Prune is [ORMap.Prune].
func (m *Map) Prune(removed, into string) { m.m.Prune(removed, into) }

// TryPrune is [ORMap.TryPrune].
func (m *Map) TryPrune(removed, into string) error { return m.m.TryPrune(removed, into) }

// PruningCleanup is [ORMap.PruningCleanup].
func (m *Map) PruningCleanup(removed string) { m.m.PruningCleanup(removed) }

// EncodeMsgpack writes m as an ORMap from names to
// {type tag: field state...}, tags in increasing order, each field's
// state as in an ORMap of its type (no empty field is written).
func (m Map) EncodeMsgpack(enc *msgpack.Encoder) error { return m.m.EncodeMsgpack(enc) }

// DecodeMsgpack replaces m with the map written by [Map.EncodeMsgpack].
// Errors wrap [ErrMalformed] (also for an unknown type tag, an empty
// field and maps nested more than [MaxMapDepth] levels deep); on error m
// is unchanged.
func (m *Map) DecodeMsgpack(dec *msgpack.Decoder) error {
	if err := m.m.DecodeMsgpack(dec); err != nil {
		return err
	}
	m.depth = 0
	return nil
}

// liveField reports whether the field of type t is present.
func (u fieldValues) liveField(t FieldType) bool {
	switch t {
	case FieldCounter:
		return u.counter.live()
	case FieldRegister:
		return u.register.live()
	case FieldMVRegister:
		return u.mv.live()
	case FieldEWFlag:
		return u.ew.live()
	case FieldDWFlag:
		return u.dw.live()
	case FieldSet:
		return u.set.live()
	}
	return u.m.live()
}

// resetField returns the reset of the field of type t alone.
func (u fieldValues) resetField(t FieldType) (fieldValues, []vclock.Dot) {
	var out fieldValues
	var dots []vclock.Dot
	switch t {
	case FieldCounter:
		out.counter, dots = u.counter.reset()
	case FieldRegister:
		out.register, dots = u.register.reset()
	case FieldMVRegister:
		out.mv, dots = u.mv.reset()
	case FieldEWFlag:
		out.ew, dots = u.ew.reset()
	case FieldDWFlag:
		out.dw, dots = u.dw.reset()
	case FieldSet:
		out.set, dots = u.set.reset()
	default:
		out.m, dots = u.m.reset()
	}
	return out, dots
}

// The methods below make fieldValues the value of the ORMap inside Map.

func (u fieldValues) join(sc *dotContext, o fieldValues, oc *dotContext) fieldValues {
	// The counter and the register ignore contexts: an empty one changes
	// nothing, and is skipped.
	if !o.counter.empty() {
		u.counter = u.counter.join(sc, o.counter, oc)
	}
	if !o.register.empty() {
		u.register = u.register.join(sc, o.register, oc)
	}
	u.mv = u.mv.join(sc, o.mv, oc)
	u.ew = u.ew.join(sc, o.ew, oc)
	u.dw = u.dw.join(sc, o.dw, oc)
	u.set = u.set.join(sc, o.set, oc)
	u.m = u.m.join(sc, o.m, oc)
	return u
}

func (u fieldValues) empty() bool {
	for t := FieldCounter; t <= lastField; t++ {
		if !u.emptyField(t) {
			return false
		}
	}
	return true
}

func (u fieldValues) live() bool {
	for t := FieldCounter; t <= lastField; t++ {
		if u.liveField(t) {
			return true
		}
	}
	return false
}

func (u fieldValues) dots(yield func(vclock.Dot) bool) {
	for _, e := range u.mv.store {
		if !yield(e.dot) {
			return
		}
	}
	for _, s := range [...]dotSet{u.ew.store, u.dw.disabled.store} {
		for _, e := range s {
			if !yield(e.dot) {
				return
			}
		}
	}
	for _, s := range u.set.store {
		for _, e := range s {
			if !yield(e.dot) {
				return
			}
		}
	}
	for d := range u.m.dots {
		if !yield(d) {
			return
		}
	}
}

func (u fieldValues) mapDots(f func(vclock.Dot) (vclock.Dot, bool)) fieldValues {
	u.mv, u.ew, u.dw = u.mv.mapDots(f), u.ew.mapDots(f), u.dw.mapDots(f)
	u.set, u.m = u.set.mapDots(f), u.m.mapDots(f)
	return u
}

func (u fieldValues) clone() fieldValues {
	return fieldValues{
		counter: u.counter.clone(), register: u.register.clone(), mv: u.mv.clone(),
		ew: u.ew.clone(), dw: u.dw.clone(), set: u.set.clone(), m: u.m.clone(),
	}
}

// context returns the context of the field an update changed: the one
// marked active in the value the update ran on, the only one with a
// context in the log of its deltas.
func (u fieldValues) context() dotContext {
	cs := [...]*dotContext{FieldMVRegister: &u.mv.ctx, FieldEWFlag: &u.ew.ctx, FieldDWFlag: &u.dw.disabled.ctx, FieldSet: &u.set.ctx, FieldMap: &u.m.ctx}
	if u.active != 0 {
		if c := cs[u.active]; c != nil {
			return *c
		}
		return dotContext{} // the counter and the register have no dots
	}
	for _, c := range cs {
		if c != nil && (c.vv.Len() > 0 || len(c.cloud) > 0) {
			return *c
		}
	}
	return dotContext{}
}

func (u fieldValues) withContext(c dotContext) fieldValues {
	u.mv, u.ew, u.dw = u.mv.withContext(c), u.ew.withContext(c), u.dw.withContext(c)
	u.set, u.m = u.set.withContext(c), u.m.withContext(c)
	u.active = 0
	return u
}

func (u fieldValues) recordTo(log *fieldValues) fieldValues {
	if log == nil {
		u.counter, u.register, u.mv = u.counter.recordTo(nil), u.register.recordTo(nil), u.mv.recordTo(nil)
		u.ew, u.dw, u.set, u.m = u.ew.recordTo(nil), u.dw.recordTo(nil), u.set.recordTo(nil), u.m.recordTo(nil)
		return u
	}
	u.counter, u.register, u.mv = u.counter.recordTo(&log.counter), u.register.recordTo(&log.register), u.mv.recordTo(&log.mv)
	u.ew, u.dw, u.set, u.m = u.ew.recordTo(&log.ew), u.dw.recordTo(&log.dw), u.set.recordTo(&log.set), u.m.recordTo(&log.m)
	return u
}

func (u fieldValues) reset() (fieldValues, []vclock.Dot) {
	var out fieldValues
	var dots []vclock.Dot
	var none dotContext // the resets hold no dots: nothing to tell apart
	for t := FieldCounter; t <= lastField; t++ {
		r, ds := u.resetField(t)
		out = out.join(&none, r, &none)
		dots = append(dots, ds...)
	}
	return out, dots
}

func (u fieldValues) countIDs(yield func(string) bool) bool {
	return u.counter.countIDs(yield) && u.m.countIDs(yield)
}

func (u fieldValues) pruneCounts(removed, into string) (fieldValues, error) {
	c, err := u.counter.pruneCounts(removed, into)
	if err != nil {
		return u, err
	}
	m, err := u.m.pruneCounts(removed, into)
	if err != nil {
		return u, err
	}
	u.counter, u.m = c, m
	return u, nil
}

func (u fieldValues) compact(stable fieldValues) (fieldValues, int) {
	var n, k int
	u.counter, n = u.counter.compact(stable.counter)
	u.register, k = u.register.compact(stable.register)
	n += k
	u.m, k = u.m.compact(stable.m)
	return u, n + k
}

// encodeStore writes {type tag: store} for the non-empty fields.
func (u fieldValues) encodeStore(enc *encoder) error {
	n := 0
	for t := FieldCounter; t <= lastField; t++ {
		if !u.emptyField(t) {
			n++
		}
	}
	if err := enc.EncodeMapLen(n); err != nil {
		return err
	}
	for t := FieldCounter; t <= lastField; t++ {
		if u.emptyField(t) {
			continue
		}
		if err := enc.EncodeUint(uint64(t)); err != nil {
			return err
		}
		if err := u.encodeField(enc, t); err != nil {
			return err
		}
	}
	return nil
}

// encodeField writes the store of the field of type t.
func (u fieldValues) encodeField(enc *encoder, t FieldType) error {
	switch t {
	case FieldCounter:
		return u.counter.encodeStore(enc)
	case FieldRegister:
		return u.register.encodeStore(enc)
	case FieldMVRegister:
		return u.mv.encodeStore(enc)
	case FieldEWFlag:
		return u.ew.encodeStore(enc)
	case FieldDWFlag:
		return u.dw.encodeStore(enc)
	case FieldSet:
		return u.set.encodeStore(enc)
	}
	return u.m.encodeStore(enc)
}

// emptyField reports whether the field of type t holds nothing, not even
// a tombstone.
func (u fieldValues) emptyField(t FieldType) bool {
	switch t {
	case FieldCounter:
		return u.counter.empty()
	case FieldRegister:
		return u.register.empty()
	case FieldMVRegister:
		return u.mv.empty()
	case FieldEWFlag:
		return u.ew.empty()
	case FieldDWFlag:
		return u.dw.empty()
	case FieldSet:
		return u.set.empty()
	}
	return u.m.empty()
}

// decodeStore reads what encodeStore writes; the ORMap decoder checks
// that the fields are not all empty, this that none is.
func (u fieldValues) decodeStore(d *decoder) (fieldValues, error) {
	var out fieldValues
	n, err := wire.MapLen(d.Decoder)
	if err != nil {
		return out, err
	}
	if n > int(lastField) {
		return out, fmt.Errorf("%d fields of one name, at most %d", n, lastField)
	}
	prev := FieldType(0)
	for range n {
		tag, err := wire.Uint(d.Decoder)
		if err != nil {
			return out, err
		}
		t := FieldType(tag)
		switch {
		case tag == 0 || tag > uint64(lastField):
			return out, fmt.Errorf("unknown field type %d", tag)
		case t <= prev:
			return out, fmt.Errorf("field type %d after %d: not sorted or repeated", t, prev)
		}
		prev = t
		if err := out.decodeField(d, t); err != nil {
			return out, err
		}
		if out.emptyField(t) {
			return out, fmt.Errorf("empty %s field", t)
		}
	}
	return out, nil
}

// decodeField reads the store of the field of type t into u.
func (u *fieldValues) decodeField(d *decoder, t FieldType) (err error) {
	switch t {
	case FieldCounter:
		u.counter, err = u.counter.decodeStore(d)
	case FieldRegister:
		u.register, err = u.register.decodeStore(d)
	case FieldMVRegister:
		u.mv, err = u.mv.decodeStore(d)
	case FieldEWFlag:
		u.ew, err = u.ew.decodeStore(d)
	case FieldDWFlag:
		u.dw, err = u.dw.decodeStore(d)
	case FieldSet:
		u.set, err = u.set.decodeStore(d)
	default:
		if d.depth >= MaxMapDepth {
			return fmt.Errorf("maps nested more than %d levels deep", MaxMapDepth)
		}
		d.depth++
		u.m, err = u.m.decodeStore(d)
		d.depth--
	}
	return err
}
