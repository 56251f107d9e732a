package merkle

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/cespare/xxhash/v2"
)

// ErrChecksum is wrapped, with [ErrMalformed], by the error of
// [Tree.UnmarshalBinary] for bytes whose checksum does not match.
var ErrChecksum = errors.New("merkle: checksum mismatch")

// binaryMagic opens every encoded tree; the byte after it is the version.
const binaryMagic = "DKMT\x01"

// binaryHeader is the length of the magic, version and geometry.
const binaryHeader = len(binaryMagic) + 2

var (
	_ encoding.BinaryMarshaler   = (*Tree)(nil)
	_ encoding.BinaryUnmarshaler = (*Tree)(nil)
)

// MarshalBinary encodes t for storage, so that a restarted process can
// load its tree instead of rebuilding it from the store: "DKMT", version
// 1, log2(Branches) and log2(SegmentsPerBranch) as one byte each, every
// segment hash as 8 bytes little-endian, and the xxHash64 of all of that
// as 8 bytes little-endian. Branch hashes and the root are not stored:
// they are recomputed on loading. The encoding takes 8 bytes per segment
// plus 23; it never fails.
func (t *Tree) MarshalBinary() ([]byte, error) {
	t = t.read()
	out := make([]byte, 0, binaryHeader+8*len(t.segments)+8)
	out = append(out, binaryMagic...)
	out = append(out, byte(bits.TrailingZeros(uint(t.cfg.Branches))), byte(t.branchShift))
	for _, h := range t.segments {
		out = binary.LittleEndian.AppendUint64(out, h)
	}
	return binary.LittleEndian.AppendUint64(out, xxhash.Sum64(out)), nil
}

// UnmarshalBinary replaces t with the tree data encodes, as written by
// [Tree.MarshalBinary]. It returns an error wrapping [ErrMalformed] (and
// [ErrChecksum] for a checksum that does not match) and leaves t unchanged
// when data is not such an encoding: another magic or version, a geometry
// that [Config.Validate] refuses, a length other than the geometry's, or
// corrupt bytes. It never panics and allocates only after the length and
// checksum are checked, in proportion to len(data).
func (t *Tree) UnmarshalBinary(data []byte) error {
	if len(data) < binaryHeader+8 || string(data[:len(binaryMagic)]) != binaryMagic {
		return fmt.Errorf("%w: not an encoded tree", ErrMalformed)
	}
	branchBits, segBits := uint(data[len(binaryMagic)]), uint(data[len(binaryMagic)+1])
	if branchBits > 16 || segBits > 14 {
		return fmt.Errorf("%w: geometry 2^%d × 2^%d", ErrMalformed, branchBits, segBits)
	}
	cfg := Config{Branches: 1 << branchBits, SegmentsPerBranch: 1 << segBits}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	n := cfg.Branches * cfg.SegmentsPerBranch
	if len(data) != binaryHeader+8*n+8 {
		return fmt.Errorf("%w: %d bytes for %d segments", ErrMalformed, len(data), n)
	}
	body := data[:len(data)-8]
	if xxhash.Sum64(body) != binary.LittleEndian.Uint64(data[len(body):]) {
		return fmt.Errorf("%w: %w", ErrMalformed, ErrChecksum)
	}
	u := New(cfg)
	for s := range u.segments {
		u.flip(s, binary.LittleEndian.Uint64(body[binaryHeader+8*s:]))
	}
	*t = *u
	return nil
}
