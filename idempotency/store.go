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
// There is no fencing token: a claim is owned by whoever holds the key,
// until LockedUntil. A caller that outlives its lock gets ErrNotClaimed
// from Complete and Release, unless another caller has taken the key over
// meanwhile, in which case they act on the new claim. [Guard] keeps its
// callers out of that window by ending fn's context when the lock lapses.
type Store interface {
	// Claim atomically takes key for a new execution. If no live record
	// exists for key it stores {key, a copy of fingerprint, InProgress,
	// LockedUntil: now+lock} and returns (nil, nil): the caller owns the
	// key. Otherwise it changes nothing and returns a copy of the live
	// record, whatever its fingerprint; the caller decides what a
	// different fingerprint means. lock must be positive.
	Claim(ctx context.Context, key string, fingerprint []byte, lock time.Duration) (*Record, error)

	// Complete atomically turns the live InProgress record for key into a
	// Done record holding a copy of response that expires at now+retain.
	// It returns an error wrapping ErrNotClaimed if there is no live
	// InProgress record for key (it was never claimed, was released, its
	// lock lapsed or it is already Done). retain must be positive.
	Complete(ctx context.Context, key string, response []byte, retain time.Duration) error

	// Release atomically deletes the live InProgress record for key, so
	// that the next Claim owns the key. It returns an error wrapping
	// ErrNotClaimed, and changes nothing, if there is no live InProgress
	// record for key; in particular it never deletes a Done record.
	Release(ctx context.Context, key string) error
}

var (
	// ErrNotClaimed is returned by Complete and Release when the key has
	// no live in-progress claim.
	ErrNotClaimed = errors.New("idempotency: key is not claimed")

	// ErrFull is returned by MemStore.Claim when a new key would exceed
	// MaxKeys live records.
	ErrFull = errors.New("idempotency: store is full")
)

// deadline is the instant r stops being live.
func (r *Record) deadline() time.Time {
	if r.State == InProgress {
		return r.LockedUntil
	}
	return r.ExpiresAt
}
