package swim

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHealthStaysLowWithCrash: in a healthy cluster of 16 on a LAN with
// the default Config, one crashed member must not make the survivors
// think they are the slow ones. Lifeguard raises a prober's health score
// only on evidence about the prober itself; the nacks of its ping-req
// helpers reach it within its probe period, so failed probes of the
// crashed member raise nothing. Every survivor declares the crash dead.
// The trace (per protocol period: the highest score and how many nodes
// are above 0) is logged.
func TestHealthStaysLowWithCrash(t *testing.T) {
	for _, seed := range seeds(3) {
		c, victim, crashAt := crashOne(t, seed, 16, Config{})
		dead := map[string]bool{}
		c.onEvent = func(obs *simNode, e Event) {
			if e.Kind == EventFailed && e.Member.ID == victim.cfg.ID {
				dead[obs.cfg.ID] = true
			}
		}
		// Per period since the crash: the highest score and the nodes
		// that were above 0 at some point in it.
		var tops []int
		var above []map[string]bool
		check := func() bool {
			p := int(c.periods(c.net.Now()) - c.periods(crashAt))
			for len(tops) <= p {
				tops, above = append(tops, 0), append(above, map[string]bool{})
			}
			for _, sn := range c.nodes {
				if h := sn.core.Health(); !sn.crashed && h > 0 {
					tops[p] = max(tops[p], h)
					above[p][sn.cfg.ID] = true
				}
			}
			return len(dead) == 15
		}
		if !c.runUntil(crashAt.Add(2*time.Minute), check) {
			t.Fatalf("seed %d: %d of 15 survivors declared %s dead", seed, len(dead), victim.cfg.ID)
		}
		var trace []string
		worst := 0
		for p, top := range tops {
			trace = append(trace, fmt.Sprintf("%d/%d", top, len(above[p])))
			worst = max(worst, top)
		}
		t.Logf("seed %d: per period after the crash, highest health score / survivors above 0: %s; all dead verdicts after %.1f periods",
			seed, strings.Join(trace, " "), c.periods(c.net.Now())-c.periods(crashAt))
		if worst > 1 {
			t.Errorf("seed %d: a survivor's health score reached %d", seed, worst)
		}
	}
}
