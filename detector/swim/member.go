package swim

import (
	"fmt"
	"time"
)

// State is a member's state as one node sees it. The zero State is
// StateAlive.
type State uint8

// Member states. At the same incarnation, Dead and Left override Suspect,
// which overrides Alive; only a higher incarnation brings a member back to
// Alive.
const (
	StateAlive   State = iota // answering probes
	StateSuspect              // failed a probe; dead unless it refutes in time
	StateDead                 // failed and did not refute
	StateLeft                 // left the cluster on purpose
)

var stateNames = [...]string{"alive", "suspect", "dead", "left"}

// String returns "alive", "suspect", "dead" or "left".
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", s)
}

// live reports whether a member in state s counts as part of the cluster.
func (s State) live() bool { return s == StateAlive || s == StateSuspect }

// Member is one node of the cluster as seen by the local node. The zero
// value is not a valid member. Meta is shared, never modified in place:
// callers must not modify it either.
type Member struct {
	ID          string // unique, stable name of the node
	Addr        string // transport address packets to the node go to
	Incarnation uint64 // raised only by the node itself, to refute
	State       State
	Meta        []byte // user metadata, at most MaxMetaLen bytes
}

// EventKind says what happened to a member. The zero EventKind is not a
// valid kind.
type EventKind uint8

// Membership events.
const (
	EventJoined    EventKind = iota + 1 // a new member, or a dead or left one back at a higher incarnation
	EventSuspected                      // a member became suspect
	EventFailed                         // a member was declared dead
	EventLeft                           // a member left
	EventUpdated                        // a member refuted a suspicion, or changed its address or metadata
	// EventConflict: an alive message claimed a member's ID at another
	// address and was refused (two nodes with one ID, or an impostor).
	// Event.Member is the member as known, Event.Claim the refused claim.
	// It is reported once per claimed address; [Stats].Conflicts counts
	// every refusal.
	EventConflict
)

var eventNames = [...]string{"", "joined", "suspected", "failed", "left", "updated", "conflict", "resync"}

// String returns "joined", "suspected", "failed", "left", "updated",
// "conflict" or "resync".
func (k EventKind) String() string {
	if k > 0 && int(k) < len(eventNames) {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event is a membership change: the member as it was right after the
// change, and the time passed to the call that caused it. It is a plain
// value.
type Event struct {
	Kind   EventKind
	Member Member
	At     time.Time
	Claim  Member // EventConflict only: the refused claim (its ID, address, incarnation, metadata)
}

// member is the local record of a member.
type member struct {
	Member
	changed time.Time  // when State last changed (for reaping tombstones)
	susp    *suspicion // non-nil while State == StateSuspect
	reaped  bool       // removed from the member list
	// conflictAddr is the address of the last conflicting claim reported
	// (see EventConflict), so each is reported once.
	conflictAddr string
	bcasts       *window // the member's user broadcasts seen; nil before the first
}
