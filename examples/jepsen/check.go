package jepsen

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/ring"
)

// StaleRead is a read that missed an acknowledged write which finished
// before it began and which no write invoked before the read completed
// could have superseded, or that returned a value an acknowledged write
// finished before it began had replaced.
type StaleRead struct {
	Read  Op
	Write Op   // the write it missed, or the one that had replaced what it returned
	Back  bool // it returned a replaced value (Write replaced it)
	Calm  bool // no fault was active or healing when the read ran
}

func (s StaleRead) String() string {
	what := "missed"
	if s.Back {
		what = "returned a value replaced by"
	}
	return fmt.Sprintf("read of %s at %s [%v, %v] %s %s %q (dot %v, acknowledged at %v); it returned %q",
		s.Read.Key, s.Read.Node, s.Read.Invoke, s.Read.Complete, what, s.Write.Kind, s.Write.Value, s.Write.Dot, s.Write.Complete, s.Read.Values)
}

// checkReads returns the history's stale reads ([kv.CheckReads]). calm
// reports whether a read's interval was clear of faults and their
// recovery.
func checkReads(ops []Op, calm func(from, to time.Duration) bool) []StaleRead {
	var stale []StaleRead
	for _, s := range kv.CheckReads(kvHistory(ops)) {
		r := ops[s.Read]
		stale = append(stale, StaleRead{Read: r, Write: ops[s.Write], Back: s.Back, Calm: calm(r.Invoke, r.Complete)})
	}
	return stale
}

// kvHistory is ops as package kv's checks take them.
func kvHistory(ops []Op) []kv.Op {
	h := make([]kv.Op, len(ops))
	for i, o := range ops {
		h[i] = kv.Op{Kind: o.Kind, Key: o.Key,
			Invoke: o.Invoke, Complete: o.Complete, OK: o.OK, Value: o.Value, Values: o.Values, Context: o.Context, Dot: o.Dot}
	}
	return h
}

// acks splits the history's writes into kv.Check's acknowledged and
// indeterminate ones ([kv.Acks]).
func acks(ops []Op) (acked, indeterminate []kv.Ack) { return kv.Acks(kvHistory(ops)) }

// replicaObjects opens the stores of the members (their processes
// stopped) and returns, for every key, the objects its home replicas
// hold under the members' ring, as kv.Check wants them.
func replicaObjects(members []*slot, keys []string, n int) (map[string][]kv.Object, error) {
	var nodes []ring.Node
	data := map[string]string{}
	for _, s := range members {
		nodes = append(nodes, ring.Node{ID: s.id, Zone: s.zone})
		data[s.id] = s.data
	}
	r, err := ring.New(nodes, ring.Config{})
	if err != nil {
		return nil, err
	}
	stores := map[string]*kv.Store{}
	defer func() {
		for _, s := range stores {
			s.Close()
		}
	}()
	for id, dir := range data {
		s, err := kv.Open(filepath.Join(dir, "kv.db"), kv.StoreConfig{NoSync: true})
		if err != nil {
			return nil, fmt.Errorf("store of %s: %w", id, err)
		}
		stores[id] = s
	}
	out := make(map[string][]kv.Object, len(keys))
	for _, key := range keys {
		for _, id := range r.Replicas([]byte(key), n, nil) {
			o, _, err := stores[id].Get([]byte(key))
			if err != nil {
				return nil, fmt.Errorf("%s on %s: %w", key, id, err)
			}
			out[key] = append(out[key], o)
		}
	}
	return out, nil
}
