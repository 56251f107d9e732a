package crdt

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/distkit/distkit/hlc"
)

// The reference models of the reset-remove values: tags as in tagged,
// where a reset or remove kills the tags its replica has seen.

type rcounterView struct{}

func (rcounterView) value(c ResetCounter) any { return c.Value() }
func (rcounterView) model(ns []int64) any     { return sum(ns) }

type rcounterW = pair[ResetCounter, *ResetCounter, int64, rcounterView]

// amount returns a random amount of 1 to 3, negative for a decrement.
func amount(r *rand.Rand) int64 { return int64(1+r.IntN(3)) * int64(1-2*r.IntN(2)) }

// addAmount applies a (an increment, or a decrement if negative) to c.
func addAmount(c *ResetCounter, id string, a int64) {
	if a > 0 {
		c.Inc(id, uint64(a))
	} else {
		c.Dec(id, uint64(-a))
	}
}

func mutResetCounter(r *rand.Rand, w *rcounterW, id string) rcounterW {
	if r.IntN(4) == 0 {
		return rcounterW{s: w.s.Reset(), m: w.m.kill(func(int64) bool { return true })}
	}
	a := amount(r)
	var d ResetCounter
	if a > 0 {
		d = w.s.Inc(id, uint64(a))
	} else {
		d = w.s.Dec(id, uint64(-a))
	}
	return rcounterW{s: d, m: w.m.add(r, a)}
}

// keyedModel formats the live tags of a keyed model as "key:value " for
// each key that has one, keys in order; value folds the key's tags.
func keyedModel[E any](es []E, key func(E) string, value func([]E) string) string {
	byKey := map[string][]E{}
	for _, e := range es {
		byKey[key(e)] = append(byKey[key(e)], e)
	}
	var b strings.Builder
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range byKey {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s:%s ", k, value(byKey[k]))
	}
	return b.String()
}

// sumOf returns the sum of the amounts of entries, formatted.
func sumOf(es []entry) string {
	s := 0
	for _, e := range es {
		s += e.e
	}
	return fmt.Sprint(s)
}

type pnmapView struct{}

func (pnmapView) value(m PNCounterMap[string]) any {
	var b strings.Builder
	for k, v := range m.All() {
		fmt.Fprintf(&b, "%s:%d ", k, v)
	}
	return b.String()
}
func (pnmapView) model(es []entry) any {
	return keyedModel(es, func(e entry) string { return e.k }, sumOf)
}

type pnmapW = pair[PNCounterMap[string], *PNCounterMap[string], entry, pnmapView]

func mutPNCounterMap(r *rand.Rand, w *pnmapW, id string) pnmapW {
	k := pickKey(r)
	switch r.IntN(6) {
	case 0:
		return pnmapW{s: w.s.Remove(k), m: w.m.kill(func(e entry) bool { return e.k == k })}
	case 1: // a reset through Update: the map collects the delta
		d := w.s.m.Update(k, func(c *ResetCounter) { c.Reset() })
		return pnmapW{s: PNCounterMap[string]{d}, m: w.m.kill(func(e entry) bool { return e.k == k })}
	}
	a := amount(r)
	if a > 0 {
		return pnmapW{s: w.s.Inc(id, k, uint64(a)), m: w.m.add(r, entry{k, int(a)})}
	}
	return pnmapW{s: w.s.Dec(id, k, uint64(-a)), m: w.m.add(r, entry{k, int(a)})}
}

// lwwEntry is a model write of an LWWMap.
type lwwEntry struct {
	k string
	w lwwWrite
}

type lwwmapView struct{}

func (lwwmapView) value(m LWWMap[string, int]) any {
	var b strings.Builder
	for _, k := range m.Keys() {
		r, _ := m.Entry(k)
		v, ts := r.Get()
		fmt.Fprintf(&b, "%s:%v ", k, fmt.Sprint(v, "@", ts, "/", r.Writer()))
	}
	return b.String()
}

// model: a key shows its newest write unless a remove saw a write with
// as large a timestamp and ID. The model keeps killed tags, so it sees
// them through the tags it is given: live holds every write, and the
// removes' floors come as tags with v == removed.
func (lwwmapView) model(es []lwwEntry) any {
	type floor struct {
		ts hlc.Timestamp
		id string
	}
	floors := map[string]floor{}
	var writes []lwwEntry
	for _, e := range es {
		if e.w.v != removedWrite {
			writes = append(writes, e)
			continue
		}
		if f, ok := floors[e.k]; !ok || cmp.Or(cmp.Compare(e.w.ts, f.ts), strings.Compare(e.w.id, f.id)) > 0 {
			floors[e.k] = floor{e.w.ts, e.w.id}
		}
	}
	shown := slices.DeleteFunc(slices.Clone(writes), func(e lwwEntry) bool {
		f, ok := floors[e.k]
		return ok && cmp.Or(cmp.Compare(e.w.ts, f.ts), strings.Compare(e.w.id, f.id)) <= 0
	})
	ws := func(es []lwwEntry) []lwwWrite {
		out := make([]lwwWrite, len(es))
		for i, e := range es {
			out[i] = e.w
		}
		return out
	}
	return keyedModel(shown, func(e lwwEntry) string { return e.k }, func(es []lwwEntry) string {
		return lwwView{}.model(ws(es)).(string)
	})
}

// removedWrite marks a model tag that records a remove's floor.
const removedWrite = -1 << 20

type lwwmapW = pair[LWWMap[string, int], *LWWMap[string, int], lwwEntry, lwwmapView]

func mutLWWMap(r *rand.Rand, w *lwwmapW, id string) lwwmapW {
	k := pickKey(r)
	if r.IntN(4) == 0 {
		// The floor is the newest write of k the remover shows.
		reg, ok := w.s.Entry(k)
		d := w.s.Remove(k)
		m := tagged[lwwEntry]{}
		if ok {
			_, ts := reg.Get()
			m = w.m.add(r, lwwEntry{k, lwwWrite{v: removedWrite, ts: ts, id: reg.Writer()}})
		}
		return lwwmapW{s: d, m: m}
	}
	x := lwwWrite{v: r.IntN(300) - 100, ts: hlc.Timestamp(r.IntN(6)), id: id}
	return lwwmapW{s: w.s.Put(k, x.v, x.ts, x.id), m: w.m.add(r, lwwEntry{k, x})}
}

type dwmapView struct{}

func (dwmapView) value(m ORMap[string, DWFlag]) any { return fmt.Sprint(m.Keys()) }
func (dwmapView) model(ks []string) any             { return fmt.Sprint(sortedSet(ks)) }

type dwmapW = pair[ORMap[string, DWFlag], *ORMap[string, DWFlag], string, dwmapView]

func mutDWMap(r *rand.Rand, w *dwmapW, id string) dwmapW {
	k := pickKey(r)
	at := func(e string) bool { return e == k }
	switch r.IntN(4) {
	case 0:
		return dwmapW{s: w.s.Remove(k), m: w.m.kill(at)}
	case 1:
		return dwmapW{s: w.s.Update(k, func(f *DWFlag) { f.Enable() }), m: w.m.kill(at)}
	}
	killed := w.m.kill(at)
	d := dwmapW{s: w.s.Update(k, func(f *DWFlag) { f.Disable(id) }), m: w.m.add(r, k)}
	d.m.join(killed)
	return d
}

// docMap is a map of maps of counters: removing an outer key resets its
// inner counters recursively.
type docMap = ORMap[string, ORMap[string, ResetCounter]]

type docView struct{}

func (docView) value(m docMap) any {
	var b strings.Builder
	for k, in := range m.All() {
		for ik, c := range in.All() {
			fmt.Fprintf(&b, "%s/%s:%d ", k, ik, c.Value())
		}
	}
	return b.String()
}
func (docView) model(es []entry) any {
	return keyedModel(es, func(e entry) string { return e.k }, sumOf)
}

type docW = pair[docMap, *docMap, entry, docView]

func mutDoc(r *rand.Rand, w *docW, id string) docW {
	k, ik := pickKey(r), string(rune('x'+r.IntN(2)))
	path := k + "/" + ik
	switch r.IntN(7) {
	case 0:
		return docW{s: w.s.Remove(k), m: w.m.kill(func(e entry) bool { return strings.HasPrefix(e.k, k+"/") })}
	case 1:
		d := w.s.Update(k, func(in *ORMap[string, ResetCounter]) { in.Remove(ik) })
		return docW{s: d, m: w.m.kill(func(e entry) bool { return e.k == path })}
	}
	a := amount(r)
	d := w.s.Update(k, func(in *ORMap[string, ResetCounter]) {
		in.Update(ik, func(c *ResetCounter) { addAmount(c, id, a) })
	})
	return docW{s: d, m: w.m.add(r, entry{path, int(a)})}
}

type multiView struct{}

func (multiView) value(m ORMultiMap[string, int]) any {
	var b strings.Builder
	for k, es := range m.All() {
		fmt.Fprint(&b, k, es, " ")
	}
	return b.String()
}
func (multiView) model(es []entry) any { return groupModel(es, true) }

type multiW = pair[ORMultiMap[string, int], *ORMultiMap[string, int], entry, multiView]

func mutMultiMap(r *rand.Rand, w *multiW, id string) multiW {
	k, x := pickKey(r), pick(r)
	switch r.IntN(6) {
	case 0:
		return multiW{s: w.s.Remove(k), m: w.m.kill(func(e entry) bool { return e.k == k })}
	case 1:
		return multiW{s: w.s.RemoveBinding(k, x), m: w.m.kill(func(e entry) bool { return e == entry{k, x} })}
	case 2: // Put: the bindings of k become {x, x+1}
		y := (x + 1) % 4
		m := w.m.kill(func(e entry) bool { return e.k == k })
		m.join(w.m.add(r, entry{k, x}))
		m.join(w.m.add(r, entry{k, y}))
		return multiW{s: w.s.Put(id, k, x, y), m: m}
	}
	return multiW{s: w.s.AddBinding(id, k, x), m: w.m.add(r, entry{k, x})}
}
