package kv

import (
	"fmt"
	"slices"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// groupCommit shares bbolt write transactions, hence their fsyncs,
// between concurrent writes, as a database's group commit does: a write
// that arrives while no commit runs commits at once, alone; the writes
// that arrive while a commit runs wait for it and then go together in the
// next one. The batch therefore grows with the load and the disk's
// latency, and no write waits for a timer (bbolt's own Batch starts a new
// batch every MaxBatchDelay, so under load its batches queue behind each
// other, each paying its own fsyncs).
//
// No goroutine runs it: the first waiting write commits each batch (it
// leads), then hands the lead to the first write of the next batch.
//
// A write's function runs inside the shared transaction and may run more
// than once (when another function of its batch fails, the batch is
// committed again without it), so it must set its results afresh each
// time. A function that returns an error fails its own write alone:
// nothing of it is written, and the others commit without it. A function
// reports whether it wrote: a batch in which none did is rolled back,
// without an fsync (a replica's merge of what it already holds, as read
// repair and anti-entropy often send, costs no disk write). It is safe
// for concurrent use; the zero value is not: set db.
type groupCommit struct {
	db *bolt.DB
	// delay, when positive, is how long the write that leads a batch
	// waits for others to join it before it commits.
	delay time.Duration

	mu      sync.Mutex
	queue   []*commitCall // waiting for the next batch
	leading bool          // a write is committing a batch
}

// commitCall is one write in the queue.
type commitCall struct {
	fn   func(*bolt.Tx) (wrote bool, err error)
	done chan commitResult // receives once
}

// commitResult tells a waiting write its outcome, or that it leads the
// next batch.
type commitResult struct {
	err  error
	lead bool
}

// update runs fn in a write transaction shared with concurrent writes
// and returns once the transaction committed (nil), or was rolled back
// because nothing in it wrote (nil), or failed. It returns fn's error
// when fn fails, and bbolt's errors.
func (g *groupCommit) update(fn func(*bolt.Tx) (wrote bool, err error)) error {
	c := &commitCall{fn: fn, done: make(chan commitResult, 1)}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.leading {
		g.mu.Unlock()
		if r := <-c.done; !r.lead {
			return r.err
		}
		g.mu.Lock() // this write leads the batch it is in
	}
	g.leading = true
	if g.delay > 0 {
		g.mu.Unlock()
		time.Sleep(g.delay)
		g.mu.Lock()
	}
	batch := g.queue
	g.queue = nil
	g.mu.Unlock()
	g.commit(batch)
	r := <-c.done
	return r.err
}

// commit commits batch and tells each write its outcome, then hands the
// lead to the first write queued meanwhile, or gives it up. A panic of a
// write's function fails the writes not yet told, and the lead passes
// on before the panic does.
func (g *groupCommit) commit(batch []*commitCall) {
	defer func() {
		if p := recover(); p != nil {
			for _, c := range batch {
				c.done <- commitResult{err: fmt.Errorf("kv: a write in the same commit panicked: %v", p)}
			}
			g.handOff()
			panic(p)
		}
		g.handOff()
	}()
	for len(batch) > 0 {
		failed, err := g.run(batch)
		if failed < 0 {
			for _, c := range batch {
				c.done <- commitResult{err: err}
			}
			batch = nil
			return
		}
		// The transaction rolled back: the failed write alone gets its
		// error; the others commit again without it.
		batch[failed].done <- commitResult{err: err}
		batch = slices.Delete(batch, failed, failed+1)
	}
}

// run runs batch's functions in one write transaction and commits it,
// or rolls it back when none wrote. It returns the index of the first
// function that failed (the transaction then rolled back) with its
// error, or -1 with the outcome of the commit.
func (g *groupCommit) run(batch []*commitCall) (failed int, err error) {
	tx, err := g.db.Begin(true)
	if err != nil {
		return -1, err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	wrote := false
	for i, c := range batch {
		w, err := c.fn(tx)
		if err != nil {
			_ = tx.Rollback()
			return i, err
		}
		wrote = wrote || w
	}
	if !wrote {
		return -1, tx.Rollback()
	}
	return -1, tx.Commit()
}

// handOff makes the first queued write lead the next batch, or ends the
// lead when none is queued.
func (g *groupCommit) handOff() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	g.queue[0].done <- commitResult{lead: true}
}
