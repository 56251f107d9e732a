package swim_test

import (
	"fmt"
	"time"

	"github.com/distkit/distkit/detector/swim"
)

// appState is an application's state exchanged on push-pull: here, a
// name it announces, and the names it heard.
type appState struct {
	name  string
	heard []string
}

func (s *appState) LocalState(join bool) []byte { return []byte(s.name) }

func (s *appState) MergeRemoteState(state []byte, join bool) {
	s.heard = append(s.heard, fmt.Sprintf("%s (join %v)", state, join))
}

// A node joining through a seed exchanges user states with it: the
// joiner's request carries its state, the seed answers with a cookie, and
// the pull that echoes it gets the seed's state.
func ExampleStateDelegate() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sa, sb := &appState{name: "state of a"}, &appState{name: "state of b"}
	a, _ := swim.New(swim.Config{ID: "a", Addr: "addr-a", UserState: sa}, now)
	b, _ := swim.New(swim.Config{ID: "b", Addr: "addr-b", Seeds: []string{"addr-a"}, UserState: sb}, now)
	cores := map[string]*swim.Core{"addr-a": a, "addr-b": b}
	var deliver func(from string, out []swim.Packet)
	deliver = func(from string, out []swim.Packet) {
		for _, p := range append([]swim.Packet(nil), out...) {
			reply, _ := cores[p.Addr].Receive(now, from, p.Data)
			deliver(p.Addr, reply)
		}
	}
	deliver("addr-b", b.Tick(now))
	fmt.Println("a heard:", sa.heard)
	fmt.Println("b heard:", sb.heard)
	fmt.Println("b knows", b.NumLive(), "live members; cookies a sent:", a.Stats().Cookies)
	// Output:
	// a heard: [state of b (join true)]
	// b heard: [state of a (join true)]
	// b knows 2 live members; cookies a sent: 1
}
