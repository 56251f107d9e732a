package saga

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

func testDefinition() *Definition {
	nop := func(context.Context, *Exec) error { return nil }
	return &Definition{Name: "d", Steps: []Step{
		{Name: "a", Do: nop, Undo: nop}, {Name: "b", Do: nop}, {Name: "c", Do: nop, Undo: nop},
	}}
}

func TestReplay(t *testing.T) {
	start := Record{Kind: KindStarted, Saga: "s", Def: "d", Steps: []string{"a", "b", "c"}, Input: []byte("in")}
	rec := func(k Kind, step, attempt int) Record {
		return Record{Kind: k, Saga: "s", Step: step, Attempt: attempt}
	}
	good := []Record{
		start,
		rec(KindStepStarted, 0, 1), {Kind: KindStepDone, Saga: "s", Attempt: 1, Bag: []Entry{{"k", []byte("v")}}},
		rec(KindStepStarted, 1, 1), rec(KindStepStarted, 1, 2), // a crash interrupted attempt 1
		rec(KindStepDone, 1, 2),
		rec(KindStepStarted, 2, 1), rec(KindStepFailed, 2, 1),
		{Kind: KindCompensating, Saga: "s", Step: 2, Err: "boom"},
		rec(KindUndoFailed, 2, 1), rec(KindUndoDone, 2, 2),
		rec(KindUndoDone, 0, 1), // b has no Undo
		rec(KindCompensated, 0, 0),
	}
	s, err := replay(compile(testDefinition(), RetryPolicy{}), good)
	require.NoError(t, err)
	require.Equal(t, KindCompensated, s.final)
	require.Equal(t, "v", string(s.bag["k"]))
	require.Equal(t, []byte("in"), s.input)
	require.Equal(t, "boom", s.cause)
	require.Equal(t, 2, s.failed)

	// Attempts of Undo logged before they start, one interrupted by a
	// crash.
	logged := append(slices.Clone(good[:9]),
		rec(KindUndoStarted, 2, 1), rec(KindUndoStarted, 2, 2), rec(KindUndoFailed, 2, 2),
		rec(KindUndoStarted, 2, 3), rec(KindUndoDone, 2, 3),
		rec(KindUndoStarted, 0, 1))
	s, err = replay(compile(testDefinition(), RetryPolicy{}), logged)
	require.NoError(t, err)
	require.Equal(t, 0, s.stage)
	require.Equal(t, progress{attempts: 1, done: true, undoAttempts: 1, undoInFlight: true}, s.nodes[0])
	require.Equal(t, 3, s.nodes[2].undoAttempts)

	for name, recs := range map[string][]Record{
		"undo done not in flight":   append(slices.Clone(logged[:10]), rec(KindUndoDone, 2, 2)),
		"undo started twice same":   append(slices.Clone(logged[:10]), rec(KindUndoStarted, 2, 1)),
		"undo of a later stage":     append(slices.Clone(logged), rec(KindUndoStarted, 2, 4)),
		"stuck while undone":        append(slices.Clone(logged[:14]), rec(KindStuck, 2, 0)),
		"cancel while compensating": append(slices.Clone(logged[:10]), rec(KindCancelled, 0, 0)),
		"empty":                     nil,
		"no start":                  {rec(KindStepStarted, 0, 1)},
		"two starts":                {start, start},
		"other definition":          {{Kind: KindStarted, Saga: "s", Def: "d", Steps: []string{"a", "b"}}},
		"other saga":                {start, {Kind: KindStepStarted, Saga: "t", Attempt: 1}},
		"skipped step":              {start, rec(KindStepStarted, 1, 1)},
		"skipped attempt":           {start, rec(KindStepStarted, 0, 2)},
		"done without start":        {start, rec(KindStepDone, 0, 1)},
		"early commit":              {start, rec(KindCommitted, 0, 0)},
		"undo going forward":        {start, rec(KindUndoDone, 0, 1)},
		"after the end":             append(append([]Record{}, good...), rec(KindStepStarted, 0, 1)),
		"early compensated":         {start, rec(KindStepStarted, 0, 1), rec(KindStepDone, 0, 1), rec(KindCompensating, 1, 0), rec(KindCompensated, 0, 0)},
		"stuck without fail":        {start, rec(KindStepStarted, 0, 1), rec(KindCompensating, 0, 0), rec(KindStuck, 0, 0)},
		"undo after perm":           {start, rec(KindStepStarted, 0, 1), rec(KindCompensating, 0, 0), {Kind: KindUndoFailed, Saga: "s", Attempt: 1, Permanent: true}, rec(KindUndoDone, 0, 2)},
		"compensate past end":       {start, rec(KindStepStarted, 0, 1), rec(KindStepDone, 0, 1), rec(KindStepStarted, 1, 1), rec(KindStepDone, 1, 1), rec(KindStepStarted, 2, 1), rec(KindStepDone, 2, 1), rec(KindCompensating, 3, 0)},
	} {
		_, err := replay(compile(testDefinition(), RetryPolicy{}), recs)
		require.ErrorIs(t, err, ErrHistory, name)
	}
}

// FuzzOpenFileLog opens arbitrary files: it never panics, and a file it
// accepts reopens with the same records.
func FuzzOpenFileLog(f *testing.F) {
	var b []byte
	b = append(b, fileMagic...)
	for _, r := range history()[:3] {
		b, _, _ = appendFrame(b, r)
	}
	f.Add(b)
	f.Add(b[:len(b)-3])
	f.Add([]byte(fileMagic))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "log")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		noSync := func(*os.File) error { return nil } // fsync makes a run take seconds
		l, err := openFileLog(path, noSync)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		ids, err := l.Unfinished(context.Background())
		require.NoError(t, err)
		require.NoError(t, l.Close())
		l, err = openFileLog(path, noSync)
		require.NoError(t, err, "a recovered file reopens")
		again, _ := l.Unfinished(context.Background())
		require.Equal(t, ids, again)
		require.NoError(t, l.Close())
	})
}

// TestReplayGroup: the records of a group's members interleave; a member
// that failed Permanent on its only attempt is not undone, a member
// interrupted in flight is; a Cancelled record names the stage.
func TestReplayGroup(t *testing.T) {
	nop := func(context.Context, *Exec) error { return nil }
	d := &Definition{Name: "g", Steps: []Step{
		{Name: "a", Do: nop, Undo: nop},
		{Name: "grp", Parallel: []Step{{Name: "b", Do: nop, Undo: nop}, {Name: "c", Do: nop, Undo: nop}, {Name: "d", Do: nop, Undo: nop}}},
		{Name: "e", Do: nop, Undo: nop},
	}}
	p := compile(d, RetryPolicy{})
	require.Equal(t, []string{"a", "grp/b", "grp/c", "grp/d", "e"}, p.names)
	start := Record{Kind: KindStarted, Saga: "s", Def: "g", Steps: p.names}
	rec := func(k Kind, step, attempt int) Record {
		return Record{Kind: k, Saga: "s", Step: step, Attempt: attempt}
	}
	forward := []Record{
		start, rec(KindStepStarted, 0, 1), rec(KindStepDone, 0, 1),
		rec(KindStepStarted, 2, 1), rec(KindStepStarted, 1, 1), rec(KindStepStarted, 3, 1),
		rec(KindStepDone, 1, 1),
		{Kind: KindStepFailed, Saga: "s", Step: 2, Attempt: 1, Err: "no", Permanent: true},
	}
	s, err := replay(p, forward)
	require.NoError(t, err)
	require.Equal(t, 1, s.stage)
	require.True(t, s.nodes[2].gaveUp)
	require.True(t, s.nodes[3].inFlight)

	recs := append(slices.Clone(forward), Record{Kind: KindCompensating, Saga: "s", Step: 2, Err: "no"},
		rec(KindUndoStarted, 3, 1), rec(KindUndoStarted, 1, 1), rec(KindUndoDone, 3, 1))
	s, err = replay(p, recs)
	require.NoError(t, err)
	require.Equal(t, 1, s.stage, "b's undo is in flight")
	require.False(t, s.needsUndo(2), "c's only attempt failed Permanent")
	s, err = replay(p, append(slices.Clone(recs), rec(KindUndoDone, 1, 1), rec(KindUndoStarted, 0, 1)))
	require.NoError(t, err)
	require.Equal(t, 0, s.stage)

	cancelled := append(slices.Clone(forward[:7]), Record{Kind: KindCancelled, Saga: "s", Step: 1})
	s, err = replay(p, cancelled)
	require.NoError(t, err)
	require.True(t, s.cancelled)
	require.Equal(t, -1, s.failed)
	require.True(t, s.needsUndo(2) && s.needsUndo(3), "c and d were in flight")

	for name, bad := range map[string][]Record{
		"undo of c":            append(slices.Clone(recs), rec(KindUndoStarted, 2, 1)),
		"retry after perm":     append(slices.Clone(forward), rec(KindStepStarted, 2, 2)),
		"step of next stage":   append(slices.Clone(forward[:7]), rec(KindStepStarted, 4, 1)),
		"cancel at a member":   append(slices.Clone(forward[:7]), Record{Kind: KindCancelled, Saga: "s", Step: 2}),
		"undo of later stage":  append(slices.Clone(recs), rec(KindUndoStarted, 4, 1)),
		"commit with a member": append(slices.Clone(forward[:7]), rec(KindCommitted, 0, 0)),
	} {
		_, err := replay(p, bad)
		require.ErrorIs(t, err, ErrHistory, name)
	}
}
