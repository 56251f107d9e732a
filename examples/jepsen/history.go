package jepsen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/distkit/distkit/examples/kv"
	"github.com/distkit/distkit/vclock"
)

// Kind is an operation's kind, as package kv's checks know it.
type Kind = kv.OpKind

// The operations a client runs.
const (
	Read   = kv.OpGet
	Put    = kv.OpPut
	Delete = kv.OpDelete
)

// Op is one operation of the history, as a client saw it: invocation
// and completion times (since the run began), the node it went to, and
// its outcome. A write carries the value it wrote, the context it sent
// (from the read before it) and the dot the store reported; a read the
// values and the context it returned. It is a plain value.
type Op struct {
	Client           int
	Kind             Kind
	Key, Node        string
	Invoke, Complete time.Duration
	OK               bool   // acknowledged (a read: 200, 300 or 404)
	Cut              bool   // failed because the run ended: checked, not counted against availability
	Err              string // why not
	Value            []byte // a put's value
	Values           [][]byte
	Context          vclock.VClock // a write's context as sent, a read's as returned
	Dot              vclock.Dot    // a write's dot, when the node reported it
}

// Latency is how long the operation took.
func (o Op) Latency() time.Duration { return o.Complete - o.Invoke }

// workload bounds the clients: each runs until the deadline or until it
// made maxOps operations, whichever comes first.
type workload struct {
	clients, keys, maxOps int
	timeout               time.Duration // per request
}

// recorder is the history being recorded.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []Op
}

func (r *recorder) add(o Op) {
	r.mu.Lock()
	r.ops = append(r.ops, o)
	r.mu.Unlock()
}

func (r *recorder) history() []Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Op(nil), r.ops...)
}

// runClients drives w's clients from the root namespace against the
// nodes' addresses until ctx is done, each op on a random node, and
// waits for them.
func runClients(ctx context.Context, seed uint64, w workload, addrs []string, ids func(int) string, rec *recorder) {
	var wg sync.WaitGroup
	for c := range w.clients {
		wg.Go(func() {
			cl := &client{id: c, rng: rand.New(rand.NewPCG(seed, uint64(c)+1)), w: w, rec: rec,
				http: &http.Client{Timeout: w.timeout, Transport: &http.Transport{MaxIdleConnsPerHost: 2}}}
			defer cl.http.CloseIdleConnections()
			for seq := range w.maxOps {
				if ctx.Err() != nil {
					return
				}
				slotI := cl.rng.IntN(len(addrs))
				cl.step(ctx, seq, addrs[slotI], ids(slotI))
			}
		})
	}
	wg.Wait()
}

type client struct {
	id   int
	rng  *rand.Rand
	w    workload
	rec  *recorder
	http *http.Client
}

// step makes one read, or a read and a write with its context: a put
// of a value unique in the history, or a delete.
func (c *client) step(ctx context.Context, seq int, addr, node string) {
	key := fmt.Sprintf("k%d", c.rng.IntN(c.w.keys))
	r := c.do(ctx, Op{Kind: Read, Key: key, Node: node}, addr)
	if !r.OK {
		return
	}
	switch p := c.rng.IntN(10); {
	case p < 2:
	case p < 9:
		c.do(ctx, Op{Kind: Put, Key: key, Node: node, Value: fmt.Appendf(nil, "c%d-%d", c.id, seq), Context: r.Context}, addr)
	default:
		c.do(ctx, Op{Kind: Delete, Key: key, Node: node, Context: r.Context}, addr)
	}
}

// do runs o against addr and records it.
func (c *client) do(ctx context.Context, o Op, addr string) Op {
	o.Client = c.id
	method := map[Kind]string{Read: http.MethodGet, Put: http.MethodPut, Delete: http.MethodDelete}[o.Kind]
	o.Invoke = time.Since(c.rec.start)
	req, err := http.NewRequestWithContext(ctx, method, "http://"+addr+"/kv/"+o.Key, strings.NewReader(string(o.Value)))
	if err == nil {
		if o.Context.Len() > 0 {
			req.Header.Set(kv.HeaderContext, kv.EncodeContext(o.Context))
		}
		var resp *http.Response
		if resp, err = c.http.Do(req); err == nil {
			err = c.outcome(&o, resp)
			resp.Body.Close()
		}
	}
	o.Complete = time.Since(c.rec.start)
	if err != nil {
		o.Err = err.Error()
	}
	o.OK = err == nil
	// A write cut short by the end of the run may have taken effect: it
	// stays in the history, as indeterminate.
	o.Cut = ctx.Err() != nil && !o.OK
	c.rec.add(o)
	return o
}

// outcome reads resp into o ([kv.Op.Record]).
func (c *client) outcome(o *Op, resp *http.Response) error {
	k := kv.Op{Kind: o.Kind}
	err := k.Record(resp)
	if o.Kind == Read {
		o.Values, o.Context = k.Values, k.Context
	} else {
		o.Dot = k.Dot
	}
	return err
}
