package jepsen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"syscall"
	"time"
)

// FaultKind is a kind of fault the schedule injects.
type FaultKind uint8

// The faults, each undone by its heal.
const (
	Partition     FaultKind = iota // majority and minority cannot reach each other
	Asymmetric                     // B cannot send to A; A can send to B
	Nontransitive                  // A↔B and B↔C, not A↔C
	SlowLink                       // A's outgoing link limited to a low rate (tc tbf)
	Pause                          // A SIGSTOPped beyond the failure detector's timeout, then SIGCONT
	Kill                           // A SIGKILLed, then restarted on its disk
	LeaveJoin                      // A leaves (SIGTERM, handover), a fresh node joins in its place
	numKinds
)

func (k FaultKind) String() string {
	return [...]string{"partition", "asymmetric", "nontransitive", "slow-link", "pause", "kill", "leave-join"}[k]
}

// Fault is one fault of a run: what, on which slots, and when (times
// since the run began): injected at Start, healed at Heal, first seen by
// the failure detector at Detected (0: never), every node seeing every
// member alive again at Recovered (0: not within the bound).
type Fault struct {
	Kind                             FaultKind
	Targets                          []int // node slots; their roles depend on Kind
	Start, Detected, Heal, Recovered time.Duration
}

func (f Fault) String() string {
	return fmt.Sprintf("%s %v", f.Kind, f.Targets)
}

// Schedule returns the faults of seed: count faults, every kind once per
// round of numKinds in a seeded order, each with seeded targets among n
// slots. It returns nil for fewer than 3 slots: a non-transitive
// partition needs three.
func Schedule(seed uint64, count, n int) []Fault {
	if n < 3 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x6a657073656e))
	var out []Fault
	for len(out) < count {
		for _, k := range rng.Perm(int(numKinds)) {
			if len(out) == count {
				break
			}
			t := rng.Perm(n)
			switch FaultKind(k) {
			case Partition:
				t = t[:n/2] // the minority
			case Asymmetric:
				t = t[:2]
			case Nontransitive:
				t = t[:3]
			default:
				t = t[:1]
			}
			out = append(out, Fault{Kind: FaultKind(k), Targets: t})
		}
	}
	return out
}

// inject starts fault f on the cluster.
func (c *cluster) inject(ctx context.Context, f Fault) error {
	t := f.Targets
	switch f.Kind {
	case Partition:
		minority := map[int]bool{}
		for _, i := range t {
			minority[i] = true
		}
		var a, b []int
		for i := range c.slots {
			if minority[i] {
				a = append(a, i)
			} else {
				b = append(b, i)
			}
		}
		for _, i := range a {
			if err := block(ctx, i, b); err != nil {
				return err
			}
		}
		for _, i := range b {
			if err := block(ctx, i, a); err != nil {
				return err
			}
		}
	case Asymmetric:
		return block(ctx, t[1], t[:1])
	case Nontransitive:
		if err := block(ctx, t[0], t[2:3]); err != nil {
			return err
		}
		return block(ctx, t[2], t[:1])
	case SlowLink:
		return slow(ctx, t[0], "32kbit")
	case Pause:
		return c.slots[t[0]].signal(syscall.SIGSTOP)
	case Kill:
		return c.slots[t[0]].stop(false, 0)
	case LeaveJoin:
		return c.slots[t[0]].stop(true, 30*time.Second)
	}
	return nil
}

// heal undoes fault f.
func (c *cluster) heal(ctx context.Context, f Fault) error {
	s := c.slots[f.Targets[0]]
	switch f.Kind {
	case Partition, Asymmetric, Nontransitive:
		for i := range c.slots {
			if err := block(ctx, i, nil); err != nil {
				return err
			}
		}
	case SlowLink:
		return slow(ctx, s.i, "")
	case Pause:
		return s.signal(syscall.SIGCONT)
	case Kill:
		return c.start(s)
	case LeaveJoin:
		// The node left and handed its data over: a fresh one, with an ID
		// of its own, joins in its place.
		c.generation++
		s.id = fmt.Sprintf("n%dg%d", s.i, c.generation)
		s.data = filepath.Join(c.dir, s.id)
		return c.start(s)
	}
	return nil
}

// holdFor is how long fault kind k lasts: a pause outlasts the failure
// detector's timeout so that the node wakes up declared failed.
func holdFor(k FaultKind, hold time.Duration) time.Duration {
	if k == Pause {
		return max(hold, detectorTimeout+2*time.Second)
	}
	return hold
}
