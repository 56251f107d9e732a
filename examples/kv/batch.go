package kv

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Limits of batched replica RPCs. Replica RPCs to one peer are
// coalesced: an [HTTPTransport] sends a call at once, alone (to
// /internal/rpc) and on its caller's goroutine, when fewer than its
// BatchesInFlight batches to that peer are outstanding, and otherwise
// queues it; when a batch's exchange ends, the calls queued meanwhile
// leave together as the next batch, one HTTP request to
// /internal/rpc/batch (or alone, when only one waited). No timer holds a call back: under
// light load every batch carries one call, and under load a batch
// carries the calls that arrived during one round trip, so concurrent
// callers share the request's syscalls, headers and authenticator. The
// price is a queued call's wait for the end of an outstanding exchange:
// a higher BatchesInFlight waits less and coalesces less. Reads are
// batched apart from the other calls, with BatchesInFlight of their own,
// so that no read waits for a batch of writes.
//
// The batch's body is the msgpack array ["kv-batch/1", [[timeout, request],
// ...]], authenticated as one body ([HeaderAuth]); timeout is what is left
// of the call's deadline, in nanoseconds, and bounds its handling on the
// receiver. The receiver answers 200 and streams one frame [index, status,
// body] per request as each is done (body: the encoded response for
// status 200, otherwise the error's text), so a slow request delays no
// other's answer. Limits apply to every request inside: each takes a slot
// of [Limits.MaxConcurrentRPC] (one without a slot is answered 503), and
// a batch of more than [MaxBatchLen] requests, a batch inside a batch, or
// a timeout outside (0, [MaxBatchTimeout]] refuses the whole batch (400).
const (
	// DefaultMaxBatch is how many calls a batch carries at most, unless
	// [HTTPTransport.MaxBatch] says otherwise.
	DefaultMaxBatch = 128
	// DefaultBatchesInFlight is how many batches to one peer may be
	// outstanding at once, unless [HTTPTransport.BatchesInFlight] says
	// otherwise.
	DefaultBatchesInFlight = 2
	// MaxBatchLen bounds the requests a node takes in one batch.
	MaxBatchLen = 1024
	// MaxBatchTimeout bounds the time a request of a batch may ask for.
	MaxBatchTimeout = 10 * time.Minute
	// maxBatchBytes closes a batch once its requests hold this many
	// bytes; a larger request leaves in a batch of its own.
	maxBatchBytes = 1 << 20
	batchPath     = "/internal/rpc/batch"
	batchMagic    = "kv-batch/1"
)

// batchPrefix is how an encoded batch begins: an inner request beginning
// with it is a batch inside a batch.
var batchPrefix = append([]byte{0x92, 0xa0 | byte(len(batchMagic))}, batchMagic...)

// batchItem is one request of a batch.
type batchItem struct {
	timeout time.Duration
	req     []byte
}

// encodeBatch returns the body of a batch of items.
func encodeBatch(items []batchItem) ([]byte, error) {
	return encode(func(e *msgpack.Encoder) error {
		err := firstErr(e.EncodeArrayLen(2), e.EncodeString(batchMagic), e.EncodeArrayLen(len(items)))
		for _, it := range items {
			err = firstErr(err, e.EncodeArrayLen(2), e.EncodeInt(int64(it.timeout)), e.EncodeBytes(it.req))
		}
		return err
	})
}

// decodeBatch decodes a batch's body, refusing one of more than
// MaxBatchLen requests, a request that is itself a batch, and a timeout
// outside (0, MaxBatchTimeout]. Errors wrap [ErrMalformed].
func decodeBatch(b []byte) ([]batchItem, error) {
	var items []batchItem
	err := decodeMessage(b, "batch", 2, func(d *msgpack.Decoder) error {
		magic, err := d.DecodeString()
		if err != nil || magic != batchMagic {
			return fmt.Errorf("not a batch (%q, %v)", magic, err)
		}
		n, err := d.DecodeArrayLen()
		if err != nil {
			return err
		}
		if n > MaxBatchLen {
			return fmt.Errorf("%d requests, want at most %d", n, MaxBatchLen)
		}
		if err := fits(d, max(n, 0), 3); err != nil {
			return err
		}
		items = make([]batchItem, 0, max(n, 0))
		for i := range n {
			if k, err := d.DecodeArrayLen(); err != nil || k != 2 {
				return fmt.Errorf("request %d: %d fields (%v), want 2", i, k, err)
			}
			t, err := d.DecodeInt64()
			if err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
			if t <= 0 || time.Duration(t) > MaxBatchTimeout {
				return fmt.Errorf("request %d: timeout of %d ns, want one in (0, %v]", i, t, MaxBatchTimeout)
			}
			req, err := decodeBin(d)
			if err != nil {
				return fmt.Errorf("request %d: %w", i, err)
			}
			if bytes.HasPrefix(req, batchPrefix) {
				return fmt.Errorf("request %d is itself a batch", i)
			}
			items = append(items, batchItem{timeout: time.Duration(t), req: req})
		}
		return nil
	})
	return items, err
}

// batchCall is a call waiting in a peer's queue or riding in a batch.
type batchCall struct {
	req      []byte
	deadline time.Time        // zero: none
	done     chan batchResult // receives the call's one result
}

type batchResult struct {
	resp []byte
	err  error
}

// peerQueue is the queue of calls to one peer. Calls wait in it only
// while BatchesInFlight batches are outstanding.
type peerQueue struct {
	mu       sync.Mutex
	calls    []*batchCall
	inFlight int // batches outstanding
}

// take removes the calls of the next batch from the queue: at most max
// of them and maxBatchBytes of requests, and always the first.
func (q *peerQueue) take(max int) []*batchCall {
	n, size := 0, 0
	for n < len(q.calls) && n < max && (n == 0 || size+len(q.calls[n].req) <= maxBatchBytes) {
		size += len(q.calls[n].req)
		n++
	}
	b := slices.Clone(q.calls[:n])
	q.calls = slices.Delete(q.calls, 0, n)
	return b
}

// lane is a queue's part of the calls to a node: its reads, or its other
// calls, which are batched apart so that a read never waits for the end
// of a batch of writes (a disk's sync).
type lane struct {
	to    string
	reads bool
}

// queue returns the queue of the lane of the encoded request req to node
// to.
func (t *HTTPTransport) queue(to string, req []byte) *peerQueue {
	l := lane{to: to, reads: opOf(req) == opRead}
	t.mu.RLock()
	q := t.queues[l]
	t.mu.RUnlock()
	if q != nil {
		return q
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.queues == nil {
		t.queues = map[lane]*peerQueue{}
	}
	if q = t.queues[l]; q == nil {
		q = &peerQueue{}
		t.queues[l] = q
	}
	return q
}

// callBatched sends req to node to in a batch and waits for its answer
// or for ctx. Calls queue only while BatchesInFlight batches to the node
// are outstanding, so a call that finds fewer leaves at once, alone, on
// its caller's goroutine and under its ctx; one that queues leaves with
// the calls queued with it once a batch ends, and if ctx ends before,
// it was not delivered.
func (t *HTTPTransport) callBatched(ctx context.Context, to, addr string, req []byte) ([]byte, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotDelivered, context.Cause(ctx))
	}
	c := &batchCall{req: req, done: make(chan batchResult, 1)}
	c.deadline, _ = ctx.Deadline()
	q := t.queue(to, req)
	q.mu.Lock()
	if q.inFlight < cmp.Or(t.BatchesInFlight, DefaultBatchesInFlight) {
		q.inFlight++
		q.mu.Unlock()
		t.sendBatch(ctx, to, addr, []*batchCall{c})
		q.mu.Lock()
		queued := len(q.calls) > 0
		if !queued {
			q.inFlight--
		}
		q.mu.Unlock()
		if queued {
			go t.sendQueued(to, addr, q)
		}
		r := <-c.done
		return r.resp, r.err
	}
	q.calls = append(q.calls, c)
	q.mu.Unlock()
	select {
	case r := <-c.done:
		return r.resp, r.err
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if i := slices.Index(q.calls, c); i >= 0 {
		q.calls = slices.Delete(q.calls, i, i+1)
		return nil, fmt.Errorf("%w: %w", ErrNotDelivered, context.Cause(ctx))
	}
	return nil, fmt.Errorf("kv: node %s: %w", to, context.Cause(ctx))
}

// sendQueued sends the calls queued for node to at addr, batch after
// batch, until the queue is empty.
func (t *HTTPTransport) sendQueued(to, addr string, q *peerQueue) {
	for {
		q.mu.Lock()
		b := q.take(cmp.Or(t.MaxBatch, DefaultMaxBatch))
		if len(b) == 0 {
			q.inFlight--
		}
		q.mu.Unlock()
		if len(b) == 0 {
			return
		}
		t.sendBatch(context.Background(), to, addr, b)
	}
}

// sendBatch makes one batch's exchange, within ctx, and gives every call
// of b its result: a batch that was not sent (no connection, a refused
// certificate) delivered none of them; one refused as a whole carries
// the refusal to each; a reply that ends early leaves the unanswered
// ones indeterminate.
func (t *HTTPTransport) sendBatch(ctx context.Context, to, addr string, b []*batchCall) {
	answered := make([]bool, len(b))
	answer := func(i int, resp []byte, err error) {
		answered[i] = true
		b[i].done <- batchResult{resp, err}
	}
	now := time.Now()
	items := make([]batchItem, 0, len(b))
	idx := make([]int, 0, len(b)) // the call of each item
	var last time.Time            // the latest deadline
	for i, c := range b {
		d := c.deadline
		if d.IsZero() {
			d = now.Add(t.defaultTimeout())
		}
		if !d.After(now) {
			answer(i, nil, fmt.Errorf("%w: %w", ErrNotDelivered, context.DeadlineExceeded))
			continue
		}
		items = append(items, batchItem{timeout: min(d.Sub(now), MaxBatchTimeout), req: c.req})
		idx = append(idx, i)
		if d.After(last) {
			last = d
		}
	}
	if len(items) == 0 {
		return
	}
	ctx, cancel := context.WithDeadline(ctx, last)
	defer cancel()
	if len(items) == 1 {
		// Alone: as a call without batches is sent.
		resp, err := t.callAlone(ctx, to, addr, items[0].req, t.batchClient())
		answer(idx[0], resp, err)
		return
	}
	fail := func(err error) {
		for _, i := range idx {
			if !answered[i] {
				answer(i, nil, err)
			}
		}
	}
	body, err := encodeBatch(items)
	if err != nil {
		fail(err)
		return
	}
	resp, err := t.post(ctx, to, addr, batchPath, body, t.batchClient())
	if err != nil {
		fail(err)
		return
	}
	defer resp.Body.Close()
	err = readFrames(resp.Body, len(items), func(k, status int, text []byte) {
		i := idx[k]
		if status == http.StatusOK {
			answer(i, text, nil)
			return
		}
		answer(i, nil, statusError(to, status, string(text)))
	})
	fail(fmt.Errorf("kv: node %s: the batch's reply ended without this request's answer: %w", to, cmp.Or(err, io.ErrUnexpectedEOF)))
}

// frameReader is a buffered reader of a batch's reply and a msgpack
// decoder over it, pooled: a reply allocates only its frames' bodies.
type frameReader struct {
	br *bufio.Reader
	d  *msgpack.Decoder
}

var frameReaders = sync.Pool{New: func() any {
	f := &frameReader{br: bufio.NewReader(nil)}
	f.d = msgpack.NewDecoder(f.br)
	return f
}}

// readFrames reads the frames of a batch of n requests from r until each
// has been answered once, calling f with each; it stops at the first
// error: a frame that does not decode, an index outside [0, n) or
// repeated, a status outside 100–599, or a body over MaxRPCLen.
func readFrames(r io.Reader, n int, f func(i, status int, body []byte)) error {
	fr := frameReaders.Get().(*frameReader)
	fr.br.Reset(r)
	fr.d.Reset(fr.br)
	defer func() {
		fr.br.Reset(nil)
		fr.d.Reset(fr.br)
		frameReaders.Put(fr)
	}()
	d := fr.d
	seen := make([]bool, n)
	for range n {
		if k, err := d.DecodeArrayLen(); err != nil || k != 3 {
			return fmt.Errorf("%w: batch frame of %d fields (%v), want 3", ErrMalformed, k, err)
		}
		i, err := d.DecodeInt()
		if err != nil || i < 0 || i >= n || seen[i] {
			return fmt.Errorf("%w: batch frame of request %d (%v) in a batch of %d", ErrMalformed, i, err, n)
		}
		seen[i] = true
		status, err := d.DecodeInt()
		if err != nil || status < 100 || status > 599 {
			return fmt.Errorf("%w: batch frame with status %d (%v)", ErrMalformed, status, err)
		}
		size, err := d.DecodeBytesLen()
		if err != nil || size > MaxRPCLen {
			return fmt.Errorf("%w: batch frame of %d bytes (%v), want at most %d", ErrMalformed, size, err, MaxRPCLen)
		}
		body, err := readDeclared(fr.br, max(size, 0))
		if err != nil {
			return err
		}
		f(i, status, body)
	}
	return nil
}

// readDeclared reads the size bytes a sender declared from r, as they
// arrive, so that a length that lies allocates no more than the bytes
// that came; fewer than size is io.ErrUnexpectedEOF.
func readDeclared(r io.Reader, size int) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, int64(size)))
	if err == nil && len(body) < size {
		err = io.ErrUnexpectedEOF
	}
	return body, err
}

// defaultTimeout bounds a call without a deadline: the client's timeout,
// or DefaultBodyTimeout.
func (t *HTTPTransport) defaultTimeout() time.Duration {
	return cmp.Or(t.client().Timeout, DefaultBodyTimeout)
}

// batchClient is the transport's client without its timeout: a batch's
// exchange is bounded by the latest deadline of its calls instead.
func (t *HTTPTransport) batchClient() *http.Client {
	t.batchOnce.Do(func() {
		c := *t.client()
		c.Timeout = 0
		t.batch = &c
	})
	return t.batch
}

// serveBatch serves a batch of replica RPCs: it reads and checks the
// body under the slot the request holds, then releases that slot, runs
// each request on a goroutine of its own under a slot of its own, and
// streams each answer as it is done.
func (a *api) serveBatch(w http.ResponseWriter, r *http.Request) {
	if !a.rpcSlots.admit(w) {
		return
	}
	setBodyDeadline(w, r, a.cfg.Limits.BodyTimeout)
	body, ok := a.rpcBody(w, r)
	a.rpcSlots.release()
	if !ok {
		return
	}
	items, err := decodeBatch(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	type frame struct {
		i, status int
		body      []byte
	}
	frames := make(chan frame, len(items)) // never blocks a request's goroutine
	// The requests take the slots free when the batch arrives, in order;
	// those beyond are refused.
	admitted := 0
	for admitted < len(items) && a.rpcSlots.try() {
		admitted++
	}
	for i := admitted; i < len(items); i++ {
		frames <- frame{i, http.StatusServiceUnavailable, []byte(a.rpcSlots.overloaded())}
	}
	serve := func(i int) {
		ctx, cancel := context.WithTimeout(r.Context(), items[i].timeout)
		resp, err := a.n.Handle(ctx, items[i].req)
		cancel()
		a.rpcSlots.release() // before its answer: once all are in, every slot is back
		if err != nil {
			frames <- frame{i, rpcStatus(err), []byte(err.Error())}
			return
		}
		frames <- frame{i, http.StatusOK, resp}
	}
	if admitted == 1 {
		serve(0) // alone: on this goroutine
	} else {
		for i := range admitted {
			go serve(i)
		}
	}
	w.Header().Set("Content-Type", "application/msgpack")
	w.WriteHeader(http.StatusOK)
	p := encoders.Get().(*pooledEncoder)
	defer putEncoder(p)
	rc := http.NewResponseController(w)
	var werr error
	for left := len(items); left > 0; left-- {
		f := <-frames
		if werr != nil {
			continue // the peer is gone: wait for the rest, answer none
		}
		p.buf.Reset()
		p.e.Reset(&p.buf)
		werr = firstErr(p.e.EncodeArrayLen(3), p.e.EncodeInt(int64(f.i)), p.e.EncodeInt(int64(f.status)), p.e.EncodeBytes(f.body))
		if werr == nil {
			_, werr = w.Write(p.buf.Bytes())
		}
		if werr == nil && left > 1 && len(frames) == 0 {
			// Nothing else is ready: send what is. The last frame goes
			// with the end of the response.
			werr = rc.Flush()
		}
	}
}

// rpcStatus is the status a replica RPC's error is answered with.
func rpcStatus(err error) int {
	switch {
	case errors.Is(err, ErrMalformed):
		return http.StatusBadRequest
	case errors.Is(err, ErrKeyReused):
		return http.StatusUnprocessableEntity
	case errors.Is(err, ErrTooManySiblings):
		return http.StatusConflict
	case errors.Is(err, ErrObjectTooLarge):
		return http.StatusRequestEntityTooLarge
	}
	return serverStatus(err)
}
