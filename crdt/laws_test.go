package crdt

import (
	"flag"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

var long = flag.Bool("long", false, "run the property tests on many more seeds")

// seeds returns how many seeds a property test runs.
func seeds() uint64 {
	if *long {
		return 3000
	}
	return 40
}

// subject is a CRDT under test paired with its reference model: merging
// merges both, and check compares the CRDT's value with the model's.
type subject[W any] interface {
	*W
	join(o *W)     // merge o into the receiver, the CRDT and the model
	copy() W       // deep copy of both
	key() string   // canonical encoding of the CRDT: equal states, equal keys
	check() string // "" when the CRDT's value is the model's, else why not
	decode(b string) (W, error)
}

// mutator applies a random mutation on replica id to w and returns its
// delta (the CRDT's and the model's).
type mutator[W any] func(r *rand.Rand, w *W, id string) W

var replicaIDs = []string{"a", "b", "c", "d"}

// encode returns v's msgpack encoding as a string.
func encode(t testing.TB, v any) string {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatalf("encode %T: %v", v, err)
	}
	return string(b)
}

// lawsOnSeed runs a random history of mut over 3 or 4 replicas that mutate
// and merge each other's states, and checks, with the seed in every
// failure:
//   - every delta merged into a copy of the pre-state gives the post-state;
//   - every state's value matches the model, and the encoding round-trips;
//   - Merge is commutative, associative and idempotent on the final and
//     intermediate states;
//   - the deltas, delivered to a fresh replica in causal order, one by one
//     or joined into delta-groups, reproduce the model at every step and
//     end at the join of all states; in random orders and groupings they
//     converge to the same join.
func lawsOnSeed[W any, P subject[W]](t *testing.T, seed uint64, mut mutator[W]) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d: "+format, append([]any{seed}, args...)...)
	}
	roundTrip := func(what string, w *W) {
		t.Helper()
		back, err := P(w).decode(P(w).key())
		if err != nil {
			fail("%s: decode: %v", what, err)
		}
		if P(&back).key() != P(w).key() {
			fail("%s: encoding does not round-trip", what)
		}
	}
	check := func(what string, w *W) {
		t.Helper()
		if why := P(w).check(); why != "" {
			fail("%s: %s", what, why)
		}
		roundTrip(what, w)
	}
	reps := make([]W, 3+r.IntN(2))
	var deltas, snapshots []W
	for step := range 20 + r.IntN(40) {
		i := r.IntN(len(reps))
		if r.IntN(3) > 0 {
			pre := P(&reps[i]).copy()
			d := mut(r, &reps[i], replicaIDs[i])
			deltas = append(deltas, P(&d).copy())
			P(&pre).join(&d)
			if P(&pre).key() != P(&reps[i]).key() {
				fail("step %d: the delta does not reproduce the mutation", step)
			}
			roundTrip("delta", &d) // a counter's delta holds a count, not the increment
		} else {
			o := P(&reps[r.IntN(len(reps))]).copy()
			P(&reps[i]).join(&o)
		}
		check("replica", &reps[i])
		if len(snapshots) < 4 && r.IntN(8) == 0 {
			snapshots = append(snapshots, P(&reps[i]).copy())
		}
	}
	states := append(slices.Clone(reps), snapshots...)
	join := func(ws ...W) W {
		var acc W
		for _, w := range ws {
			c := P(&w).copy()
			P(&acc).join(&c)
		}
		return acc
	}
	key := func(w W) string { return P(&w).key() }
	for _, a := range states {
		if key(join(a, a)) != key(a) {
			fail("Merge is not idempotent")
		}
		for _, b := range states {
			ab := join(a, b)
			if key(ab) != key(join(b, a)) {
				fail("Merge is not commutative")
			}
			if key(join(ab, b)) != key(ab) {
				fail("merging a state twice changes it")
			}
		}
	}
	for range 20 {
		a, b, c := states[r.IntN(len(states))], states[r.IntN(len(states))], states[r.IntN(len(states))]
		if key(join(join(a, b), c)) != key(join(a, join(b, c))) {
			fail("Merge is not associative")
		}
	}
	all := join(reps...)
	check("join of all replicas", &all)
	// Causal delivery: the order the deltas were made in, one by one and
	// as delta-groups of consecutive deltas.
	var fresh W
	for k := range deltas {
		d := P(&deltas[k]).copy()
		P(&fresh).join(&d)
		check("causal delivery", &fresh)
	}
	if key(fresh) != key(all) {
		fail("the deltas in causal order do not converge to the join of the states")
	}
	fresh = *new(W)
	for k := 0; k < len(deltas); {
		n := 1 + r.IntN(4)
		g := join(deltas[k:min(k+n, len(deltas))]...)
		roundTrip("delta-group", &g) // its value need not be the model's: not causally closed
		P(&fresh).join(&g)
		check("causal delivery of delta-groups", &fresh)
		k += n
	}
	if key(fresh) != key(all) {
		fail("the delta-groups in causal order do not converge to the join of the states")
	}
	// Any order, with duplicates, and any grouping converge.
	for range 10 {
		order := slices.Clone(deltas)
		r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		if len(order) > 0 {
			order = append(order, order[r.IntN(len(order))])
		}
		if key(join(order...)) != key(all) {
			fail("the deltas in a random order do not converge")
		}
		var groups []W
		for k := 0; k < len(order); {
			n := 1 + r.IntN(5)
			groups = append(groups, join(order[k:min(k+n, len(order))]...))
			k += n
		}
		r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
		if key(join(groups...)) != key(all) {
			fail("random delta-groups in a random order do not converge")
		}
	}
}

// checkPermutations delivers every permutation of a few deltas of random
// histories to a fresh replica and checks that all converge to the join of
// the replicas' states.
func checkPermutations[W any, P subject[W]](t *testing.T, mut mutator[W]) {
	for seed := range seeds() / 4 {
		r := rand.New(rand.NewPCG(seed, 0x9e3))
		reps := make([]W, 3)
		var deltas []W
		for len(deltas) < 6 {
			i := r.IntN(len(reps))
			if r.IntN(4) == 0 {
				o := P(&reps[r.IntN(len(reps))]).copy()
				P(&reps[i]).join(&o)
				continue
			}
			d := mut(r, &reps[i], replicaIDs[i])
			deltas = append(deltas, P(&d).copy())
		}
		var all W
		for i := range reps {
			P(&all).join(&reps[i])
		}
		want := P(&all).key()
		permute(len(deltas), func(order []int) {
			var got W
			for _, k := range order {
				d := P(&deltas[k]).copy()
				P(&got).join(&d)
			}
			if P(&got).key() != want {
				t.Fatalf("seed %d: delivery order %v does not converge", seed, order)
			}
		})
	}
}

// permute calls f with every permutation of 0..n-1 (Heap's algorithm).
func permute(n int, f func([]int)) {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	var gen func(k int)
	gen = func(k int) {
		if k <= 1 {
			f(p)
			return
		}
		for i := range k - 1 {
			gen(k - 1)
			if k%2 == 0 {
				p[i], p[k-1] = p[k-1], p[i]
			} else {
				p[0], p[k-1] = p[k-1], p[0]
			}
		}
		gen(k - 1)
	}
	gen(n)
}

// tagged is the reference model of the observed-remove types, the classic
// CRDTs with tombstones: every add or write is a unique tag, a remove or
// overwrite kills the live tags it has seen, and merge is the union of the
// tags and of the tombstones.
type tagged[E comparable] struct {
	tags map[uint64]E
	dead map[uint64]bool
}

func (m *tagged[E]) join(o tagged[E]) {
	if m.tags == nil {
		m.tags = map[uint64]E{}
	}
	if m.dead == nil {
		m.dead = map[uint64]bool{}
	}
	maps.Copy(m.tags, o.tags)
	maps.Copy(m.dead, o.dead)
}

func (m tagged[E]) copy() tagged[E] {
	return tagged[E]{tags: maps.Clone(m.tags), dead: maps.Clone(m.dead)}
}

// add records a new tag for e and returns the delta.
func (m *tagged[E]) add(r *rand.Rand, e E) tagged[E] {
	d := tagged[E]{tags: map[uint64]E{r.Uint64(): e}}
	m.join(d)
	return d
}

// kill kills the live tags whose element matches and returns the delta.
func (m *tagged[E]) kill(match func(E) bool) tagged[E] {
	d := tagged[E]{dead: map[uint64]bool{}}
	for tag, e := range m.tags {
		if !m.dead[tag] && match(e) {
			d.dead[tag] = true
		}
	}
	m.join(d)
	return d
}

// live returns the elements of the live tags, one per tag.
func (m tagged[E]) live() []E {
	var out []E
	for tag, e := range m.tags {
		if !m.dead[tag] {
			out = append(out, e)
		}
	}
	return out
}
