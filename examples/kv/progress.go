package kv

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of [RepairConfig].
const (
	// DefaultPageBytes keeps a page far below one replica RPC ([MaxRPCLen]).
	DefaultPageBytes = 1 << 20
	// DefaultPageSegments is Riak's TicTac AAE bound on the segments one
	// exchange repairs.
	DefaultPageSegments = 128
	DefaultPageTimeout  = 10 * time.Second
	DefaultProgressLog  = 10 * time.Second
)

// MaxScanSegments bounds the segments one page request of an exchange
// may name; a request naming more is refused as malformed.
const MaxScanSegments = 1 << 14

// RepairConfig sets how a node moves data in bulk: the anti-entropy
// exchanges, the rebalance after a ring change and the handover of
// [Node.Leave]. Each moves pages of at most PageBytes (plus one object)
// at a time and holds at most a few pages in memory, whatever the data.
// Zero fields take the defaults. It is a plain value.
type RepairConfig struct {
	// PageBytes bounds the keys and encoded objects of one page (an
	// object larger than it travels alone); 0: DefaultPageBytes. A node
	// serving another's exchange cuts its pages at its own PageBytes too.
	PageBytes int
	// PageSegments is how many differing segments of a tree one round
	// of an exchange finds and repairs ([merkle.DiffPage]); 0:
	// DefaultPageSegments. At most MaxScanSegments.
	PageSegments int
	// PageTimeout bounds each call of an exchange (one round trip of the
	// tree descent, one page); 0: DefaultPageTimeout. The transport's own
	// timeout applies as well.
	PageTimeout time.Duration
	// AntiEntropyRate bounds the bytes per second this node's exchanges
	// move (tree hashes, pages fetched and pages sent), and HandoverRate
	// those of its rebalances and handovers (each copy sent); 0: no
	// bound. A node that serves another's exchange is not throttled by
	// its own rate: the node that runs the exchange is.
	AntiEntropyRate, HandoverRate int
	// ProgressEvery is how often a running exchange, rebalance or
	// handover logs its progress; 0: DefaultProgressLog.
	ProgressEvery time.Duration
}

// withDefaults returns c with its zero fields set.
func (c RepairConfig) withDefaults() RepairConfig {
	c.PageBytes = cmp.Or(max(c.PageBytes, 0), DefaultPageBytes)
	c.PageSegments = min(cmp.Or(max(c.PageSegments, 0), DefaultPageSegments), MaxScanSegments)
	c.PageTimeout = cmp.Or(max(c.PageTimeout, 0), DefaultPageTimeout)
	c.ProgressEvery = cmp.Or(max(c.ProgressEvery, 0), DefaultProgressLog)
	return c
}

// throttle bounds the bytes per second of one kind of bulk work; the zero
// throttle (a nil limiter) bounds nothing. It is safe for concurrent use.
type throttle struct{ l *rate.Limiter }

// newThrottle returns a throttle of perSecond bytes per second (0: none)
// whose bursts are at most burst bytes.
func newThrottle(perSecond, burst int) throttle {
	if perSecond <= 0 {
		return throttle{}
	}
	return throttle{rate.NewLimiter(rate.Limit(perSecond), max(1, min(perSecond, burst)))}
}

// wait blocks until n more bytes may be moved, or ctx ends. Waits are
// taken in bursts, so n may exceed the burst.
func (t throttle) wait(ctx context.Context, n int) error {
	if t.l == nil {
		return nil
	}
	for n > 0 {
		k := min(n, t.l.Burst())
		if err := t.l.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// Progress is what a node's bulk work has done: its anti-entropy
// exchanges, the rebalances after ring changes and the handover of
// [Node.Leave]. It is a plain value, for gauges and health pages.
type Progress struct {
	AntiEntropy, Rebalance, Handover TaskProgress
	// LastAntiEntropy is, for each peer, when the last exchange with it
	// that repaired every group both replicate ended.
	LastAntiEntropy map[string]time.Time
}

// TaskProgress are the counters of one kind of bulk work. Done and Total
// describe the run that started last (in progress while Running): keys
// passed of the keys held, for a rebalance or a handover, and tree
// segments passed of those of the groups shared with the peer, for an
// exchange. The others count since the node started. It is a plain
// value.
type TaskProgress struct {
	Running     int       // runs in progress
	Started     time.Time // when the last run started; zero: never
	Done, Total int64
	Runs        int64 // runs started
	Failures    int64 // runs that ended with an error
	Keys        int64 // keys repaired (an exchange) or copies sent (a rebalance, a handover)
	Bytes       int64 // bytes moved
}

// task keeps one kind of bulk work's [TaskProgress] and logs its progress
// lines. It is safe for concurrent use.
type task struct {
	name  string
	every time.Duration
	log   *slog.Logger

	mu      sync.Mutex
	p       TaskProgress
	runKeys int64     // keys and bytes of the last run, for its rate
	runByte int64     //
	logged  time.Time // the last progress line of the last run
}

// begin starts a run of total units.
func (t *task) begin(total int64, attrs ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	t.p.Running++
	t.p.Runs++
	t.p.Started, t.p.Done, t.p.Total = now, 0, total
	t.runKeys, t.runByte, t.logged = 0, 0, now
	t.log.Debug(t.name+" started", append(attrs, "total", total)...)
}

// advance counts done more units, keys and bytes of the run, and logs a
// progress line when the last is older than the period.
func (t *task) advance(done, keys, bytes int64, attrs ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Done += done
	t.p.Keys += keys
	t.p.Bytes += bytes
	t.runKeys += keys
	t.runByte += bytes
	if now := time.Now(); now.Sub(t.logged) >= t.every {
		t.logged = now
		t.log.Info(t.name+" progress", append(attrs, t.attrs(now)...)...)
	}
}

// end ends a run with its error, and logs its last line.
func (t *task) end(err error, attrs ...any) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.p.Running--
	attrs = append(attrs, t.attrs(time.Now())...)
	if err != nil {
		t.p.Failures++
		t.log.Warn(t.name+" failed", append(attrs, "err", err)...)
		return
	}
	if t.runKeys > 0 {
		t.log.Info(t.name+" done", attrs...)
	}
}

// attrs are the attributes of a progress line at now. t.mu is held.
func (t *task) attrs(now time.Time) []any {
	took := now.Sub(t.p.Started)
	secs := max(took.Seconds(), 1e-9)
	return []any{"done", t.p.Done, "total", t.p.Total, "keys", t.runKeys, "bytes", t.runByte,
		"took", took.Round(time.Millisecond).String(),
		"rate", fmt.Sprintf("%.0f keys/s, %s/s", float64(t.runKeys)/secs, byteSize(float64(t.runByte)/secs))}
}

// progress returns the counters.
func (t *task) progress() TaskProgress {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.p
}

// byteSize formats n bytes with a binary unit: "512 B", "1.5 MiB".
func byteSize(n float64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%.0f B", n)
	}
	i := -1
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%.1f %ciB", n, units[i])
}

// progress keeps a node's [Progress].
type progress struct {
	antiEntropy, rebalance, handover task

	mu   sync.Mutex
	last map[string]time.Time // guarded by mu
}

func newProgress(log *slog.Logger, every time.Duration) *progress {
	return &progress{
		antiEntropy: task{name: "anti-entropy", every: every, log: log},
		rebalance:   task{name: "rebalance", every: every, log: log},
		handover:    task{name: "handover", every: every, log: log},
		last:        map[string]time.Time{},
	}
}

// exchanged records a complete exchange with peer.
func (p *progress) exchanged(peer string, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[peer] = at
}

func (p *progress) snapshot() Progress {
	p.mu.Lock()
	last := maps.Clone(p.last)
	p.mu.Unlock()
	return Progress{AntiEntropy: p.antiEntropy.progress(), Rebalance: p.rebalance.progress(),
		Handover: p.handover.progress(), LastAntiEntropy: last}
}

// Progress returns the counters of the node's bulk work.
func (n *Node) Progress() Progress { return n.progress.snapshot() }
