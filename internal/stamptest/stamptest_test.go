package stamptest_test

import (
	"testing"

	"github.com/distkit/distkit/internal/stamptest"
)

// recorder is a testing.TB that records a failure instead of stopping the
// test, so that the helper's failures can be checked.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(string, ...any) { r.failed = true }

func TestRequireUnique(t *testing.T) {
	for _, c := range []struct {
		name    string
		results [][]uint64
		fails   bool
	}{
		{"distinct and increasing", [][]uint64{{1, 3, 4}, {2, 5}}, false},
		{"empty", nil, false},
		{"repeated across goroutines", [][]uint64{{1, 2}, {2, 3}}, true},
		{"repeated in one goroutine", [][]uint64{{1, 1}}, true},
		{"decreasing", [][]uint64{{3, 2}}, true},
	} {
		r := &recorder{TB: t}
		stamptest.RequireUnique(r, c.results)
		if r.failed != c.fails {
			t.Errorf("%s: failed = %v, want %v", c.name, r.failed, c.fails)
		}
	}
}
