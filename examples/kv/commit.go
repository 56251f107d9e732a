package kv

import (
	"cmp"
	"fmt"
	"runtime"
	"sync"
	"time"

	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/distkit/distkit/internal/frame"
)

// groupCommit shares commits, hence their fsyncs, between concurrent
// writes, as a database's group commit does: a write that arrives while
// no commit runs commits at once, alone; the writes that arrive while a
// commit runs wait for it and then go together in the next one. The batch
// therefore grows with the load and the disk's latency, and no write
// waits for a timer (bbolt's own Batch starts a new batch every
// MaxBatchDelay, so under load its batches queue behind each other, each
// paying its own fsyncs).
//
// No goroutine runs it: the first waiting write commits each batch (it
// leads), then hands the lead to the first write of the next batch.
// Batches therefore commit one at a time, in order.
//
// run commits a batch: it runs each call's function and sets each call's
// err. A panic of run fails every write of its batch, and the lead passes
// on before the panic does. It is safe for concurrent use; the zero value
// is not: set run.
type groupCommit struct {
	run func(batch []*commitCall)
	// delay, when positive, is how long the write that leads a batch
	// waits for others to join it before it commits.
	delay time.Duration

	mu      sync.Mutex
	queue   []*commitCall // waiting for the next batch
	spare   []*commitCall // the last batch's, empty: the next queue
	leading bool          // a write is committing a batch

	calls sync.Pool // of *commitCall, with their channels
}

// commitCall is one write in the queue: fn, or the write f of the object
// of key (data key dk), or the merge of in into it, whose results run
// sets (see [batch.apply]). Calls are pooled, so that a write allocates
// none.
type commitCall struct {
	fn      func(b *batch) error
	key, dk []byte
	f       func(b *batch, o *Object) error
	in      Object
	// staged, if set, is called with out once the write changed the
	// object, before its commit is durable (see [Store.write]).
	staged  func(out Object)
	out     Object // as stored: shared, read-only
	change  change
	changed bool

	err error // the write's outcome, set by run
	// done receives once: true when the write leads the next batch, false
	// when its batch committed and err is its outcome.
	done chan bool
}

// call returns a call to fill in and pass to do, then to release.
func (g *groupCommit) call() *commitCall {
	if c, ok := g.calls.Get().(*commitCall); ok {
		return c
	}
	return &commitCall{done: make(chan bool, 1)}
}

// release returns c, told its outcome and no longer in any batch, to the
// pool.
func (g *groupCommit) release(c *commitCall) {
	*c = commitCall{done: c.done}
	g.calls.Put(c)
}

// update runs fn in the next batch and returns its outcome.
func (g *groupCommit) update(fn func(b *batch) error) error {
	c := g.call()
	c.fn = fn
	err := g.do(c)
	g.release(c)
	return err
}

// do queues c for the next batch and returns once the batch committed,
// with c's outcome; run has set c's results. A panic of run leaves c told
// and out of any batch, but not to be released.
func (g *groupCommit) do(c *commitCall) error {
	g.mu.Lock()
	g.queue = append(g.queue, c)
	if g.leading {
		g.mu.Unlock()
		if lead := <-c.done; !lead {
			return c.err
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
	g.queue, g.spare = g.spare, nil
	g.mu.Unlock()
	g.commit(batch)
	<-c.done
	return c.err
}

// commit runs batch, tells each write its outcome, then hands the lead to
// the first write queued meanwhile, or gives it up.
func (g *groupCommit) commit(batch []*commitCall) {
	defer func() {
		p := recover()
		for _, c := range batch {
			if p != nil {
				c.err = fmt.Errorf("kv: a write in the same commit panicked: %v", p)
			}
			c.done <- false
		}
		g.handOff(batch)
		if p != nil {
			panic(p)
		}
	}()
	g.run(batch)
}

// handOff keeps the slice of the batch just committed for a later queue,
// and makes the first queued write lead the next batch, or ends the lead
// when none is queued.
func (g *groupCommit) handOff(batch []*commitCall) {
	g.mu.Lock()
	defer g.mu.Unlock()
	clear(batch)
	g.spare = batch[:0]
	if len(g.queue) == 0 {
		g.leading = false
		return
	}
	g.queue[0].done <- true
}

// batch is one commit of a store's writes in the making: the objects
// written so far (staged, by data key, each read back by the later writes
// of the batch), the reap floor, and the frames of log records that make
// them durable. A write that fails is rolled back to its mark, so that it
// leaves nothing in the batch. A write's records are all in one frame,
// and a frame takes writes until it passes maxFramePayload; then it is
// written and synced before the batch goes on (see [Store.commitBatch]).
// Every sync of the log thus covers one frame: a crash tears at most the
// last frame, which recovery cuts, and a bad frame with an intact one
// after it is damage, never a torn write. A torn frame loses whole
// writes, none of which was acknowledged. It is used by the leader under
// the store's logMu, and reused from one commit to the next.
type batch struct {
	s      *Store
	staged map[string]*memEntry
	undo   []undo
	// frame holds the frame being filled: frame.HeaderLen reserved bytes,
	// filled in by seal, and its records.
	frame []byte
	floor uint64
}

// The bounds of a frame's payload: a frame takes no more writes once it
// passes maxFramePayload, and a single write whose records pass
// maxWritePayload is refused, so that no frame passes maxFrame.
const (
	maxFramePayload = 1 << 20
	maxWritePayload = 1 << 30
	maxFrame        = maxFramePayload + maxWritePayload
)

// undo restores a staged key to what it was before a write.
type undo struct {
	dk   string
	prev *memEntry // nil: not staged before
}

// batchMark is where a write started in its batch.
type batchMark struct {
	undo, frame int
	floor       uint64
}

func (b *batch) mark() batchMark { return batchMark{len(b.undo), len(b.frame), b.floor} }

// rollback undoes the writes since m.
func (b *batch) rollback(m batchMark) {
	for i := len(b.undo) - 1; i >= m.undo; i-- {
		if u := b.undo[i]; u.prev == nil {
			delete(b.staged, u.dk)
		} else {
			b.staged[u.dk] = u.prev
		}
	}
	b.undo, b.frame, b.floor = b.undo[:m.undo], b.frame[:m.frame], m.floor
}

// wrote ends a write that succeeded from its mark m: it is refused when
// its records are too long for a frame.
func (b *batch) wrote(m batchMark) error {
	if n := len(b.frame) - m.frame; n > maxWritePayload {
		b.rollback(m)
		return fmt.Errorf("kv: a write of %d bytes of log records, at most %d may be", n, maxWritePayload)
	}
	return nil
}

// full reports whether the frame takes no more writes.
func (b *batch) full() bool { return len(b.frame)-frame.HeaderLen > maxFramePayload }

// seal fills in the frame's header.
func (b *batch) seal() { frame.End(b.frame, 0) }

// logged reports whether the frame holds a record.
func (b *batch) logged() bool { return len(b.frame) > frame.HeaderLen }

// maxFrameReuse is the largest frame buffer a batch keeps for the next
// commit: one that grew past it for a large merge is dropped.
const maxFrameReuse = 1 << 20

// reset empties b for the next frame, which starts from the reap floor.
func (b *batch) reset(floor uint64) {
	clear(b.staged)
	clear(b.undo)
	b.undo = b.undo[:0]
	if cap(b.frame) > maxFrameReuse {
		b.frame = nil
	}
	b.frame, _ = frame.Begin(b.frame[:0])
	b.floor = floor
}

// lookup returns the entry of the data key dk as the batch sees it: its
// own writes first, then the store's (see [Store.lookup]).
func (b *batch) lookup(dk []byte) (*memEntry, error) {
	if e, ok := b.staged[string(dk)]; ok {
		return e, nil
	}
	return b.s.lookup(dk)
}

// put stages e as the entry of the data key dk, with its log record.
func (b *batch) put(dk []byte, e *memEntry) {
	k := string(dk)
	b.undo = append(b.undo, undo{dk: k, prev: b.staged[k]})
	b.staged[k] = e
	if e.enc == nil {
		b.frame = appendDelete(b.frame, dk)
	} else {
		b.frame = appendPut(b.frame, dk, e.enc, e.tomb)
	}
}

// raiseFloor raises the reap floor to floor, with its log record.
func (b *batch) raiseFloor(floor uint64) {
	if floor > b.floor {
		b.floor = floor
		b.frame = appendFloor(b.frame, floor)
	}
}

// commitBatch is the store's groupCommit.run: it runs the writes of calls
// in one batch, appends the batch to the log and syncs it, and then makes
// it visible in the memory table, all under logMu, so that batches are
// durable and visible in the order they ran. A batch whose records pass
// maxFramePayload is written and synced one full frame at a time, so
// that each sync covers one frame (see [batch]). A write that fails fails
// alone; a failure of the log fails the batch and every write after it
// ([Store.fail]). A batch in which nothing was written costs no disk
// write. Once the batch is visible, it starts a checkpoint in the
// background when the log has grown past [StoreConfig.CheckpointBytes],
// or runs one itself, holding up the next batch, when the log has grown
// past four times that while the last one still ran.
func (s *Store) commitBatch(calls []*commitCall) {
	s.logMu.Lock()
	unlocked := false
	defer func() {
		if !unlocked {
			s.logMu.Unlock()
		}
	}()
	if err := cmp.Or(s.failed, s.closedErr()); err != nil {
		for _, c := range calls {
			c.err = err
		}
		return
	}
	b := &s.batch
	b.reset(s.floor)
	logged := 0 // calls[:logged] are in the log and visible
	for i, c := range calls {
		m := b.mark()
		if c.fn != nil {
			c.err = c.fn(b)
		} else {
			c.out, c.change, c.changed, c.err = b.apply(c.dk, c.key, c.f, c.in)
		}
		if c.err != nil {
			b.rollback(m)
		} else {
			c.err = b.wrote(m)
		}
		if c.err == nil && c.changed && c.staged != nil {
			c.staged(c.out)
		}
		if b.full() || i == len(calls)-1 && b.logged() {
			if err := s.logFrame(b); err != nil {
				for _, c := range calls[logged:] {
					c.err = err
				}
				return
			}
			logged = i + 1
		}
	}
	if logged == 0 {
		return
	}
	background, now := s.checkpointDue()
	s.logMu.Unlock()
	unlocked = true
	if background {
		go func() {
			defer s.bg.Done()
			_ = s.checkpoint() // a failure fails the store's writes (Store.fail)
			s.logMu.Lock()
			s.checkpointing = false
			s.logMu.Unlock()
		}()
	}
	if now {
		_ = s.checkpoint()
	}
}

// logFrame writes b's frame to the log and syncs it, makes its writes
// visible in the memory table, and starts b's next frame. s.logMu is
// held.
func (s *Store) logFrame(b *batch) error {
	b.seal()
	start := time.Now()
	if err := s.appendLog(b.frame); err != nil {
		return err
	}
	if s.cfg.OnCommit != nil {
		s.cfg.OnCommit(time.Since(start))
	}
	s.mu.Lock()
	for k, e := range b.staged {
		s.active[k] = e
		s.dirty[k] = e
	}
	s.mu.Unlock()
	s.floor = b.floor
	b.reset(s.floor)
	return nil
}

// appendLog writes frames to the current segment and syncs it unless
// NoSync. A failure fails the store. s.logMu is held.
//
// The batch readied goroutines, among them the writers that send its
// writes to the other replicas ([Store.write]'s staged), which are meant
// to travel while the sync runs. Through an io_uring the committing
// goroutine waits for the sync as for a socket, and they run on its
// processor meanwhile. Without one it blocks in the system call, which
// keeps them queued on its processor until the runtime's monitor takes
// it back, 20 µs to 10 ms later, so it first yields its processor to
// them. (On a 3-node cluster of kvnode on one 2-core machine the yield
// raised throughput by about 15%, the ring by another 10%.)
func (s *Store) appendLog(frames []byte) error {
	if !s.cfg.NoSync && !s.syncer.usesRing() {
		runtime.Gosched()
	}
	n, err := s.log.WriteAt(frames, s.logStart+s.logSize)
	s.logSize += int64(n)
	if err == nil && !s.cfg.NoSync {
		err = s.syncer.syncData(s.log)
	}
	if err != nil {
		return s.fail(fmt.Errorf("write-ahead log %s: %w", s.log.Name(), err))
	}
	return nil
}

// checkpointDue reports whether the log has grown enough for a checkpoint
// in the background (one is then counted in s.bg, and no other is started
// until it ends) or, when it has grown past four times that while one
// runs, for one right now. s.logMu is held.
func (s *Store) checkpointDue() (background, now bool) {
	limit := int64(s.cfg.CheckpointBytes)
	switch {
	case s.logSize < limit || s.closed:
		return false, false
	case !s.checkpointing:
		s.checkpointing = true
		s.bg.Add(1)
		return true, false
	}
	return false, s.logSize >= 4*limit
}

// closedErr returns bbolt's ErrDatabaseNotOpen once Close began, and nil
// before. s.logMu is held.
func (s *Store) closedErr() error {
	if s.closed {
		return bolterrors.ErrDatabaseNotOpen
	}
	return nil
}

// fail makes err the failure of every later write: after a log write or
// sync failed, what reached the disk is unknown (a later sync may report
// success for pages the kernel already dropped), so the store takes no
// more writes until it is reopened and recovers from what the disk
// holds. It returns err wrapped in [ErrStorage]. s.logMu is held.
func (s *Store) fail(err error) error {
	if s.failed == nil {
		s.failed = fmt.Errorf("%w: %w", ErrStorage, err)
	}
	return s.failed
}
