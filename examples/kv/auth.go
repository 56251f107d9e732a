package kv

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// HeaderAuth carries the authenticator of a replica RPC between nodes that
// share a cluster key: "<unix seconds>.<body length>.<hex SHA-256 of the
// body>.<hex HMAC-SHA256 under the key of the three fields before it,
// dot-separated>". The MAC covers the body through its digest, so the
// receiver checks it from the header alone, before it reads a byte of
// the body, and then reads exactly the declared length and compares the
// digest: a sender without the key makes a node read nothing, and one
// replaying a recorded header within [AuthWindow] makes it read at most
// the length a node declared.
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

// MaxClusterKeys bounds the cluster keys a node holds at once: every
// replica RPC's MAC and every gossip packet may be tried under each.
const MaxClusterKeys = 8

// ClusterKeys is the set of cluster keys a node holds, for a rolling
// rotation: replica RPCs are signed with the primary key and accepted
// under any key of the set, and [Server.SetClusterKeys] changes the set
// while the node runs. A rotation that never partitions the cluster:
// add the new key on every node, then make it primary on every node,
// then remove the old one. It is safe for concurrent use; create it with
// [NewClusterKeys].
type ClusterKeys struct {
	keys atomic.Pointer[[]*clusterKey] // the primary first
}

// clusterKey is a cluster key with a pool of HMAC-SHA256 states keyed by
// it: hmac.New derives the key's pads and allocates five objects at
// every call, while a pooled state's Reset returns to the pads. The
// states go with the key when a rotation drops it.
type clusterKey struct {
	key    []byte
	states sync.Pool // of hash.Hash
}

func newClusterKey(key []byte) *clusterKey {
	k := &clusterKey{key: key}
	k.states.New = func() any { return hmac.New(sha256.New, key) }
	return k
}

// mac returns the HMAC-SHA256 of signed under k.
func (k *clusterKey) mac(signed string) []byte {
	h := k.states.Get().(hash.Hash)
	h.Reset()
	_, _ = io.WriteString(h, signed)
	sum := h.Sum(nil)
	k.states.Put(h)
	return sum
}

// NewClusterKeys returns the set of primary and others. It returns the
// errors of [ClusterKeys.Set].
func NewClusterKeys(primary []byte, others ...[]byte) (*ClusterKeys, error) {
	k := &ClusterKeys{}
	if err := k.Set(primary, others...); err != nil {
		return nil, err
	}
	return k, nil
}

// Set replaces the set with primary and others, or returns an error and
// changes nothing: for a key shorter than [MinClusterKeyLen], a key
// given twice, or more than [MaxClusterKeys] keys. It keeps copies.
func (k *ClusterKeys) Set(primary []byte, others ...[]byte) error {
	keys := make([]*clusterKey, 0, 1+len(others))
	for i, key := range append([][]byte{primary}, others...) {
		if err := checkClusterKey(key); err != nil {
			return fmt.Errorf("key %d: %w", i+1, err)
		}
		if j := slices.IndexFunc(keys, func(o *clusterKey) bool { return bytes.Equal(o.key, key) }); j >= 0 {
			return fmt.Errorf("kv: cluster key %d repeats key %d", i+1, j+1)
		}
		keys = append(keys, newClusterKey(bytes.Clone(key)))
	}
	if len(keys) > MaxClusterKeys {
		return fmt.Errorf("kv: %d cluster keys, want at most %d", len(keys), MaxClusterKeys)
	}
	k.keys.Store(&keys)
	return nil
}

// Primary returns the key that signs, nil for a nil set. The caller must
// not change it.
func (k *ClusterKeys) Primary() []byte {
	if k == nil {
		return nil
	}
	return k.primary().key
}

// primary returns the key that signs; k must not be nil.
func (k *ClusterKeys) primary() *clusterKey { return (*k.keys.Load())[0] }

// all returns the keys, the primary first, nil for a nil set. The caller
// must not change them.
func (k *ClusterKeys) all() [][]byte {
	var out [][]byte
	for _, c := range k.macs() {
		out = append(out, c.key)
	}
	return out
}

// macs returns the keys with their HMAC states, the primary first, nil
// for a nil set.
func (k *ClusterKeys) macs() []*clusterKey {
	if k == nil {
		return nil
	}
	return *k.keys.Load()
}

// fixedKeys is the set of the one key, unchecked (nil for nil): the
// keys of a transport or API configured with a single key.
func fixedKeys(key []byte) *ClusterKeys {
	if key == nil {
		return nil
	}
	k := &ClusterKeys{}
	keys := []*clusterKey{newClusterKey(key)}
	k.keys.Store(&keys)
	return k
}

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

// authenticator returns the HeaderAuth value of body under k at now.
func (k *clusterKey) authenticator(now time.Time, body []byte) string {
	digest := sha256.Sum256(body)
	signed := strconv.FormatInt(now.Unix(), 10) + "." + strconv.Itoa(len(body)) + "." + hex.EncodeToString(digest[:])
	return signed + "." + hex.EncodeToString(k.mac(signed))
}

// parsedAuth is a HeaderAuth value whose time and MAC were checked: the
// length and digest of the body it vouches for.
type parsedAuth struct {
	n      int64
	digest [sha256.Size]byte
	key    *clusterKey // the key whose MAC it carries
}

// parseAuth checks the HeaderAuth value auth under keys at now, which
// needs no body: its time is within AuthWindow of now and its MAC is
// right under one of the keys. It returns the body length and digest the
// sender declared; errors wrap [ErrUnauthenticated].
func parseAuth(keys []*clusterKey, auth string, now time.Time) (parsedAuth, error) {
	i := strings.LastIndexByte(auth, '.')
	if i < 0 {
		return parsedAuth{}, fmt.Errorf("%w: no authenticator", ErrUnauthenticated)
	}
	signed, hexSum := auth[:i], auth[i+1:]
	fields := strings.Split(signed, ".")
	if len(fields) != 3 {
		return parsedAuth{}, fmt.Errorf("%w: %d fields before the MAC, want 3", ErrUnauthenticated, len(fields))
	}
	sec, err := strconv.ParseInt(fields[0], 10, 64)
	if err != nil {
		return parsedAuth{}, fmt.Errorf("%w: bad time %q", ErrUnauthenticated, fields[0])
	}
	if d := now.Sub(time.Unix(sec, 0)).Abs(); d > AuthWindow {
		return parsedAuth{}, fmt.Errorf("%w: time %d is %v away from now", ErrUnauthenticated, sec, d.Round(time.Second))
	}
	sum, err := hex.DecodeString(hexSum)
	if err == nil && len(sum) == sha256.Size {
		i = slices.IndexFunc(keys, func(k *clusterKey) bool { return hmac.Equal(sum, k.mac(signed)) })
	}
	if err != nil || len(sum) != sha256.Size || i < 0 {
		return parsedAuth{}, fmt.Errorf("%w: wrong authenticator", ErrUnauthenticated)
	}
	// Past the MAC, the fields are a node's own.
	a := parsedAuth{key: keys[i]}
	if a.n, err = strconv.ParseInt(fields[1], 10, 64); err != nil || a.n < 0 {
		return parsedAuth{}, fmt.Errorf("%w: bad length %q", ErrUnauthenticated, fields[1])
	}
	d, err := hex.DecodeString(fields[2])
	if err != nil || len(d) != sha256.Size {
		return parsedAuth{}, fmt.Errorf("%w: bad digest", ErrUnauthenticated)
	}
	a.digest = [sha256.Size]byte(d)
	return a, nil
}

// check reports whether body is the one a vouches for.
func (a parsedAuth) check(body []byte) error {
	if int64(len(body)) != a.n || sha256.Sum256(body) != a.digest {
		return fmt.Errorf("%w: the body is not the one authenticated", ErrUnauthenticated)
	}
	return nil
}
