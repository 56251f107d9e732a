package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/distkit/distkit/detector/swim"
)

// User broadcasts: distkit's Broadcast against memberlist's
// TransmitLimitedQueue, relayed by every member that receives a
// broadcast for the first time, as serf relays user events (memberlist
// itself only sends what the delegate queues). Both run with their
// default LAN configs on swimNet without loss, in virtual time.

// bcastCount broadcasts of bcastPayload bytes are sent at once by one
// member in each measurement.
const (
	bcastCount   = 10
	bcastPayload = 100
)

// bcastRecorder counts the broadcasts each member delivered and when the
// last arrived.
type bcastRecorder struct {
	mu    sync.Mutex
	got   map[int]int
	last  time.Time
	start time.Time
}

func (r *bcastRecorder) deliver(member int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[member]++
	r.last = time.Now()
}

// bcastResult is one measurement: the time from the broadcasts to the
// last delivery, whether every other member delivered all, and the bytes
// sent per member in the 10 s after the broadcasts beyond those of the
// 10 s before.
type bcastResult struct {
	last     time.Duration
	complete bool
	extra    float64
}

// measure converges a cluster (numLive reports a member's live count),
// then broadcasts with send from member 0 and measures.
func (r *bcastRecorder) measure(t *testing.T, n int, sent *atomic.Int64, numLive func(i int) int, send func(i int)) (res bcastResult) {
	for deadline := time.Now().Add(3 * time.Minute); ; wait(time.Second) {
		converged := true
		for i := range n {
			converged = converged && numLive(i) == n
		}
		if converged {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d members: not converged after 3 minutes", n)
		}
	}
	wait(30 * time.Second)
	before := sent.Load()
	wait(10 * time.Second)
	base := sent.Load() - before
	r.mu.Lock()
	r.start = time.Now()
	r.mu.Unlock()
	for i := range bcastCount {
		send(i)
	}
	before = sent.Load()
	wait(10 * time.Second)
	res.extra = float64(sent.Load()-before-base) / float64(n)
	r.mu.Lock()
	defer r.mu.Unlock()
	res.last = r.last.Sub(r.start)
	res.complete = len(r.got) == n-1
	for _, k := range r.got {
		res.complete = res.complete && k == bcastCount
	}
	return res
}

// countedTransport counts the bytes a distkit node sends.
type countedTransport struct {
	*swimTransport
	sent *atomic.Int64
}

func (t countedTransport) WriteTo(p []byte, addr string) error {
	t.sent.Add(int64(len(p)))
	return t.swimTransport.WriteTo(p, addr)
}

func broadcastDistkit(t *testing.T, n int) (res bcastResult) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		nw := newSwimNet(uint64(n))
		var sent atomic.Int64
		rec := &bcastRecorder{got: map[int]int{}}
		var nodes []*swim.Node
		var wg sync.WaitGroup
		for i := range n {
			addr := swimAddr(i)
			tr := &swimTransport{net: nw, addr: addr, packets: make(chan swim.Inbound, 8192)}
			nw.set(func(s *swimNet) {
				s.inbox[addr] = func(from string, data []byte) {
					select {
					case tr.packets <- swim.Inbound{From: from, Data: data}:
					default:
					}
				}
			})
			cfg := swim.Config{ID: swimID(i), Addr: addr, RandSeed: uint64(i)}
			if i > 0 {
				cfg.Seeds = []string{swimAddr(0)}
			}
			core, err := swim.New(cfg, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			node := swim.Start(ctx, core, countedTransport{tr, &sent}, nil)
			nodes = append(nodes, node)
			wg.Go(func() {
				for range node.Changed() {
					node.PopEvents(nil)
					for range node.PopMessages(nil) {
						rec.deliver(i)
					}
				}
			})
		}
		res = rec.measure(t, n, &sent, func(i int) int { return nodes[i].NumLive() }, func(k int) {
			if _, err := nodes[0].Broadcast("", bcastMessage(k)); err != nil {
				t.Fatal(err)
			}
		})
		cancel()
		for _, node := range nodes {
			node.Close()
		}
		wg.Wait()
	})
	return res
}

// bcastMessage is the k-th broadcast: random bytes (memberlist
// compresses its packets), the same for every k in every run.
func bcastMessage(k int) []byte {
	var b [bcastPayload]byte
	rand.NewChaCha8([32]byte{byte(k)}).Read(b[:])
	return b[:]
}

// countedML counts the bytes a memberlist node sends in packets.
type countedML struct {
	*mlTransport
	sent *atomic.Int64
}

func (t countedML) WriteTo(b []byte, addr string) (time.Time, error) {
	t.sent.Add(int64(len(b)))
	return t.mlTransport.WriteTo(b, addr)
}

// mlBroadcaster is a memberlist Delegate with a TransmitLimitedQueue
// that relays every broadcast it receives for the first time.
type mlBroadcaster struct {
	member int
	rec    *bcastRecorder
	queue  *memberlist.TransmitLimitedQueue
	mu     sync.Mutex
	seen   map[string]bool
}

func (d *mlBroadcaster) NodeMeta(int) []byte           { return nil }
func (d *mlBroadcaster) LocalState(bool) []byte        { return nil }
func (d *mlBroadcaster) MergeRemoteState([]byte, bool) {}
func (d *mlBroadcaster) GetBroadcasts(overhead, limit int) [][]byte {
	return d.queue.GetBroadcasts(overhead, limit)
}

func (d *mlBroadcaster) NotifyMsg(b []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[string(b)] {
		return
	}
	d.seen[string(b)] = true
	d.rec.deliver(d.member)
	d.queue.QueueBroadcast(mlBroadcast(bytes.Clone(b)))
}

// mlBroadcast is a unique broadcast (never invalidated).
type mlBroadcast []byte

func (b mlBroadcast) Invalidates(memberlist.Broadcast) bool { return false }
func (b mlBroadcast) Message() []byte                       { return b }
func (b mlBroadcast) Finished()                             {}

func broadcastMemberlist(t *testing.T, n int) (res bcastResult) {
	synctest.Test(t, func(t *testing.T) {
		nw := newSwimNet(uint64(n))
		var sent atomic.Int64
		rec := &bcastRecorder{got: map[int]int{}}
		var started atomic.Pointer[swimCluster] // set once every node joined
		var delegates []*mlBroadcaster
		c := startMemberlistWith(t, nw, n, func(cfg *memberlist.Config) { // called for node 0, 1, ...
			i := len(delegates)
			cfg.Transport = countedML{cfg.Transport.(*mlTransport), &sent}
			d := &mlBroadcaster{member: i, rec: rec, seen: map[string]bool{}, queue: &memberlist.TransmitLimitedQueue{
				NumNodes: func() int {
					if c := started.Load(); c != nil {
						return c.numLive(i)
					}
					return 1 // no broadcast is queued before then
				},
				RetransmitMult: cfg.RetransmitMult,
			}}
			cfg.Delegate = d
			delegates = append(delegates, d)
		})
		started.Store(c)
		res = rec.measure(t, n, &sent, c.numLive, func(k int) {
			msg := bcastMessage(k)
			delegates[0].mu.Lock()
			delegates[0].seen[string(msg)] = true
			delegates[0].mu.Unlock()
			delegates[0].queue.QueueBroadcast(mlBroadcast(msg))
		})
		c.stop()
	})
	return res
}

// TestSWIMBroadcastTable measures user broadcasts: 10 broadcasts of 100
// bytes from one member, at 16 and 64 members, distkit's Broadcast
// against memberlist's TransmitLimitedQueue relayed as serf does: the
// time until the last member delivered the last one, and the bytes the
// broadcasts added per member. It runs only with -long, and asserts for
// distkit that every member delivered every broadcast.
func TestSWIMBroadcastTable(t *testing.T) {
	if !*long || raceEnabled {
		t.Skip("a minute or more of CPU: runs with -long, without -race (bench/run.sh passes -long)")
	}
	var rows [][]string
	for _, n := range []int{16, 64} {
		row := []string{fmt.Sprintf("%d members: last delivery; bytes added per member", n)}
		for _, impl := range []struct {
			name string
			run  func(*testing.T, int) bcastResult
		}{{"distkit", broadcastDistkit}, {"memberlist", broadcastMemberlist}} {
			res := impl.run(t, n)
			cell := fmt.Sprintf("%v; %.0f B", res.last.Round(time.Millisecond), res.extra)
			if !res.complete {
				cell += " (not every member got every broadcast)"
				if impl.name == "distkit" {
					t.Errorf("distkit, %d members: not every member delivered every broadcast", n)
				}
			}
			row = append(row, cell)
		}
		rows = append(rows, row)
	}
	writeTable(t, fmt.Sprintf("User broadcasts: %d of %d bytes from one member (virtual time, default LAN configs, no loss)", bcastCount, bcastPayload),
		[]string{"measure", "distkit Broadcast", "memberlist TransmitLimitedQueue, relayed"}, rows)
}
