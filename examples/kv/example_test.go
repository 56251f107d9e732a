package kv_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/vclock"
)

// One replica's store: a write, two concurrent writes from the same
// context (siblings), a delete that removes what it read, all durable
// across a reopen.
func ExampleStore() {
	dir, err := os.MkdirTemp("", "kv-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "kv.db")
	s, err := kv.Open(path, kv.StoreConfig{Epoch: "e1"})
	if err != nil {
		panic(err)
	}
	key := []byte("cart")
	actor := "n1." + s.Epoch()
	o, _ := s.Update(key, vclock.VClock{}, actor, kv.Version{Value: []byte("apple")})
	read := o.Context()
	s.Update(key, read, actor, kv.Version{Value: []byte("apple,pear")})
	o, _ = s.Update(key, read, actor, kv.Version{Value: []byte("apple,fig")})
	fmt.Printf("%q %v\n", kv.Live(o), o.Context())

	o, _ = s.Update(key, o.Context(), actor, kv.Version{Deleted: true})
	fmt.Printf("%q %v\n", kv.Live(o), o.Context())
	s.Close()

	s, _ = kv.Open(path, kv.StoreConfig{})
	defer s.Close()
	o, found, _ := s.Get(key)
	fmt.Println(found, o.Len(), o.Context(), s.Epoch())
	// Output:
	// ["apple,fig" "apple,pear"] {"n1.e1":3}
	// [] {"n1.e1":4}
	// true 1 {"n1.e1":4} e1
}

// A client history with a stale read: the second get began after the put
// was acknowledged, and nothing could have replaced it, yet it missed it.
func ExampleCheckReads() {
	dot := vclock.Dot{ID: "n1", Counter: 1}
	history := []kv.Op{
		{Kind: kv.OpPut, Key: "k", Value: []byte("a"), Invoke: 0, Complete: 10, OK: true, Dot: dot},
		{Kind: kv.OpGet, Key: "k", Invoke: 5, Complete: 20, OK: true},                                 // concurrent: may miss it
		{Kind: kv.OpGet, Key: "k", Invoke: 15, Complete: 25, OK: true},                                // stale
		{Kind: kv.OpGet, Key: "k", Invoke: 15, Complete: 25, OK: true, Values: [][]byte{[]byte("a")}}, // fine
	}
	for _, s := range kv.CheckReads(history) {
		fmt.Printf("get %d missed put %d (back %v)\n", s.Read, s.Write, s.Back)
	}
	// Output: get 2 missed put 0 (back false)
}
