package kv

import (
	"bytes"
	"runtime"
	"strconv"
	"testing"
	"testing/synctest"
	"time"
)

// goid is the calling goroutine's number, from its stack's header.
func goid() int {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	buf = bytes.TrimPrefix(buf, []byte("goroutine "))
	id, _ := strconv.Atoi(string(buf[:bytes.IndexByte(buf, ' ')]))
	return id
}

// Functions handed to Go one after another run on one worker; functions
// running at once each get their own; a worker idle for workerIdle exits,
// and close ends the idle ones.
func TestWorkers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var w workers
		run := func(f func()) int {
			ids := make(chan int, 1)
			w.Go(func() {
				f()
				ids <- goid()
			})
			id := <-ids
			synctest.Wait() // the worker is idle again
			return id
		}
		first := run(func() {})
		for i := range 10 {
			if id := run(func() {}); id != first {
				t.Fatalf("call %d ran on goroutine %d, want the idle worker %d", i, id, first)
			}
		}
		release := make(chan struct{})
		ids := make(chan int, 3)
		for range 3 {
			w.Go(func() {
				ids <- goid()
				<-release
			})
		}
		seen := map[int]bool{}
		for range 3 {
			seen[<-ids] = true
		}
		if len(seen) != 3 {
			t.Errorf("3 functions running at once on %d goroutines, want 3", len(seen))
		}
		close(release)
		synctest.Wait()
		time.Sleep(workerIdle)
		synctest.Wait()
		if id := run(func() {}); seen[id] || id == first {
			t.Errorf("after workerIdle a function ran on an old worker, %d", id)
		}
		w.close()
		if id := run(func() {}); id == first {
			t.Error("a function after close ran on an idle worker")
		}
		// The bubble ends only if every worker has exited.
	})
}
