package simnet_test

import (
	"fmt"
	"time"

	"github.com/distkit/distkit/internal/simnet"
)

// A ping-pong over a link with a fixed 10ms delay, and a partition that
// drops the next ping.
func Example() {
	net := simnet.New[string](simnet.Config{Seed: 1, Default: simnet.Link{MinDelay: 10 * time.Millisecond}})
	start := net.Now()
	handle := func(m simnet.Message[string]) {
		fmt.Printf("%v %s -> %s: %s\n", net.Now().Sub(start), m.From, m.To, m.Payload)
		if m.Payload == "ping" {
			net.Send(m.To, m.From, "pong")
		}
	}
	net.Send("a", "b", "ping")
	net.Advance(time.Second, handle)

	net.Partition([]string{"a"}, []string{"b"})
	net.Send("a", "b", "ping")
	net.Advance(time.Second, handle)
	fmt.Printf("%+v\n", net.Stats())
	// Output:
	// 10ms a -> b: ping
	// 20ms b -> a: pong
	// {Sent:3 Lost:0 Duplicated:0 Blocked:1 Delivered:2}
}
