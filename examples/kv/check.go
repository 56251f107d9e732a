package kv

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/distkit/distkit/vclock"
)

// ErrLost is wrapped by [Verdict.Err] when an acknowledged write was lost.
var ErrLost = errors.New("kv: acknowledged write lost")

// ErrDiverged is wrapped by [Verdict.Err] when replicas of a key differ.
var ErrDiverged = errors.New("kv: replicas differ")

// ErrResurrected is wrapped by [Verdict.Err] when a value deleted by a
// reaped tombstone is back.
var ErrResurrected = errors.New("kv: deleted value resurrected")

// Ack is a write a client saw acknowledged: the key, what it wrote (a
// tombstone for a delete), the context it sent, and the dot the store
// gave the write ([Written.Dot]). The checker recognises a value by its
// bytes, so every acknowledged write must write a distinct value. It is a
// plain value.
type Ack struct {
	Key     string
	Version Version
	Context vclock.VClock
	Dot     vclock.Dot
}

// Superseding reports whether the write a, acknowledged or not, may have
// replaced the values its context covered: an acknowledged write did; an
// indeterminate one (its PUT failed) did if its dot is in the key's final
// history, or if its dot is unknown (Counter 0: the coordinator's answer
// was lost), in which case the check gives it the benefit of the doubt.
func superseding(a Ack, acked bool, history vclock.VClock) bool {
	return acked || a.Dot.Counter == 0 || history.Contains(a.Dot)
}

// Verdict is the outcome of [Check]. It is a plain value.
type Verdict struct {
	Keys, Acks  int
	Lost        []Ack    // acknowledged writes neither present nor superseded
	Diverged    []string // keys whose replicas are not identical, sorted
	Resurrected []Ack    // acknowledged writes present after a reaped tombstone covered them
}

// Err returns nil for a passing verdict, and otherwise an error wrapping
// [ErrLost], [ErrDiverged] and/or [ErrResurrected] with the first
// offender of each.
func (v Verdict) Err() error {
	var errs []error
	if len(v.Lost) > 0 {
		a := v.Lost[0]
		errs = append(errs, fmt.Errorf("%w: %d of %d, first %q = %q (dot %v)", ErrLost, len(v.Lost), v.Acks, a.Key, a.Version.Value, a.Dot))
	}
	if len(v.Diverged) > 0 {
		errs = append(errs, fmt.Errorf("%w: %d of %d keys, first %q", ErrDiverged, len(v.Diverged), v.Keys, v.Diverged[0]))
	}
	if len(v.Resurrected) > 0 {
		a := v.Resurrected[0]
		errs = append(errs, fmt.Errorf("%w: %d, first %q = %q (dot %v)", ErrResurrected, len(v.Resurrected), a.Key, a.Version.Value, a.Dot))
	}
	return errors.Join(errs...)
}

// Check is the store's correctness verdict over a finished run: replicas
// maps each key to the objects its home replicas hold at the end (one per
// replica; a replica without the key holds the zero Object), acks lists
// every acknowledged write and indeterminate every write whose PUT failed
// (with the dot the failed PUT reported, if any).
//
// An acknowledged write is kept when its dot is in its key's final history
// and its version among the key's final values, and superseded when its
// dot is in the history and another write of the key that took effect (an
// acknowledged one, or an indeterminate one whose dot is in the history or
// unknown) sent a context containing its dot: that write replaced it
// knowingly. Any other acknowledged write is lost. A key diverged when its replicas' objects
// are not all equal. The check of values uses the first replica's
// object. Check is [CheckReaped] for a run that reaped no tombstone.
func Check(acks, indeterminate []Ack, replicas map[string][]Object) Verdict {
	return CheckReaped(acks, indeterminate, replicas, nil)
}

// CheckReaped is [Check] for a run whose nodes reaped tombstones: reaped
// maps a key to the join of the histories of the tombstones reaped from
// it (as [NodeConfig.OnReap] reports them). A key's history is then its
// final history joined with the reaped ones; an acknowledged delete whose
// tombstone was reaped is kept; and one more rule holds: no acknowledged
// value whose dot a reaped tombstone covered is among the key's final
// values, for the tombstone had replaced it ([ErrResurrected]). A
// replica that still holds a dead object within a reaped history counts
// as not holding the key: it reads the same, and its copy is being reaped
// (or was sent back by anti-entropy and will be reaped again), but the
// replicas that hold the key must still hold the same object.
func CheckReaped(acks, indeterminate []Ack, replicas map[string][]Object, reaped map[string]vclock.VClock) Verdict {
	v := Verdict{Keys: len(replicas), Acks: len(acks)}
	final := make(map[string][]Version, len(replicas))
	history := make(map[string]vclock.VClock, len(replicas))
	for key, h := range reaped {
		history[key] = h.Clone()
	}
	for key, objs := range replicas {
		if len(objs) == 0 {
			continue
		}
		held := slices.DeleteFunc(slices.Clone(objs), func(o Object) bool { return o.Len() == 0 })
		objs = slices.Clone(objs)
		for i, o := range objs {
			if Dead(o) && reaped[key].Descends(o.Context()) {
				objs[i] = Object{}
			}
		}
		final[key] = objs[0].Values()
		h := history[key]
		h.Merge(objs[0].Context())
		history[key] = h
		// Replicas that hold the key hold the same object, and so do all
		// of them once a dead one within the reaped history counts as
		// absent.
		if !identical(held) || !identical(objs) {
			v.Diverged = append(v.Diverged, key)
		}
	}
	slices.Sort(v.Diverged)
	covering := map[string][]vclock.VClock{} // contexts of writes that took effect, by key
	for i, a := range slices.Concat(acks, indeterminate) {
		if superseding(a, i < len(acks), history[a.Key]) {
			covering[a.Key] = append(covering[a.Key], a.Context)
		}
	}
	for _, a := range acks {
		if !history[a.Key].Contains(a.Dot) {
			v.Lost = append(v.Lost, a)
			continue
		}
		if slices.ContainsFunc(final[a.Key], func(f Version) bool {
			return f.Deleted == a.Version.Deleted && bytes.Equal(f.Value, a.Version.Value)
		}) {
			if !a.Version.Deleted && reaped[a.Key].Contains(a.Dot) {
				v.Resurrected = append(v.Resurrected, a)
			}
			continue
		}
		if a.Version.Deleted && reaped[a.Key].Contains(a.Dot) {
			continue // the tombstone did its work and was reaped
		}
		if slices.ContainsFunc(covering[a.Key], func(c vclock.VClock) bool { return c.Contains(a.Dot) }) {
			continue
		}
		v.Lost = append(v.Lost, a)
	}
	return v
}

// identical reports whether objs all encode to the same bytes.
func identical(objs []Object) bool {
	if len(objs) == 0 {
		return true
	}
	first, err := EncodeObject(objs[0])
	for _, o := range objs[1:] {
		enc, err2 := EncodeObject(o)
		if err != nil || err2 != nil || !bytes.Equal(first, enc) {
			return false
		}
	}
	return true
}

// OpKind is the kind of a client's operation in a history.
type OpKind uint8

// The operations a client makes.
const (
	OpGet OpKind = iota
	OpPut
	OpDelete
)

func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpDelete:
		return "delete"
	}
	return fmt.Sprintf("OpKind(%d)", uint8(k))
}

// Op is one operation of a client's history, as the client saw it: its
// invocation and completion times (from any fixed origin) and its
// outcome. A write carries the value it wrote (unique in the history),
// the context it sent and the dot the store reported with its answer
// (Counter 0: none); a get carries the values and the context it
// returned. It is a plain value.
type Op struct {
	Kind             OpKind
	Key              string
	Invoke, Complete time.Duration
	OK               bool          // acknowledged: a write answered 204; a get 200, 300 or 404
	Value            []byte        // a put's value
	Values           [][]byte      // a get's values
	Context          vclock.VClock // a write's context as sent, a get's as returned
	Dot              vclock.Dot    // a write's dot
}

// Record reads resp, the HTTP API's answer to o's request, into o: a
// write's dot ([HeaderDot]); a get's values (one for 200, the siblings
// for 300, none for 404) and context ([HeaderContext]). It returns nil
// when the answer acknowledges o (204 for a write; 200, 300 or 404 for a
// get), and otherwise an error with the status and the first line of
// the body. It reads at most MaxValueLen plus 1 MiB of the body and does
// not close it. It leaves o.OK, Invoke and Complete to the caller.
func (o *Op) Record(resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxValueLen+1<<20))
	if err != nil {
		return err
	}
	if h := resp.Header.Get(HeaderDot); h != "" && o.Kind != OpGet {
		if o.Dot, err = DecodeDot(h); err != nil {
			return err
		}
	}
	var ctx vclock.VClock
	if h := resp.Header.Get(HeaderContext); h != "" && o.Kind == OpGet {
		if ctx, err = DecodeContext(h); err != nil {
			return err
		}
	}
	switch {
	case o.Kind != OpGet && resp.StatusCode == http.StatusNoContent:
		return nil
	case o.Kind != OpGet:
	case resp.StatusCode == http.StatusOK:
		o.Values, o.Context = [][]byte{body}, ctx
		return nil
	case resp.StatusCode == http.StatusNotFound:
		o.Values, o.Context = nil, ctx
		return nil
	case resp.StatusCode == http.StatusMultipleChoices:
		var s struct{ Siblings [][]byte }
		if err := json.Unmarshal(body, &s); err != nil {
			return fmt.Errorf("siblings: %w", err)
		}
		o.Values, o.Context = s.Siblings, ctx
		return nil
	}
	msg, _, _ := strings.Cut(string(body), "\n")
	return fmt.Errorf("%s: %s", resp.Status, msg)
}

// Acks splits the writes of history into the acknowledged ones and the
// indeterminate ones (their request failed: they may or may not have
// taken effect), as [Check] and [CheckReaped] take them.
func Acks(history []Op) (acked, indeterminate []Ack) {
	for _, o := range history {
		if o.Kind == OpGet {
			continue
		}
		a := Ack{Key: o.Key, Version: Version{Value: o.Value, Deleted: o.Kind == OpDelete}, Context: o.Context, Dot: o.Dot}
		if o.OK {
			acked = append(acked, a)
		} else {
			indeterminate = append(indeterminate, a)
		}
	}
	return acked, indeterminate
}

// StaleRead is a get of a history that broke the read rule of
// [CheckReads]: Read and Write are indices into the history. Back
// false: the get missed the acknowledged put Write; Back true: it
// returned a value that the acknowledged write Write had replaced. It
// is a plain value.
type StaleRead struct {
	Read, Write int
	Back        bool
}

// CheckReads returns the stale reads of history, ordered by the get's
// invocation, then by its index, then by the write's index. The rule: a
// successful get returns every acknowledged put of its key that
// completed before the get was invoked, unless a write of the key
// (acknowledged or not) invoked before the get completed had the put's
// dot in its context, and so may have replaced it; and it returns no
// value whose acknowledged put's dot is in the context of an acknowledged
// write of the key that completed before the get was invoked. Each missed
// put is one StaleRead; each value returned although replaced is one,
// naming the first write to complete that replaced it. An acknowledged
// put whose dot is unknown is not checked for misses. Failed gets are not
// checked.
//
// A linearizable register of DVV sets passes it: each operation takes
// effect at one instant within its interval, so a put that completed
// before the get began took effect before the get, and only a write
// that took effect before the get could have replaced it — one invoked
// before the get completed. Dynamo's R + W > N read quorums pass it
// when no fault is active; sloppy quorums during a fault may not.
//
// It takes O(n log n) time for n operations of a key, plus, per get, the
// puts not yet replaced when it began.
func CheckReads(history []Op) []StaleRead {
	byKey := map[string][]int{}
	for i, o := range history {
		byKey[o.Key] = append(byKey[o.Key], i)
	}
	var stale []StaleRead
	for _, idx := range byKey {
		stale = append(stale, checkKeyReads(history, idx)...)
	}
	slices.SortFunc(stale, func(a, b StaleRead) int {
		return cmp.Or(cmp.Compare(history[a.Read].Invoke, history[b.Read].Invoke), cmp.Compare(a.Read, b.Read),
			cmp.Compare(a.Write, b.Write), cmp.Compare(boolInt(a.Back), boolInt(b.Back)))
	})
	return stale
}

// checkKeyReads is [CheckReads] over the operations idx of one key.
func checkKeyReads(history []Op, idx []int) []StaleRead {
	var writes, acked, puts, gets []int // puts: acknowledged, with a dot
	for _, i := range idx {
		switch o := history[i]; {
		case o.Kind == OpGet:
			if o.OK {
				gets = append(gets, i)
			}
		default:
			writes = append(writes, i)
			if o.OK {
				acked = append(acked, i)
				if o.Kind == OpPut && o.Dot.Counter > 0 {
					puts = append(puts, i)
				}
			}
		}
	}
	// When each put may have begun to be replaced (the first invocation
	// of a write whose context has its dot), and by which acknowledged
	// write it was replaced first (the first to complete).
	invoke := func(o Op) time.Duration { return o.Invoke }
	complete := func(o Op) time.Duration { return o.Complete }
	replacedFrom := firstCovering(history, writes, puts, invoke)
	replacedBy := firstCovering(history, acked, puts, complete)
	byValue := make(map[string]int, len(puts)) // a put's value → its position in puts
	for k, pi := range puts {
		byValue[string(history[pi].Value)] = k
	}
	slices.SortStableFunc(gets, func(a, b int) int { return cmp.Compare(history[a].Invoke, history[b].Invoke) })
	byComplete := slices.Clone(puts)
	slices.SortStableFunc(byComplete, func(a, b int) int { return cmp.Compare(history[a].Complete, history[b].Complete) })
	position := make(map[int]int, len(puts)) // history index → position in puts
	for k, pi := range puts {
		position[pi] = k
	}
	var stale []StaleRead
	var active []int              // positions of the puts completed before the get began and not replaced before it
	returned := map[string]bool{} // the get's values
	next := 0
	for _, ri := range gets {
		r := history[ri]
		for ; next < len(byComplete) && history[byComplete[next]].Complete < r.Invoke; next++ {
			active = append(active, position[byComplete[next]])
		}
		// A put replaced before this get began is free to be missed by
		// every later one too.
		active = slices.DeleteFunc(active, func(k int) bool { return replacedFrom[k].at < r.Invoke })
		clear(returned)
		for _, v := range r.Values {
			returned[string(v)] = true
		}
		for _, k := range active {
			if w := puts[k]; replacedFrom[k].at >= r.Complete && !returned[string(history[w].Value)] {
				stale = append(stale, StaleRead{Read: ri, Write: w})
			}
		}
		for _, v := range r.Values {
			if k, ok := byValue[string(v)]; ok && replacedBy[k].at < r.Invoke {
				stale = append(stale, StaleRead{Read: ri, Write: replacedBy[k].by, Back: true})
			}
		}
	}
	return stale
}

// covering is the first write, by the time at of firstCovering, whose
// context has a put's dot: its index in the history, or -1 and
// math.MaxInt64 when none has.
type covering struct {
	at time.Duration
	by int
}

// firstCovering returns, for each of puts (whose dots are known), the
// first of writes by at whose context has the put's dot. It takes
// O((w·e + p) log w) for w writes of at most e writers in their contexts
// and p puts.
func firstCovering(history []Op, writes, puts []int, at func(Op) time.Duration) []covering {
	type mark struct {
		counter uint64
		c       covering
	}
	byWriter := map[string][]mark{}
	for _, wi := range writes {
		s := history[wi]
		for id, counter := range s.Context.All() {
			byWriter[id] = append(byWriter[id], mark{counter, covering{at(s), wi}})
		}
	}
	// Per writer, by counter; then each mark holds the first covering
	// among those of its counter or more.
	for _, marks := range byWriter {
		slices.SortFunc(marks, func(a, b mark) int { return cmp.Compare(a.counter, b.counter) })
		for i := len(marks) - 2; i >= 0; i-- {
			if n := marks[i+1].c; n.at < marks[i].c.at || n.at == marks[i].c.at && n.by < marks[i].c.by {
				marks[i].c = n
			}
		}
	}
	out := make([]covering, len(puts))
	for k, pi := range puts {
		out[k] = covering{at: time.Duration(math.MaxInt64), by: -1}
		d := history[pi].Dot
		marks := byWriter[d.ID]
		if i, _ := slices.BinarySearchFunc(marks, d.Counter, func(m mark, c uint64) int { return cmp.Compare(m.counter, c) }); i < len(marks) {
			out[k] = marks[i].c
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
