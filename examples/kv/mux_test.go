package kv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// countingConn counts the write calls made on a connection.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

var (
	muxTestKey    = newClusterKey([]byte("a cluster key of some length"))
	muxTestClient = bytes.Repeat([]byte{1}, muxNonceLen)
	muxTestServer = bytes.Repeat([]byte{2}, muxNonceLen)
)

// muxPeerEnd is the far side of a connection, driven by the test with
// its own framer: a server to a muxClient, or a client to a muxServer.
type muxPeerEnd struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	f    *muxFramer
}

func (p *muxPeerEnd) send(id, arg uint64, body []byte) error {
	_, err := p.conn.Write(p.f.appendFrame(nil, id, arg, body))
	return err
}

func (p *muxPeerEnd) read() (id, arg uint64, body []byte, err error) {
	return p.f.readFrame(p.br, p.conn, 0)
}

// newMuxClientPipe returns a muxClient to "b" over a pipe, with a
// counted connection, and the test's server end.
func newMuxClientPipe(t *testing.T, key *clusterKey) (*muxClient, *countingConn, *muxPeerEnd) {
	cc, sc := net.Pipe()
	counted := &countingConn{Conn: cc}
	c := newMuxClient("b", counted, bufio.NewReader(counted), newMuxFramer(key, muxTestClient, muxTestServer, true), time.Minute)
	t.Cleanup(func() { c.close(errors.New("test over")); sc.Close() })
	return c, counted, &muxPeerEnd{t: t, conn: sc, br: bufio.NewReader(sc), f: newMuxFramer(key, muxTestClient, muxTestServer, false)}
}

// newMuxServerPipe serves handle over a pipe with slots RPC slots and
// keys, and returns the server and the test's client end.
func newMuxServerPipe(t *testing.T, keys *ClusterKeys, slots int, handle func(context.Context, []byte) ([]byte, error)) (*muxServer, *muxPeerEnd, chan struct{}) {
	cc, sc := net.Pipe()
	var key *clusterKey
	if keys != nil {
		key = keys.primary()
	}
	s := newMuxServer(sc, bufio.NewReader(sc), newMuxFramer(key, muxTestClient, muxTestServer, false), 10*time.Second, make(limiter, slots), keys, handle)
	done := make(chan struct{})
	go func() {
		s.run(context.Background())
		close(done)
	}()
	t.Cleanup(func() {
		s.close(errors.New("test over"))
		cc.Close()
		<-done
	})
	return s, &muxPeerEnd{t: t, conn: cc, br: bufio.NewReader(cc), f: newMuxFramer(key, muxTestClient, muxTestServer, true)}, done
}

// N concurrent calls on one connection leave in as many write calls as
// the writer had turns: the first alone while nothing else waits, then
// every call queued while that write was blocked, together in one; each
// carries its deadline and gets its own answer, whatever their order.
func TestMuxCoalesces(t *testing.T) {
	for _, n := range []int{1, 2, 64, 500} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, counted, peer := newMuxClientPipe(t, muxTestKey)
				results := make([]chan batchResult, n)
				call := func(i int) {
					results[i] = make(chan batchResult, 1)
					go func() {
						ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i+1)*time.Second)
						defer cancel()
						resp, err := c.call(ctx, fmt.Appendf(nil, "req %d", i), time.Hour)
						results[i] <- batchResult{resp, err}
					}()
				}
				call(0)
				synctest.Wait() // its write waits for the peer to read
				for i := 1; i < n; i++ {
					call(i)
				}
				synctest.Wait()
				ids := make([]uint64, n) // by call
				for i := range n {
					id, timeout, body, err := peer.read()
					if err != nil {
						t.Fatalf("frame %d: %v", i, err)
					}
					var k int
					if _, err := fmt.Sscanf(string(body), "req %d", &k); err != nil || k < 0 || k >= n || ids[k] != 0 || time.Duration(timeout) != time.Duration(k+1)*time.Second {
						t.Fatalf("frame %d: id %d, timeout %v, %q", i, id, time.Duration(timeout), body)
					}
					ids[k] = id
				}
				want := int64(min(n, 2))
				if got := counted.writes.Load(); got != want {
					t.Errorf("%d calls in %d writes, want %d", n, got, want)
				}
				for k := n - 1; k >= 0; k-- { // answered in reverse
					if err := peer.send(ids[k], http.StatusOK, fmt.Appendf(nil, "resp %d", k)); err != nil {
						t.Fatal(err)
					}
				}
				for i := range n {
					r := <-results[i]
					if r.err != nil || string(r.resp) != fmt.Sprintf("resp %d", i) {
						t.Fatalf("call %d: %q, %v", i, r.resp, r.err)
					}
				}
			})
		})
	}
}

// A call whose ctx ends while it waits in the queue is not delivered, and
// never written; one whose ctx ends once it was written is indeterminate.
// Refusals carry their status's error.
func TestMuxCallOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, counted, peer := newMuxClientPipe(t, nil)
		first := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := c.call(ctx, []byte("first"), time.Hour)
			first <- err
		}()
		synctest.Wait() // written, the peer not reading yet
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := c.call(ctx, []byte("queued"), time.Hour); !errors.Is(err, ErrNotDelivered) {
			t.Fatalf("a call whose ctx ended in the queue: %v, want ErrNotDelivered", err)
		}
		id, _, body, err := peer.read()
		if err != nil || id != 1 || string(body) != "first" {
			t.Fatalf("read %d %q %v", id, body, err)
		}
		synctest.Wait()
		if got := counted.writes.Load(); got != 1 {
			t.Fatalf("%d writes, want 1: the abandoned call was written", got)
		}
		// The first call's ctx ends (a minute) with no answer: it was sent.
		if err := <-first; err == nil || errors.Is(err, ErrNotDelivered) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("a sent call whose ctx ended: %v, want an indeterminate deadline error", err)
		}
		// A late answer to it is dropped; the connection carries on.
		if err := peer.send(1, http.StatusOK, []byte("late")); err != nil {
			t.Fatal(err)
		}
		for status, want := range map[uint64]error{
			http.StatusServiceUnavailable:    ErrUnavailable,
			http.StatusUnprocessableEntity:   ErrKeyReused,
			http.StatusRequestEntityTooLarge: ErrObjectTooLarge,
		} {
			errc := make(chan error, 1)
			go func() {
				_, err := c.call(context.Background(), []byte("refused"), time.Second)
				errc <- err
			}()
			id, timeout, _, err := peer.read()
			if err != nil || time.Duration(timeout) != time.Second {
				t.Fatalf("read %d %v %v", id, time.Duration(timeout), err)
			}
			if err := peer.send(id, status, []byte("no")); err != nil {
				t.Fatal(err)
			}
			if err := <-errc; !errors.Is(err, want) || errors.Is(err, ErrNotDelivered) {
				t.Errorf("status %d: %v, want %v", status, err, want)
			}
		}
	})
}

// A connection that fails before a request is written leaves it not
// delivered; one that fails once it was written leaves it indeterminate.
func TestMuxConnectionLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, peer := newMuxClientPipe(t, muxTestKey)
		sent := make(chan error, 1)
		go func() {
			_, err := c.call(context.Background(), []byte("sent"), time.Minute)
			sent <- err
		}()
		if _, _, _, err := peer.read(); err != nil {
			t.Fatal(err)
		}
		blocked := make(chan error, 1)
		go func() {
			_, err := c.call(context.Background(), []byte("blocked"), time.Minute)
			blocked <- err
		}()
		synctest.Wait() // its write waits for the peer, which will never read it
		queued := make(chan error, 1)
		go func() {
			_, err := c.call(context.Background(), []byte("queued"), time.Minute)
			queued <- err
		}()
		synctest.Wait()
		peer.conn.Close()
		if err := <-sent; err == nil || errors.Is(err, ErrNotDelivered) {
			t.Errorf("a written call on a lost connection: %v, want an indeterminate error", err)
		}
		for name, ch := range map[string]chan error{"blocked": blocked, "queued": queued} {
			if err := <-ch; !errors.Is(err, ErrNotDelivered) {
				t.Errorf("%s call on a lost connection: %v, want ErrNotDelivered", name, err)
			}
		}
		if _, err := c.call(context.Background(), []byte("after"), time.Minute); !errors.Is(err, ErrNotDelivered) || !errors.Is(err, errMuxClosed) {
			t.Errorf("a call on a closed connection: %v, want ErrNotDelivered", err)
		}
	})
}

// A peer that stops reading makes the client's write time out and close
// the connection, with its calls failed, and the client queues at most
// muxQueueBytes: a call beyond is not delivered at once.
func TestMuxClientPeerNeverReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, _ := newMuxClientPipe(t, nil)
		big := make([]byte, muxQueueBytes/3)
		var wg sync.WaitGroup
		errs := make([]error, 3)
		for i := range 3 {
			wg.Go(func() { _, errs[i] = c.call(context.Background(), big, time.Hour) })
			synctest.Wait()
		}
		if _, err := c.call(context.Background(), big, time.Hour); !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), "wait to be sent") {
			t.Fatalf("a call past the queue's bound: %v, want ErrNotDelivered", err)
		}
		wg.Wait() // the write's deadline (a minute) passes
		for i, err := range errs {
			if !errors.Is(err, ErrNotDelivered) {
				t.Errorf("call %d, never read: %v, want ErrNotDelivered", i, err)
			}
		}
		c.mu.Lock()
		err := c.err
		c.mu.Unlock()
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("the connection closed with %v, want the write deadline", err)
		}
	})
}

// Answers a client refuses: each closes the connection, and fails the
// calls in flight.
func TestMuxClientRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		send func(p *muxPeerEnd) error
		want string
	}{
		{"unsent id", func(p *muxPeerEnd) error { return p.send(7, http.StatusOK, nil) }, "was not sent"},
		{"id 0", func(p *muxPeerEnd) error { return p.send(0, http.StatusOK, nil) }, "was not sent"},
		{"status", func(p *muxPeerEnd) error { return p.send(1, 1000, nil) }, "status 1000"},
		{"length 2^32-1", func(p *muxPeerEnd) error {
			_, err := p.conn.Write([]byte{0xff, 0xff, 0xff, 0xff})
			return err
		}, "frame of 4294967295 bytes"},
		{"short", func(p *muxPeerEnd) error {
			_, err := p.conn.Write(binary.BigEndian.AppendUint32(nil, muxHeaderLen-1))
			return err
		}, "frame of 15 bytes"},
		{"bad MAC", func(p *muxPeerEnd) error {
			f := p.f.appendFrame(nil, 1, http.StatusOK, []byte("x"))
			f[len(f)-1] ^= 1
			_, err := p.conn.Write(f)
			return err
		}, "wrong MAC"},
		{"replayed", func(p *muxPeerEnd) error {
			p.f.send.seq++ // the frame of another place in the stream
			return p.send(1, http.StatusOK, nil)
		}, "wrong MAC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c, _, peer := newMuxClientPipe(t, muxTestKey)
				errc := make(chan error, 1)
				go func() {
					_, err := c.call(context.Background(), []byte("req"), time.Minute)
					errc <- err
				}()
				if _, _, _, err := peer.read(); err != nil {
					t.Fatal(err)
				}
				go tc.send(peer)
				err := <-errc
				if err == nil || errors.Is(err, ErrNotDelivered) {
					t.Fatalf("the call: %v, want an indeterminate error", err)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q, want it to say %q", err, tc.want)
				}
				if c.open() {
					t.Error("the connection is still open")
				}
			})
		})
	}
}

// echo answers a request with itself, or with an error for "fail".
func echo(_ context.Context, req []byte) ([]byte, error) {
	if string(req) == "fail" {
		return nil, fmt.Errorf("%w: failed", ErrMalformed)
	}
	return req, nil
}

// A server answers each request on its connection, failures with their
// status, and refuses bad timeouts and requests without a free slot one
// by one, without closing the connection; every slot comes back.
func TestMuxServerServes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		keys := fixedKeys(muxTestKey.key)
		s, peer, _ := newMuxServerPipe(t, keys, 2, func(ctx context.Context, req []byte) ([]byte, error) {
			if string(req) == "hold" {
				<-release
			}
			return echo(ctx, req)
		})
		for id, req := range map[uint64]string{1: "hold", 2: "hold"} {
			if err := peer.send(id, uint64(time.Second), []byte(req)); err != nil {
				t.Fatal(err)
			}
		}
		if err := peer.send(3, uint64(time.Second), []byte("no slot")); err != nil {
			t.Fatal(err)
		}
		if err := peer.send(4, 0, []byte("no time")); err != nil {
			t.Fatal(err)
		}
		if err := peer.send(5, uint64(MaxBatchTimeout+1), []byte("too long")); err != nil {
			t.Fatal(err)
		}
		refused := map[uint64]uint64{} // status by id
		for range 3 {
			id, status, body, err := peer.read()
			if err != nil {
				t.Fatalf("answer %d %d %q %v", id, status, body, err)
			}
			refused[id] = status
		}
		if want := map[uint64]uint64{3: http.StatusServiceUnavailable, 4: http.StatusBadRequest, 5: http.StatusBadRequest}; !maps.Equal(refused, want) {
			t.Fatalf("refusals %v, want %v", refused, want)
		}
		close(release)
		got := map[uint64]string{}
		for range 2 {
			id, status, body, err := peer.read()
			if err != nil || status != http.StatusOK {
				t.Fatalf("answer %d %d %q %v", id, status, body, err)
			}
			got[id] = string(body)
		}
		if got[1] != "hold" || got[2] != "hold" {
			t.Fatalf("answers %v", got)
		}
		if err := peer.send(6, uint64(time.Second), []byte("fail")); err != nil {
			t.Fatal(err)
		}
		if id, status, body, err := peer.read(); err != nil || id != 6 || status != http.StatusBadRequest || !strings.Contains(string(body), "failed") {
			t.Fatalf("answer %d %d %q %v, want 6 400", id, status, body, err)
		}
		synctest.Wait()
		if len(s.slots) != 0 {
			t.Errorf("%d slots taken after every answer", len(s.slots))
		}
	})
}

// Frames a server refuses: each closes the connection with its reason.
func TestMuxServerRefuses(t *testing.T) {
	hold := make(chan struct{})
	for _, tc := range []struct {
		name string
		send func(p *muxPeerEnd, keys *ClusterKeys) error
		want error
		text string
	}{
		{"length 2^32-1", func(p *muxPeerEnd, _ *ClusterKeys) error {
			_, err := p.conn.Write([]byte{0xff, 0xff, 0xff, 0xff, 0, 0})
			return err
		}, ErrMalformed, "frame of 4294967295 bytes"},
		{"over the limit", func(p *muxPeerEnd, _ *ClusterKeys) error {
			_, err := p.conn.Write(binary.BigEndian.AppendUint32(nil, uint32(muxHeaderLen+MaxRPCLen+sha256.Size+1)))
			return err
		}, ErrMalformed, "want 48 to"},
		{"empty", func(p *muxPeerEnd, _ *ClusterKeys) error {
			_, err := p.conn.Write(make([]byte, 4))
			return err
		}, ErrMalformed, "frame of 0 bytes"},
		{"no MAC", func(p *muxPeerEnd, _ *ClusterKeys) error {
			f := binary.BigEndian.AppendUint32(nil, muxHeaderLen)
			_, err := p.conn.Write(append(f, make([]byte, muxHeaderLen)...))
			return err
		}, ErrMalformed, "frame of 16 bytes"},
		{"bad MAC", func(p *muxPeerEnd, _ *ClusterKeys) error {
			f := p.f.appendFrame(nil, 1, uint64(time.Second), []byte("x"))
			f[len(f)-1] ^= 1
			_, err := p.conn.Write(f)
			return err
		}, ErrUnauthenticated, "wrong MAC"},
		{"another connection's frame", func(p *muxPeerEnd, _ *ClusterKeys) error {
			other := newMuxFramer(muxTestKey, muxTestClient, bytes.Repeat([]byte{3}, muxNonceLen), true)
			_, err := p.conn.Write(other.appendFrame(nil, 1, uint64(time.Second), []byte("x")))
			return err
		}, ErrUnauthenticated, "wrong MAC"},
		{"another key", func(p *muxPeerEnd, _ *ClusterKeys) error {
			other := newMuxFramer(newClusterKey([]byte("another cluster key, as long")), muxTestClient, muxTestServer, true)
			_, err := p.conn.Write(other.appendFrame(nil, 1, uint64(time.Second), []byte("x")))
			return err
		}, ErrUnauthenticated, "wrong MAC"},
		{"reused id", func(p *muxPeerEnd, _ *ClusterKeys) error {
			if err := p.send(9, uint64(time.Minute), []byte("hold")); err != nil {
				return err
			}
			return p.send(9, uint64(time.Minute), []byte("again"))
		}, ErrMalformed, "request ID 9 reused while in flight"},
		{"key removed", func(p *muxPeerEnd, keys *ClusterKeys) error {
			if err := keys.Set([]byte("the next cluster key, as long")); err != nil {
				return err
			}
			return p.send(1, uint64(time.Second), []byte("x"))
		}, ErrUnauthenticated, "key was removed"},
		{"slow frame", func(p *muxPeerEnd, _ *ClusterKeys) error {
			f := p.f.appendFrame(nil, 1, uint64(time.Second), []byte("x"))
			_, err := p.conn.Write(f[:10]) // and the rest never comes
			return err
		}, os.ErrDeadlineExceeded, "i/o timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				keys, err := NewClusterKeys(muxTestKey.key)
				if err != nil {
					t.Fatal(err)
				}
				s, peer, done := newMuxServerPipe(t, keys, 8, func(ctx context.Context, req []byte) ([]byte, error) {
					if string(req) == "hold" {
						select {
						case <-hold:
						case <-ctx.Done():
						}
					}
					return req, nil
				})
				go tc.send(peer, keys)
				<-done
				if !errors.Is(s.err, tc.want) || !strings.Contains(s.err.Error(), tc.text) {
					t.Errorf("closed with %v, want %v saying %q", s.err, tc.want, tc.text)
				}
				if _, _, _, err := peer.read(); err == nil {
					t.Error("the connection still answers")
				}
			})
		})
	}
}

// A peer that sends requests and never reads their answers: the server
// stops reading once muxQueueBytes of answers wait, and closes the
// connection when its write does not finish within its timeout.
func TestMuxServerPeerNeverReads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		big := make([]byte, 1<<20)
		s, peer, done := newMuxServerPipe(t, nil, 64, func(context.Context, []byte) ([]byte, error) { return big, nil })
		sent := 0
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for id := uint64(1); ; id++ {
				if peer.send(id, uint64(time.Minute), []byte("x")) != nil {
					return
				}
				sent++
			}
		}()
		<-done
		<-stopped
		if !errors.Is(s.err, os.ErrDeadlineExceeded) {
			t.Errorf("closed with %v, want the write's deadline", s.err)
		}
		// What it read: a queue's worth of answers (most are 503s: the
		// reader outpaces the handlers) taken by the blocked write, a
		// queue's worth waiting, and the requests in flight: a bound in
		// bytes, not a flood.
		if limit := 2*muxQueueBytes/muxOverhead + 64 + 2; sent > limit {
			t.Errorf("it read %d requests while none was answered, want at most %d", sent, limit)
		}
	})
}

// A flood of tiny requests is served under the slots' bound, and each
// gets its answer.
func TestMuxServerFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 20000
		s, peer, _ := newMuxServerPipe(t, fixedKeys(muxTestKey.key), 4, echo)
		go func() {
			var buf []byte
			for id := uint64(1); id <= n; id++ {
				buf = peer.f.appendFrame(buf, id, uint64(time.Second), nil)
			}
			_, _ = peer.conn.Write(buf)
		}()
		seen := make([]bool, n+1)
		for range n {
			id, status, _, err := peer.read()
			if err != nil || id == 0 || id > n || seen[id] || status != http.StatusOK && status != http.StatusServiceUnavailable {
				t.Fatalf("answer %d %d %v", id, status, err)
			}
			seen[id] = true
		}
		synctest.Wait()
		if len(s.slots) != 0 {
			t.Errorf("%d slots taken after every answer", len(s.slots))
		}
	})
}

// Over a node's API: concurrent calls share one upgraded connection and
// no HTTP request carries an RPC.
func TestMuxOverAPI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := &muxConns{}
		rig := newBatchRig(t, APIConfig{ClusterKey: muxTestKey.key, conns: conns}, func(tr *HTTPTransport) {
			tr.Mux, tr.Key = true, muxTestKey.key
		})
		t.Cleanup(func() { rig.tr.closeMux(); conns.closeAll() })
		for i, err := range rig.callAll(writes(t, 100), nil) {
			if err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		read, err := (&request{Op: opRead, Key: []byte("k7")}).marshal()
		if err != nil {
			t.Fatal(err)
		}
		out, err := rig.tr.Call(context.Background(), "b", read)
		var resp response
		if err == nil {
			err = resp.unmarshal(out)
		}
		if err != nil || !resp.Found {
			t.Fatalf("read back: %+v, %v", resp, err)
		}
		if got, rpcs := rig.count(muxPath), rig.count(rpcPath)+rig.count(batchPath); got != 1 || rpcs != 0 {
			t.Errorf("%d upgrades and %d RPC requests, want 1 and 0", got, rpcs)
		}
	})
}

// A node that does not serve the upgrade is called over HTTP, and asked
// again only after muxRetry.
func TestMuxFallsBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rig := newBatchRig(t, APIConfig{}, func(tr *HTTPTransport) { tr.Mux = true })
		old := rig.srv.Handler
		rig.srv.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == muxPath {
				rig.mu.Lock()
				rig.posts[r.URL.Path]++
				rig.mu.Unlock()
				http.NotFound(w, r) // an older node
				return
			}
			old.ServeHTTP(w, r)
		})
		for i, req := range writes(t, 3) {
			if _, err := rig.tr.Call(context.Background(), "b", req); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		if up, rpcs := rig.count(muxPath), rig.count(rpcPath); up != 1 || rpcs != 3 {
			t.Errorf("%d upgrades and %d RPC requests, want 1 and 3", up, rpcs)
		}
		time.Sleep(muxRetry)
		if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "later")); err != nil {
			t.Fatal(err)
		}
		if up := rig.count(muxPath); up != 2 {
			t.Errorf("%d upgrades after muxRetry, want 2", up)
		}
	})
}

// Upgrades a node refuses: without the cluster key (401, the call not
// delivered), and with the key but without a nonce (400).
func TestMuxUpgradeRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := &muxConns{}
		rig := newBatchRig(t, APIConfig{ClusterKey: muxTestKey.key, conns: conns}, func(tr *HTTPTransport) {
			tr.Mux, tr.Key = true, []byte("not the cluster's key, though long")
		})
		t.Cleanup(func() { rig.tr.closeMux(); conns.closeAll() })
		_, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "k"))
		if !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, ErrNotDelivered) {
			t.Errorf("a call under the wrong key: %v, want ErrUnauthenticated and ErrNotDelivered", err)
		}
		if _, found, _ := rig.node.store.Get([]byte("k")); found {
			t.Error("the write was applied")
		}
		req, _ := http.NewRequest(http.MethodGet, "http://b:80"+muxPath, nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", muxProto)
		req.Header.Set(HeaderAuth, muxTestKey.authenticator(time.Now(), nil))
		resp, err := rig.tr.client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), headerMuxNonce) {
			t.Errorf("an upgrade without a nonce: %d %q, want 400", resp.StatusCode, body)
		}
	})
}

// A rotation of the primary key opens a connection under the new key;
// the old one closes once its calls are answered.
func TestMuxKeyRotation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := &muxConns{}
		keys, err := NewClusterKeys(muxTestKey.key)
		if err != nil {
			t.Fatal(err)
		}
		next := []byte("the next cluster key, as long")
		served, err := NewClusterKeys(muxTestKey.key, next)
		if err != nil {
			t.Fatal(err)
		}
		rig := newBatchRig(t, APIConfig{Keys: served, conns: conns}, func(tr *HTTPTransport) { tr.Mux, tr.Keys = true, keys })
		t.Cleanup(func() { rig.tr.closeMux(); conns.closeAll() })
		if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "a")); err != nil {
			t.Fatal(err)
		}
		if err := keys.Set(muxTestKey.key, next); err != nil { // the same primary
			t.Fatal(err)
		}
		if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "a")); err != nil {
			t.Fatal(err)
		}
		if up := rig.count(muxPath); up != 1 {
			t.Errorf("%d upgrades under an unchanged primary, want 1", up)
		}
		if err := keys.Set(next, muxTestKey.key); err != nil {
			t.Fatal(err)
		}
		if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "b")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if up, open := rig.count(muxPath), conns.served(); up != 2 || open != 1 {
			t.Errorf("%d upgrades, %d connections open; want 2 and 1", up, open)
		}
	})
}

// FuzzMuxFrame reads frames from arbitrary bytes: never a panic, never
// more allocated than the bytes that came, and a frame it takes encodes
// back to the bytes it came from.
func FuzzMuxFrame(f *testing.F) {
	good := newMuxFramer(muxTestKey, muxTestClient, muxTestServer, true).appendFrame(nil, 1, 2, []byte("body"))
	f.Add(good, true)
	f.Add(newMuxFramer(nil, nil, nil, true).appendFrame(nil, 1, 2, []byte("body")), false)
	f.Add([]byte{0xff, 0xff, 0xff, 0xff}, true)
	f.Add([]byte{0, 0, 0, 16}, false)
	f.Fuzz(func(t *testing.T, b []byte, keyed bool) {
		key := muxTestKey
		if !keyed {
			key = nil
		}
		r := newMuxFramer(key, muxTestClient, muxTestServer, false)
		w := newMuxFramer(key, muxTestClient, muxTestServer, true)
		br := bufio.NewReader(bytes.NewReader(b))
		var back []byte
		for {
			id, arg, body, err := r.readFrame(br, nil, 0)
			if err != nil {
				break
			}
			if len(body) > len(b) {
				t.Fatalf("a body of %d bytes from %d", len(body), len(b))
			}
			back = w.appendFrame(back, id, arg, body)
		}
		if !bytes.HasPrefix(b, back) {
			t.Fatalf("frames taken do not encode back to their bytes")
		}
	})
}

// A key set replaced by one that still holds the connection's key keeps
// the connection: the key is compared by its bytes.
func TestMuxServerKeysReloaded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		keys, err := NewClusterKeys(muxTestKey.key)
		if err != nil {
			t.Fatal(err)
		}
		_, peer, _ := newMuxServerPipe(t, keys, 8, echo)
		if err := keys.Set([]byte("the next cluster key, as long"), muxTestKey.key); err != nil {
			t.Fatal(err)
		}
		if err := peer.send(1, uint64(time.Second), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if id, status, body, err := peer.read(); err != nil || id != 1 || status != http.StatusOK {
			t.Fatalf("answer %d %d %q %v, want 1 200", id, status, body, err)
		}
	})
}

// startCall delivers each call's outcome once: from the connection when
// one is open, and from Call on a goroutine before one is; a queued call
// whose ctx ends is not delivered.
func TestMuxStartCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := &muxConns{}
		rig := newBatchRig(t, APIConfig{conns: conns}, func(tr *HTTPTransport) { tr.Mux = true })
		t.Cleanup(func() { rig.tr.closeMux(); conns.closeAll() })
		start := func(ctx context.Context, req []byte) chan batchResult {
			out := make(chan batchResult, 2)
			rig.tr.startCall(ctx, "b", req, func(resp []byte, err error) { out <- batchResult{resp, err} })
			return out
		}
		once := func(out chan batchResult) batchResult {
			r := <-out
			synctest.Wait()
			if len(out) != 0 {
				t.Fatalf("a second outcome: %v", (<-out).err)
			}
			return r
		}
		// No connection yet: Call opens it.
		if r := once(start(context.Background(), batchWrite(t, "a"))); r.err != nil {
			t.Fatal(r.err)
		}
		if r := once(start(context.Background(), batchWrite(t, "b"))); r.err != nil {
			t.Fatal(r.err)
		}
		if up := rig.count(muxPath); up != 1 {
			t.Errorf("%d upgrades, want 1", up)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if r := once(start(ctx, batchWrite(t, "c"))); !errors.Is(r.err, ErrNotDelivered) {
			t.Errorf("a call with its ctx done: %v, want ErrNotDelivered", r.err)
		}
		if _, found, _ := rig.node.store.Get([]byte("c")); found {
			t.Error("a call not delivered was applied")
		}
	})
}

// deadlineConn counts the read deadlines set on a connection.
type deadlineConn struct {
	net.Conn
	deadlines atomic.Int64
}

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	c.deadlines.Add(1)
	return c.Conn.SetReadDeadline(t)
}

// A frame already buffered whole is read with no deadline set; one whose
// rest is still to come is read under its body timeout.
func TestMuxServerReadDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cc, sc := net.Pipe()
		counted := &deadlineConn{Conn: sc}
		s := newMuxServer(counted, bufio.NewReader(counted), newMuxFramer(nil, muxTestClient, muxTestServer, false), time.Minute, make(limiter, 8), nil, echo)
		go s.run(context.Background())
		defer s.close(errors.New("test over"))
		peer := &muxPeerEnd{t: t, conn: cc, br: bufio.NewReader(cc), f: newMuxFramer(nil, muxTestClient, muxTestServer, true)}
		var buf []byte
		for id := uint64(1); id <= 10; id++ {
			buf = peer.f.appendFrame(buf, id, uint64(time.Second), []byte("x"))
		}
		go cc.Write(buf)
		for range 10 {
			if _, _, _, err := peer.read(); err != nil {
				t.Fatal(err)
			}
		}
		if n := counted.deadlines.Load(); n != 0 {
			t.Errorf("%d read deadlines set for frames read whole, want 0", n)
		}
		f := peer.f.appendFrame(nil, 11, uint64(time.Second), []byte("split"))
		go func() {
			cc.Write(f[:8])
			cc.Write(f[8:])
		}()
		if _, _, _, err := peer.read(); err != nil {
			t.Fatal(err)
		}
		if n := counted.deadlines.Load(); n != 2 { // set, then lifted
			t.Errorf("%d read deadlines for a split frame, want 2", n)
		}
	})
}

// A connection on which nothing comes back by a written request's
// timeout and muxGrace is taken for dead and closed (a peer partitioned
// away or paused), failing its calls as indeterminate, even those whose
// callers gave up; one whose peer answers, however late within that,
// stays open.
func TestMuxSilentPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, peer := newMuxClientPipe(t, nil)
		answered := make(chan error, 1)
		go func() {
			_, err := c.call(context.Background(), []byte("slow"), 3*time.Second)
			answered <- err
		}()
		id, _, _, err := peer.read()
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(3*time.Second + muxGrace - time.Millisecond)
		if err := peer.send(id, http.StatusOK, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-answered; err != nil || !c.open() {
			t.Fatalf("an answer within the window: %v, open %v", err, c.open())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		abandoned := make(chan error, 1)
		go func() {
			_, err := c.call(ctx, []byte("abandoned"), time.Hour)
			abandoned <- err
		}()
		silent := make(chan error, 1)
		go func() {
			_, err := c.call(context.Background(), []byte("silent"), 2*time.Second)
			silent <- err
		}()
		for range 2 {
			if _, _, _, err := peer.read(); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-abandoned; !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNotDelivered) {
			t.Fatalf("the abandoned call: %v", err)
		}
		start := time.Now()
		err = <-silent
		if err == nil || errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), "no answer") {
			t.Fatalf("a call on a silent connection: %v, want it closed as dead", err)
		}
		// The earliest due: the abandoned call's timeout and muxGrace.
		if waited := time.Since(start); waited != muxGrace {
			t.Errorf("closed %v after the abandoned call's timeout, want %v", waited, muxGrace)
		}
		if c.open() {
			t.Error("the silent connection is open")
		}
	})
}

// A caller's connection closes once no call was made on it for between
// muxIdle and twice that with none awaiting its answer: calls keep it
// open, and so does a call awaiting an answer however long it takes
// within its timeout. A call after the close opens another connection.
func TestMuxClientIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, peer := newMuxClientPipe(t, nil)
		hold := make(chan struct{})
		go func() { // the peer answers each request, the one of "hold" once told
			for {
				id, _, body, err := peer.read()
				if err != nil {
					return
				}
				if string(body) == "hold" {
					<-hold
				}
				if err := peer.send(id, http.StatusOK, body); err != nil {
					return
				}
			}
		}()
		for range 10 {
			if _, err := c.call(context.Background(), []byte("x"), time.Second); err != nil {
				t.Fatal(err)
			}
			time.Sleep(muxIdle * 3 / 4)
		}
		answered := make(chan error, 1)
		go func() {
			_, err := c.call(context.Background(), []byte("hold"), MaxBatchTimeout)
			answered <- err
		}()
		time.Sleep(4 * muxIdle)
		if !c.open() {
			t.Fatal("closed while in use, or while a call awaited its answer")
		}
		close(hold)
		if err := <-answered; err != nil {
			t.Fatal(err)
		}
		last := time.Now()
		<-c.closed
		if idle := time.Since(last); idle > 2*muxIdle {
			t.Errorf("closed %v after its last answer, want at most %v", idle, 2*muxIdle)
		}
		if _, err := c.call(context.Background(), []byte("x"), time.Second); !errors.Is(err, errMuxClosed) || !errors.Is(err, ErrNotDelivered) {
			t.Errorf("a call on the closed connection: %v, want it not delivered", err)
		}
	})
}

// A server closes a connection on which no request came for between
// muxServeIdle and twice that, counted from its last answer, with none
// in flight: never while a request is served, however long.
func TestMuxServerIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		_, peer, done := newMuxServerPipe(t, nil, 2, func(ctx context.Context, req []byte) ([]byte, error) {
			if string(req) == "hold" {
				<-release
			}
			return echo(ctx, req)
		})
		if err := peer.send(1, uint64(MaxBatchTimeout), []byte("hold")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * muxServeIdle)
		select {
		case <-done:
			t.Fatal("closed while a request was served")
		default:
		}
		close(release)
		if _, status, _, err := peer.read(); err != nil || status != http.StatusOK {
			t.Fatalf("answer %d, %v", status, err)
		}
		answered := time.Now()
		<-done
		if idle := time.Since(answered); idle < muxServeIdle || idle > 2*muxServeIdle {
			t.Errorf("closed %v after its last answer, want between %v and %v", idle, muxServeIdle, 2*muxServeIdle)
		}
	})
}

// muxPeerCount returns how many peers tr keeps.
func muxPeerCount(tr *HTTPTransport) int {
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	return len(tr.muxPeers)
}

// A transport keeps a peer only while it has a connection to it: one
// whose connection closed, or whose dial failed, is forgotten, and a
// later call opens another connection.
func TestMuxPeersForgotten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := &muxConns{}
		rig := newBatchRig(t, APIConfig{conns: conns}, func(tr *HTTPTransport) { tr.Mux = true })
		t.Cleanup(func() { rig.tr.closeMux(); conns.closeAll() })
		for round := range 3 {
			if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "k")); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if n := muxPeerCount(rig.tr); n != 1 {
				t.Fatalf("round %d: %d peers while connected, want 1", round, n)
			}
			conns.mu.Lock()
			for s := range conns.conns {
				s.close(errors.New("the server closed it"))
			}
			conns.mu.Unlock()
			synctest.Wait()
			if n := muxPeerCount(rig.tr); n != 0 {
				t.Fatalf("round %d: %d peers once the connection closed, want 0", round, n)
			}
		}
		if up := rig.count(muxPath); up != 3 {
			t.Errorf("%d upgrades, want 3", up)
		}
		// Addresses that never answer: each call fails, and none is kept.
		for i := range 5 {
			rig.tr.SetAddr("c", fmt.Sprintf("c%d:80", i))
			if _, err := rig.tr.Call(context.Background(), "c", batchWrite(t, "k")); !errors.Is(err, ErrNotDelivered) {
				t.Fatalf("a call to an address nobody listens at: %v, want ErrNotDelivered", err)
			}
		}
		synctest.Wait()
		if n := muxPeerCount(rig.tr); n != 0 {
			t.Errorf("%d peers after failed dials, want 0", n)
		}
	})
}

// A caller that found a peer just before it was forgotten opens its
// connection in the peer that replaced it, where later calls find it,
// not in the forgotten one.
func TestMuxForgottenPeerReplaced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		conns := &muxConns{}
		rig := newBatchRig(t, APIConfig{conns: conns}, func(tr *HTTPTransport) { tr.Mux = true })
		t.Cleanup(func() { rig.tr.closeMux(); conns.closeAll() })
		if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "k")); err != nil {
			t.Fatal(err)
		}
		old, p := rig.tr.openMux("b", "b:80")
		old.close(errors.New("lost")) // found closed by a caller holding p, then
		rig.tr.forget(muxPeerKey{"b", "b:80"}, p, old)
		c, err := rig.tr.connect(context.Background(), p, "b", "b:80")
		if err != nil {
			t.Fatal(err)
		}
		if again, _ := rig.tr.openMux("b", "b:80"); again != c || p.conn != nil {
			t.Errorf("the connection opened through a forgotten peer is not the one later calls find")
		}
		// Calls racing the closes of their connections and the
		// forgetting of their peers: once all is quiet, the transport
		// keeps one peer with one open connection, the one served.
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 20 {
					// It may fail, delivered or not, with its connection.
					_, _ = rig.tr.Call(context.Background(), "b", batchWrite(t, fmt.Sprintf("k%d-%d", g, i)))
				}
			})
		}
		wg.Go(func() {
			for range 20 {
				conns.mu.Lock()
				for s := range conns.conns {
					s.close(errors.New("the server closed it"))
				}
				conns.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
		wg.Wait()
		if _, err := rig.tr.Call(context.Background(), "b", batchWrite(t, "last")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		served := conns.served()
		if again, _ := rig.tr.openMux("b", "b:80"); again == nil || muxPeerCount(rig.tr) != 1 || served != 1 {
			t.Errorf("%d peers, %d connections served, open: %v; want 1, 1 and true", muxPeerCount(rig.tr), served, again != nil)
		}
	})
}

// A server going away answers the requests it read, tells the caller
// the last of them, reads no more (a frame half read is dropped), and
// ends once those it read are answered.
func TestMuxServerGoesAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var handled atomic.Int64
		s, peer, done := newMuxServerPipe(t, fixedKeys(muxTestKey.key), 4, func(ctx context.Context, req []byte) ([]byte, error) {
			handled.Add(1)
			<-release
			return echo(ctx, req)
		})
		for id := uint64(1); id <= 2; id++ {
			if err := peer.send(id, uint64(time.Minute), []byte("held")); err != nil {
				t.Fatal(err)
			}
		}
		third := peer.f.appendFrame(nil, 3, uint64(time.Minute), []byte("half sent"))
		go func() { _, _ = peer.conn.Write(third[:10]) }()
		synctest.Wait() // 1 and 2 handled, 3's header read
		start := time.Now()
		s.goAway()
		id, last, body, err := peer.read()
		if err != nil || id != 0 || last != 2 || !strings.Contains(string(body), "shutting down") {
			t.Fatalf("frame %d %d %q %v, want a go-away after request 2", id, last, body, err)
		}
		if took := time.Since(start); took != 0 {
			t.Errorf("the go-away came %v later: it waited for the half-read frame", took)
		}
		select {
		case <-done:
			t.Fatal("the server ended before answering the requests it read")
		default:
		}
		close(release)
		got := map[uint64]uint64{}
		for range 2 {
			id, status, _, err := peer.read()
			if err != nil {
				t.Fatal(err)
			}
			got[id] = status
		}
		<-done
		if want := map[uint64]uint64{1: http.StatusOK, 2: http.StatusOK}; !maps.Equal(got, want) || handled.Load() != 2 {
			t.Errorf("answers %v after %d handled, want %v after 2", got, handled.Load(), want)
		}
	})
}

// A caller told that the server went away fails at once, as not
// delivered, the calls the server did not read, takes no more, and
// closes the connection once the others are answered; a go-away naming
// a request never sent closes it as malformed.
func TestMuxClientGoneAway(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c, _, peer := newMuxClientPipe(t, nil)
		ctx := context.Background()
		errs := make([]chan error, 3)
		for i := range errs {
			errs[i] = make(chan error, 1)
			go func() {
				_, err := c.call(ctx, fmt.Appendf(nil, "call %d", i), time.Minute)
				errs[i] <- err
			}()
			if id, _, _, err := peer.read(); err != nil || id != uint64(i+1) {
				t.Fatalf("request %d %v, want %d", id, err, i+1)
			}
		}
		if err := peer.send(0, 1, []byte("kv: the node is shutting down")); err != nil {
			t.Fatal(err)
		}
		for _, i := range []int{1, 2} {
			if err := <-errs[i]; !errors.Is(err, ErrNotDelivered) || !strings.Contains(err.Error(), "shutting down") {
				t.Errorf("call %d, not read: %v, want ErrNotDelivered", i+1, err)
			}
		}
		if _, err := c.call(ctx, []byte("new"), time.Minute); !errors.Is(err, errMuxClosed) || !errors.Is(err, ErrNotDelivered) {
			t.Errorf("a call after the go-away: %v, want errMuxClosed", err)
		}
		if err := peer.send(1, http.StatusOK, []byte("one")); err != nil {
			t.Fatal(err)
		}
		if err := <-errs[0]; err != nil {
			t.Errorf("call 1, read: %v", err)
		}
		synctest.Wait()
		if c.open() {
			t.Error("the connection is open once its calls were answered")
		}

		c, _, peer = newMuxClientPipe(t, nil)
		go func() { _, err := c.call(ctx, []byte("one"), time.Minute); errs[0] <- err }()
		if _, _, _, err := peer.read(); err != nil {
			t.Fatal(err)
		}
		if err := peer.send(0, 2, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-errs[0]; err == nil || errors.Is(err, ErrNotDelivered) {
			t.Errorf("call 1 on a connection closed by a go-away after request 2: %v, want indeterminate", err)
		}
		c.mu.Lock()
		closed := c.err
		c.mu.Unlock()
		if !errors.Is(closed, ErrMalformed) {
			t.Errorf("closed for %v, want ErrMalformed", closed)
		}
	})
}

// served returns how many connections cs serves.
func (cs *muxConns) served() int {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return len(cs.conns)
}
