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
// "in progress" forever: after Lock another request takes it over. Each
// claim has a fencing token, so the executor that lost its lock cannot
// touch its successor's claim or record.
//
// # Usage
//
//	store := &idempotency.MemStore{}            // or a Store on your database
//	guard := idempotency.New(store, idempotency.Config{})
//	out, err := guard.Do(ctx, key, fingerprint, func(ctx context.Context) ([]byte, error) {
//		token, _ := idempotency.FencingToken(ctx)   // for writes that must refuse a stale owner
//		return chargeCard(ctx, req, token)          // runs at most once per key
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
//     running fn. A recorded error keeps its message and code (its [Coder]
//     code, or the code it was registered under in Config.Errors), so that
//     errors.Is holds on a replay for the errors it matched. Record bytes
//     are msgpack with a deterministic encoding; their decoders reject
//     malformed input with ErrCorrupt and allocate in proportion to their
//     input, never to a length it declares. A record the store returns for
//     another key, or with a fingerprint of another length, is ErrCorrupt
//     too.
//   - Failures: errors from fn are recorded and replayed, unless wrapped
//     with [Retryable], returned after fn's context ended, or fn panicked;
//     then the claim is released and the next call runs fn. See [Guard].
//   - Mismatch: a call whose fingerprint differs from the live record's
//     gets ErrMismatch and never runs fn.
//   - Concurrency: a call that finds its key in progress returns
//     ErrInProgress, wherever the first call runs, so that clients behind
//     a load balancer see one behaviour. With Config.Wait, calls through
//     one Guard with the same key and fingerprint wait for the first
//     instead and share its result, each until its own ctx ends.
//   - Keys: empty keys (ErrMissingKey), keys above MaxKeyBytes and keys
//     with control characters (ErrBadKey) are refused before the store
//     sees them.
//   - [MemStore] is linearizable per key, bounded by MaxKeys, and never
//     drops a live record to make room.
//   - Any Store that passes idempotencytest.TestStore gives the Guard the
//     guarantees above.
//
// # HTTP
//
// [Middleware] answers as the draft asks: 400 with an RFC 9457
// problem+json body for a missing or malformed key, 409 with Retry-After
// while a request with the key is in progress (in this process or
// another), 422 for a key reused with another payload, and otherwise the
// handler's response, recorded and replayed with its status, header
// fields and body, and "Idempotent-Replayed: true" on replays. Bodies
// above MaxBody get 413.
//
// Keys are scoped, as Stripe scopes them by account: the middleware
// refuses to start without MiddlewareOptions.Scope (the authenticated
// principal, say) unless GlobalScope opts into one namespace for all
// clients. Header fields that belong to one user's session (Set-Cookie,
// Authentication-Info and the like) reach the first response only and
// are never recorded, unless ReplayHeaders lists them.
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
