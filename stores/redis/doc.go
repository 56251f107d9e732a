// Package redis keeps distkit's idempotency records in Redis, through
// go-redis v9: an [idempotency.Store] with fencing tokens, each method a
// Lua script that runs atomically on the server and reads the server's
// clock, each record a hash whose TTL ends at its deadline.
//
// # Usage
//
//	rdb := goredis.NewClient(&goredis.Options{Addr: "localhost:6379"})
//	store := redis.New(rdb, redis.Config{})
//	g := idempotency.New(store, idempotency.Config{})
//	mux.Handle("POST /orders", idempotency.Middleware(g, idempotency.MiddlewareOptions{Scope: clientID})(orders))
//
// # Guarantees
//
//   - [IdempotencyStore] passes idempotency/idempotencytest: every method
//     is one script, atomic on the server; at most one caller owns a key
//     at a time; tokens come from INCR on one counter and grow; Complete
//     and Release act only under the live claim's token.
//   - Deadlines and TTLs come from the server's clock (TIME), so clients
//     with skewed clocks agree on them; a key disappears by itself once
//     its deadline has passed, and is treated as absent from that instant
//     even before Redis evicts it.
//   - A malformed record (a key written by something else) is an error,
//     never a panic or an invented record.
//
// Redis is only as durable as its configuration: use AOF with
// appendfsync always if a server crash must not forget a completed key.
package redis
