package crdt

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/distkit/distkit/hlc"
	"github.com/vmihailenco/msgpack/v5"
)

// lattice is what the law tests use of a CRDT type S.
type lattice[S any] interface {
	*S
	Merge(S)
	Clone() S
	msgpack.CustomDecoder
}

// view reads the value of a CRDT of type S and the value its model (the
// live elements of a tagged model) gives, in comparable form.
type view[S any, M comparable] interface {
	value(s S) any
	model(live []M) any
}

// pair is a subject: a CRDT of type S with a tagged model over M.
type pair[S any, P lattice[S], M comparable, X view[S, M]] struct {
	s S
	m tagged[M]
}

func (w *pair[S, P, M, X]) join(o *pair[S, P, M, X]) {
	P(&w.s).Merge(o.s)
	w.m.join(o.m)
}

func (w *pair[S, P, M, X]) copy() pair[S, P, M, X] {
	return pair[S, P, M, X]{s: P(&w.s).Clone(), m: w.m.copy()}
}

func (w *pair[S, P, M, X]) key() string {
	b, err := msgpack.Marshal(w.s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func (w *pair[S, P, M, X]) check() string {
	var x X
	got, want := fmt.Sprint(x.value(w.s)), fmt.Sprint(x.model(w.m.live()))
	if got != want {
		return fmt.Sprintf("value %s, model %s", got, want)
	}
	return ""
}

func (w *pair[S, P, M, X]) decode(b string) (pair[S, P, M, X], error) {
	var o pair[S, P, M, X]
	err := msgpack.Unmarshal([]byte(b), P(&o.s))
	return o, err
}

// sortedSet returns the distinct elements, sorted.
func sortedSet[E cmp.Ordered](es []E) []E {
	es = slices.Clone(es)
	slices.Sort(es)
	return slices.Compact(es)
}

func sorted[E cmp.Ordered](es []E) []E {
	es = slices.Clone(es)
	slices.Sort(es)
	return es
}

// pick returns a random element of a small alphabet, so that histories
// touch the same elements often.
func pick(r *rand.Rand) int { return r.IntN(4) }

func pickKey(r *rand.Rand) string { return string(rune('p' + r.IntN(3))) }

type gcounterView struct{}

func (gcounterView) value(c GCounter) any  { return c.Value() }
func (gcounterView) model(ns []uint64) any { return sum(ns) }

func sum[N uint64 | int64](ns []N) N {
	var s N
	for _, n := range ns {
		s += n
	}
	return s
}

type gcounterW = pair[GCounter, *GCounter, uint64, gcounterView]

func mutGCounter(r *rand.Rand, w *gcounterW, id string) gcounterW {
	n := r.Uint64N(4)
	return gcounterW{s: w.s.Inc(id, n), m: w.m.add(r, n)}
}

type pncounterView struct{}

func (pncounterView) value(c PNCounter) any { return c.Value() }
func (pncounterView) model(ns []int64) any  { return sum(ns) }

type pncounterW = pair[PNCounter, *PNCounter, int64, pncounterView]

func mutPNCounter(r *rand.Rand, w *pncounterW, id string) pncounterW {
	n := r.Uint64N(4)
	if r.IntN(2) == 0 {
		return pncounterW{s: w.s.Inc(id, n), m: w.m.add(r, int64(n))}
	}
	return pncounterW{s: w.s.Dec(id, n), m: w.m.add(r, -int64(n))}
}

type gsetView struct{}

func (gsetView) value(s GSet[int]) any { return s.Elements() }
func (gsetView) model(es []int) any    { return sortedSet(es) }

type gsetW = pair[GSet[int], *GSet[int], int, gsetView]

func mutGSet(r *rand.Rand, w *gsetW, _ string) gsetW {
	x := r.IntN(10)
	return gsetW{s: w.s.Add(x), m: w.m.add(r, x)}
}

// lwwWrite is a model LWW write.
type lwwWrite struct {
	v  int
	ts hlc.Timestamp
	id string
}

type lwwView struct{}

func (lwwView) value(l LWWRegister[int]) any {
	v, ts := l.Get()
	return fmt.Sprint(v, "@", ts, "/", l.Writer())
}
func (lwwView) model(ws []lwwWrite) any {
	var best lwwWrite
	for _, w := range ws {
		if c := cmp.Or(cmp.Compare(w.ts, best.ts), strings.Compare(w.id, best.id)); c > 0 ||
			c == 0 && w.v > best.v { // full ties: the larger value

			best = w
		}
	}
	return fmt.Sprint(best.v, "@", best.ts, "/", best.id)
}

func mustMarshal(v any) []byte {
	b, err := msgpack.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

type lwwW = pair[LWWRegister[int], *LWWRegister[int], lwwWrite, lwwView]

func mutLWW(r *rand.Rand, w *lwwW, id string) lwwW {
	x := lwwWrite{v: r.IntN(300) - 100, ts: hlc.Timestamp(r.IntN(6)), id: id} // ties on ts, and full ties
	return lwwW{s: w.s.Set(x.v, x.ts, x.id), m: w.m.add(r, x)}
}

type orsetView struct{}

func (orsetView) value(s ORSet[int]) any { return s.Elements() }
func (orsetView) model(es []int) any     { return sortedSet(es) }

type orsetW = pair[ORSet[int], *ORSet[int], int, orsetView]

func mutORSet(r *rand.Rand, w *orsetW, id string) orsetW {
	x := pick(r)
	if r.IntN(5) < 3 {
		return orsetW{s: w.s.Add(id, x), m: w.m.add(r, x)}
	}
	return orsetW{s: w.s.Remove(x), m: w.m.kill(func(e int) bool { return e == x })}
}

type mvregView struct{}

func (mvregView) value(m MVRegister[int]) any { return sorted(m.Values()) }
func (mvregView) model(vs []int) any          { return sorted(vs) }

type mvregW = pair[MVRegister[int], *MVRegister[int], int, mvregView]

func mutMVRegister(r *rand.Rand, w *mvregW, id string) mvregW {
	v := r.IntN(5)
	killed := w.m.kill(func(int) bool { return true })
	d := mvregW{s: w.s.Set(id, v), m: w.m.add(r, v)}
	d.m.join(killed)
	return d
}

type flagView struct{}

func (flagView) value(f EWFlag) any      { return f.Value() }
func (flagView) model(on []struct{}) any { return len(on) > 0 }

type flagW = pair[EWFlag, *EWFlag, struct{}, flagView]

func mutEWFlag(r *rand.Rand, w *flagW, id string) flagW {
	killed := w.m.kill(func(struct{}) bool { return true })
	if r.IntN(2) == 0 {
		return flagW{s: w.s.Disable(), m: killed}
	}
	d := flagW{s: w.s.Enable(id), m: w.m.add(r, struct{}{})}
	d.m.join(killed)
	return d
}

// entry is a model element of a map: a key and an element of its value.
type entry struct {
	k string
	e int
}

// groupView formats a map's value: each key with its sorted elements.
func groupView[E cmp.Ordered](keys []string, elems func(k string) []E) string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprint(&b, k, elems(k), " ")
	}
	return b.String()
}

func groupModel(es []entry, dedup bool) string {
	byKey := map[string][]int{}
	for _, e := range es {
		byKey[e.k] = append(byKey[e.k], e.e)
	}
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range byKey {
			if !yield(k) {
				return
			}
		}
	})
	return groupView(keys, func(k string) []int {
		if dedup {
			return sortedSet(byKey[k])
		}
		return sorted(byKey[k])
	})
}

type mapSetView struct{}

func (mapSetView) value(m ORMap[string, ORSet[int]]) any {
	return groupView(m.Keys(), func(k string) []int { v, _ := m.Get(k); return v.Elements() })
}
func (mapSetView) model(es []entry) any { return groupModel(es, true) }

type mapSetW = pair[ORMap[string, ORSet[int]], *ORMap[string, ORSet[int]], entry, mapSetView]

func mutMapSet(r *rand.Rand, w *mapSetW, id string) mapSetW {
	k, x := pickKey(r), pick(r)
	switch r.IntN(6) {
	case 0:
		return mapSetW{s: w.s.Remove(k), m: w.m.kill(func(e entry) bool { return e.k == k })}
	case 1, 2:
		d := w.s.Update(k, func(s *ORSet[int]) { s.Remove(x) })
		return mapSetW{s: d, m: w.m.kill(func(e entry) bool { return e == entry{k, x} })}
	}
	d := w.s.Update(k, func(s *ORSet[int]) { s.Add(id, x) })
	return mapSetW{s: d, m: w.m.add(r, entry{k, x})}
}

type mapRegView struct{}

func (mapRegView) value(m ORMap[string, MVRegister[int]]) any {
	return groupView(m.Keys(), func(k string) []int { v, _ := m.Get(k); return sorted(v.Values()) })
}
func (mapRegView) model(es []entry) any { return groupModel(es, false) }

type mapRegW = pair[ORMap[string, MVRegister[int]], *ORMap[string, MVRegister[int]], entry, mapRegView]

func mutMapReg(r *rand.Rand, w *mapRegW, id string) mapRegW {
	k, x := pickKey(r), pick(r)
	killed := w.m.kill(func(e entry) bool { return e.k == k })
	if r.IntN(4) == 0 {
		return mapRegW{s: w.s.Remove(k), m: killed}
	}
	// Two writes in one update: the map's delta covers both.
	d := w.s.Update(k, func(v *MVRegister[int]) {
		v.Set(id, x+100)
		v.Set(id, x)
	})
	m := w.m.add(r, entry{k, x})
	m.join(killed)
	return mapRegW{s: d, m: m}
}

// nestedView formats a map of maps of flags as outer key, inner keys
// whose flag is on.
type nestedView struct{}

type nestedMap = ORMap[string, ORMap[string, EWFlag]]

func (nestedView) value(m nestedMap) any {
	var b strings.Builder
	for _, k := range m.Keys() {
		inner, _ := m.Get(k)
		fmt.Fprint(&b, k, inner.Keys(), " ")
	}
	return b.String()
}
func (nestedView) model(es []entry) any {
	var out []entry // e is the inner key's index
	for _, e := range sortedEntries(es) {
		if len(out) == 0 || out[len(out)-1] != e {
			out = append(out, e)
		}
	}
	var b strings.Builder
	for i := 0; i < len(out); {
		j := i
		var inner []string
		for ; j < len(out) && out[j].k == out[i].k; j++ {
			inner = append(inner, string(rune('x'+out[j].e)))
		}
		fmt.Fprint(&b, out[i].k, inner, " ")
		i = j
	}
	return b.String()
}

func sortedEntries(es []entry) []entry {
	es = slices.Clone(es)
	slices.SortFunc(es, func(a, b entry) int { return cmp.Or(strings.Compare(a.k, b.k), cmp.Compare(a.e, b.e)) })
	return es
}

type nestedW = pair[nestedMap, *nestedMap, entry, nestedView]

func mutNested(r *rand.Rand, w *nestedW, id string) nestedW {
	k, x := pickKey(r), r.IntN(3)
	ik := string(rune('x' + x))
	at := func(e entry) bool { return e == entry{k, x} }
	switch r.IntN(6) {
	case 0:
		return nestedW{s: w.s.Remove(k), m: w.m.kill(func(e entry) bool { return e.k == k })}
	case 1:
		d := w.s.Update(k, func(in *ORMap[string, EWFlag]) { in.Remove(ik) })
		return nestedW{s: d, m: w.m.kill(at)}
	case 2:
		d := w.s.Update(k, func(in *ORMap[string, EWFlag]) {
			in.Update(ik, func(f *EWFlag) { f.Disable() })
		})
		return nestedW{s: d, m: w.m.kill(at)}
	}
	killed := w.m.kill(at)
	d := w.s.Update(k, func(in *ORMap[string, EWFlag]) {
		in.Update(ik, func(f *EWFlag) { f.Enable(id) })
	})
	m := w.m.add(r, entry{k, x})
	m.join(killed)
	return nestedW{s: d, m: m}
}

// lawCheck runs the law tests of one type.
type lawCheck struct {
	name  string
	run   func(t *testing.T, seed uint64) // the laws on one history
	perms func(t *testing.T)              // every delivery order of a few deltas
}

func lawsOf[W any, P subject[W]](name string, mut mutator[W]) lawCheck {
	return lawCheck{
		name:  name,
		run:   func(t *testing.T, seed uint64) { lawsOnSeed[W, P](t, seed, mut) },
		perms: func(t *testing.T) { checkPermutations[W, P](t, mut) },
	}
}

var lawChecks = []lawCheck{
	lawsOf("GCounter", mutGCounter),
	lawsOf("PNCounter", mutPNCounter),
	lawsOf("GSet", mutGSet),
	lawsOf("LWWRegister", mutLWW),
	lawsOf("ORSet", mutORSet),
	lawsOf("MVRegister", mutMVRegister),
	lawsOf("EWFlag", mutEWFlag),
	lawsOf("ORMap/ORSet", mutMapSet),
	lawsOf("ORMap/MVRegister", mutMapReg),
	lawsOf("ORMap/ORMap/EWFlag", mutNested),
	lawsOf("ResetCounter", mutResetCounter),
	lawsOf("PNCounterMap", mutPNCounterMap),
	lawsOf("LWWMap", mutLWWMap),
	lawsOf("ORMap/DWFlag", mutDWMap),
	lawsOf("ORMap/ORMap/ResetCounter", mutDoc),
	lawsOf("ORMultiMap", mutMultiMap),
	lawsOf("Map", mutMixed),
}

func TestLaws(t *testing.T) {
	for _, c := range lawChecks {
		t.Run(c.name, func(t *testing.T) {
			for seed := range seeds() {
				c.run(t, seed)
			}
		})
	}
}

func TestDeliveryOrders(t *testing.T) {
	for _, c := range lawChecks {
		t.Run(c.name, c.perms)
	}
}
