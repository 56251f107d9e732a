package idempotency

import (
	"context"
	"errors"
	"strconv"
	"time"
)

// State is the state of a [Record].
type State int

const (
	// InProgress: a caller has claimed the key and is executing; the claim
	// lapses at the record's LockedUntil.
	InProgress State = iota
	// Done: the execution finished and its response is kept until the
	// record's ExpiresAt.
	Done
)

// String returns "InProgress", "Done" or "State(n)".
func (s State) String() string {
	switch s {
	case InProgress:
		return "InProgress"
	case Done:
		return "Done"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Record is what a [Store] keeps for one idempotency key.
//
// A record is live until its deadline — LockedUntil while it is
// InProgress, ExpiresAt once it is Done — and from the deadline on (at
// now >= deadline) a store treats it exactly as if it did not exist.
type Record struct {
	Key         string
	Fingerprint []byte // the payload digest the key was claimed with
	State       State
	Response    []byte    // Done only: the bytes passed to Complete
	LockedUntil time.Time // InProgress: the claim lapses then (a crashed executor)
	ExpiresAt   time.Time // Done: the record is forgotten then
	Token       uint64    // the fencing token of the claim that made the record
}

// Store keeps idempotency records. Implementations are safe for
// concurrent use by any number of processes that share them; the
// conformance suite in package idempotencytest checks the contract below.
//
// The store reads the time itself (MemStore through its Clock field; a
// database can use its own clock), and every method must be atomic with
// respect to every other method on the same key: a read-modify-write in a
// single transaction, a compare-and-set, a Lua script or a conditional
// write. Records whose deadline has passed behave as absent in every
// method, whether or not the store has deleted them yet.
//
// # Fencing
//
// Every successful Claim returns a fencing token (Kleppmann's term): a
// number unique within the store and greater than the token of every
// claim the store granted before it, for any key. Complete and Release
// name the claim they act on by its token, so a caller whose lock lapsed
// and whose key was taken over since cannot complete or release its
// successor's claim: it gets ErrNotClaimed and the store is unchanged.
// The record keeps the token of the claim that made it. Callers pass the
// token on to systems that can reject writes from a stale owner (a
// conditional write "if token > last seen token").
type Store interface {
	// Claim atomically takes key for a new execution. If no live record
	// exists for key it stores {key, a copy of fingerprint, InProgress,
	// LockedUntil: now+lock, Token: a new token} and returns (token, nil,
	// nil): the caller owns the key under token, which is never 0.
	// Otherwise it changes nothing and returns (0, a copy of the live
	// record, nil), whatever the record's fingerprint; the caller decides
	// what a different fingerprint means. lock must be positive.
	Claim(ctx context.Context, key string, fingerprint []byte, lock time.Duration) (token uint64, existing *Record, err error)

	// Complete atomically turns the live InProgress record for key made
	// by the claim under token into a Done record that keeps its
	// fingerprint and token, holds a copy of response and expires at
	// now+retain. It changes nothing and returns an error wrapping
	// ErrNotClaimed if there is no such record: key was never claimed,
	// was released, its lock lapsed, it is already Done, or it is claimed
	// under another token. retain must be positive.
	Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error

	// Release atomically deletes the live InProgress record for key made
	// by the claim under token, so that the next Claim owns the key. It
	// changes nothing and returns an error wrapping ErrNotClaimed if there
	// is no such record; in particular it never deletes a Done record or
	// another token's claim.
	Release(ctx context.Context, key string, token uint64) error
}

var (
	// ErrNotClaimed is returned by Complete and Release when the key has
	// no live in-progress claim under the caller's token.
	ErrNotClaimed = errors.New("idempotency: key is not claimed")

	// ErrFull is returned by MemStore.Claim when a new key would exceed
	// MaxKeys live records.
	ErrFull = errors.New("idempotency: store is full")
)
