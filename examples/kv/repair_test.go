package kv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/distkit/distkit/quorum"
	"github.com/distkit/distkit/vclock"
)

// fillKeys writes n keys of size-byte values to every replica (W = N)
// through n1, and returns the keys.
func fillKeys(t *testing.T, c *cluster, n, size int) []string {
	t.Helper()
	var keys []string
	for i := range n {
		key := fmt.Sprintf("key%04d", i)
		if _, err := c.node("n1").Put(context.Background(), []byte(key), vclock.VClock{}, bytes.Repeat([]byte{byte(i)}, size), c.q.N); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, key)
	}
	c.node("n1").Wait()
	return keys
}

// sameAs fails the test unless every one of keys that node id holds, n1
// holds as well, and the same, and returns how many it holds.
func sameAs(t *testing.T, c *cluster, id string, keys []string) int {
	t.Helper()
	held := 0
	for _, k := range keys {
		want, wfound, err := c.stores["n1"].Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		got, found, err := c.stores[id].Get([]byte(k))
		if err != nil {
			t.Fatal(err)
		}
		if found {
			held++
		}
		if found && (!wfound || !sameObject(got, want)) {
			t.Errorf("%s holds %q as %v, n1 as %v", id, k, live(got), live(want))
		}
	}
	return held
}

// A replica that lost its disk, in a group holding many times more data
// than one RPC may carry, is repaired completely by one exchange, in
// either direction, and no message passes the limit.
func TestAntiEntropyGroupLargerThanRPC(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const limit = 16 << 10 // the transport's RPC limit, scaled down
		c := newCluster(t, 1, 3, quorum.Config{N: 3, R: 1, W: 1})
		defer c.close()
		c.repair = RepairConfig{PageBytes: 4 << 10, PageSegments: 8}
		c.net.limit = limit
		ctx := context.Background()
		keys := fillKeys(t, c, 200, 512) // about 100 KiB on each node, one group
		for _, dir := range []struct{ from, to string }{{"n3", "n1"}, {"n1", "n3"}} {
			c.wipe("n3")
			c.crash("n1") // restarted with the small pages too
			c.start("n1")
			k, moved, err := c.node(dir.from).AntiEntropy(ctx, dir.to)
			if err != nil || k != len(keys) {
				t.Fatalf("%s with %s after n3 lost its disk: %d keys repaired, %v; want %d", dir.from, dir.to, k, err, len(keys))
			}
			if moved < 200*512 {
				t.Fatalf("%d bytes moved to repair %d bytes of values", moved, 200*512)
			}
			if p := c.node(dir.from).Progress().AntiEntropy; p.Bytes != int64(moved) || p.Keys != int64(k) || p.Runs != 1 {
				t.Fatalf("%s's progress %+v after an exchange of %d keys and %d bytes", dir.from, p, k, moved)
			}
			if held := sameAs(t, c, "n3", keys); held != len(keys) {
				t.Fatalf("n3 holds %d of %d keys", held, len(keys))
			}
			if k, _, err := c.node(dir.from).AntiEntropy(ctx, dir.to); k != 0 || err != nil {
				t.Fatalf("after the repair: %d keys repaired, %v", k, err)
			}
		}
		// A page is at most PageBytes plus one object, with its framing.
		if c.net.largest > 2*c.repair.PageBytes {
			t.Fatalf("the longest message was %d bytes, with pages of %d", c.net.largest, c.repair.PageBytes)
		}
	})
}

// sharedGroups returns the replica groups that hold both a and b, sorted.
func sharedGroups(c *cluster, a, b string) []string {
	var out []string
	for _, g := range c.node(a).maint.place().groups {
		if inGroup(g, a) && inGroup(g, b) {
			out = append(out, g)
		}
	}
	return out
}

// A group whose exchange fails does not stop the others: every other
// group shared with the peer is repaired, and the error names the group.
func TestAntiEntropyFailingGroupGoesOn(t *testing.T) {
	inCluster(t, 5, quorum.Config{N: 3, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		keys := fillKeys(t, c, 120, 16)
		groups := sharedGroups(c, "n2", "n3")
		if len(groups) < 2 {
			t.Fatalf("n2 and n3 share %d groups, want several", len(groups))
		}
		failing := groups[0] // the first an exchange tries
		c.wipe("n2")
		c.net.serve = func(ctx context.Context, to string, req []byte, n *Node) ([]byte, error) {
			var q request
			if err := q.unmarshal(req); err == nil && q.Op == opScan && q.Group == failing {
				return nil, errors.New("disk error")
			}
			return n.Handle(ctx, req)
		}
		_, _, err := c.node("n2").AntiEntropy(ctx, "n3")
		if err == nil || !strings.Contains(err.Error(), "group "+failing+": disk error") {
			t.Fatalf("an exchange with a failing group: %v", err)
		}
		group := c.node("n2").maint.place().group
		repaired, missed := 0, 0
		for _, k := range keys {
			g := group([]byte(k))
			if !slices.Contains(groups, g) {
				continue
			}
			_, found, _ := c.stores["n2"].Get([]byte(k))
			switch {
			case g == failing && found:
				t.Fatalf("%q of the failing group repaired", k)
			case g == failing:
				missed++
			case !found:
				t.Fatalf("%q of group %s not repaired", k, g)
			default:
				repaired++
			}
		}
		if repaired == 0 || missed == 0 {
			t.Fatalf("%d keys of the other groups repaired, %d of the failing one missed; want both", repaired, missed)
		}
		if p := c.node("n2").Progress(); p.AntiEntropy.Failures != 1 || !p.LastAntiEntropy["n3"].IsZero() {
			t.Fatalf("progress after a failed exchange: %+v", p)
		}
	})
}

// A peer that answers pages against the protocol gets its page refused
// whole, and the exchange ends: a cursor that does not advance, a page
// past its limit, a key outside the group and segments asked for, an
// empty page that says more follows, and a peer that never answers
// (bounded by the page timeout, in virtual time). No key of a refused
// page is merged.
func TestExchangeHostilePeer(t *testing.T) {
	cases := []struct {
		name  string
		forge func(q request, honest response) response
		want  error
	}{
		{"cursor does not advance", func(q request, honest response) response {
			if len(q.After) > 0 { // the page after the first starts again at the first key
				honest.Entries = append([]Entry{{Key: q.After, Object: honest.Entries[0].Object}}, honest.Entries...)
			}
			return honest
		}, ErrMalformed},
		{"page past its limit", func(q request, honest response) response {
			honest.Entries = append(honest.Entries, honest.Entries...)
			return honest
		}, ErrMalformed},
		{"key outside the range", func(q request, honest response) response {
			honest.Entries = append(honest.Entries[:0:0], Entry{Key: []byte("forged"), Object: honest.Entries[0].Object})
			return honest
		}, ErrMalformed},
		{"empty page, more to follow", func(q request, honest response) response {
			return response{More: true}
		}, ErrMalformed},
		{"slow peer", nil, context.DeadlineExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inCluster(t, 3, quorum.Config{N: 3, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
				c.repair.PageTimeout = 3 * time.Second
				keys := fillKeys(t, c, 40, 16)
				c.wipe("n3")
				c.net.serve = func(ctx context.Context, to string, req []byte, n *Node) ([]byte, error) {
					var q request
					if err := q.unmarshal(req); err != nil || q.Op != opScan || to != "n1" {
						return n.Handle(ctx, req)
					}
					if tc.forge == nil {
						<-ctx.Done() // a paused process
						return nil, ctx.Err()
					}
					honest, err := n.maint.serveScan(&q)
					if err != nil || len(honest.Entries) == 0 {
						return nil, fmt.Errorf("honest page: %d entries, %v", len(honest.Entries), err)
					}
					forged := tc.forge(q, honest)
					return forged.marshal()
				}
				start := time.Now()
				_, _, err := c.node("n3").AntiEntropy(ctx, "n1")
				if !errors.Is(err, tc.want) {
					t.Fatalf("exchange with a hostile peer: %v, want %v", err, tc.want)
				}
				if took := time.Since(start); took > c.repair.PageTimeout {
					t.Fatalf("the exchange took %v, with pages bounded by %v", took, c.repair.PageTimeout)
				}
				if _, found, _ := c.stores["n3"].Get([]byte("forged")); found {
					t.Fatal("a forged key was merged")
				}
				sameAs(t, c, "n3", keys) // what was merged is what n1 holds
			})
		})
	}
}

// A page request against the protocol is refused as malformed by the
// node serving it, and one asking for a huge page gets a page cut at the
// server's own limit.
func TestServeScanRefuses(t *testing.T) {
	inCluster(t, 3, quorum.Config{N: 3, R: 1, W: 1}, func(t *testing.T, c *cluster, ctx context.Context) {
		fillKeys(t, c, 40, 16)
		m := c.node("n1").maint
		g := sharedGroups(c, "n1", "n2")[0]
		all := make([]int, m.segments())
		for i := range all {
			all[i] = i
		}
		for name, q := range map[string]request{
			"segments decreasing":  {Op: opScan, Group: g, Segments: []int{3, 1}, Limit: 1},
			"segment repeated":     {Op: opScan, Group: g, Segments: []int{1, 1}, Limit: 1},
			"segment outside":      {Op: opScan, Group: g, Segments: []int{m.segments()}, Limit: 1},
			"segment negative":     {Op: opScan, Group: g, Segments: []int{-1}, Limit: 1},
			"too many segments":    {Op: opScan, Group: g, Segments: make([]int, MaxScanSegments+1), Limit: 1},
			"no limit":             {Op: opScan, Group: g, Segments: []int{1}},
			"after an invalid key": {Op: opScan, Group: g, Segments: []int{1}, Limit: 1, After: make([]byte, MaxKeyLen+1)},
		} {
			if _, err := m.serveScan(&q); !errors.Is(err, ErrMalformed) {
				t.Errorf("%s: %v, want ErrMalformed", name, err)
			}
		}
		resp, err := m.serveScan(&request{Op: opScan, Group: g, Segments: all, Limit: 1 << 40})
		if err != nil || !resp.More || len(resp.Entries) == 0 {
			t.Fatalf("a huge page asked for: %d entries, more %v, %v", len(resp.Entries), resp.More, err)
		}
		if n := len(entries(scanPagesOf(t, c.stores["n1"], g, all, m.cfg.PageBytes))); n != len(resp.Entries) {
			t.Fatalf("a huge page asked for gave %d entries, a page of the server's limit %d", len(resp.Entries), n)
		}
		// A merge into a group the receiver does not replicate, or of a key
		// of another group, is refused.
		other := slices.DeleteFunc(slices.Clone(c.node("n1").maint.place().groups), func(x string) bool { return inGroup(x, "n1") })
		for name, q := range map[string]request{
			"not a replica": {Op: opMerge, Group: strings.Join(append(other[:0:0], "n9"), ","), Entries: resp.Entries[:1]},
			"wrong group":   {Op: opMerge, Group: "n1", Entries: resp.Entries[:1]},
		} {
			if err := m.serveMerge(&q); err == nil {
				t.Errorf("%s: merged", name)
			}
		}
	})
}

// scanPagesOf returns the first page of group g's entries in segments at
// limit bytes.
func scanPagesOf(t *testing.T, s *Store, g string, segments []int, limit int) []item {
	t.Helper()
	p, err := s.scanPage(g, segments, nil, limit)
	if err != nil {
		t.Fatal(err)
	}
	return p.items
}

// logLines collects what a logger writes.
type logLines struct{ bytes.Buffer }

func (l *logLines) count(msg string) int { return strings.Count(l.String(), `"msg":"`+msg+`"`) }

// The bandwidth of an exchange and of a handover is what the rates say:
// over the virtual time the work takes, the bytes moved beyond the first
// burst, at the rate, to within a page. Progress lines appear with
// readable durations, and the counters match what the calls returned.
func TestRepairThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rate, pageBytes = 32 << 10, 2 << 10
		var logs logLines
		c := newCluster(t, 1, 4, quorum.Config{N: 3, R: 1, W: 1})
		defer c.close()
		c.repair = RepairConfig{PageBytes: pageBytes, AntiEntropyRate: rate, HandoverRate: rate, ProgressEvery: time.Second}
		c.logger = slog.New(slog.NewJSONHandler(&logs, nil))
		ctx := context.Background()
		fillKeys(t, c, 600, 256)
		// expect fails the test unless took is what moving moved bytes at
		// the rate takes, after a first burst of a page.
		expect := func(what string, moved int64, took time.Duration) {
			t.Helper()
			want := time.Duration(float64(moved-pageBytes) / rate * float64(time.Second))
			if d := took - want; d < -10*time.Millisecond || d > time.Duration(float64(pageBytes)/rate*float64(time.Second)) {
				t.Errorf("%s: %d bytes in %v, want %v at %d B/s", what, moved, took, want, rate)
			}
			t.Logf("%s: %d bytes in %v at %d B/s", what, moved, took, rate)
		}

		c.wipe("n3") // with the rates
		start := time.Now()
		k, moved, err := c.node("n3").AntiEntropy(ctx, "n1")
		took := time.Since(start)
		if err != nil || k == 0 {
			t.Fatalf("repair: %d keys, %v", k, err)
		}
		expect("anti-entropy", int64(moved), took)
		p := c.node("n3").Progress().AntiEntropy
		if p.Runs != 1 || p.Failures != 0 || p.Running != 0 || p.Keys != int64(k) || p.Bytes != int64(moved) || p.Done != p.Total || p.Total == 0 {
			t.Fatalf("anti-entropy progress %+v after %d keys, %d bytes", p, k, moved)
		}
		if c.node("n3").Progress().LastAntiEntropy["n1"] != time.Now() {
			t.Fatalf("last anti-entropy with n1: %v", c.node("n3").Progress().LastAntiEntropy)
		}

		c.crash("n4")
		c.start("n4") // with the rates
		start = time.Now()
		h, err := c.node("n4").Leave(ctx)
		took = time.Since(start)
		if err != nil || h.Copies == 0 {
			t.Fatalf("leave: %+v, %v", h, err)
		}
		hp := c.node("n4").Progress().Handover
		expect("handover", hp.Bytes, took)
		if hp.Keys != int64(h.Copies) || hp.Done != hp.Total || hp.Runs != 1 {
			t.Fatalf("handover progress %+v after %+v", hp, h)
		}
		for _, what := range []string{"anti-entropy progress", "handover progress"} {
			if n := logs.count(what); n < 2 {
				t.Errorf("%d lines %q in:\n%s", n, what, logs.String())
			}
		}
		if !regexp.MustCompile(`"took":"[0-9.]+s","rate":"[0-9]+ keys/s, [0-9.]+ KiB/s"`).MatchString(logs.String()) {
			t.Errorf("no readable duration and rate in:\n%s", logs.String())
		}
	})
}
