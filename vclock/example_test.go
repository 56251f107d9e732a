package vclock_test

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/distkit/distkit/vclock"
)

// Two replicas update independently, then exchange clocks.
func ExampleVClock() {
	var a, b vclock.VClock
	a.Tick("a")
	b.Merge(a) // b received a's state
	b.Tick("b")
	a.Tick("a")
	fmt.Println(a, b, a.Compare(b))

	a.Merge(b)
	fmt.Println(a, a.Compare(b), b.Compare(a), a.Descends(b))
	fmt.Println(a.Contains(vclock.Dot{ID: "b", Counter: 1}))
	// Output:
	// {"a":2} {"a":1, "b":1} Concurrent
	// {"a":2, "b":1} After Before true
	// true
}

// Riak-style pruning keeps a clock that many coordinators touched small,
// dropping the entries that have not changed for longest.
func ExampleVClock_Prune() {
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	var v vclock.VClock
	for i, id := range []string{"n1", "n2", "n3", "n4"} {
		v.TickAt(id, start.Add(time.Duration(i)*time.Hour))
	}
	now := start.Add(48 * time.Hour)
	p := vclock.PrunePolicy{Small: 1, Big: 3, Young: time.Minute, Old: 72 * time.Hour}
	fmt.Println(v.Prune(now, p), v)
	// Output: 1 {"n2":1, "n3":1, "n4":1}
}

// The life of one key in a Dynamo-style store: each read returns the
// siblings and a context, each write sends back the context it read.
func ExampleDVVSet() {
	var key vclock.DVVSet[string] // the key's state on the server "n1"

	key.Update(vclock.VClock{}, "n1", "v1") // a blind first write
	fmt.Println(key.Values(), key.Context())

	ctx := key.Context() // clients B and C both read v1
	key.Update(ctx, "n1", "v2")
	fmt.Println(key.Values(), "B replaced v1")
	key.Update(ctx, "n1", "v3")
	fmt.Println(key.Values(), "C had not seen v2: siblings")

	key.Update(key.Context(), "n1", "v2+v3") // D read both and resolved them
	fmt.Println(key.Values(), key.Context())
	// Output:
	// [v1] {"n1":1}
	// [v2] B replaced v1
	// [v3 v2] C had not seen v2: siblings
	// [v2+v3] {"n1":4}
}

// Two clients keep writing, each with the context its previous write
// returned. With one vector clock per key they would add a sibling per
// write; with dots the key never holds more than their two latest values.
func ExampleDVVSet_interleavedWriters() {
	var key vclock.DVVSet[string]
	var ctxA, ctxB vclock.VClock
	for i := range 5 {
		key.Update(ctxA, "n1", fmt.Sprintf("a%d", i))
		ctxA = key.Context()
		key.Update(ctxB, "n1", fmt.Sprintf("b%d", i))
		ctxB = key.Context()
		fmt.Print(key.Values(), " ")
	}
	fmt.Println()
	// Output: [b0 a0] [b1 a1] [b2 a2] [b3 a3] [b4 a4]
}

// Replicas that took writes during a partition converge with Sync.
func ExampleDVVSet_Sync() {
	var r1, r2 vclock.DVVSet[string]
	r1.Update(vclock.VClock{}, "n1", "x")
	r2.Sync(r1) // replicated
	ctx := r1.Context()
	r1.Update(ctx, "n1", "from n1") // partition: both overwrite x
	r2.Update(ctx, "n2", "from n2")
	r1.Sync(r2)
	r2.Sync(r1)
	fmt.Println(r1.Values(), r1.Context(), r1.Compare(r2))
	// Output: [from n1 from n2] {"n1":2, "n2":1} Equal
}

// A last-writer-wins resolution keeps the newest value with its dot.
func ExampleDVVSet_LWW() {
	type stamped struct {
		V  string
		TS int64
	}
	var key vclock.DVVSet[stamped]
	key.Update(vclock.VClock{}, "n1", stamped{"old", 10})
	key.Update(vclock.VClock{}, "n2", stamped{"new", 20})
	key.LWW(func(a, b stamped) int { return int(a.TS - b.TS) })
	fmt.Println(key.Values(), key.Context())
	// Output: [{new 20}] {"n1":1, "n2":1}
}

// Sets round-trip through msgpack with their values.
func ExampleDVVSet_EncodeMsgpack() {
	type record struct {
		Data    []byte
		Deleted bool
	}
	var key vclock.DVVSet[record]
	key.Update(vclock.VClock{}, "n1", record{Data: []byte("hello")})
	key.Update(vclock.VClock{}, "n2", record{Deleted: true})

	b, err := msgpack.Marshal(key)
	if err != nil {
		panic(err)
	}
	var back vclock.DVVSet[record]
	if err := msgpack.Unmarshal(b, &back); err != nil {
		panic(err)
	}
	again, _ := msgpack.Marshal(back)
	fmt.Println(len(back.Values()), back.Context(), bytes.Equal(b, again))
	// Output: 2 {"n1":1, "n2":1} true
}

// A server that takes contexts from clients writes with TryUpdate: a forged
// context that would exhaust the server's counter is refused, and the key
// stays as it was.
func ExampleDVVSet_TryUpdate() {
	var s vclock.DVVSet[string]
	s.Update(vclock.VClock{}, "n1", "v1")
	var forged vclock.VClock
	forged.Add(vclock.Dot{ID: "n1", Counter: vclock.MaxCounter})
	err := s.TryUpdate(forged, "n1", "evil")
	fmt.Println(errors.Is(err, vclock.ErrExhausted), s.Values(), s.Context())
	// Output: true [v1] {"n1":1}
}
