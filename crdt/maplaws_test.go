package crdt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"

	"github.com/distkit/distkit/hlc"
)

// The reference model of Map: one tagged model over every field, each
// tag naming its field by path ("p/set", "q/map/x/counter"), so that a
// remove kills exactly the tags of its field (and of the fields below a
// nested map), whatever else shares the name.

// fieldTag is a model effect on the field at path: an amount of a
// counter, an element of a set, a value of an MV register, a flag's
// enable (EW) or disable (DW), or an LWW write (or a remove's floor).
type fieldTag struct {
	path string
	e    int
	w    lwwWrite
}

type mixView struct{}

// value lists the present fields of m, nested ones by path, with values.
func (mixView) value(m Map) any {
	var fs []string
	viewFields(&fs, "", m)
	slices.Sort(fs)
	return strings.Join(fs, "")
}

func viewFields(fs *[]string, prefix string, m Map) {
	for _, f := range m.Fields() {
		path := prefix + f.Name + "/" + f.Type.String()
		var v string
		switch f.Type {
		case FieldMap:
			viewFields(fs, path+"/", m.Map(f.Name))
			continue
		case FieldCounter:
			v = fmt.Sprint(m.Counter(f.Name).Value())
		case FieldSet:
			v = fmt.Sprint(m.Set(f.Name).Elements())
		case FieldMVRegister:
			v = fmt.Sprint(sorted(m.MVRegister(f.Name).Values()))
		case FieldRegister:
			r := m.Register(f.Name)
			x, ts := r.Get()
			v = fmt.Sprint(x, "@", ts, "/", r.Writer())
		default:
			v = "on"
		}
		*fs = append(*fs, path+":"+v+" ")
	}
}

// model formats the live tags the same way: each path with a live tag is
// a present field (a register's, if a write is newer than its floors).
func (mixView) model(tags []fieldTag) any {
	var regs []lwwEntry
	byPath := map[string][]fieldTag{}
	for _, t := range tags {
		if strings.HasSuffix(t.path, "/register") {
			regs = append(regs, lwwEntry{t.path, t.w})
			continue
		}
		byPath[t.path] = append(byPath[t.path], t)
	}
	out := map[string]string{}
	for path, ts := range byPath {
		es, total := make([]int, len(ts)), 0
		for i, t := range ts {
			es[i] = t.e
			total += t.e
		}
		switch path[strings.LastIndexByte(path, '/')+1:] {
		case "counter":
			out[path] = fmt.Sprint(total)
		case "set":
			out[path] = fmt.Sprint(strs(sortedSet(es)))
		case "mvregister":
			out[path] = fmt.Sprint(sorted(strs(es)))
		default:
			out[path] = "on"
		}
	}
	// The LWW map model formats "path:write " for each shown register.
	for _, f := range strings.Fields(lwwmapView{}.model(regs).(string)) {
		i := strings.LastIndex(f, ":")
		out[f[:i]] = f[i+1:]
	}
	var b strings.Builder
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range out {
			if !yield(p) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s:%s ", p, out[p])
	}
	return b.String()
}

// strs formats ints as the strings the Map holds.
func strs(es []int) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = strconv.Itoa(e)
	}
	return out
}

type mixW = pair[Map, *Map, fieldTag, mixView]

// mutMixed updates or removes a random field of two names and seven
// types, nested maps holding counters and sets, so that histories mix
// types under one name and remove one while another is updated.
func mutMixed(r *rand.Rand, w *mixW, id string) mixW {
	name := string(rune('p' + r.IntN(2)))
	t := FieldType(1 + r.IntN(int(lastField)))
	path := name + "/" + t.String()
	at := func(ft fieldTag) bool { return ft.path == path || strings.HasPrefix(ft.path, path+"/") }
	remove := r.IntN(5) == 0
	if remove && t == FieldRegister {
		// As in mutLWWMap: the remove's floor is the write it shows.
		reg, ok := w.s.Register(name), w.s.Contains(Field{name, t})
		d := mixW{s: w.s.Remove(Field{name, t})}
		if ok {
			_, ts := reg.Get()
			d.m = w.m.add(r, fieldTag{path: path, w: lwwWrite{v: removedWrite, ts: ts, id: reg.Writer()}})
		}
		return d
	}
	if remove {
		return mixW{s: w.s.Remove(Field{name, t}), m: w.m.kill(at)}
	}
	x := pick(r)
	s := strconv.Itoa(x)
	switch t {
	case FieldCounter:
		if r.IntN(4) == 0 {
			return mixW{s: w.s.UpdateCounter(name, func(c *ResetCounter) { c.Reset() }), m: w.m.kill(at)}
		}
		a := amount(r)
		return mixW{s: w.s.UpdateCounter(name, func(c *ResetCounter) { addAmount(c, id, a) }), m: w.m.add(r, fieldTag{path: path, e: int(a)})}
	case FieldRegister:
		// Three digits: the strings order as the numbers, for full ties.
		lw := lwwWrite{v: 100 + r.IntN(900), ts: hlc.Timestamp(r.IntN(6)), id: id}
		d := w.s.UpdateRegister(name, func(reg *LWWRegister[string]) { reg.Set(strconv.Itoa(lw.v), lw.ts, id) })
		return mixW{s: d, m: w.m.add(r, fieldTag{path: path, w: lw})}
	case FieldMVRegister:
		killed := w.m.kill(at)
		d := mixW{s: w.s.UpdateMVRegister(name, func(reg *MVRegister[string]) { reg.Set(id, s) }), m: w.m.add(r, fieldTag{path: path, e: x})}
		d.m.join(killed)
		return d
	case FieldEWFlag, FieldDWFlag:
		// An EWFlag's Enable and a DWFlag's Disable add a tag (replacing
		// the ones seen); the other kills the tags seen.
		ew := t == FieldEWFlag
		update := func(f func(e *EWFlag, d *DWFlag)) Map {
			if ew {
				return w.s.UpdateEWFlag(name, func(e *EWFlag) { f(e, nil) })
			}
			return w.s.UpdateDWFlag(name, func(d *DWFlag) { f(nil, d) })
		}
		if r.IntN(3) == 0 {
			return mixW{s: update(func(e *EWFlag, d *DWFlag) {
				if ew {
					e.Disable()
				} else {
					d.Enable()
				}
			}), m: w.m.kill(at)}
		}
		killed := w.m.kill(at)
		d := mixW{s: update(func(e *EWFlag, d *DWFlag) {
			if ew {
				e.Enable(id)
			} else {
				d.Disable(id)
			}
		}), m: w.m.add(r, fieldTag{path: path})}
		d.m.join(killed)
		return d
	case FieldSet:
		if r.IntN(3) == 0 {
			d := w.s.UpdateSet(name, func(set *ORSet[string]) { set.Remove(s) })
			return mixW{s: d, m: w.m.kill(func(ft fieldTag) bool { return ft.path == path && ft.e == x })}
		}
		return mixW{s: w.s.UpdateSet(name, func(set *ORSet[string]) { set.Add(id, s) }), m: w.m.add(r, fieldTag{path: path, e: x})}
	}
	// A nested map of counters and sets under "x" and "y".
	in := string(rune('x' + r.IntN(2)))
	if r.IntN(2) == 0 {
		ipath := path + "/" + in + "/counter"
		if r.IntN(4) == 0 {
			d := w.s.UpdateMap(name, func(n *Map) { n.Remove(Field{in, FieldCounter}) })
			return mixW{s: d, m: w.m.kill(func(ft fieldTag) bool { return ft.path == ipath })}
		}
		a := amount(r)
		d := w.s.UpdateMap(name, func(n *Map) { n.UpdateCounter(in, func(c *ResetCounter) { addAmount(c, id, a) }) })
		return mixW{s: d, m: w.m.add(r, fieldTag{path: ipath, e: int(a)})}
	}
	ipath := path + "/" + in + "/set"
	if r.IntN(4) == 0 {
		d := w.s.UpdateMap(name, func(n *Map) { n.Remove(Field{in, FieldSet}) })
		return mixW{s: d, m: w.m.kill(func(ft fieldTag) bool { return ft.path == ipath })}
	}
	d := w.s.UpdateMap(name, func(n *Map) { n.UpdateSet(in, func(set *ORSet[string]) { set.Add(id, s) }) })
	return mixW{s: d, m: w.m.add(r, fieldTag{path: ipath, e: x})}
}
