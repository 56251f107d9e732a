package kv

import (
	"context"
	"sync"
	"sync/atomic"
)

// mover streams the keys a node holds to other nodes, a page at a time,
// under one bandwidth throttle: the bulk work of rebalances and
// handovers. It is safe for concurrent use.
type mover struct {
	store     *Store
	pageBytes int
	rate      throttle
}

// each calls place for every key held that keep accepts (nil: all), in
// segment and key order, a page of at most pageBytes at a time, on up to
// leaveParallel goroutines at once, and returns the sum of what place
// returned: the copies it placed, each of which place has waited for on
// the throttle. It counts its progress in t (keys passed of keys held).
// It holds one page in memory, never the data, and reads no page once
// ctx is done; it returns ctx's error then, or the store's.
func (mv *mover) each(ctx context.Context, t *task, keep func(key []byte) bool, place func(it item) int) (int, error) {
	total, err := mv.store.count()
	if err != nil {
		return 0, err
	}
	t.begin(int64(total))
	copies, err := mv.pages(ctx, t, func(after []byte) (page, error) { return mv.store.pageFrom(after, mv.pageBytes, keep) }, place)
	t.end(err)
	return copies, err
}

// pages calls place for every item of the pages next returns, each
// starting after the last key of the one before (nil for the first),
// until a page is not full, as [mover.each] does, counting its progress in
// t (items passed, as the pages count them).
func (mv *mover) pages(ctx context.Context, t *task, next func(after []byte) (page, error), place func(it item) int) (int, error) {
	var (
		copies int
		after  []byte
	)
	for ctx.Err() == nil {
		p, err := next(after)
		if err != nil {
			return copies, err
		}
		var placed, bytes atomic.Int64
		parallel(ctx, len(p.items), func(i int) {
			c := place(p.items[i])
			placed.Add(int64(c))
			bytes.Add(int64(c * p.items[i].size()))
		})
		copies += int(placed.Load())
		t.advance(int64(p.scanned), placed.Load(), bytes.Load())
		if !p.full || len(p.items) == 0 {
			return copies, ctx.Err()
		}
		after = p.items[len(p.items)-1].Key
	}
	return copies, ctx.Err()
}

// parallel calls f(i) for every i in [0, count), on up to leaveParallel
// goroutines at once, and returns once they ended; it starts none once
// ctx is done.
func parallel(ctx context.Context, count int, f func(i int)) {
	sem := make(chan struct{}, leaveParallel)
	var wg sync.WaitGroup
	for i := range count {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			f(i)
		})
	}
	wg.Wait()
}
