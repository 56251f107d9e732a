package crdt_test

import (
	"fmt"
	"time"

	"github.com/distkit/distkit/crdt"
	"github.com/distkit/distkit/hlc"
	"github.com/vmihailenco/msgpack/v5"
)

// Two replicas of a set exchange deltas. A remove removes what its replica
// has seen, so an add it has not seen wins.
func Example() {
	var a, b crdt.ORSet[string]
	b.Merge(a.Add("a", "apple"))
	b.Merge(a.Add("a", "pear"))

	rm := b.Remove("apple") // b saw the apple
	add := a.Add("a", "apple")
	a.Merge(rm)
	b.Merge(add)
	fmt.Println(a.Elements(), b.Elements())

	a.Merge(b.Remove("pear"))
	fmt.Println(a.Elements(), b.Elements())

	delta, _ := msgpack.Marshal(a.Add("a", "fig"))
	fmt.Println(len(delta), "bytes on the wire")
	// Output:
	// [apple pear] [apple pear]
	// [apple] [apple]
	// 18 bytes on the wire
}

func ExamplePNCounter() {
	var a, b crdt.PNCounter
	d := a.Inc("a", 10)
	b.Merge(d)
	b.Merge(b.Dec("b", 3))
	a.Merge(b)
	a.Merge(d) // duplicates do no harm
	fmt.Println(a.Value(), b.Value())
	// Output: 7 7
}

// Concurrent writes are kept side by side until a write that saw them.
func ExampleMVRegister() {
	var a, b crdt.MVRegister[string]
	a.Set("a", "blue")
	b.Set("b", "green")
	a.Merge(b)
	fmt.Println(a.Values())
	b.Merge(a.Set("a", "teal")) // a resolves the conflict
	fmt.Println(b.Values())
	// Output:
	// [blue green]
	// [teal]
}

// A shopping cart per user: removing a user's cart resets it for what the
// remover saw, and an item added concurrently survives.
func ExampleORMap() {
	type carts = crdt.ORMap[string, crdt.ORSet[string]]
	add := func(m *carts, id, user, item string) carts {
		return m.Update(user, func(s *crdt.ORSet[string]) { s.Add(id, item) })
	}
	var a, b carts
	b.Merge(add(&a, "a", "ann", "milk"))
	rm := b.Remove("ann")            // b empties ann's cart
	d := add(&a, "a", "ann", "eggs") // concurrently, a adds eggs
	a.Merge(rm)
	b.Merge(d)
	cart, _ := a.Get("ann")
	fmt.Println(a.Keys(), cart.Elements(), b.Keys())
	// Output: [ann] [eggs] [ann]
}

func ExampleEWFlag() {
	var a, b crdt.EWFlag
	b.Merge(a.Enable("a"))
	off := b.Disable()
	on := a.Enable("a") // concurrent with the disable
	a.Merge(off)
	b.Merge(on)
	fmt.Println(a.Value(), b.Value())
	// Output: true true
}

func ExampleLWWRegister() {
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var a, b crdt.LWWRegister[string]
	a.Set("draft", hlc.Make(t0, 0), "a")
	b.Set("final", hlc.Make(t0, 1), "b")
	b.Set("tie", hlc.Make(t0, 1), "a") // same timestamp, smaller ID: loses
	a.Merge(b)
	v, ts := a.Get()
	fmt.Println(v, ts, a.Writer())
	// Output: final 2026-11-27T12:00:00.000000Z,1 b
}

// Replica "b" is retired: "a", which has seen all of its updates, folds
// b's count into its own, and every other replica drops b's entries.
func ExampleGCounter_Prune() {
	var a, b, c crdt.GCounter
	a.Inc("a", 2)
	b.Inc("b", 5)
	a.Merge(b)
	c.Merge(a)

	a.Prune("b", "a")
	c.PruningCleanup("b")
	c.Merge(a)
	fmt.Println(a.ModifiedBy(), a.Value(), c.ModifiedBy(), c.Value())
	// Output: [a] 7 [a] 7
}

func ExampleText() {
	var a, b crdt.Text // replicas "a" and "b"
	d1 := a.Insert("a", 0, "hello world")
	b.Merge(d1)
	d2 := a.Insert("a", 5, ",")     // "hello, world"
	d3 := b.Delete(6, 5)            // concurrently, b deletes "world"
	d4 := b.Insert("b", 6, "there") // and types "there"
	a.Merge(d3)
	a.Merge(d4)
	b.Merge(d2)
	fmt.Println(a.String())
	fmt.Println(b.String())
	// Output:
	// hello, there
	// hello, there
}

func ExampleList() {
	var a, b crdt.List[int]
	b.Merge(a.Insert("a", 0, 1, 2, 3))
	da := a.Insert("a", 3, 4) // both append concurrently
	db := b.Insert("b", 3, 5)
	a.Merge(db)
	b.Merge(da)
	fmt.Println(a.Items(), b.Items())
	// Output: [1 2 3 4 5] [1 2 3 4 5]
}

// Page views per page on two replicas. Removing a page resets its counter
// for the views the remover saw; views counted concurrently survive, on
// their own.
func ExamplePNCounterMap() {
	var a, b crdt.PNCounterMap[string]
	b.Merge(a.Inc("a", "/home", 5))
	rm := b.Remove("/home")     // b saw 5 views
	d := a.Inc("a", "/home", 2) // concurrently, 2 more
	a.Merge(rm)
	b.Merge(d)
	va, _ := a.Get("/home")
	vb, _ := b.Get("/home")
	fmt.Println(va, vb)
	// Output: 2 2
}

// A profile as a map of maps of counters: removing the profile resets
// everything in it that the remover saw, recursively.
func ExampleORMap_Update() {
	type profile = crdt.ORMap[string, crdt.ResetCounter]
	var a, b crdt.ORMap[string, profile]
	like := func(m *crdt.ORMap[string, profile], id, post string) crdt.ORMap[string, profile] {
		// The map returns the delta of whatever the function does.
		return m.Update("ann", func(p *profile) {
			p.Update(post, func(c *crdt.ResetCounter) { c.Inc(id, 1) })
		})
	}
	b.Merge(like(&a, "a", "post1"))
	b.Merge(like(&a, "a", "post2"))
	rm := b.Remove("ann")
	d := like(&a, "a", "post2") // concurrent with the remove
	a.Merge(rm)
	b.Merge(d)
	for _, m := range []crdt.ORMap[string, profile]{a, b} {
		ann, _ := m.Get("ann")
		for post, c := range ann.All() {
			fmt.Println(post, c.Value())
		}
	}
	// Output:
	// post2 1
	// post2 1
}

// Last-writer-wins values per key: a write concurrent with a remove
// survives when it is newer than what the remover saw.
func ExampleLWWMap() {
	var a, b crdt.LWWMap[string, string]
	b.Merge(a.Put("color", "red", hlc.Timestamp(10), "a"))
	rm := b.Remove("color")
	d := a.Put("color", "blue", hlc.Timestamp(11), "a")
	a.Merge(rm)
	b.Merge(d)
	va, _ := a.Get("color")
	vb, _ := b.Get("color")
	fmt.Println(va, vb)
	// Output: blue blue
}

func ExampleORMultiMap() {
	var a, b crdt.ORMultiMap[string, string]
	b.Merge(a.AddBinding("a", "ann", "admin"))
	b.Merge(a.AddBinding("a", "ann", "dev"))
	d1 := b.RemoveBinding("ann", "admin")
	d2 := a.Put("a", "bob", "dev", "ops")
	a.Merge(d1)
	b.Merge(d2)
	for k, es := range a.All() {
		fmt.Println(k, es)
	}
	fmt.Println(b.Contains("ann", "admin"), b.Len())
	// Output:
	// ann [dev]
	// bob [dev ops]
	// false 2
}

// A counter that can be reset: the reset takes away what its replica
// saw, not what it did not.
func ExampleResetCounter() {
	var a, b crdt.ResetCounter
	b.Merge(a.Inc("a", 3))
	rm := b.Reset()
	d := a.Dec("a", 1)
	a.Merge(rm)
	b.Merge(d)
	fmt.Println(a.Value(), b.Value())
	// Output: -1 -1
}

// A riak_dt-style map mixes field types under one key space: "likes" as a
// counter and "likes" as a set are two fields. Removing one leaves the
// other, and an update concurrent with a remove keeps its own effects.
func ExampleMap() {
	now := hlc.Make(time.Unix(1700000000, 0), 0)
	var a crdt.Map
	a.UpdateCounter("likes", func(c *crdt.ResetCounter) { c.Inc("a", 3) })
	a.UpdateSet("likes", func(s *crdt.ORSet[string]) { s.Add("a", "ann") })
	a.UpdateMap("profile", func(p *crdt.Map) {
		p.UpdateRegister("name", func(r *crdt.LWWRegister[string]) { r.Set("Ann", now, "a") })
	})
	b := a.Clone() // replica b has seen everything so far

	rm := b.Remove(crdt.Field{Name: "likes", Type: crdt.FieldSet})
	inc := a.UpdateCounter("likes", func(c *crdt.ResetCounter) { c.Inc("a", 1) })
	add := a.UpdateSet("likes", func(s *crdt.ORSet[string]) { s.Add("a", "bob") }) // concurrent with rm
	b.Merge(inc)
	b.Merge(add)
	a.Merge(rm)

	name, _ := a.Map("profile").Register("name").Get()
	fmt.Println(a.Counter("likes").Value(), a.Set("likes").Elements(), name)
	fmt.Println(a.Fields())
	x, _ := msgpack.Marshal(a)
	y, _ := msgpack.Marshal(b)
	fmt.Println(string(x) == string(y))
	// Output:
	// 4 [bob] Ann
	// [{likes counter} {likes set} {profile map}]
	// true
}

// Once every replica has merged a state (a quiescent point), each can
// compact the tombstones of removed counters and registers it holds.
func ExampleMap_Compact() {
	var a crdt.Map
	a.UpdateCounter("visits", func(c *crdt.ResetCounter) { c.Inc("a", 41) })
	a.Remove(crdt.Field{Name: "visits", Type: crdt.FieldCounter})
	b := a.Clone() // both replicas hold the same state: it is stable

	before, _ := msgpack.Marshal(a)
	fmt.Println(a.Compact(b), b.Compact(b))
	after, _ := msgpack.Marshal(a)
	fmt.Println(len(before), "->", len(after), "bytes")
	// Output:
	// 1 1
	// 22 -> 5 bytes
}
