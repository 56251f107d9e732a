// Package sagatest checks implementations of [saga.Log] against the
// contract written in that interface's documentation, the way
// testing/fstest checks file systems.
//
// # Usage
//
//	func TestMyLog(t *testing.T) {
//		sagatest.TestLog(t, func(t *testing.T) sagatest.Subject {
//			db := mydb.Open(t) // empty
//			return sagatest.Subject{
//				Log:    mylog.New(db),
//				Reopen: func(t *testing.T) saga.Log { return mylog.New(db) },
//			}
//		})
//	}
//
// # Guarantees
//
// A log that passes satisfies:
//
//   - Records returns a saga's records in the order they were appended,
//     each with the canonical encoding it was appended with, and nothing
//     for an unknown saga;
//   - Unfinished lists exactly the sagas that have no terminal record,
//     in the order of their first records;
//   - many sagas appended concurrently keep each saga's order, and the
//     order of sagas started one after another;
//   - an Append with a cancelled context fails with an error wrapping
//     context.Canceled and stores nothing;
//   - with Reopen: everything acknowledged survives a restart, and
//     appends continue after it;
//   - with Tear or Fail: after a torn or failed write and a restart,
//     every acknowledged record is there, the one that failed is there
//     whole or not at all, and the log takes appends again;
//   - an Orchestrator on the log that dies at any append is finished by
//     Recover on the reopened log: every saga ends Committed, and no step
//     is skipped.
package sagatest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/distkit/distkit/saga"
)

// Subject is one log under test, and the means to restart and break it.
type Subject struct {
	// Log is the log under test, empty.
	Log saga.Log
	// Reopen closes the current log, if it needs closing, and returns a
	// new log over the same durable state, as a restarted process would
	// open it. nil: the log does not outlive its process (saga.MemLog);
	// the suite then keeps using the same log where it would restart.
	Reopen func(t *testing.T) saga.Log
	// Tear, if not nil, appends r to the current log as a process that
	// crashes in the middle of the write would: only part of r reaches the
	// durable state (a torn tail). The suite calls Reopen afterwards.
	Tear func(t *testing.T, r saga.Record)
	// Fail, if not nil, makes the current log's next Append fail, as a
	// write error or a lost connection would. The suite calls Reopen
	// afterwards.
	Fail func(t *testing.T)
}

// TestLog runs the conformance suite. open is called once per subtest
// and returns a subject with an empty log.
func TestLog(t *testing.T, open func(t *testing.T) Subject) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *suite)
	}{
		{"AppendRecords", testAppendRecords},
		{"Unfinished", testUnfinished},
		{"Canceled", testCanceled},
		{"Concurrent", testConcurrent},
		{"Reload", testReload},
		{"Torn", testTorn},
		{"Failed", testFailed},
		{"Recovery", testRecovery},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub := open(t)
			tt.fn(t, &suite{t: t, sub: sub, log: sub.Log, acked: map[string][]saga.Record{}})
		})
	}
}

var ctx = context.Background()

// suite tracks what the log acknowledged.
type suite struct {
	t     *testing.T
	sub   Subject
	log   saga.Log
	mu    sync.Mutex
	acked map[string][]saga.Record
	order []string // sagas in the order of their first acknowledged record
}

// reopen restarts the log, or keeps it if it cannot restart.
func (s *suite) reopen() {
	if s.sub.Reopen != nil {
		s.log = s.sub.Reopen(s.t)
	}
}

func (s *suite) append(r saga.Record) {
	s.t.Helper()
	if err := s.log.Append(ctx, r); err != nil {
		s.t.Fatalf("Append(%v of %q): %v", r.Kind, r.Saga, err)
	}
	s.ack(r)
}

func (s *suite) ack(r saga.Record) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.acked[r.Saga]; !ok {
		s.order = append(s.order, r.Saga)
	}
	s.acked[r.Saga] = append(s.acked[r.Saga], r)
}

// unfinished is the model's answer to Unfinished.
func (s *suite) unfinished() []string {
	var out []string
	for _, id := range s.order {
		recs := s.acked[id]
		if !recs[len(recs)-1].Kind.Terminal() {
			out = append(out, id)
		}
	}
	return out
}

// verify checks every acknowledged saga's records and Unfinished.
func (s *suite) verify() {
	s.t.Helper()
	for _, id := range s.order {
		s.verifySaga(id, s.acked[id])
	}
	got, err := s.log.Unfinished(ctx)
	if err != nil {
		s.t.Fatalf("Unfinished: %v", err)
	}
	if want := s.unfinished(); !slices.Equal(got, want) {
		s.t.Fatalf("Unfinished = %q, want %q", got, want)
	}
}

func (s *suite) verifySaga(id string, want []saga.Record) {
	s.t.Helper()
	got, err := s.log.Records(ctx, id)
	if err != nil {
		s.t.Fatalf("Records(%q): %v", id, err)
	}
	if len(got) != len(want) {
		s.t.Fatalf("Records(%q) returned %d records, want %d", id, len(got), len(want))
	}
	for i := range got {
		if !same(got[i], want[i]) {
			s.t.Fatalf("Records(%q)[%d] = %+v, want %+v", id, i, got[i], want[i])
		}
	}
}

// same compares records by their canonical encoding.
func same(a, b saga.Record) bool {
	ea, erra := a.MarshalMsgpack()
	eb, errb := b.MarshalMsgpack()
	return erra == nil && errb == nil && bytes.Equal(ea, eb)
}

// history returns the records of a saga of steps steps that commits, in
// the order an orchestrator writes them, with contents drawn from r.
func history(r *rand.Rand, id string, steps int) []saga.Record {
	names := make([]string, steps)
	for i := range names {
		names[i] = fmt.Sprint("step-", i)
	}
	input := make([]byte, r.IntN(64))
	for i := range input {
		input[i] = byte(r.Uint32())
	}
	recs := []saga.Record{{Kind: saga.KindStarted, Saga: id, Def: "def", Input: input, Steps: names}}
	for i := range steps {
		for a := 1; a <= 1+r.IntN(2); a++ {
			recs = append(recs, saga.Record{Kind: saga.KindStepStarted, Saga: id, Step: i, Attempt: a})
			if a == 1 && r.IntN(3) == 0 {
				recs = append(recs, saga.Record{Kind: saga.KindStepFailed, Saga: id, Step: i, Attempt: a, Err: "timeout: ünïcode ✓"})
				continue
			}
			var bag []saga.Entry
			if r.IntN(2) == 0 {
				bag = []saga.Entry{{Key: "a", Value: []byte{}}, {Key: "b", Value: []byte{0, 0xff}}}
			}
			recs = append(recs, saga.Record{Kind: saga.KindStepDone, Saga: id, Step: i, Attempt: a, Bag: bag})
			break
		}
	}
	return append(recs, saga.Record{Kind: saga.KindCommitted, Saga: id})
}

func testAppendRecords(t *testing.T, s *suite) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, rec := range history(r, "a", 3) {
		s.append(rec)
	}
	// A large input and a long error message.
	big := saga.Record{Kind: saga.KindStarted, Saga: "big", Def: "def", Input: bytes.Repeat([]byte{7}, 200<<10)}
	s.append(big)
	s.append(saga.Record{Kind: saga.KindCompensating, Saga: "big", Step: 0, Err: strings.Repeat("e", 10<<10), Permanent: true})
	s.verify()
	if recs, err := s.log.Records(ctx, "unknown"); err != nil || len(recs) != 0 {
		t.Fatalf("Records of an unknown saga = %v, %v; want none", recs, err)
	}
}

func testUnfinished(t *testing.T, s *suite) {
	r := rand.New(rand.NewPCG(3, 4))
	var open [][]saga.Record
	for i := range 10 {
		open = append(open, history(r, fmt.Sprint("saga-", i), 2))
	}
	// Interleave the sagas' records; some end, some do not.
	for len(open) > 0 {
		i := r.IntN(len(open))
		s.append(open[i][0])
		open[i] = open[i][1:]
		if len(open[i]) == 0 || len(open[i]) == 1 && i%3 == 0 { // every third saga stays open
			open = slices.Delete(open, i, i+1)
		}
		if r.IntN(4) == 0 {
			s.verify()
		}
	}
	s.verify()
}

func testCanceled(t *testing.T, s *suite) {
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err := s.log.Append(cctx, saga.Record{Kind: saga.KindStarted, Saga: "c", Def: "def"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Append with a cancelled context: %v, want context.Canceled", err)
	}
	s.verify()
	if recs, err := s.log.Records(ctx, "c"); err != nil || len(recs) != 0 {
		t.Fatalf("Records after a cancelled Append = %v, %v; want none", recs, err)
	}
}

func testConcurrent(t *testing.T, s *suite) {
	const writers, sagas = 16, 8
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 5))
			for i := range sagas {
				recs := history(r, fmt.Sprintf("w%d-s%d", w, i), 3)
				if i%2 == 0 {
					recs = recs[:len(recs)-1] // left open
				}
				for _, rec := range recs {
					if err := s.log.Append(ctx, rec); err != nil {
						t.Errorf("Append: %v", err)
						return
					}
					s.ack(rec)
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for _, id := range s.order {
		s.verifySaga(id, s.acked[id])
	}
	// Concurrent sagas may be listed in any order, but one writer's
	// sagas, started one after another, in the order they started.
	got, err := s.log.Unfinished(ctx)
	if err != nil {
		t.Fatalf("Unfinished: %v", err)
	}
	want := s.unfinished()
	if !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))) {
		t.Fatalf("Unfinished = %q, want the sagas %q", got, want)
	}
	for w := range writers {
		var mine []string
		for _, id := range got {
			if strings.HasPrefix(id, fmt.Sprintf("w%d-", w)) {
				mine = append(mine, id)
			}
		}
		if !slices.IsSorted(mine) {
			t.Fatalf("Unfinished lists writer %d's sagas as %q, not in the order they started", w, mine)
		}
	}
}

func testReload(t *testing.T, s *suite) {
	r := rand.New(rand.NewPCG(6, 7))
	a, b := history(r, "a", 3), history(r, "b", 2)
	for _, rec := range a {
		s.append(rec)
	}
	for _, rec := range b[:3] {
		s.append(rec)
	}
	s.reopen()
	s.verify()
	for _, rec := range b[3:] { // appends continue after a restart
		s.append(rec)
	}
	s.reopen()
	s.verify()
}

// crashed checks the log after a write that failed or tore: r is there
// whole or not at all, everything else acknowledged is there, and the
// log takes appends again.
func (s *suite) crashed(r saga.Record) {
	s.t.Helper()
	s.reopen()
	got, err := s.log.Records(ctx, r.Saga)
	if err != nil {
		s.t.Fatalf("Records after the failed write: %v", err)
	}
	if want := s.acked[r.Saga]; len(got) == len(want)+1 {
		if !same(got[len(got)-1], r) {
			s.t.Fatalf("the record whose write failed came back as %+v, want %+v or nothing", got[len(got)-1], r)
		}
		s.ack(r)
	}
	s.verify()
	s.append(saga.Record{Kind: saga.KindCommitted, Saga: r.Saga})
	s.verify()
}

func testTorn(t *testing.T, s *suite) {
	if s.sub.Tear == nil {
		t.Skip("the log has no torn writes (Subject.Tear is nil)")
	}
	r := rand.New(rand.NewPCG(8, 9))
	h := history(r, "torn", 2)
	for _, rec := range h[:3] {
		s.append(rec)
	}
	s.sub.Tear(t, h[3])
	s.crashed(h[3])
}

func testFailed(t *testing.T, s *suite) {
	if s.sub.Fail == nil {
		t.Skip("the log cannot be made to fail (Subject.Fail is nil)")
	}
	r := rand.New(rand.NewPCG(10, 11))
	h := history(r, "failed", 2)
	for _, rec := range h[:3] {
		s.append(rec)
	}
	s.sub.Fail(t)
	if err := s.log.Append(ctx, h[3]); err == nil {
		t.Fatal("Append after Fail succeeded, want an error")
	}
	s.crashed(h[3])
}

// errCrash stops an orchestrator at an append.
var errCrash = errors.New("sagatest: injected crash")

// dying is a log whose appends fail from the (budget+1)-th on, like a
// process that dies there.
type dying struct {
	saga.Log
	mu     sync.Mutex
	budget int
}

func (d *dying) Append(ctx context.Context, r saga.Record) error {
	d.mu.Lock()
	if d.budget == 0 {
		d.mu.Unlock()
		return errCrash
	}
	d.budget--
	d.mu.Unlock()
	return d.Log.Append(ctx, r)
}

// testRecovery kills an orchestrator at every append of a three-step saga
// in turn, reopens the log and lets a new orchestrator recover it.
func testRecovery(t *testing.T, s *suite) {
	const steps = 3
	// The forward phase writes Started, then StepStarted and StepDone per
	// step, then Committed.
	const appends = 2 + 2*steps
	var mu sync.Mutex
	ran := map[string][]int{} // saga -> steps whose Do succeeded, in order
	def := saga.Definition{Name: "recover"}
	for i := range steps {
		def.Steps = append(def.Steps, saga.Step{
			Name: fmt.Sprint("step-", i),
			Do: func(ctx context.Context, x *saga.Exec) error {
				mu.Lock()
				defer mu.Unlock()
				ran[x.SagaID] = append(ran[x.SagaID], i)
				return nil
			},
			Undo: func(ctx context.Context, x *saga.Exec) error {
				return errors.New("sagatest: no step fails, so no Undo runs")
			},
		})
	}
	orchestrator := func(log saga.Log) *saga.Orchestrator {
		o := saga.New(log, saga.Config{})
		if err := o.Register(def); err != nil {
			t.Fatal(err)
		}
		return o
	}
	for crash := range appends {
		id := fmt.Sprint("crash-at-", crash)
		o := orchestrator(&dying{Log: s.log, budget: crash})
		if _, err := o.Run(ctx, def.Name, id, []byte(id)); !errors.Is(err, errCrash) {
			t.Fatalf("%s: Run with a log that dies: %v, want the crash", id, err)
		}
		s.reopen()
		open, err := s.log.Unfinished(ctx)
		if err != nil {
			t.Fatalf("%s: Unfinished: %v", id, err)
		}
		if want := []string{id}; crash > 0 && !slices.Equal(open, want) || crash == 0 && len(open) != 0 {
			t.Fatalf("%s: Unfinished after the crash = %q", id, open)
		}
		if err := orchestrator(s.log).Recover(ctx); err != nil {
			t.Fatalf("%s: Recover: %v", id, err)
		}
		recs, err := s.log.Records(ctx, id)
		if err != nil {
			t.Fatalf("%s: Records: %v", id, err)
		}
		if crash > 0 && (len(recs) == 0 || recs[len(recs)-1].Kind != saga.KindCommitted) {
			t.Fatalf("%s: after Recover the saga's records are %+v, want it Committed", id, recs)
		}
		// Every step's Do succeeded, in order; a step may run again only
		// right after its own earlier run (its success was not logged).
		got := slices.Compact(slices.Clone(ran[id]))
		if want := []int{0, 1, 2}; crash > 0 && !slices.Equal(got, want) {
			t.Fatalf("%s: steps ran in the order %v, want %v", id, ran[id], want)
		}
		if open, err := s.log.Unfinished(ctx); err != nil || len(open) != 0 {
			t.Fatalf("%s: Unfinished after Recover = %q, %v; want none", id, open, err)
		}
	}
}
