package ring_test

import (
	"fmt"

	"github.com/distkit/distkit/ring"
)

// A three-zone cluster: each key gets three replicas, one per zone.
func ExampleRing_Replicas() {
	r, err := ring.New([]ring.Node{
		{ID: "a1", Zone: "a"}, {ID: "a2", Zone: "a"},
		{ID: "b1", Zone: "b"}, {ID: "b2", Zone: "b"},
		{ID: "c1", Zone: "c"},
	}, ring.Config{})
	if err != nil {
		panic(err)
	}
	dst := make([]string, 0, 3)
	for _, key := range []string{"alice", "bob", "carol"} {
		dst = r.Replicas([]byte(key), 3, dst)
		fmt.Println(key, r.LookupString(key), dst)
	}
	// Output:
	// alice c1 [c1 a1 b2]
	// bob b1 [b1 c1 a1]
	// carol b2 [b2 a2 c1]
}

// Moves is the plan a store executes when a node joins: every range moves
// to the new node.
func ExampleMoves() {
	old, _ := ring.New([]ring.Node{{ID: "a"}, {ID: "b"}, {ID: "c"}}, ring.Config{VNodes: 4})
	grown, _ := old.With(ring.Node{ID: "d"})
	moves := ring.Moves(old, grown)
	to := map[string]int{}
	for _, m := range moves {
		to[m.To]++
	}
	fmt.Println(len(moves), "ranges, all to", to)
	// Output: 2 ranges, all to map[d:2]
}

// Bounded loads keep every node within 25% of the average, even on a ring
// with one point per node, where plain hashing is badly skewed.
func ExampleBounded() {
	r, _ := ring.New([]ring.Node{{ID: "a"}, {ID: "b"}, {ID: "c"}, {ID: "d"}}, ring.Config{VNodes: 1})
	b, err := ring.NewBounded(r, 1.25)
	if err != nil {
		panic(err)
	}
	for i := range 100 {
		if _, err := b.Add(fmt.Sprint("conn-", i)); err != nil {
			panic(err)
		}
	}
	plain := map[string]int{}
	for i := range 100 {
		plain[r.LookupString(fmt.Sprint("conn-", i))]++
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		fmt.Printf("%s: ring alone %d, bounded %d <= %d\n", id, plain[id], b.Load(id), b.Capacity(id))
	}
	// Output:
	// a: ring alone 70, bounded 32 <= 32
	// b: ring alone 4, bounded 31 <= 32
	// c: ring alone 2, bounded 15 <= 32
	// d: ring alone 24, bounded 22 <= 32
}

func ExampleJump() {
	fmt.Println(ring.Jump(0xdeadbeef, 10), ring.Jump(0xdeadbeef, 17), ring.Jump(1, 0))
	// Output: 5 16 -1
}

func ExampleRendezvous_LookupN() {
	h, err := ring.NewRendezvous([]ring.Node{{ID: "x", Weight: 1}, {ID: "y", Weight: 2}, {ID: "z", Weight: 1}})
	if err != nil {
		panic(err)
	}
	fmt.Println(h.Lookup([]byte("object-42")), h.LookupN([]byte("object-42"), 2, nil))
	// Output: x [x y]
}

func ExampleRendezvous_Replicas() {
	h, err := ring.NewRendezvous([]ring.Node{
		{ID: "a1", Zone: "a"}, {ID: "a2", Zone: "a"}, {ID: "b1", Zone: "b"}, {ID: "b2", Zone: "b"},
	})
	if err != nil {
		panic(err)
	}
	// The two best scores are both in zone b; Replicas takes zone a's best
	// second.
	fmt.Println(h.LookupNString("object-1", 2, nil), h.ReplicasString("object-1", 2, nil))
	// Output: [b1 b2] [b1 a2]
}
