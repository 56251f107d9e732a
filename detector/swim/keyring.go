package swim

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// KeySize is the size of a keyring key in bytes: AES-256.
const KeySize = 32

// Sealed packets are [sealVersion, nonce (12 bytes), ciphertext and GCM
// tag (16 bytes)], with the cluster label as additional authenticated
// data. The plaintext starts with the time it was sealed (see stamp).
const (
	sealVersion  = 2
	nonceSize    = 12
	tagSize      = 16
	sealOverhead = 1 + nonceSize + tagSize + stampLen
)

// ErrKey is returned (wrapped) by the [Keyring] methods for a key of the
// wrong size, a key that is not installed, or the removal of the primary
// key.
var ErrKey = errors.New("swim: keyring")

// ErrSealed is returned (wrapped) by [Core.Receive] for a packet that no
// installed key opens (a wrong key, another cluster label, a truncated or
// altered packet, or an unsealed one); it is dropped and counted in
// [Stats].Unopened.
var ErrSealed = errors.New("swim: packet does not open")

// Keyring holds the keys that seal and open packets, as memberlist's
// keyring: every packet is sealed with AES-256-GCM under the primary key,
// and a received packet is opened with any installed key. Keys rotate
// without a partition: install the new key on every node (AddKey), then
// make it primary everywhere (UseKey), then remove the old one
// (RemoveKey).
//
// Nonces are 96 random bits from crypto/rand, so a key must seal fewer
// than 2^32 packets (NIST SP 800-38D's bound for random nonces): at 10
// packets a second, 13 years; rotate keys well before. It is safe for
// concurrent use. Create it with [NewKeyring]; the zero value is not
// usable.
type Keyring struct {
	mu   sync.RWMutex
	keys []ringKey // the primary first
}

type ringKey struct {
	key  []byte
	aead cipher.AEAD
}

// NewKeyring returns a keyring whose primary key is primary, with the
// other keys installed too (they open packets but do not seal them).
//
// It returns an error wrapping [ErrKey] for a key that is not KeySize
// bytes.
func NewKeyring(primary []byte, others ...[]byte) (*Keyring, error) {
	k := &Keyring{}
	for _, key := range append([][]byte{primary}, others...) {
		if err := k.AddKey(key); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// AddKey installs key, to open packets sealed with it. Adding an
// installed key does nothing. It returns an error wrapping [ErrKey] for a
// key that is not KeySize bytes. The keyring keeps a copy of key.
func (k *Keyring) AddKey(key []byte) error {
	if len(key) != KeySize {
		return fmt.Errorf("%w: key of %d bytes, want %d", ErrKey, len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrKey, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.index(key) < 0 {
		k.keys = append(k.keys, ringKey{key: bytes.Clone(key), aead: aead})
	}
	return nil
}

// UseKey makes the installed key the primary one, which seals from now
// on. It returns an error wrapping [ErrKey] if key is not installed.
func (k *Keyring) UseKey(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	i := k.index(key)
	if i < 0 {
		return fmt.Errorf("%w: key not installed", ErrKey)
	}
	k.keys[0], k.keys[i] = k.keys[i], k.keys[0]
	return nil
}

// RemoveKey uninstalls key: packets sealed with it no longer open. It
// returns an error wrapping [ErrKey] for the primary key. Removing a key
// that is not installed does nothing.
func (k *Keyring) RemoveKey(key []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch i := k.index(key); {
	case i == 0:
		return fmt.Errorf("%w: the primary key cannot be removed", ErrKey)
	case i > 0:
		k.keys = slices.Delete(k.keys, i, i+1)
	}
	return nil
}

// Keys returns copies of the installed keys, the primary first.
func (k *Keyring) Keys() [][]byte {
	k.mu.RLock()
	defer k.mu.RUnlock()
	keys := make([][]byte, len(k.keys))
	for i, rk := range k.keys {
		keys[i] = bytes.Clone(rk.key)
	}
	return keys
}

// index returns the position of key, or -1; the caller holds k.mu.
func (k *Keyring) index(key []byte) int {
	return slices.IndexFunc(k.keys, func(rk ringKey) bool { return bytes.Equal(rk.key, key) })
}

// seal appends the sealed form of plain, authenticated with label, to
// dst under the primary key.
func (k *Keyring) seal(dst, plain, label []byte) []byte {
	k.mu.RLock()
	aead := k.keys[0].aead
	k.mu.RUnlock()
	n := len(dst)
	dst = append(slices.Grow(dst, sealOverhead+len(plain)), sealVersion)
	dst = append(dst, make([]byte, nonceSize)...)
	nonce := dst[n+1:]
	rand.Read(nonce) // never fails (crypto/rand)
	return aead.Seal(dst, nonce, plain, label)
}

// open returns the plaintext of sealed, appended to dst, opened with the
// first installed key that authenticates it with label, or an error
// wrapping ErrSealed.
func (k *Keyring) open(dst, sealed, label []byte) ([]byte, error) {
	if len(sealed) < sealOverhead || sealed[0] != sealVersion {
		return nil, fmt.Errorf("%w: not a sealed packet (%d bytes)", ErrSealed, len(sealed))
	}
	nonce, box := sealed[1:1+nonceSize], sealed[1+nonceSize:]
	k.mu.RLock()
	defer k.mu.RUnlock()
	for _, rk := range k.keys {
		if plain, err := rk.aead.Open(dst, nonce, box, label); err == nil {
			return plain, nil
		}
	}
	return nil, fmt.Errorf("%w: no installed key opens it", ErrSealed)
}
