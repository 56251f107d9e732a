package kv

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/distkit/distkit/vclock"
)

func TestCheck(t *testing.T) {
	// The key's history: a1 and a2 written blind, b overwrote a1 knowingly.
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a1")})
	ctxA1 := o.Context()
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a2")})
	o.Update(ctxA1, "n1", Version{Value: []byte("b")})
	a1 := Ack{Key: "k", Version: Version{Value: []byte("a1")}, Dot: vclock.Dot{ID: "n1", Counter: 1}}
	a2 := Ack{Key: "k", Version: Version{Value: []byte("a2")}, Dot: vclock.Dot{ID: "n1", Counter: 2}}
	b := Ack{Key: "k", Version: Version{Value: []byte("b")}, Context: ctxA1, Dot: vclock.Dot{ID: "n1", Counter: 3}}
	ghost := Ack{Key: "k", Version: Version{Value: []byte("a2")}, Dot: vclock.Dot{ID: "n2", Counter: 1}}
	same := map[string][]Object{"k": {o, o.Clone(), o.Clone()}}

	if err := Check([]Ack{a1, a2, b}, nil, same).Err(); err != nil {
		t.Fatalf("kept and superseded writes: %v", err)
	}
	// a1 without the acknowledged b that replaced it is lost, unless an
	// indeterminate write whose dot took effect or is unknown replaced it.
	if v := Check([]Ack{a1, a2}, nil, same); len(v.Lost) != 1 || !errors.Is(v.Err(), ErrLost) {
		t.Fatalf("a1 replaced by no acknowledged write: %+v", v)
	}
	if err := Check([]Ack{a1, a2}, []Ack{b}, same).Err(); err != nil {
		t.Fatalf("a1 replaced by an indeterminate write that took effect: %v", err)
	}
	unknown := b
	unknown.Dot = vclock.Dot{}
	if err := Check([]Ack{a1, a2}, []Ack{unknown}, same).Err(); err != nil {
		t.Fatalf("a1 replaced by an indeterminate write of unknown dot: %v", err)
	}
	never := b
	never.Dot = vclock.Dot{ID: "n9", Counter: 1}
	if v := Check([]Ack{a1, a2}, []Ack{never}, same); len(v.Lost) != 1 {
		t.Fatalf("a1 replaced by a write that never took effect: %+v", v)
	}
	// A value present with a dot outside the history is lost too.
	if v := Check([]Ack{ghost}, nil, same); len(v.Lost) != 1 {
		t.Fatalf("a write whose dot is not in the history: %+v", v)
	}
	// Replicas that differ.
	var stale Object
	stale.Update(vclock.VClock{}, "n1", Version{Value: []byte("a1")})
	v := Check([]Ack{a2}, nil, map[string][]Object{"k": {o, stale}, "j": {{}, {}}})
	if len(v.Diverged) != 1 || v.Diverged[0] != "k" || !errors.Is(v.Err(), ErrDiverged) || v.Keys != 2 {
		t.Fatalf("diverged replicas: %+v", v)
	}
}

// upTo is the clock of one actor's first n writes.
func upTo(id string, n uint64) vclock.VClock {
	var c vclock.VClock
	c.Add(vclock.Dot{ID: id, Counter: n})
	return c
}

func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

func putOp(v string, from, to float64, ok bool, ctx vclock.VClock, dot vclock.Dot) Op {
	return Op{Kind: OpPut, Key: "k", Value: []byte(v), Invoke: sec(from), Complete: sec(to), OK: ok, Context: ctx, Dot: dot}
}

func getOp(from, to float64, values ...string) Op {
	o := Op{Kind: OpGet, Key: "k", Invoke: sec(from), Complete: sec(to), OK: true}
	for _, v := range values {
		o.Values = append(o.Values, []byte(v))
	}
	return o
}

// A crafted history with one stale read of each sort, and reads that look
// stale but are not: concurrent with the put, or with a write that may
// have replaced it.
func TestCheckReadsCrafted(t *testing.T) {
	d1, d2 := vclock.Dot{ID: "n1", Counter: 1}, vclock.Dot{ID: "n1", Counter: 2}
	h := []Op{
		putOp("a", 0, 1, true, vclock.VClock{}, d1),
		getOp(0.5, 3),    // 1: concurrent with a: may miss it
		getOp(2, 3),      // 2: stale: missed a
		getOp(2, 3, "a"), // 3: fine
		putOp("b", 4, 5, true, upTo("n1", 1), d2),
		getOp(6, 7, "a"), // 5: stale twice: missed b, and returned a, which b replaced
		getOp(6, 7, "b"), // 6: fine
		putOp("c", 8, 10, false, upTo("n1", 2), vclock.Dot{}),
		getOp(8.5, 9), // 8: c, indeterminate and invoked before, may have replaced b
		{Kind: OpGet, Key: "k", Invoke: sec(9), Complete: sec(9.5)},               // failed: not checked
		{Kind: OpGet, Key: "other", Invoke: sec(9), Complete: sec(9.5), OK: true}, // another key
		putOp("d", 11, 12, true, upTo("n1", 2), vclock.Dot{}),                     // 11: acknowledged without a dot
		getOp(13, 14, "d"), // 12: fine
		getOp(13, 14),      // 13: d has no dot: not checked; b is replaced by d
	}
	want := []StaleRead{{Read: 2, Write: 0}, {Read: 5, Write: 4}, {Read: 5, Write: 4, Back: true}}
	if got := CheckReads(h); !slices.Equal(got, want) {
		t.Fatalf("CheckReads = %+v, want %+v", got, want)
	}
	acked, ind := Acks(h)
	if len(acked) != 3 || len(ind) != 1 || string(ind[0].Version.Value) != "c" || acked[1].Dot != d2 {
		t.Fatalf("Acks: %+v, %+v", acked, ind)
	}
}

// linearizableHistory is a random history of clients against a
// linearizable register of DVV sets (one Object per key): every
// operation takes effect at one instant inside its interval, a write
// sends the context of its client's last get of the key (now and then
// none: a blind write), and some writes fail, having taken effect or
// not, with their dot known or not.
func linearizableHistory(rng *rand.Rand, clients, opsEach, keys int) []Op {
	type event struct {
		at     time.Duration
		op, by int
	}
	var h []Op
	var events []event
	applied := map[int]bool{} // a write takes effect
	for c := range clients {
		at := time.Duration(rng.IntN(1000)) * time.Microsecond
		for range opsEach {
			o := Op{Key: fmt.Sprint("k", rng.IntN(keys)), Invoke: at}
			o.Complete = at + time.Duration(1+rng.IntN(5000))*time.Microsecond
			switch p := rng.IntN(10); {
			case p < 4:
				o.Kind = OpGet
			case p < 9:
				o.Kind, o.Value = OpPut, fmt.Appendf(nil, "c%d-%d", c, len(h))
			default:
				o.Kind = OpDelete
			}
			o.OK = o.Kind == OpGet || rng.IntN(6) > 0
			applied[len(h)] = o.OK || rng.IntN(2) == 0
			events = append(events, event{o.Invoke + time.Duration(rng.Int64N(int64(o.Complete-o.Invoke))), len(h), c})
			h = append(h, o)
			at = o.Complete + time.Duration(rng.IntN(300))*time.Microsecond
		}
	}
	slices.SortFunc(events, func(a, b event) int { return cmp.Compare(a.at, b.at) })
	state := map[string]*Object{}
	read := map[string]vclock.VClock{} // client and key → the context of the client's last get of it
	for _, e := range events {
		o := &h[e.op]
		obj := state[o.Key]
		if obj == nil {
			obj = &Object{}
			state[o.Key] = obj
		}
		ck := fmt.Sprint(e.by, "/", o.Key)
		if o.Kind == OpGet {
			o.Values, o.Context = Live(*obj), obj.Context()
			read[ck] = o.Context
			continue
		}
		if rng.IntN(8) > 0 {
			o.Context = read[ck].Clone()
		}
		if applied[e.op] {
			actor := fmt.Sprint("n", rng.IntN(3))
			obj.Update(o.Context, actor, Version{Value: o.Value, Deleted: o.Kind == OpDelete})
			o.Dot = vclock.Dot{ID: actor, Counter: obj.Context().Get(actor)}
		}
		if !o.OK && rng.IntN(2) == 0 {
			o.Dot = vclock.Dot{} // the answer was lost
		}
	}
	return h
}

// CheckReads flags no read of a linearizable history (no false alarm on
// concurrent reads), and flags every stale read made from one: a get
// that drops a value it had to return, or returns a value an
// acknowledged write had replaced before it began.
func TestCheckReadsProperties(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	missed, back := 0, 0
	for round := range 200 {
		h := linearizableHistory(rng, 1+rng.IntN(6), 1+rng.IntN(40), 1+rng.IntN(4))
		if s := CheckReads(h); len(s) != 0 {
			t.Fatalf("seed %d round %d: a linearizable history has stale reads: %+v", seed, round, s)
		}
		// A value that had to be returned, dropped from a get.
		for ri, r := range h {
			if r.Kind != OpGet || len(r.Values) == 0 {
				continue
			}
			vi := rng.IntN(len(r.Values))
			wi := slices.IndexFunc(h, func(w Op) bool { return w.Kind == OpPut && bytes.Equal(w.Value, r.Values[vi]) })
			w := h[wi]
			if !w.OK || w.Dot.Counter == 0 || w.Complete >= r.Invoke || slices.ContainsFunc(h, func(s Op) bool {
				return s.Kind != OpGet && s.Key == r.Key && s.Invoke < r.Complete && s.Context.Contains(w.Dot)
			}) {
				continue // the get was free to miss it
			}
			bad := slices.Clone(h)
			bad[ri].Values = slices.Delete(slices.Clone(r.Values), vi, vi+1)
			if !slices.Contains(CheckReads(bad), StaleRead{Read: ri, Write: wi}) {
				t.Fatalf("seed %d round %d: get %d missed put %d unflagged", seed, round, ri, wi)
			}
			missed++
			break
		}
		// A replaced value, added to a get.
		for ri, r := range h {
			if r.Kind != OpGet {
				continue
			}
			wi := slices.IndexFunc(h, func(w Op) bool {
				return w.Key == r.Key && w.Kind != OpGet && w.OK && w.Complete < r.Invoke && w.Context.Len() > 0
			})
			if wi < 0 {
				continue
			}
			vi := slices.IndexFunc(h, func(v Op) bool {
				return v.Key == r.Key && v.Kind == OpPut && v.OK && v.Dot.Counter > 0 && h[wi].Context.Contains(v.Dot)
			})
			if vi < 0 {
				continue
			}
			bad := slices.Clone(h)
			bad[ri].Values = append(slices.Clone(r.Values), h[vi].Value)
			if !slices.ContainsFunc(CheckReads(bad), func(s StaleRead) bool { return s.Read == ri && s.Back }) {
				t.Fatalf("seed %d round %d: get %d returned %q, replaced by write %d, unflagged", seed, round, ri, h[vi].Value, wi)
			}
			back++
			break
		}
	}
	if missed < 20 || back < 20 {
		t.Fatalf("seed %d: only %d missed and %d replaced values tried", seed, missed, back)
	}
	t.Logf("%d dropped and %d replaced values flagged", missed, back)
}

// Record reads each of the API's answers into the operation, and a
// refusal into an error with its status.
func TestOpRecord(t *testing.T) {
	ctx := upTo("n1", 3)
	answer := func(code int, body string, hdr map[string]string) *http.Response {
		rec := httptest.NewRecorder()
		for k, v := range hdr {
			rec.Header().Set(k, v)
		}
		rec.WriteHeader(code)
		rec.WriteString(body)
		return rec.Result()
	}
	dot := vclock.Dot{ID: "n1", Counter: 4}
	for _, c := range []struct {
		kind   OpKind
		resp   *http.Response
		values []string
		dot    vclock.Dot
		err    string
	}{
		{OpGet, answer(200, "v", map[string]string{HeaderContext: EncodeContext(ctx)}), []string{"v"}, vclock.Dot{}, ""},
		{OpGet, answer(300, `{"siblings":["YQ==","Yg=="]}`, map[string]string{HeaderContext: EncodeContext(ctx)}), []string{"a", "b"}, vclock.Dot{}, ""},
		{OpGet, answer(404, "not found\n", map[string]string{HeaderContext: EncodeContext(ctx)}), nil, vclock.Dot{}, ""},
		{OpGet, answer(300, `{"siblings":`, nil), nil, vclock.Dot{}, "siblings"},
		{OpGet, answer(200, "v", map[string]string{HeaderContext: "!!"}), nil, vclock.Dot{}, "X-Context"},
		{OpGet, answer(503, "too few replicas answered\nmore", nil), nil, vclock.Dot{}, "503 Service Unavailable: too few replicas answered"},
		{OpPut, answer(204, "", map[string]string{HeaderDot: EncodeDot(dot)}), nil, dot, ""},
		{OpDelete, answer(503, "down", map[string]string{HeaderDot: EncodeDot(dot)}), nil, dot, "503"},
	} {
		o := Op{Kind: c.kind}
		err := o.Record(c.resp)
		if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v %s: %v, want %q", c.kind, c.resp.Status, err, c.err)
			continue
		}
		var got []string
		for _, v := range o.Values {
			got = append(got, string(v))
		}
		if !slices.Equal(got, c.values) || o.Dot != c.dot {
			t.Errorf("%v %s: values %q dot %v, want %q %v", c.kind, c.resp.Status, got, o.Dot, c.values, c.dot)
		}
		if c.err == "" && c.kind == OpGet && o.Context.Compare(ctx) != vclock.Equal {
			t.Errorf("%v %s: context %v", c.kind, c.resp.Status, o.Context)
		}
	}
}

// naiveStale is the read rule checked pair by pair, the slow way: the
// missed puts as (get, put) pairs, and the gets that returned a replaced
// value as (get, value) pairs.
func naiveStale(h []Op) (missed, back map[[2]int]bool) {
	missed, back = map[[2]int]bool{}, map[[2]int]bool{}
	for ri, r := range h {
		if r.Kind != OpGet || !r.OK {
			continue
		}
		for wi, w := range h {
			if w.Key != r.Key || w.Kind != OpPut || !w.OK || w.Dot.Counter == 0 {
				continue
			}
			replaced := slices.ContainsFunc(h, func(s Op) bool {
				return s.Key == r.Key && s.Kind != OpGet && s.Invoke < r.Complete && s.Context.Contains(w.Dot)
			})
			if w.Complete < r.Invoke && !replaced && !slices.ContainsFunc(r.Values, func(v []byte) bool { return bytes.Equal(v, w.Value) }) {
				missed[[2]int{ri, wi}] = true
			}
			if slices.ContainsFunc(r.Values, func(v []byte) bool { return bytes.Equal(v, w.Value) }) && slices.ContainsFunc(h, func(s Op) bool {
				return s.Key == r.Key && s.Kind != OpGet && s.OK && s.Complete < r.Invoke && s.Context.Contains(w.Dot)
			}) {
				back[[2]int{ri, wi}] = true
			}
		}
	}
	return missed, back
}

// CheckReads finds exactly the stale reads the pair-by-pair rule finds,
// on random histories whose gets were corrupted at random.
func TestCheckReadsNaive(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	found := 0
	for round := range 100 {
		h := linearizableHistory(rng, 1+rng.IntN(5), 1+rng.IntN(30), 1+rng.IntN(3))
		for i := range h {
			if h[i].Kind != OpGet || rng.IntN(3) > 0 {
				continue
			}
			if len(h[i].Values) > 0 && rng.IntN(2) == 0 {
				h[i].Values = h[i].Values[1:] // drop one
			} else if j := rng.IntN(len(h)); h[j].Kind == OpPut && h[j].Key == h[i].Key {
				h[i].Values = append(slices.Clone(h[i].Values), h[j].Value) // add any value of the key
			}
		}
		missed, back := naiveStale(h)
		gotMissed, gotBack := map[[2]int]bool{}, map[[2]int]bool{}
		for _, s := range CheckReads(h) {
			if !s.Back {
				gotMissed[[2]int{s.Read, s.Write}] = true
				continue
			}
			// The write named replaced a value the get returned.
			for _, v := range h[s.Read].Values {
				wi := slices.IndexFunc(h, func(w Op) bool { return w.Kind == OpPut && bytes.Equal(w.Value, v) })
				if wi >= 0 && h[wi].OK && h[wi].Dot.Counter > 0 && h[s.Write].Context.Contains(h[wi].Dot) {
					gotBack[[2]int{s.Read, wi}] = true
				}
			}
		}
		if !maps.Equal(missed, gotMissed) || !maps.Equal(back, gotBack) {
			t.Fatalf("seed %d round %d: missed %v back %v, want %v %v", seed, round, gotMissed, gotBack, missed, back)
		}
		found += len(missed) + len(back)
	}
	if found < 100 {
		t.Fatalf("seed %d: only %d stale reads in the corrupted histories", seed, found)
	}
	t.Logf("%d stale reads, the same as the pair-by-pair rule's", found)
}
