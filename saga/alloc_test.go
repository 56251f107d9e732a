package saga

import (
	"context"
	"errors"
	"os"
	"strconv"
	"testing"
)

// TestRunAllocs pins the allocations of a committed three-step saga on a
// MemLog: the run, its context, and the log's copy of the records.
func TestRunAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	nop := func(context.Context, *Exec) error { return nil }
	o := New(&MemLog{}, Config{})
	d := Definition{Name: "three"}
	for _, name := range []string{"a", "b", "c"} {
		d.Steps = append(d.Steps, Step{Name: name, Do: nop, Undo: nop})
	}
	if err := o.Register(d); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = strconv.Itoa(i)
	}
	i := 0
	allocs := testing.AllocsPerRun(len(ids)-1, func() {
		if out, err := o.Run(context.Background(), "three", ids[i], nil); out != Committed {
			t.Fatal(out, err)
		}
		i++
	})
	t.Logf("%.2f allocations per saga", allocs)
	if allocs > 6 {
		t.Errorf("%.1f allocations per saga, want at most 6", allocs)
	}
}

// TestAppendInvalidRecord: a Log refuses a record its encoding cannot
// carry back.
func TestAppendInvalidRecord(t *testing.T) {
	l, err := openFileLog(t.TempDir()+"/log", func(*os.File) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, log := range []Log{&MemLog{}, l} {
		for _, r := range []Record{
			{Saga: "s"},
			{Kind: KindStarted + 100, Saga: "s"},
			{Kind: KindStepStarted, Saga: "s", Step: -1},
			{Kind: KindStepStarted, Saga: "s", Attempt: 1 << 40},
			{Kind: KindStepDone, Saga: "s", Bag: []Entry{{"b", nil}, {"a", nil}}},
		} {
			if err := log.Append(context.Background(), r); !errors.Is(err, ErrInvalidRecord) {
				t.Errorf("%T.Append(%+v) = %v, want ErrInvalidRecord", log, r, err)
			}
		}
		if recs, _ := log.Records(context.Background(), "s"); len(recs) != 0 {
			t.Errorf("%T stored %v", log, recs)
		}
	}
}
