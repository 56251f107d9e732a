// Package idempotency makes operations safe to retry: an idempotency-key
// store, an executor that runs a function at most once per key and
// replays its result, and net/http middleware implementing the IETF draft
// "The Idempotency-Key HTTP Header Field" (draft-ietf-httpapi-idempotency-
// key-header) with Stripe's semantics.
//
// A client sends a unique key with a non-idempotent request and sends the
// same key when it retries. The first request claims the key in a [Store]
// and executes; retries with the same payload get the recorded result;
// a retry that arrives while the first is still executing is told so
// (409), and a key reused for another payload is refused (422). Claims
// carry a lock that lapses, so a key whose executor crashed is not stuck
// "in progress" forever: after Lock another request takes it over.
//
// # Usage
//
//	store := &idempotency.MemStore{}            // or a Store on your database
//	guard := idempotency.New(store, idempotency.Config{})
//	out, err := guard.Do(ctx, key, fingerprint, func(ctx context.Context) ([]byte, error) {
//		return chargeCard(ctx, req)                 // runs at most once per key
//	})
//
//	mux.Handle("POST /payments", idempotency.Middleware(guard, idempotency.MiddlewareOptions{
//		Scope:       func(r *http.Request) string { return userID(r) },
//		ProblemType: "https://api.example.com/docs/idempotency",
//	})(paymentsHandler))
//
// # Guarantees
//
//   - At most once: for a key, fn starts only in the caller whose Claim
//     returned ownership, and a Store hands ownership to one caller at a
//     time. A claim lasts Lock; fn's context ends when it lapses.
//   - Fencing: every claim carries a token, unique in the store and
//     greater than every earlier claim's, and the store completes or
//     releases a claim only under its own token. A slow executor whose
//     lock lapsed and whose key was taken over can neither overwrite its
//     successor's record nor release its claim, whatever the clocks say
//     (Do returns ErrLockExpired). A fn that ignores its context past the
//     lock can still overlap a takeover in the effects it has elsewhere:
//     choose Lock above fn's longest run, and pass [FencingToken] to
//     systems that can refuse a stale writer.
//   - Replay: while the record lives (Retain after completion; 24 hours by
//     default), every call with the key and the same fingerprint returns
//     the recorded bytes, or the recorded error as a *StoredError, without
//     running fn. Record bytes are msgpack with a deterministic encoding;
//     their decoders reject malformed input with ErrCorrupt and allocate
//     in proportion to their input, never to a length it declares.
//   - Failures: errors from fn are recorded and replayed, unless wrapped
//     with [Retryable], returned after fn's context ended, or fn panicked;
//     then the claim is released and the next call runs fn. See [Guard].
//   - Mismatch: a call whose fingerprint differs from the live record's
//     gets ErrMismatch and never runs fn.
//   - Sharing: concurrent calls for a key through one Guard make one
//     execution and all get its result (golang.org/x/sync/singleflight).
//   - [MemStore] is linearizable per key, bounded by MaxKeys, and never
//     drops a live record to make room.
//   - Any Store that passes idempotencytest.TestStore gives the Guard the
//     guarantees above.
//
// # HTTP
//
// [Middleware] answers as the draft asks: 400 with an RFC 9457
// problem+json body for a missing or malformed key, 409 while a request
// with the key is in progress elsewhere, 422 for a key reused with another
// payload, and otherwise the handler's response, recorded and replayed
// with its status, header fields and body, and "Idempotent-Replayed: true"
// on replays. Bodies above MaxBody get 413.
//
// Responses with status 408, 429 or 5xx are not recorded by default: the
// claim is released and the client's retry runs the handler again. Stripe
// replays its 500s, but its handlers commit in atomic phases with recovery
// points, so a 500 there is a settled outcome. A generic handler's 5xx
// usually means a dependency was down or the server overloaded, and
// recording it would make the key useless for its whole retention,
// defeating the retry the key exists for. A handler that can fail after a
// side effect it cannot undo should answer with a status that is recorded,
// or the API should set MiddlewareOptions.Retryable to record everything.
//
// The draft asks servers to publish their key expiry policy: it is
// Config.Retain (24 hours by default, as at Stripe), counted from the
// completion of the first request. Document it at the ProblemType URI; the
// middleware also states it in its 422 responses.
package idempotency
