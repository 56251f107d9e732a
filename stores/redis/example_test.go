package redis_test

import (
	"net/http"

	goredis "github.com/redis/go-redis/v9"

	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/stores/redis"
)

// clientID names the authenticated client of a request, so that two
// clients' keys never meet.
func clientID(r *http.Request) string { return r.Header.Get("X-Client-Id") }

// The example needs a Redis server, so it is compiled but not run; the
// package's tests run the store on a throwaway server.
func ExampleNew() {
	rdb := goredis.NewClient(&goredis.Options{Addr: "localhost:6379"})
	store := redis.New(rdb, redis.Config{})
	g := idempotency.New(store, idempotency.Config{})
	orders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	http.Handle("POST /orders", idempotency.Middleware(g, idempotency.MiddlewareOptions{Scope: clientID})(orders))
}
