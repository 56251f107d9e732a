package saga

import (
	"maps"
	"slices"
)

// Exec is what a step's Do or Undo learns about the call: which saga,
// which step, which attempt, the saga's input, and the saga's bag.
//
// The bag is a small key-value map persisted in the log: the Puts of an
// attempt that succeeds are written with its success, so later steps and
// compensations, also after a crash and in another process, Get what
// earlier steps Put. The Puts of a failed attempt are discarded. The
// members of a group see the bag as it was when the group began, not
// each other's Puts.
//
// The orchestrator makes Execs; a zero Exec (in a test of a step, say)
// has an empty bag and accepts Puts. An Exec is valid only during the
// call it was passed to (the orchestrator reuses it for the next
// attempt: copy what a goroutine started by the call needs), and is not
// safe for concurrent use.
type Exec struct {
	SagaID       string
	Step         string // the step's name
	Index        int    // the step's index in the definition, a group's members numbered in turn (Record.Step)
	Attempt      int    // 1 for the first attempt of this Do, or of this Undo
	Compensating bool   // true in Undo
	Input        []byte // the saga's input; do not modify

	bag   map[string][]byte // the saga's bag before this call; read-only
	delta map[string][]byte // this call's Puts
}

// IdempotencyKey returns "<saga id>/<step name>": the same for every
// attempt of the step's Do and Undo, in every process, and different for
// every other step of every other saga (step names contain no '/', so the
// last '/' separates the two). Pass it to the services a step calls so
// that they deduplicate retries and re-runs, for example through a
// [Barrier].
func (x *Exec) IdempotencyKey() string { return x.SagaID + "/" + x.Step }

// Get returns the value last Put under key by this call or by an earlier
// successful step or compensation of the saga. The slice must not be
// modified.
func (x *Exec) Get(key string) ([]byte, bool) {
	if v, ok := x.delta[key]; ok {
		return v, true
	}
	v, ok := x.bag[key]
	return v, ok
}

// Put stores a copy of value under key. It becomes visible to later
// steps when this call succeeds; if the call fails, it is discarded. Keep
// the bag small: every successful call writes its Puts to the log.
func (x *Exec) Put(key string, value []byte) {
	if x.delta == nil {
		x.delta = make(map[string][]byte)
	}
	x.delta[key] = append([]byte{}, value...)
}

// entries returns the call's Puts sorted by key, for the log.
func (x *Exec) entries() []Entry {
	if len(x.delta) == 0 {
		return nil
	}
	out := make([]Entry, 0, len(x.delta))
	for _, k := range slices.Sorted(maps.Keys(x.delta)) {
		out = append(out, Entry{k, x.delta[k]})
	}
	return out
}
