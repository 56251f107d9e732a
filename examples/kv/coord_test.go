package kv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

var t0 = time.Unix(1_700_000_000, 0)

func up(string) bool { return true }

// callsTo lists the calls as "to" or "to/hint".
func callsTo(cs []call) []string {
	var out []string
	for _, c := range cs {
		if c.hint != "" {
			out = append(out, c.to+"/"+c.hint)
		} else {
			out = append(out, c.to)
		}
	}
	return out
}

// Each replica's fallback is fixed before the first call: when both
// replicas fail at the same instant, which one reports first does not
// change which fallback takes which replica's hint.
func TestWriteRoundFallbacksUpFront(t *testing.T) {
	for _, order := range [][]int{{0, 1}, {1, 0}} {
		w, first := newWriteRound(t0, []string{"a", "b"}, []string{"f1", "f2"}, up, 1, time.Second)
		if got := callsTo(first); !slices.Equal(got, []string{"a", "b"}) {
			t.Fatalf("first calls %q", got)
		}
		var next []string
		for _, id := range order {
			next = append(next, callsTo(w.Reply(t0, id, response{}, errors.New("down")))...)
		}
		slices.Sort(next)
		if !slices.Equal(next, []string{"f1/a", "f2/b"}) {
			t.Fatalf("failures in order %v: fallback calls %q, want f1/a and f2/b", order, next)
		}
	}
}

// A replica that took the write gives its fallback up to a replica whose
// own fallback failed; a replica down at the start goes to its fallback
// at once; the round decides at need acknowledgements and ends when every
// target is settled.
func TestWriteRoundSpares(t *testing.T) {
	down := func(id string) bool { return id != "b" }
	w, first := newWriteRound(t0, []string{"a", "b", "c"}, []string{"f1", "f2", "f3", "f4"}, down, 3, time.Second)
	if got := callsTo(first); !slices.Equal(got, []string{"a", "f2/b", "c"}) {
		t.Fatalf("first calls %q, want a, f2/b (b is down), c", got)
	}
	if next := w.Reply(t0, 0, response{}, errors.New("x")); !slices.Equal(callsTo(next), []string{"f1/a"}) {
		t.Fatalf("after a failed: %q", callsTo(next))
	}
	if next := w.Reply(t0, 3, response{}, errors.New("x")); !slices.Equal(callsTo(next), []string{"f4/a"}) {
		t.Fatalf("after f1 failed: %q, want the spare f4", callsTo(next))
	}
	if next := w.Reply(t0, 4, response{}, errors.New("x")); len(next) != 0 {
		t.Fatalf("after f4 failed: %q, want a to wait for f3", callsTo(next))
	}
	if w.Decided() || w.Done() {
		t.Fatal("decided with two targets pending")
	}
	if next := w.Reply(t0, 2, response{}, nil); !slices.Equal(callsTo(next), []string{"f3/a"}) {
		t.Fatalf("after c took it: %q, want a on c's fallback f3", callsTo(next))
	}
	w.Reply(t0, 1, response{}, nil)
	w.Reply(t0, 5, response{}, nil)
	if !w.Done() || w.Err() != nil || w.hints != 2 {
		t.Fatalf("done %v, err %v, hints %d; want done, nil, 2", w.Done(), w.Err(), w.hints)
	}
	if taken, failed := w.Outcome(); len(taken) != 3 || failed != nil {
		t.Fatalf("outcome %q %v", taken, failed)
	}
}

// At its deadline a round gives up every call still open; the targets
// fail, the quorum is missed, and late replies change nothing.
func TestWriteRoundDeadline(t *testing.T) {
	w, _ := newWriteRound(t0, []string{"a", "b"}, nil, up, 2, time.Second)
	w.Reply(t0, 0, response{}, nil)
	if w.Tick(t0.Add(time.Second - 1)); w.Done() {
		t.Fatal("done before the deadline")
	}
	w.Tick(t0.Add(time.Second))
	if !w.Done() || !errors.Is(w.Err(), quorum.ErrNoQuorum) || len(w.Open()) != 0 {
		t.Fatalf("done %v, err %v, open %v", w.Done(), w.Err(), w.Open())
	}
	if next := w.Reply(t0.Add(2*time.Second), 1, response{}, nil); next != nil || w.acked != 1 {
		t.Fatalf("a late reply counted: %v, %d acked", next, w.acked)
	}
}

// The properties of writeRound over seeded random replies: no fallback
// takes two copies, every target ends settled exactly once, the decision
// agrees with the acknowledgements, and the same replies in the same
// order give the same calls.
func TestWriteRoundProperties(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for range 2000 {
		targets := []string{"a", "b", "c"}[:1+rng.IntN(3)]
		fallbacks := []string{"f1", "f2", "f3", "f4"}[:rng.IntN(5)]
		need := rng.IntN(len(targets) + 1)
		failing := map[string]bool{}
		for _, id := range slices.Concat(targets, fallbacks) {
			failing[id] = rng.IntN(3) == 0
		}
		run := func(rng *rand.Rand) ([]string, *writeRound) {
			w, open := newWriteRound(t0, targets, fallbacks, func(id string) bool { return !failing[id] || rng.IntN(2) == 0 }, need, time.Second)
			var log []string
			for len(open) > 0 {
				i := rng.IntN(len(open))
				c := open[i]
				open = slices.Delete(open, i, i+1)
				var err error
				if failing[c.to] {
					err = errors.New("fails")
				}
				log = append(log, fmt.Sprint(c))
				open = append(open, w.Reply(t0, c.id, response{}, err)...)
			}
			return log, w
		}
		s := rng.Uint64()
		log, w := run(rand.New(rand.NewPCG(s, 2)))
		again, _ := run(rand.New(rand.NewPCG(s, 2)))
		if !slices.Equal(log, again) {
			t.Fatalf("seed %d: the same replies gave other calls:\n%v\n%v", seed, log, again)
		}
		used := map[string]int{}
		for _, c := range w.calls {
			if c.hint != "" {
				used[c.to]++
			}
		}
		for fb, k := range used {
			if k > 1 {
				t.Fatalf("seed %d: fallback %s took %d copies: %v", seed, fb, k, w.calls)
			}
		}
		if !w.Done() || w.acked+w.failed != len(targets) {
			t.Fatalf("seed %d: done %v, %d acked, %d failed of %d", seed, w.Done(), w.acked, w.failed, len(targets))
		}
		if (w.Err() == nil) != (w.acked >= need) {
			t.Fatalf("seed %d: err %v with %d acked, need %d", seed, w.Err(), w.acked, need)
		}
	}
}

// A read calls R replicas, one more per failure and per hedge, and each
// call times out on its own; it merges the replies and names the home
// replicas whose reply was stale.
func TestReadRound(t *testing.T) {
	targets := []string{"a", "b", "c", "f"}
	r, first := newReadRound(t0, targets, 2, time.Second, 100*time.Millisecond)
	if got := callsTo(first); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("first calls %q", got)
	}
	if d := r.Deadline(); !d.Equal(t0.Add(100 * time.Millisecond)) {
		t.Fatalf("deadline %v, want the hedge", d)
	}
	if got := callsTo(r.Tick(t0.Add(100 * time.Millisecond))); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("hedge called %q", got)
	}
	if got := callsTo(r.Reply(t0.Add(150*time.Millisecond), 0, response{}, errors.New("x"))); !slices.Equal(got, []string{"f"}) {
		t.Fatalf("after a failure: %q", got)
	}
	var newer Object
	newer.Update(vclock.VClock{}, "a", Version{Value: []byte("v")})
	r.Reply(t0.Add(160*time.Millisecond), 2, response{Object: newer, Found: true}, nil)
	if r.Done() {
		t.Fatal("done with one reply of two")
	}
	r.Reply(t0.Add(170*time.Millisecond), 3, response{}, nil)
	merged, stale, err := r.Result([]string{"a", "b", "c"})
	if err != nil || !slices.Equal(live(merged), []string{"v"}) || stale != nil {
		t.Fatalf("result %q, stale %q, err %v; want [v], no stale home replica (f is a fallback)", live(merged), stale, err)
	}
	if open := r.Open(); !slices.Equal(open, []int{1}) {
		t.Fatalf("open calls %v, want b's for the driver to cancel", open)
	}

	// Timeouts: each call fails at its own deadline, and a read that can
	// no longer reach R fails with ErrNoQuorum.
	r, _ = newReadRound(t0, []string{"a", "b", "c"}, 2, time.Second, 0)
	if got := callsTo(r.Tick(t0.Add(time.Second))); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("after the first timeout: %q", got)
	}
	if !r.Done() {
		t.Fatal("not done with two of three calls failed and R = 2")
	}
	if _, _, err := r.Result(nil); !errors.Is(err, quorum.ErrNoQuorum) {
		t.Fatalf("err %v, want ErrNoQuorum", err)
	}
	if r, first := newReadRound(t0, []string{"a"}, 2, time.Second, 0); len(first) != 0 || !r.Done() {
		t.Fatal("a read of R = 2 from one replica started")
	}
}
