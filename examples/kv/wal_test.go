package kv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/distkit/distkit/internal/frame"

	"github.com/distkit/distkit/vclock"
)

// crash abandons s as a crash of its process would: nothing more reaches
// its files, the log is not checkpointed, and its segments stay. (Its
// files are closed, so that the same process can open them again.)
func crash(t testing.TB, s *Store) {
	t.Helper()
	s.logMu.Lock()
	s.closed = true
	s.logMu.Unlock()
	s.bg.Wait()
	s.ckptMu.Lock() // no checkpoint runs from here on
	if err := errors.Join(s.log.Close(), s.hints.close(), s.db.Close()); err != nil {
		t.Fatal(err)
	}
}

// lastSegment returns the path of the newest log segment of the store at
// path.
func lastSegment(t *testing.T, path string) string {
	t.Helper()
	seqs, err := segments(path)
	if err != nil || len(seqs) == 0 {
		t.Fatalf("segments of %s: %v, %v", path, seqs, err)
	}
	return segmentPath(path, seqs[len(seqs)-1])
}

// frameEnds returns the offsets at which the frames of the segment file
// at path end, after its header.
func frameEnds(t *testing.T, path, epoch string) []int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	h := len(logHeader(epoch))
	var ends []int
	_, err = frame.Scan(b[h:], maxFrame, func(at int, p []byte) error {
		ends = append(ends, h+at+frame.HeaderLen+len(p))
		return nil
	})
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	return ends
}

// TestLogTornTail writes one key per commit, crashes, damages the end of
// the log as a crash or a bad disk may, and reopens: the store holds
// exactly the writes of the frames before the damage, never fails to
// open for a damaged last frame, and never panics.
func TestLogTornTail(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	damages := []struct {
		name string
		f    func(b []byte, start, end int) []byte // the last frame is b[start:end]
	}{
		{"cut", func(b []byte, start, end int) []byte { return b[:start+rng.IntN(end-start)] }},
		{"flipped bit", func(b []byte, start, end int) []byte {
			i := start + rng.IntN(end-start)
			b[i] ^= 1 << rng.IntN(8)
			return b
		}},
		{"garbage after", func(b []byte, start, end int) []byte {
			g := make([]byte, 1+rng.IntN(64))
			for i := range g {
				g[i] = byte(rng.Uint32())
			}
			return append(b[:end], g...)
		}},
		{"zeroed", func(b []byte, start, end int) []byte { clear(b[start:end]); return b }},
	}
	for _, noSync := range []bool{true, false} {
		for _, d := range damages {
			t.Run(fmt.Sprintf("%s/nosync=%v", d.name, noSync), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "kv.db")
				cfg := StoreConfig{NoSync: noSync, Epoch: "e"}
				s := openStore(t, path, cfg)
				n := 3 + rng.IntN(8)
				for i := range n {
					put(t, s, fmt.Sprint("k", i), vclock.VClock{}, fmt.Sprint("v", i))
				}
				crash(t, s)
				seg := lastSegment(t, path)
				ends := frameEnds(t, seg, "e")
				if len(ends) != n {
					t.Fatalf("%d frames for %d commits", len(ends), n)
				}
				b, err := os.ReadFile(seg)
				if err != nil {
					t.Fatal(err)
				}
				start, end := ends[n-2], ends[n-1]
				b = d.f(b, start, end)
				if err := os.WriteFile(seg, b, 0o600); err != nil {
					t.Fatal(err)
				}
				s = openStore(t, path, cfg)
				defer s.Close()
				for i := range n {
					o, found, err := s.Get(fmt.Append(nil, "k", i))
					if err != nil {
						t.Fatal(err)
					}
					// The garbage after the last frame leaves it whole.
					want := i < n-1 || d.name == "garbage after"
					if found != want || found && !slices.Equal(live(o), []string{fmt.Sprint("v", i)}) {
						t.Errorf("k%d: %q, found %v; want found %v", i, live(o), found, want)
					}
				}
				if segs, _ := segments(path); len(segs) != 1 {
					t.Errorf("%d segments after recovery, want 1, fresh", len(segs))
				}
			})
		}
	}
}

// TestLogRefused checks that Open refuses a log it cannot trust, rather
// than drop acknowledged writes: a damaged frame followed by another
// segment, a frame whose CRC holds but whose records do not parse or
// name a key in the wrong segment, and the log of another store.
func TestLogRefused(t *testing.T) {
	frameOf := func(records []byte) []byte {
		b, start := frame.Begin(nil)
		b = append(b, records...)
		frame.End(b, start)
		return b
	}
	dir := t.TempDir()
	probe := openStore(t, filepath.Join(dir, "probe.db"), StoreConfig{NoSync: true})
	dk := probe.dataKey([]byte("k"))
	wrongSegment := append(slices.Clone(dk), 0)
	wrongSegment[3]++
	probe.Close()
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("v")})
	enc, _ := EncodeObject(o)
	good := frameOf(appendPut(nil, dk, enc, 0))
	flipped := slices.Clone(good)
	flipped[len(flipped)-1] ^= 1
	for _, c := range []struct {
		name     string
		segments [][]byte // after the header
		epoch    string
	}{
		{"damaged before the last segment", [][]byte{append(slices.Clone(good), 1, 2, 3), good}, "e"},
		{"damaged before an intact frame", [][]byte{append(slices.Clone(flipped), good...)}, "e"},
		{"unknown record kind", [][]byte{frameOf([]byte{9, 1, 2})}, "e"},
		{"record cut short", [][]byte{frameOf(appendPut(nil, dk, enc, 0)[:10])}, "e"},
		{"key in the wrong segment", [][]byte{frameOf(appendPut(nil, wrongSegment, enc, 0))}, "e"},
		{"empty key", [][]byte{frameOf(appendDelete(nil, dk[:4]))}, "e"},
		{"object that does not decode", [][]byte{frameOf(appendPut(nil, dk, enc[:len(enc)-1], 0))}, "e"},
		{"tombstone time past 2^63-1", [][]byte{frameOf(appendPut(nil, dk, enc, -1))}, "e"},
		{"another store's log", [][]byte{good}, "f"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "kv.db")
			s := openStore(t, path, StoreConfig{NoSync: true, Epoch: "e"})
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			for i, b := range c.segments {
				if err := os.WriteFile(segmentPath(path, uint64(i+1)), append(logHeader(c.epoch), b...), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(path, StoreConfig{NoSync: true})
			if err == nil {
				s.Close()
				t.Fatal("Open took the log")
			}
			if !errors.Is(err, errBadLog) {
				t.Fatalf("Open: %v, want an error wrapping errBadLog", err)
			}
			t.Log(err)
		})
	}
}

// FuzzLogRecovery replays arbitrary bytes, after a valid header, as a
// segment into a bbolt transaction: the replay either refuses them with
// an error wrapping errBadLog, or leaves only objects that decode, each
// under its key's segment.
func FuzzLogRecovery(f *testing.F) {
	s := openStore(f, filepath.Join(f.TempDir(), "kv.db"), StoreConfig{NoSync: true, Epoch: "e"})
	defer s.Close()
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("v")})
	enc, _ := EncodeObject(o)
	b, start := frame.Begin(nil)
	b = appendFloor(appendDelete(appendPut(b, s.dataKey([]byte("k")), enc, 0), s.dataKey([]byte("j"))), 9)
	frame.End(b, start)
	f.Add(b)
	f.Add(b[:len(b)-1])
	f.Add([]byte("garbage"))
	errRollback := errors.New("rollback")
	f.Fuzz(func(t *testing.T, b []byte) {
		err := s.db.Update(func(tx *bolt.Tx) error {
			_, err := parseSegment(append(logHeader("e"), b...), "fuzz", "e", func(r record) error { return s.replay(tx, r) })
			if err != nil {
				if !errors.Is(err, errBadLog) {
					t.Fatalf("replay: %v, want an error wrapping errBadLog", err)
				}
				return errRollback
			}
			err = tx.Bucket(bucketData).ForEach(func(dk, v []byte) error {
				if !bytes.Equal(dk, s.dataKey(dk[4:])) {
					return fmt.Errorf("data key %q outside its segment", dk)
				}
				_, err := DecodeObject(v)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}

// TestLogFailureSticks checks that a store whose log fails a write takes
// no more writes, says so to its health probe, and recovers every
// acknowledged write when reopened.
func TestLogFailureSticks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	s := openStore(t, path, StoreConfig{NoSync: true})
	put(t, s, "a", vclock.VClock{}, "1")
	s.logMu.Lock()
	_ = s.log.Close() // the next write of the log fails
	s.logMu.Unlock()
	for range 2 {
		if _, err := s.Update([]byte("b"), vclock.VClock{}, "n1", Version{Value: []byte("2")}); !errors.Is(err, ErrStorage) {
			t.Fatalf("a write after the log failed: %v, want ErrStorage", err)
		}
	}
	if err := s.Probe(); !errors.Is(err, ErrStorage) {
		t.Fatalf("Probe: %v, want ErrStorage", err)
	}
	if o := get(t, s, "a"); !slices.Equal(live(o), []string{"1"}) {
		t.Fatalf("a = %q while failed", live(o))
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close of a failed store: %v", err)
	}
	if segs, _ := segments(path); len(segs) == 0 {
		t.Fatal("the failed store's log is gone")
	}
	s = openStore(t, path, StoreConfig{NoSync: true})
	defer s.Close()
	if o := get(t, s, "a"); !slices.Equal(live(o), []string{"1"}) {
		t.Fatalf("a = %q after reopening", live(o))
	}
	if _, found, _ := s.Get([]byte("b")); found {
		t.Fatal("a write that failed is there")
	}
}

// crashChildEnv names the store directory of the writer
// [TestLogSIGKILL] runs in a child process.
const crashChildEnv = "KV_CRASH_CHILD_DIR"

// TestLogSIGKILLChild is the child of TestLogSIGKILL: it writes keys of
// its own from four goroutines, with fsync and a small log so that
// checkpoints run all along, and prints each write once it is
// acknowledged, until it is killed.
func TestLogSIGKILLChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("the child of TestLogSIGKILL")
	}
	s, err := Open(filepath.Join(dir, "kv.db"), StoreConfig{CheckpointBytes: 4 << 10, Epoch: "e"})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	acks := make(chan string)
	for w := range 4 {
		go func() {
			for i := 0; ; i++ {
				k := fmt.Sprintf("%s-%d-%d", os.Getenv("KV_CRASH_ROUND"), w, i)
				if _, err := s.Update([]byte(k), vclock.VClock{}, "n1.e", Version{Value: []byte(k)}); err != nil {
					acks <- "error " + err.Error()
					return
				}
				acks <- k
			}
		}()
	}
	for a := range acks {
		fmt.Println(a)
	}
}

// TestLogSIGKILL kills a writing process with SIGKILL at a random point,
// several times over the same store: after each kill, the store opens
// under a new incarnation, holds every write the process acknowledged,
// and its trees match its data.
func TestLogSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	dir := t.TempDir()
	var acked []string
	for round := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLogSIGKILLChild$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir, fmt.Sprint("KV_CRASH_ROUND=", round))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := bufio.NewScanner(out)
		want := 20 + rng.IntN(200)
		for n := 0; n < want && lines.Scan(); n++ {
			if l := lines.Text(); strings.HasPrefix(l, "error ") || strings.HasPrefix(l, "open:") {
				t.Fatalf("round %d: the child: %s", round, l)
			} else if strings.HasPrefix(l, fmt.Sprint(round, "-")) {
				acked = append(acked, l)
			}
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		s, err := Open(filepath.Join(dir, "kv.db"), StoreConfig{Epoch: "e"})
		if err != nil {
			t.Fatalf("round %d: Open after SIGKILL: %v", round, err)
		}
		// Each child's store was killed, each test's closed: one unclean
		// start per round.
		if want := fmt.Sprintf("e-%d", round+1); s.Epoch() != want {
			t.Errorf("round %d: epoch after SIGKILL %q, want %q", round, s.Epoch(), want)
		}
		for _, k := range acked {
			o, found, err := s.Get([]byte(k))
			if err != nil || !found || !slices.Equal(live(o), []string{k}) {
				t.Errorf("round %d: acknowledged %s: %q, found %v, %v", round, k, live(o), found, err)
			}
		}
		model := map[string]Object{}
		for _, e := range allPages(t, s) {
			model[string(e.Key)] = e.Object
		}
		checkAgainstModel(t, s, StoreConfig{Tree: DefaultTree, Group: func([]byte) string { return "" }}, model)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d writes acknowledged so far, %d keys after recovery", round, len(acked), len(model))
	}
}

// failStore fails s's disk as a dead disk would: its bbolt file and its
// log are closed under it, and every later write fails.
func failStore(t *testing.T, s *Store) {
	t.Helper()
	s.logMu.Lock()
	defer s.logMu.Unlock()
	if err := errors.Join(s.db.Close(), s.log.Close()); err != nil {
		t.Fatal(err)
	}
}

// TestLogBatchFrames commits a batch of three writes too large for one
// frame: the first two go in one frame and the third in another, each
// written and synced on its own, and a crash that tears the second frame
// loses the third write alone.
func TestLogBatchFrames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "kv.db")
		var logWrites atomic.Int64
		cfg := StoreConfig{NoSync: true, Epoch: "e", CheckpointBytes: 4 * maxFramePayload, // no checkpoint
			OnCommit: func(time.Duration) { logWrites.Add(1) }}
		s := openStore(t, path, cfg)
		release := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			_ = write(s, "first", func(b *batch, o *Object) error { <-release; return putKey("first")(b, o) })
		})
		synctest.Wait()
		big := make([]byte, maxFramePayload*5/8)
		for i := range 3 {
			wg.Go(func() {
				if _, err := s.Update(fmt.Append(nil, "big", i), vclock.VClock{}, "n1", Version{Value: big}); err != nil {
					t.Error(err)
				}
			})
			synctest.Wait() // queued in order
		}
		close(release)
		wg.Wait()
		crash(t, s)
		seg := lastSegment(t, path)
		ends := frameEnds(t, seg, "e")
		if len(ends) != 3 {
			t.Fatalf("%d frames, want 3: the first write's and two for the batch of three", len(ends))
		}
		// Each frame was written and synced on its own, so that a crash
		// can tear only the last: damage before an intact frame is never
		// a torn write.
		if n := logWrites.Load(); n != int64(len(ends)) {
			t.Fatalf("%d log writes for %d frames, want one each", n, len(ends))
		}
		if err := os.Truncate(seg, int64(ends[2]-1)); err != nil {
			t.Fatal(err)
		}
		s = openStore(t, path, cfg)
		defer s.Close()
		for i, want := range []bool{true, true, false} {
			if _, found, err := s.Get(fmt.Append(nil, "big", i)); found != want || err != nil {
				t.Errorf("big%d: found %v, %v; want %v", i, found, err, want)
			}
		}
	})
}

// TestStoreClosed checks that every call after Close fails with bbolt's
// ErrDatabaseNotOpen, and that a second Close does nothing.
func TestStoreClosed(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "kv.db"), StoreConfig{NoSync: true})
	put(t, s, "k", vclock.VClock{}, "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Update([]byte("k"), vclock.VClock{}, "n1", Version{}); !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		t.Errorf("Update after Close: %v", err)
	}
	if _, _, err := s.Get([]byte("k")); !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		t.Errorf("Get after Close: %v", err)
	}
	if _, err := s.pageFrom(nil, 1<<10, nil); !errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		t.Errorf("a scan after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// A store keeps its epoch across a clean Close, and opens under the next
// incarnation after a crash or a failed log, so that a dot it handed out
// before a write was on disk is never handed out again; the log a crash
// left replays under any incarnation.
func TestStoreIncarnation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kv.db")
	cfg := StoreConfig{NoSync: true, Epoch: "e"}
	s := openStore(t, path, cfg)
	reopen := func(how string, want string) {
		t.Helper()
		switch how {
		case "close":
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		case "crash":
			crash(t, s)
		case "fail":
			s.logMu.Lock()
			_ = s.log.Close()
			s.logMu.Unlock()
			if _, err := s.Update([]byte("x"), vclock.VClock{}, "n1."+s.Epoch(), Version{Value: []byte("x")}); !errors.Is(err, ErrStorage) {
				t.Fatalf("a write on a failed log: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		s = openStore(t, path, cfg)
		if s.Epoch() != want {
			t.Fatalf("after %s: epoch %q, want %q", how, s.Epoch(), want)
		}
	}
	if s.Epoch() != "e" {
		t.Fatalf("a new store's epoch %q, want e", s.Epoch())
	}
	put(t, s, "a", vclock.VClock{}, "1")
	reopen("close", "e")
	put(t, s, "b", vclock.VClock{}, "2")
	reopen("crash", "e-1") // the log of "b" replays
	reopen("close", "e-1")
	reopen("crash", "e-2")
	reopen("crash", "e-3")
	reopen("fail", "e-4")
	reopen("close", "e-4")
	for _, k := range []string{"a", "b"} {
		if _, found, err := s.Get([]byte(k)); !found || err != nil {
			t.Fatalf("%s lost across the reopenings: %v", k, err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"e-1", "e.1", strings.Repeat("e", maxEpochLen+1), "é"} {
		if _, err := Open(filepath.Join(t.TempDir(), "kv.db"), StoreConfig{Epoch: bad}); err == nil {
			t.Errorf("Open with epoch %q: no error", bad)
		}
	}
}

// A write's staged hook sees the object the write returns, once, when
// the write changes the object and before the write is durable: a write
// whose log fails after it was staged returns ErrStorage. A write refused
// or changing nothing is not staged.
func TestStoreStaged(t *testing.T) {
	s := openStore(t, filepath.Join(t.TempDir(), "kv.db"), StoreConfig{NoSync: true, Epoch: "e", MaxSiblings: 1})
	var staged []Object
	hook := func(o Object) { staged = append(staged, o) }
	o, dot, applied, err := s.updateOnce([]byte("k"), vclock.VClock{}, "n1.e", Version{Value: []byte("v"), IdempotencyKey: "i"}, hook)
	if err != nil || !applied || len(staged) != 1 || !sameObject(staged[0], o) || !staged[0].Context().Contains(dot) {
		t.Fatalf("a write: %v applied %v, staged %d objects", err, applied, len(staged))
	}
	if _, _, applied, err := s.updateOnce([]byte("k"), vclock.VClock{}, "n1.e", Version{Value: []byte("v"), IdempotencyKey: "i"}, hook); err != nil || applied || len(staged) != 1 {
		t.Fatalf("a retry that writes nothing: %v applied %v, staged %d objects", err, applied, len(staged))
	}
	if _, _, _, err := s.updateOnce([]byte("k"), vclock.VClock{}, "n2.e", Version{Value: []byte("w")}, hook); !errors.Is(err, ErrTooManySiblings) || len(staged) != 1 {
		t.Fatalf("a refused write: %v, staged %d objects", err, len(staged))
	}
	s.logMu.Lock()
	_ = s.log.Close()
	s.logMu.Unlock()
	if _, _, _, err := s.updateOnce([]byte("k"), o.Context(), "n1.e", Version{Value: []byte("u")}, hook); !errors.Is(err, ErrStorage) || len(staged) != 2 {
		t.Fatalf("a write whose log fails: %v, staged %d objects", err, len(staged))
	}
	if got := get(t, s, "k"); !slices.Equal(live(got), []string{"v"}) {
		t.Fatalf("after the failed write the key reads %q, want the durable v", live(got))
	}
	_ = s.Close()
}
