package swim

import (
	"fmt"
	"testing"
	"time"

	"github.com/distkit/distkit/internal/simnet"
)

func TestDebugFP(t *testing.T) {
	c := newCluster(t, 1, 64, Config{}, lan)
	c.waitConverged(time.Minute)
	lossy := simnet.Link{MinDelay: 10 * time.Millisecond, MaxDelay: 50 * time.Millisecond, Loss: 0.1}
	c.net.SetDefault(lossy)
	c.slow("n001", 5, lossy)
	type key struct{ obs, id string }
	last := map[key]string{}
	c.onEvent = func(o *simNode, e Event) {
		k := key{o.cfg.ID, e.Member.ID}
		if e.Kind == EventFailed {
			fmt.Printf("%.2f %s failed %s inc=%d; before: %s; victim inc now %d aw %d\n", c.periods(e.At), o.cfg.ID, e.Member.ID, e.Member.Incarnation, last[k], c.addr[e.Member.ID].core.Local().Incarnation, c.addr[e.Member.ID].core.awareness)
		}
		last[k] = fmt.Sprintf("%.2f %s inc=%d", c.periods(e.At), e.Kind, e.Member.Incarnation)
	}
	c.runFor(1000 * time.Second)
}
