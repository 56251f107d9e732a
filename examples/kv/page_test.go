package kv

import (
	"testing"
)

// testPage is the page limit of the tests' scans: a few entries a page.
const testPage = 64

// scanPages lists group g's entries in segments, page by page.
func scanPages(t testing.TB, s *Store, g string, segments []int) []Entry {
	t.Helper()
	return pages(t, func(after []byte) (page, error) { return s.scanPage(g, segments, after, testPage) })
}

// allPages lists every key the store holds, page by page.
func allPages(t testing.TB, s *Store) []Entry {
	t.Helper()
	return pages(t, func(after []byte) (page, error) { return s.pageFrom(after, testPage, nil) })
}

// pages lists the entries of the pages next returns, each after the last
// key of the one before, checking each page.
func pages(t testing.TB, next func(after []byte) (page, error)) []Entry {
	t.Helper()
	var (
		out   []Entry
		after []byte
	)
	for {
		p, err := next(after)
		if err != nil {
			t.Fatal(err)
		}
		checkPage(t, p)
		out = append(out, entries(p.items)...)
		if !p.full {
			return out
		}
		after = p.items[len(p.items)-1].Key
	}
}

// checkPage fails the test unless p is within its limit but for its last
// item, and a full page holds an item.
func checkPage(t testing.TB, p page) {
	t.Helper()
	size := 0
	for i, it := range p.items {
		if size >= p.limit {
			t.Fatalf("item %d of a page of limit %d starts at byte %d", i, p.limit, size)
		}
		size += it.size()
	}
	if size != p.size || p.full && len(p.items) == 0 {
		t.Fatalf("page of %d items: size %d, counted %d, full %v", len(p.items), size, p.size, p.full)
	}
}
