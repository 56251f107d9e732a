package saga

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// history returns a few sagas' records, interleaved: a1 b1 a2 c1 b2 ...
func history() []Record {
	return []Record{
		{Kind: KindStarted, Saga: "a", Def: "d", Input: []byte("in-a"), Steps: []string{"s0", "s1"}},
		{Kind: KindStarted, Saga: "b", Def: "d", Steps: []string{"s0", "s1"}},
		{Kind: KindStepStarted, Saga: "a", Attempt: 1},
		{Kind: KindStepDone, Saga: "a", Attempt: 1, Bag: []Entry{{"k", []byte("v")}}},
		{Kind: KindStarted, Saga: "c", Def: "d", Steps: []string{"s0", "s1"}},
		{Kind: KindStepStarted, Saga: "b", Attempt: 1},
		{Kind: KindStepFailed, Saga: "b", Attempt: 1, Err: "boom"},
		{Kind: KindCompensating, Saga: "b", Err: "boom", Permanent: true},
		{Kind: KindCompensated, Saga: "b"},
		{Kind: KindStepStarted, Saga: "a", Step: 1, Attempt: 1},
	}
}

func appendAll(t *testing.T, l Log, recs []Record) {
	t.Helper()
	for _, r := range recs {
		require.NoError(t, l.Append(context.Background(), r))
	}
}

// requireContents checks that l holds exactly recs.
func requireContents(t *testing.T, l Log, recs []Record) {
	t.Helper()
	ctx := context.Background()
	want := map[string][]Record{}
	var order, open []string
	for _, r := range recs {
		if _, ok := want[r.Saga]; !ok {
			order = append(order, r.Saga)
		}
		want[r.Saga] = append(want[r.Saga], r)
	}
	for _, id := range order {
		got, err := l.Records(ctx, id)
		require.NoError(t, err)
		require.Equal(t, want[id], got, "saga %s", id)
		if !got[len(got)-1].Kind.Terminal() {
			open = append(open, id)
		}
	}
	got, err := l.Unfinished(ctx)
	require.NoError(t, err)
	require.Equal(t, open, got)
	none, err := l.Records(ctx, "unknown")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestMemLog(t *testing.T) {
	var l MemLog
	appendAll(t, &l, history())
	requireContents(t, &l, history())
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, l.Append(ctx, Record{Kind: KindStarted, Saga: "x"}), context.Canceled)
	dropped, err := l.Compact(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, dropped)
	requireContents(t, &l, openRecords(history()))
}

func TestFileLogReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	requireContents(t, l, nil)
	appendAll(t, l, history()[:5])
	requireContents(t, l, history()[:5])
	require.NoError(t, l.Close())
	require.ErrorIs(t, l.Close(), ErrClosed)
	require.ErrorIs(t, l.Append(context.Background(), history()[0]), ErrClosed)

	l, err = OpenFileLog(path)
	require.NoError(t, err)
	requireContents(t, l, history()[:5])
	appendAll(t, l, history()[5:])
	require.NoError(t, l.Close())

	l, err = OpenFileLog(path)
	require.NoError(t, err)
	requireContents(t, l, history())
	require.NoError(t, l.Close())
}

// writeLog writes recs to a new log file and returns its path, its bytes
// and the offset of every frame.
func writeLog(t *testing.T, recs []Record) (string, []byte, []int64) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	var offs []int64
	for _, r := range recs {
		offs = append(offs, l.size)
		require.NoError(t, l.Append(context.Background(), r))
	}
	require.NoError(t, l.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	return path, data, offs
}

// TestFileLogTornTail cuts the file at every byte offset inside its last
// frame: the log opens without the last record, truncates the file, and
// appends after it.
func TestFileLogTornTail(t *testing.T) {
	recs := history()
	path, data, offs := writeLog(t, recs)
	last := offs[len(offs)-1]
	for cut := last; cut < int64(len(data)); cut++ {
		require.NoError(t, os.WriteFile(path, data[:cut], 0o644))
		l, err := OpenFileLog(path)
		require.NoError(t, err, "cut at %d", cut)
		requireContents(t, l, recs[:len(recs)-1])
		appendAll(t, l, recs[len(recs)-1:])
		require.NoError(t, l.Close())
		got, _ := os.ReadFile(path)
		require.Equal(t, data, got, "cut at %d: re-appending the lost record restores the file", cut)
	}
	// A crash may also leave zeros after the last write, or damage the
	// last frame: both count as a torn tail.
	for name, tail := range map[string][]byte{
		"zeros":      append(append([]byte{}, data...), make([]byte, 100)...),
		"last crc":   flip(data, len(data)-1),
		"last len":   flip(data, int(last)),
		"torn magic": []byte(fileMagic[:3]),
	} {
		require.NoError(t, os.WriteFile(path, tail, 0o644))
		l, err := OpenFileLog(path)
		require.NoError(t, err, name)
		switch name {
		case "torn magic":
			requireContents(t, l, nil)
		case "zeros":
			requireContents(t, l, recs)
		default:
			requireContents(t, l, recs[:len(recs)-1])
		}
		require.NoError(t, l.Close())
	}
}

func flip(data []byte, i int) []byte {
	b := append([]byte{}, data...)
	b[i] ^= 0x20
	return b
}

// TestFileLogCorruptMiddle flips each byte of every frame but the last:
// OpenFileLog refuses the file with the damaged frame's offset and leaves
// the file as it was.
func TestFileLogCorruptMiddle(t *testing.T) {
	path, data, offs := writeLog(t, history()[:4])
	frame := 0
	for i := range int(offs[len(offs)-1]) {
		for frame+1 < len(offs) && int64(i) >= offs[frame+1] {
			frame++
		}
		bad := flip(data, i)
		require.NoError(t, os.WriteFile(path, bad, 0o644))
		_, err := OpenFileLog(path)
		var ce *CorruptError
		require.ErrorAs(t, err, &ce, "flip at %d", i)
		require.ErrorIs(t, err, ErrCorrupt)
		require.Contains(t, err.Error(), fmt.Sprintf("corrupt log file %s at offset %d: ", path, ce.Offset))
		if i < len(fileMagic) {
			require.Equal(t, int64(0), ce.Offset)
		} else {
			require.Equal(t, offs[frame], ce.Offset, "flip at %d", i)
		}
		got, _ := os.ReadFile(path)
		require.Equal(t, bad, got, "the file is left alone")
	}
}

func TestFileLogCorruptOnRead(t *testing.T) {
	path, data, offs := writeLog(t, history()[:3])
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	defer l.Close()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte{data[offs[2]+frameHeader] ^ 1}, offs[2]+frameHeader)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = l.Records(context.Background(), "a")
	var ce *CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, offs[2], ce.Offset)
}

func TestFileLogTooLarge(t *testing.T) {
	l, err := OpenFileLog(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	defer l.Close()
	err = l.Append(context.Background(), Record{Kind: KindStarted, Saga: "big", Input: make([]byte, MaxRecordSize)})
	require.ErrorIs(t, err, ErrTooLarge)
	appendAll(t, l, history())
	requireContents(t, l, history())
}

// TestFileLogGroupCommit holds the first fsync until 63 more appends are
// queued: they all share the second write and fsync.
func TestFileLogGroupCommit(t *testing.T) {
	const n = 64
	l, err := OpenFileLog(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	release := make(chan struct{})
	var syncs int
	l.syncFile = func(f *os.File) error {
		syncs++
		if syncs == 1 {
			<-release
		}
		return f.Sync()
	}
	var wg sync.WaitGroup
	wg.Go(func() { appendAll(t, l, []Record{{Kind: KindStarted, Saga: "first"}}) })
	queued := func(want int) {
		for {
			l.mu.Lock()
			got, flushing := len(l.queued), l.flushing
			l.mu.Unlock()
			if got == want && flushing {
				return
			}
			runtime.Gosched()
		}
	}
	queued(0) // the first append is being flushed
	for i := range n - 1 {
		wg.Go(func() { appendAll(t, l, []Record{{Kind: KindStarted, Saga: fmt.Sprint(i)}}) })
	}
	queued(n - 1)
	close(release)
	wg.Wait()
	require.Equal(t, 2, syncs)
	ids, err := l.Unfinished(context.Background())
	require.NoError(t, err)
	require.Len(t, ids, n)
	require.Equal(t, "first", ids[0])
	require.NoError(t, l.Close())
}

// TestFileLogSyncFailure: a failed fsync fails its appends and every later
// one; Close still returns.
func TestFileLogSyncFailure(t *testing.T) {
	l, err := OpenFileLog(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	appendAll(t, l, history()[:1])
	boom := errors.New("disk on fire")
	l.syncFile = func(*os.File) error { return boom }
	require.ErrorIs(t, l.Append(context.Background(), history()[1]), boom)
	require.ErrorIs(t, l.Append(context.Background(), history()[2]), boom)
	requireContents(t, l, history()[:1])
	require.NoError(t, l.Close())
}

// TestFileLogConcurrent appends from many goroutines while others read;
// after a reopen every saga's records are there, in each saga's order.
func TestFileLogConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	const sagas, perSaga = 16, 20
	sagaRecords := func(id string) []Record {
		recs := []Record{{Kind: KindStarted, Saga: id, Def: "d"}}
		for a := 1; a < perSaga-1; a++ {
			recs = append(recs, Record{Kind: KindStepStarted, Saga: id, Attempt: a})
		}
		return append(recs, Record{Kind: KindCommitted, Saga: id})
	}
	var wg sync.WaitGroup
	for i := range sagas {
		wg.Go(func() { appendAll(t, l, sagaRecords(fmt.Sprint(i))) })
		wg.Go(func() {
			for range perSaga {
				recs, err := l.Records(context.Background(), fmt.Sprint(i))
				require.NoError(t, err)
				require.Equal(t, sagaRecords(fmt.Sprint(i))[:len(recs)], recs, "a prefix, in order")
				_, err = l.Unfinished(context.Background())
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	require.NoError(t, l.Close())
	l, err = OpenFileLog(path)
	require.NoError(t, err)
	defer l.Close()
	for i := range sagas {
		recs, err := l.Records(context.Background(), fmt.Sprint(i))
		require.NoError(t, err)
		require.Equal(t, sagaRecords(fmt.Sprint(i)), recs)
	}
	open, err := l.Unfinished(context.Background())
	require.NoError(t, err)
	require.Empty(t, open)
}

func TestNames(t *testing.T) {
	require.Equal(t, "StepDone", KindStepDone.String())
	require.Equal(t, "Kind(0)", Kind(0).String())
	require.True(t, KindStuck.Terminal())
	require.False(t, KindUndoDone.Terminal())
	require.Equal(t, "Compensated", Compensated.String())
	require.Equal(t, "Outcome(0)", Outcome(0).String())
}

// openRecords returns the records of the sagas of recs that have no
// terminal record, in order.
func openRecords(recs []Record) []Record {
	done := map[string]bool{}
	for _, r := range recs {
		done[r.Saga] = done[r.Saga] || r.Kind.Terminal()
	}
	var out []Record
	for _, r := range recs {
		if !done[r.Saga] {
			out = append(out, r)
		}
	}
	return out
}

func TestFileLogCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	appendAll(t, l, history())
	before, _ := os.Stat(path)
	dropped, err := l.Compact(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, dropped, "saga b was compensated")
	after, _ := os.Stat(path)
	require.Less(t, after.Size(), before.Size())
	kept := openRecords(history())
	requireContents(t, l, kept)
	more := Record{Kind: KindCommitted, Saga: "a"}
	appendAll(t, l, []Record{more})
	kept = append(kept, more)
	requireContents(t, l, kept)
	require.NoError(t, l.Close())
	_, err = os.Stat(path + ".compact")
	require.True(t, os.IsNotExist(err), "no temporary file left")

	l, err = OpenFileLog(path)
	require.NoError(t, err)
	requireContents(t, l, kept)
	dropped, err = l.Compact(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, dropped)
	requireContents(t, l, openRecords(kept))
	require.NoError(t, l.Close())
	_, err = l.Compact(context.Background())
	require.ErrorIs(t, err, ErrClosed)
}

// TestFileLogCompactConcurrent: appends made while Compact copies wait,
// then land after the copy; nothing is lost across a reopen.
func TestFileLogCompactConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	appendAll(t, l, history())
	copying, release := make(chan struct{}), make(chan struct{})
	l.syncFile = func(f *os.File) error {
		if f != l.f { // the compaction's new file
			close(copying)
			<-release
		}
		return f.Sync()
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := l.Compact(context.Background())
		require.NoError(t, err)
	})
	<-copying
	late := []Record{{Kind: KindStepDone, Saga: "a", Step: 1, Attempt: 1}, {Kind: KindStarted, Saga: "d", Def: "d"}}
	for _, r := range late {
		wg.Go(func() { appendAll(t, l, []Record{r}) })
	}
	for {
		l.mu.Lock()
		n := len(l.queued)
		l.mu.Unlock()
		if n == len(late) {
			break
		}
		runtime.Gosched()
	}
	close(release)
	wg.Wait()
	want := openRecords(history())
	a, err := l.Records(context.Background(), "a")
	require.NoError(t, err)
	require.Len(t, a, 5)
	require.Equal(t, late[0], a[4])
	require.NoError(t, l.Close())
	l, err = OpenFileLog(path)
	require.NoError(t, err)
	defer l.Close()
	got := 0
	for _, id := range []string{"a", "c", "d"} {
		recs, err := l.Records(context.Background(), id)
		require.NoError(t, err)
		got += len(recs)
	}
	require.Equal(t, len(want)+len(late), got)
	ids, _ := l.Unfinished(context.Background())
	require.Equal(t, []string{"a", "c", "d"}, ids)
}

// TestFileLogCompactFailure: a failed compaction leaves the log as it was.
func TestFileLogCompactFailure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	defer l.Close()
	appendAll(t, l, history())
	boom := errors.New("disk full")
	l.syncFile = func(f *os.File) error {
		if f != l.f {
			return boom
		}
		return f.Sync()
	}
	_, err = l.Compact(context.Background())
	require.ErrorIs(t, err, boom)
	_, err = os.Stat(path + ".compact")
	require.True(t, os.IsNotExist(err))
	requireContents(t, l, history())
	appendAll(t, l, []Record{{Kind: KindCommitted, Saga: "a"}})
}

// TestFileLogCloseDuringRecords: a Records call that races with Close
// returns the records or ErrClosed, never the error of reading a closed
// file.
func TestFileLogCloseDuringRecords(t *testing.T) {
	l, err := OpenFileLog(filepath.Join(t.TempDir(), "log"))
	require.NoError(t, err)
	l.syncFile = func(*os.File) error { return nil } // the race is the point, not durability
	recs := []Record{{Kind: KindStarted, Saga: "s", Def: "d"}}
	for a := 1; a < 200; a++ {
		recs = append(recs, Record{Kind: KindStepStarted, Saga: "s", Attempt: a})
	}
	appendAll(t, l, recs)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				if _, err := l.Records(context.Background(), "s"); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	require.NoError(t, l.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorIs(t, err, ErrClosed)
	}
}

// TestFileLogLocked: while a FileLog has a file open, a second open of
// it fails with ErrLocked and an error naming the file, in this process
// and in another one (a copy of this test binary), also after Compact
// replaced the file; after Close it opens again.
func TestFileLogLocked(t *testing.T) {
	if runtime.GOOS == "windows" || runtime.GOOS == "solaris" || runtime.GOOS == "aix" || runtime.GOOS == "illumos" {
		t.Skip("no flock on", runtime.GOOS)
	}
	path := filepath.Join(t.TempDir(), "sagas.log")
	l, err := OpenFileLog(path)
	require.NoError(t, err)
	appendAll(t, l, history())

	check := func() {
		t.Helper()
		_, err := OpenFileLog(path)
		require.ErrorIs(t, err, ErrLocked)
		require.Contains(t, err.Error(), path)

		cmd := exec.Command(os.Args[0], "-test.run=^TestFileLogLockedHelper$")
		cmd.Env = append(os.Environ(), "SAGA_LOCKED_HELPER="+path)
		out, err := cmd.CombinedOutput()
		require.Error(t, err, "the other process opened the file: %s", out)
		require.Contains(t, string(out), "in use by another FileLog: "+path)
	}
	check()
	_, err = l.Compact(context.Background())
	require.NoError(t, err)
	check()
	require.NoError(t, l.Close())
	l2, err := OpenFileLog(path)
	require.NoError(t, err)
	requireContents(t, l2, openRecords(history()))
	require.NoError(t, l2.Close())
}

// TestFileLogLockedHelper is the other process of TestFileLogLocked: it
// opens the file SAGA_LOCKED_HELPER names and fails if it cannot.
func TestFileLogLockedHelper(t *testing.T) {
	path := os.Getenv("SAGA_LOCKED_HELPER")
	if path == "" {
		t.Skip("run by TestFileLogLocked")
	}
	l, err := OpenFileLog(path)
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	l.Close()
}
