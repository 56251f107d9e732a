package clocktest_test

import (
	"fmt"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
)

func ExampleManual() {
	c := clocktest.NewManual(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c.Advance(90 * time.Second)
	fmt.Println(c.Now().Format(time.TimeOnly))
	c.Advance(-time.Minute) // an NTP step backwards
	fmt.Println(c.Now().Format(time.TimeOnly))
	// Output:
	// 00:01:30
	// 00:00:30
}
