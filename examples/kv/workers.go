package kv

import (
	"sync"
	"time"
)

// workerIdle is how long an idle worker waits for its next function
// before it exits.
const workerIdle = 10 * time.Second

// workers runs functions on goroutines that outlive them. A function
// handed to an idle worker starts on that worker's stack, already grown
// by the functions before it, where a new goroutine starts on a small
// stack and copies it each time it grows (the replica RPC paths, through
// msgpack, grow one several times). A function finding no idle worker
// gets a new one, so nothing ever waits for a worker; a worker exits once
// idle for workerIdle, or at once when idle after close: the workers
// number at most the peak of functions running at once. The zero value
// is ready; it is safe for concurrent use.
type workers struct {
	once  sync.Once
	tasks chan func() // unbuffered: a send succeeds only into an idle worker
	quit  chan struct{}
	stop  sync.Once
}

func (w *workers) init() {
	w.once.Do(func() { w.tasks, w.quit = make(chan func()), make(chan struct{}) })
}

// Go runs f on a worker.
func (w *workers) Go(f func()) {
	w.init()
	select {
	case w.tasks <- f:
	default:
		go w.work(f)
	}
}

// close makes the workers exit once idle; functions handed to Go later
// still run, each on a worker that exits after it.
func (w *workers) close() {
	w.init()
	w.stop.Do(func() { close(w.quit) })
}

// work runs f, then the functions handed to it, until it has been idle
// for workerIdle or the workers are closed.
func (w *workers) work(f func()) {
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		f()
		f = nil // let it go while idle
		idle.Reset(workerIdle)
		select {
		case f = <-w.tasks:
		case <-idle.C:
			return
		case <-w.quit:
			return
		}
	}
}
