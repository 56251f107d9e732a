package kv

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/distkit/distkit/clock"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/vclock"
)

// ErrKeyReused is returned by [Node.Write] (so by [Node.Put] and
// [Node.Delete]) and [Store.UpdateOnce] when the key's object holds a
// sibling written with the same idempotency key and another payload: the
// client reused its Idempotency-Key for a different write. Nothing was
// written. The HTTP API answers it with 422, as the idempotency middleware
// answers a fingerprint mismatch.
var ErrKeyReused = errors.New("kv: idempotency key reused with a different value")

// UpdateOnce is [Store.Update] for a write that may be a retry: when
// v.IdempotencyKey is set and key's object holds a sibling written with
// that idempotency key, it writes nothing and returns the object and that
// sibling's dot, with applied false, or an error wrapping [ErrKeyReused]
// when the sibling's payload differs from v's (see [Version.Same]).
// Otherwise it applies the write as Update does and returns the write's
// dot, with applied true. The check and the write are one commit, so
// concurrent writes with one idempotency key on one store apply at most
// once while the sibling lives. It returns [ErrBadKey] for an invalid key.
func (s *Store) UpdateOnce(key []byte, ctx vclock.VClock, actor string, v Version) (o Object, dot vclock.Dot, applied bool, err error) {
	o, dot, applied, err = s.updateOnce(key, ctx, actor, v, nil)
	return o.Clone(), dot, applied, err
}

// updateOnce is UpdateOnce that returns the object as stored: shared with
// the store, to be read and not changed. staged, when not nil, is called
// with the object once the write is computed, before it is durable, when
// it applied (see [Store.write]).
func (s *Store) updateOnce(key []byte, ctx vclock.VClock, actor string, v Version, staged func(Object)) (o Object, dot vclock.Dot, applied bool, err error) {
	if err := checkKey(key); err != nil {
		return Object{}, vclock.Dot{}, false, err
	}
	o, werr := s.write(key, func(b *batch, o *Object) error {
		if v.IdempotencyKey != "" {
			var (
				prev Version
				ok   bool
			)
			if prev, dot, ok = keyedSibling(*o, v.IdempotencyKey); ok {
				if !prev.Same(v) {
					err = fmt.Errorf("%w: %q holds another write with key %q (dot %v)", ErrKeyReused, key, v.IdempotencyKey, dot)
				}
				return nil
			}
		}
		if err := s.update(b, o, ctx, actor, v); err != nil {
			return err
		}
		dot, applied = vclock.Dot{ID: actor, Counter: o.Context().Get(actor)}, true
		return nil
	}, Object{}, staged)
	return o, dot, applied, errors.Join(werr, err)
}

// keyedSibling returns the sibling of o written with the idempotency key
// k and its dot, and false if o holds none.
func keyedSibling(o Object, k string) (Version, vclock.Dot, bool) {
	for d, v := range o.Dotted() {
		if v.IdempotencyKey == k {
			return v, d, true
		}
	}
	return Version{}, vclock.Dot{}, false
}

// IdempotencyStore is a durable [idempotency.Store] in a [Store]'s bbolt
// file, next to the data, so that a node keeps one file: an idempotency
// key's record survives a crash of the process or the machine, and a
// retry sent to a restarted node is replayed rather than applied again.
//
// Every change commits with the data's discipline (bbolt's group commit,
// fsync'd unless [StoreConfig.NoSync]): a Complete returns once the record
// is on disk, before the middleware sends the response it records. Records
// live until their deadline (a claim's lock, a finished record's
// retention, as package idempotency defines them) and behave as absent
// from then on; each Claim also deletes up to [idempotencySweep] expired
// records, oldest first, through an index by deadline, so that the file
// holds the live records and at most the few expired since the last Claim.
//
// Claims are durable too, and a crash ends them as package idempotency
// defines it for a crashed executor: a node killed while it executed a
// request restarts with the claim, a retry through it gets
// idempotency.ErrInProgress (409) until the claim's lock lapses, and then
// takes the key over. The write the crashed execution may have applied is
// recognised by its idempotency key at its coordinator (see [Node.Write]),
// so the takeover does not apply it twice; a retry through another node
// does not wait for the lock.
//
// An IdempotencyStore is safe for concurrent use. Its zero value is not
// usable: call [NewIdempotencyStore]. It is usable while its Store is
// open; after [Store.Close] its methods fail with bbolt's
// ErrDatabaseNotOpen.
type IdempotencyStore struct {
	db    *bolt.DB
	clock clock.Clock
}

var _ idempotency.Store = (*IdempotencyStore)(nil)

// IdempotencyConfig configures [NewIdempotencyStore]. The zero value
// means the system clock. It is a plain value.
type IdempotencyConfig struct {
	// Clock is the time of the records' deadlines; nil: clock.System.
	// Give the Guard the same clock.
	Clock clock.Clock
}

var (
	bucketIdem   = []byte("idempotency")        // idempotency key → encoded record
	bucketExpiry = []byte("idempotency-expiry") // [deadline uint64 BE][key] → empty
	bucketTokens = []byte("idempotency-token")  // keyLastToken → uint64 BE
	keyLastToken = []byte("last")
)

// idempotencySweep is how many expired records a Claim deletes at most.
const idempotencySweep = 16

// NewIdempotencyStore returns the idempotency store kept in s's file,
// creating its buckets if needed: the records of an earlier run, claims
// included, are live again until their deadlines. It returns bbolt's
// errors.
func NewIdempotencyStore(s *Store, cfg IdempotencyConfig) (*IdempotencyStore, error) {
	if cfg.Clock == nil {
		cfg.Clock = clock.System{}
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketIdem, bucketExpiry, bucketTokens} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("kv: idempotency store: %w", err)
	}
	return &IdempotencyStore{db: s.db, clock: cfg.Clock}, nil
}

// Claim implements [idempotency.Store.Claim]. Its fencing tokens count
// up from 1 in a counter kept in the file and advanced in the claim's
// transaction, so a token is never granted twice, across restarts
// included. It returns an error for a non-positive lock, an empty key or
// one longer than bbolt allows, an error wrapping ErrMalformed if the
// counter is damaged or exhausted, ctx.Err() if ctx is done, and bbolt's
// errors.
func (s *IdempotencyStore) Claim(ctx context.Context, key string, fingerprint []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	if lock <= 0 {
		return 0, nil, fmt.Errorf("kv: Claim with non-positive lock %v", lock)
	}
	var (
		live  *idempotency.Record
		token uint64
	)
	err := s.batch(ctx, key, func(tx *bolt.Tx, now time.Time, cur *idempotency.Record) error {
		// Batch may run this again after a failed batch: set every result afresh.
		live, token = cur, 0
		if cur != nil {
			return nil
		}
		if err := s.sweep(tx, now); err != nil {
			return err
		}
		t, err := nextToken(tx)
		if err != nil {
			return err
		}
		token = t
		return s.put(tx, &idempotency.Record{Key: key, Fingerprint: fingerprint, LockedUntil: now.Add(lock), Token: token})
	})
	if err != nil {
		return 0, nil, err
	}
	return token, live, nil
}

// nextToken advances the file's token counter and returns its new value.
func nextToken(tx *bolt.Tx) (uint64, error) {
	b := tx.Bucket(bucketTokens)
	var last uint64
	if v := b.Get(keyLastToken); v != nil {
		if len(v) != 8 {
			return 0, fmt.Errorf("%w: idempotency token counter of %d bytes", ErrMalformed, len(v))
		}
		last = binary.BigEndian.Uint64(v)
	}
	if last == math.MaxUint64 {
		return 0, fmt.Errorf("%w: idempotency token counter exhausted", ErrMalformed)
	}
	return last + 1, b.Put(keyLastToken, binary.BigEndian.AppendUint64(nil, last+1))
}

// Complete implements [idempotency.Store.Complete]: the record is on disk
// when it returns. It returns an error wrapping idempotency.ErrNotClaimed
// when key has no live claim under token, an error for a non-positive
// retain, ctx.Err() if ctx is done, and bbolt's errors.
func (s *IdempotencyStore) Complete(ctx context.Context, key string, token uint64, response []byte, retain time.Duration) error {
	if retain <= 0 {
		return fmt.Errorf("kv: Complete with non-positive retain %v", retain)
	}
	return s.onClaim(ctx, key, token, func(tx *bolt.Tx, now time.Time, cur *idempotency.Record) error {
		if response == nil {
			response = []byte{}
		}
		done := &idempotency.Record{Key: key, Fingerprint: cur.Fingerprint, State: idempotency.Done,
			Response: response, ExpiresAt: now.Add(retain), Token: token}
		return errors.Join(s.remove(tx, []byte(key)), s.put(tx, done))
	})
}

// Release implements [idempotency.Store.Release]. It returns an error
// wrapping idempotency.ErrNotClaimed when key has no live claim under
// token, ctx.Err() if ctx is done, and bbolt's errors.
func (s *IdempotencyStore) Release(ctx context.Context, key string, token uint64) error {
	return s.onClaim(ctx, key, token, func(tx *bolt.Tx, _ time.Time, _ *idempotency.Record) error {
		return s.remove(tx, []byte(key))
	})
}

// Len returns the number of records held, counting expired ones not yet
// swept.
func (s *IdempotencyStore) Len() (int, error) {
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketIdem).Stats().KeyN
		return nil
	})
	return n, err
}

// onClaim runs f on key's live in-progress record claimed under token,
// or returns ErrNotClaimed.
func (s *IdempotencyStore) onClaim(ctx context.Context, key string, token uint64, f func(tx *bolt.Tx, now time.Time, cur *idempotency.Record) error) error {
	claimed := false
	err := s.batch(ctx, key, func(tx *bolt.Tx, now time.Time, cur *idempotency.Record) error {
		claimed = cur != nil && cur.State == idempotency.InProgress && cur.Token == token
		if !claimed {
			return nil
		}
		return f(tx, now, cur)
	})
	if err == nil && !claimed {
		err = fmt.Errorf("%w: %q under token %d", idempotency.ErrNotClaimed, key, token)
	}
	return err
}

// batch runs f in a write transaction shared with concurrent ones (one
// fsync for all), with key's live record (nil: none; an expired one is
// deleted first) and the time.
func (s *IdempotencyStore) batch(ctx context.Context, key string, f func(tx *bolt.Tx, now time.Time, cur *idempotency.Record) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if key == "" || len(key)+8 > bolt.MaxKeySize {
		return fmt.Errorf("kv: idempotency key of %d bytes, want 1 to %d", len(key), bolt.MaxKeySize-8)
	}
	now := s.clock.Now()
	return s.db.Batch(func(tx *bolt.Tx) error {
		var cur *idempotency.Record
		if v := tx.Bucket(bucketIdem).Get([]byte(key)); v != nil {
			rec, err := decodeRecord(key, v)
			if err != nil {
				return err
			}
			if now.Before(deadline(rec)) {
				cur = rec
			} else if err := s.remove(tx, []byte(key)); err != nil {
				return err
			}
		}
		return f(tx, now, cur)
	})
}

// sweep deletes up to idempotencySweep records whose deadline is at or
// before now, earliest first.
func (s *IdempotencyStore) sweep(tx *bolt.Tx, now time.Time) error {
	var expired [][]byte
	c := tx.Bucket(bucketExpiry).Cursor()
	for k, _ := c.First(); k != nil && len(expired) < idempotencySweep && !now.Before(expiryTime(k)); k, _ = c.Next() {
		expired = append(expired, bytes.Clone(k[8:]))
	}
	var err error
	for _, k := range expired {
		err = errors.Join(err, s.remove(tx, k))
	}
	return err
}

// put stores rec and its entry in the expiry index.
func (s *IdempotencyStore) put(tx *bolt.Tx, rec *idempotency.Record) error {
	enc, err := encodeRecord(rec)
	if err != nil {
		return err
	}
	return errors.Join(tx.Bucket(bucketIdem).Put([]byte(rec.Key), enc),
		tx.Bucket(bucketExpiry).Put(expiryKey(deadline(rec), []byte(rec.Key)), nil))
}

// remove deletes key's record, if any, and its entry in the expiry index.
func (s *IdempotencyStore) remove(tx *bolt.Tx, key []byte) error {
	recs := tx.Bucket(bucketIdem)
	v := recs.Get(key)
	if v == nil {
		return nil
	}
	rec, err := decodeRecord(string(key), v)
	if err != nil {
		return err
	}
	return errors.Join(tx.Bucket(bucketExpiry).Delete(expiryKey(deadline(rec), key)), recs.Delete(key))
}

// deadline is when rec stops being live.
func deadline(rec *idempotency.Record) time.Time {
	if rec.State == idempotency.InProgress {
		return rec.LockedUntil
	}
	return rec.ExpiresAt
}

// expiryKey is the index entry of a record of key with deadline t: Unix
// nanoseconds with the sign bit flipped, big-endian, so that byte order is
// time order.
func expiryKey(t time.Time, key []byte) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(t.UnixNano())^1<<63)
	return append(k, key...)
}

func expiryTime(k []byte) time.Time {
	return time.Unix(0, int64(binary.BigEndian.Uint64(k)^1<<63))
}

const recordFields = 5

// encodeRecord writes rec as the array [state uint, deadline int (Unix
// nanoseconds), fingerprint bin, response bin, token uint]; an
// in-progress record has an empty response. Its key is the record's bbolt
// key.
func encodeRecord(rec *idempotency.Record) ([]byte, error) {
	var b bytes.Buffer
	e := msgpack.NewEncoder(&b)
	err := firstErr(
		e.EncodeArrayLen(recordFields),
		e.EncodeUint(uint64(rec.State)),
		e.EncodeInt(deadline(rec).UnixNano()),
		e.EncodeBytes(rec.Fingerprint),
		e.EncodeBytes(rec.Response),
		e.EncodeUint(rec.Token),
	)
	return b.Bytes(), err
}

// decodeRecord decodes the record of key written by encodeRecord, copying
// its bytes. Errors wrap ErrMalformed: an unknown state, an in-progress
// record with a response, trailing bytes.
func decodeRecord(key string, b []byte) (*idempotency.Record, error) {
	rec := &idempotency.Record{Key: key}
	err := decodeMessage(b, "idempotency record", recordFields, func(d *msgpack.Decoder) error {
		state, err := d.DecodeUint64()
		if err != nil {
			return err
		}
		if state > uint64(idempotency.Done) {
			return fmt.Errorf("unknown state %d", state)
		}
		rec.State = idempotency.State(state)
		nanos, err := d.DecodeInt64()
		if err != nil {
			return err
		}
		if rec.Fingerprint, err = decodeBin(d); err != nil {
			return err
		}
		if rec.Response, err = decodeBin(d); err != nil {
			return err
		}
		if rec.Token, err = d.DecodeUint64(); err != nil {
			return err
		}
		if rec.State == idempotency.InProgress {
			if len(rec.Response) > 0 {
				return fmt.Errorf("in-progress record with a %d-byte response", len(rec.Response))
			}
			rec.LockedUntil = time.Unix(0, nanos)
		} else {
			if rec.Response == nil {
				rec.Response = []byte{}
			}
			rec.ExpiresAt = time.Unix(0, nanos)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}
