package kv_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/ring"
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

// noPeers is the transport of a cluster of one node: it never calls out.
type noPeers struct{}

func (noPeers) Call(context.Context, string, []byte) ([]byte, error) {
	return nil, errors.New("no peers")
}

// The HTTP API in five requests, on a one-node cluster: a PUT, a second
// blind PUT that leaves two siblings (300), a PUT with the read's
// X-Context that resolves them, a DELETE (which needs a context: 428
// without, with a problem body), and an Idempotency-Key retry, replayed.
func ExampleAPI() {
	dir, err := os.MkdirTemp("", "kv-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	s, err := kv.Open(filepath.Join(dir, "kv.db"), kv.StoreConfig{Epoch: "e1", NoSync: true})
	if err != nil {
		panic(err)
	}
	defer s.Close()
	r, _ := ring.New([]ring.Node{{ID: "n1"}}, ring.Config{})
	n, err := kv.NewNode(kv.NodeConfig{ID: "n1", Ring: r, Store: s, Transport: noPeers{}, Quorum: quorum.Config{N: 1, R: 1, W: 1}})
	if err != nil {
		panic(err)
	}
	defer n.Close()
	h := kv.API(n, kv.APIConfig{Guard: idempotency.New(&idempotency.MemStore{}, idempotency.Config{})})
	do := func(method, body string, header ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(method, "/kv/greeting", strings.NewReader(body))
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		fmt.Println(strings.TrimSpace(fmt.Sprintf("%s %q -> %d %s", method, body, rec.Code, strings.TrimSpace(rec.Body.String()))))
		return rec
	}
	do("PUT", "hello")
	do("PUT", "hello") // blind: no X-Context
	read := do("GET", "")
	do("PUT", "hello, world", kv.HeaderContext, read.Header().Get(kv.HeaderContext))
	read = do("GET", "")
	do("DELETE", "")
	do("DELETE", "", kv.HeaderContext, read.Header().Get(kv.HeaderContext))
	do("PUT", "paid", "Idempotency-Key", `"order-42"`)
	retry := do("PUT", "paid", "Idempotency-Key", `"order-42"`)
	fmt.Println("replayed:", retry.Header().Get("Idempotent-Replayed"))
	// Output:
	// PUT "hello" -> 204
	// PUT "hello" -> 204
	// GET "" -> 300 {"siblings":["aGVsbG8=","aGVsbG8="]}
	// PUT "hello, world" -> 204
	// GET "" -> 200 hello, world
	// DELETE "" -> 428 {"type":"about:blank","title":"Precondition Required","status":428,"detail":"DELETE needs the X-Context of a read"}
	// DELETE "" -> 204
	// PUT "paid" -> 204
	// PUT "paid" -> 204
	// replayed: true
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
