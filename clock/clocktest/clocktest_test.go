package clocktest_test

import (
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
)

func TestManualConcurrent(t *testing.T) {
	start := time.Unix(0, 0)
	c := clocktest.NewManual(start)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				c.Advance(time.Millisecond)
				_ = c.Now()
			}
		})
	}
	wg.Wait()
	if got, want := c.Now(), start.Add(800*time.Millisecond); !got.Equal(want) {
		t.Fatalf("Now = %v, want %v", got, want)
	}
	c.Set(start)
	if !c.Now().Equal(start) {
		t.Fatalf("Set did not take")
	}
}

func TestManualZero(t *testing.T) {
	var c clocktest.Manual
	if !c.Now().IsZero() {
		t.Fatalf("zero Manual reads %v", c.Now())
	}
	c.Advance(time.Second)
	if got := c.Now(); !got.Equal(time.Time{}.Add(time.Second)) {
		t.Fatalf("Now = %v after Advance(1s) from zero", got)
	}
}
