package kv

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// HeaderAuth carries the authenticator of a replica RPC between nodes that
// share a cluster key: "<unix seconds>.<hex HMAC-SHA256 of the seconds, a
// '.', and the request body>".
const HeaderAuth = "X-KV-Auth"

// MinClusterKeyLen is the shortest cluster key accepted, in bytes.
const MinClusterKeyLen = 16

// AuthWindow is how far the time in a replica RPC's authenticator may be
// from the receiver's clock: a recorded RPC replays until the receiver's
// clock is this far past the sender's when it was sent. Replica writes
// are merges, so a replay within it changes nothing while the key lives;
// a replayed forwarded write is a duplicate sibling; but a replayed write
// of a key reaped since brings its value back, as any write delayed past
// [MaintainConfig.ReapAfter] does: with a cluster key, keep ReapAfter
// well above AuthWindow plus the nodes' clock skew.
const AuthWindow = time.Minute

// ErrUnauthenticated is returned for a replica RPC without a valid
// authenticator under the cluster key, and by [HTTPTransport.Call] when
// the receiver refused one.
var ErrUnauthenticated = errors.New("kv: replica RPC not authenticated")

// checkClusterKey returns an error for a key too short to be a secret.
func checkClusterKey(key []byte) error {
	if len(key) < MinClusterKeyLen {
		return fmt.Errorf("kv: cluster key of %d bytes, want at least %d", len(key), MinClusterKeyLen)
	}
	return nil
}

// gossipKeyContext separates the gossip key from every other use of the
// cluster key.
const gossipKeyContext = "distkit kv gossip key v1"

// GossipKey returns the key that seals SWIM's packets between nodes
// sharing clusterKey: HMAC-SHA256(clusterKey, "distkit kv gossip key v1").
// It differs from the key of the replica RPCs' HMAC (the cluster key
// itself), and one does not reveal the other.
func GossipKey(clusterKey []byte) []byte {
	m := hmac.New(sha256.New, clusterKey)
	m.Write([]byte(gossipKeyContext))
	return m.Sum(nil)
}

// authenticator returns the HeaderAuth value of body under key at now.
func authenticator(key []byte, now time.Time, body []byte) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	return ts + "." + hex.EncodeToString(mac(key, ts, body))
}

func mac(key []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// authenticate checks the HeaderAuth value auth of body under key at now;
// errors wrap [ErrUnauthenticated].
func authenticate(key []byte, auth string, body []byte, now time.Time) error {
	a, err := parseAuth(auth, now)
	if err == nil {
		err = a.check(key, body)
	}
	return err
}

// parsedAuth is a HeaderAuth value split into its time and its MAC.
type parsedAuth struct {
	ts  string
	sum []byte
}

// parseAuth splits the HeaderAuth value auth and checks its time against
// now, which needs no body; errors wrap [ErrUnauthenticated].
func parseAuth(auth string, now time.Time) (parsedAuth, error) {
	ts, hexSum, ok := strings.Cut(auth, ".")
	if !ok {
		return parsedAuth{}, fmt.Errorf("%w: no authenticator", ErrUnauthenticated)
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return parsedAuth{}, fmt.Errorf("%w: bad time %q", ErrUnauthenticated, ts)
	}
	if d := now.Sub(time.Unix(sec, 0)).Abs(); d > AuthWindow {
		return parsedAuth{}, fmt.Errorf("%w: time %d is %v away from now", ErrUnauthenticated, sec, d.Round(time.Second))
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil || len(sum) != sha256.Size {
		return parsedAuth{}, fmt.Errorf("%w: bad MAC", ErrUnauthenticated)
	}
	return parsedAuth{ts: ts, sum: sum}, nil
}

// check compares a's MAC with that of body under key, in constant time.
func (a parsedAuth) check(key, body []byte) error {
	if !hmac.Equal(a.sum, mac(key, a.ts, body)) {
		return fmt.Errorf("%w: wrong authenticator", ErrUnauthenticated)
	}
	return nil
}
