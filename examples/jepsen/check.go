package jepsen

import (
	"bytes"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"time"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/ring"
	"github.com/distkit/distkit/vclock"
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

// checkReads returns the history's stale reads. calm reports whether
// a read's interval was clear of faults and their recovery.
func checkReads(ops []Op, calm func(from, to time.Duration) bool) []StaleRead {
	byKey := map[string][]Op{}
	for _, o := range ops {
		byKey[o.Key] = append(byKey[o.Key], o)
	}
	var stale []StaleRead
	for _, kops := range byKey {
		var writes, acked []Op
		dots := map[string]vclock.Dot{} // an acknowledged put's value → its dot
		for _, o := range kops {
			if o.Kind != Read {
				writes = append(writes, o)
				if o.OK {
					acked = append(acked, o)
				}
				if o.OK && o.Kind == Put && o.Dot.Counter > 0 { // the store reports a dot with every acknowledgement
					dots[string(o.Value)] = o.Dot
				}
			}
		}
		// From when on each acknowledged write may have been replaced: the
		// earliest invocation of a write whose context has its dot.
		replacedFrom := make([]time.Duration, len(acked))
		for i, w := range acked {
			replacedFrom[i] = time.Duration(math.MaxInt64)
			for _, s := range writes {
				if s.Context.Contains(w.Dot) {
					replacedFrom[i] = min(replacedFrom[i], s.Invoke)
				}
			}
		}
		for _, r := range kops {
			if r.Kind != Read || !r.OK {
				continue
			}
			for i, w := range acked {
				if w.Complete >= r.Invoke {
					continue
				}
				if w.Kind == Put && replacedFrom[i] >= r.Complete &&
					!slices.ContainsFunc(r.Values, func(v []byte) bool { return bytes.Equal(v, w.Value) }) {
					stale = append(stale, StaleRead{Read: r, Write: w, Calm: calm(r.Invoke, r.Complete)})
				}
				// w replaced what its context covered: no read that began after it returns that.
				if slices.ContainsFunc(r.Values, func(v []byte) bool {
					d, ok := dots[string(v)]
					return ok && w.Context.Contains(d)
				}) {
					stale = append(stale, StaleRead{Read: r, Write: w, Back: true, Calm: calm(r.Invoke, r.Complete)})
				}
			}
		}
	}
	slices.SortFunc(stale, func(a, b StaleRead) int { return int(a.Read.Invoke - b.Read.Invoke) })
	return stale
}

// acks splits the history's writes into kv.Check's acknowledged and
// indeterminate ones.
func acks(ops []Op) (acked, indeterminate []kv.Ack) {
	for _, o := range ops {
		if o.Kind == Read {
			continue
		}
		a := kv.Ack{Key: o.Key, Version: kv.Version{Value: o.Value, Deleted: o.Kind == Delete}, Context: o.Context, Dot: o.Dot}
		if o.OK {
			acked = append(acked, a)
		} else {
			indeterminate = append(indeterminate, a)
		}
	}
	return acked, indeterminate
}

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
