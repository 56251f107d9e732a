// Package frame is the record framing of the project's append-only logs
// (saga's file log, the kv store's write-ahead log): each record is a
// 12-byte header, the payload's length (uint32, little-endian), the
// CRC-32C of the payload and the CRC-32C of those first 8 bytes, followed
// by the payload. The header's own checksum makes a damaged length
// detectable before it is believed.
//
// # Usage
//
//	b, start := frame.Begin(b)
//	b = append(b, payload...)
//	frame.End(b, start) // b now ends with the frame
//	end, err := frame.Scan(file, max, func(off int, payload []byte) error { ... })
//
// # Guarantees
//
// A log that appends and syncs its frames in order can be torn by a
// crash only in the frames of its last write: [Scan] reads the intact
// frames from the start and tells a torn end (nothing intact follows the
// first bad frame) from damage (an intact frame follows it), which a log
// must refuse rather than drop the acknowledged records after it. The
// two are told apart exactly when every sync covers one frame, as in the
// kv store's log. A log that writes several frames before one sync (the
// saga file log's group commit) can be torn out of order by a power
// failure, which the disk may have persisted in any order before the
// sync: its last write's bad frame with an intact one after it then
// reads as damage, and the log refuses to open rather than guess. Intact
// and Scan never panic and allocate nothing, whatever the bytes.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderLen is the length of a frame's header.
const HeaderLen = 12

// ErrDamaged is wrapped by the error of [Scan] for a bad frame followed
// by an intact one.
var ErrDamaged = errors.New("frame: damaged frame before an intact one")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Begin appends the room for a frame's header to b and returns b and the
// frame's start; append the payload to b, then call [End].
func Begin(b []byte) ([]byte, int) {
	return append(b, make([]byte, HeaderLen)...), len(b)
}

// End fills in the header of the frame that starts at start in b, whose
// payload is the rest of b. The payload must be shorter than 4 GiB.
func End(b []byte, start int) {
	h, payload := b[start:start+HeaderLen], b[start+HeaderLen:]
	binary.LittleEndian.PutUint32(h[0:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[8:], crc32.Checksum(h[:8], castagnoli))
}

// Intact reports whether b starts with a whole frame whose checksums
// match and whose payload is at most max bytes, and the length of its
// payload. It never panics and allocates nothing.
func Intact(b []byte, max int) (int, bool) {
	if len(b) < HeaderLen || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:12]) {
		return 0, false
	}
	n := binary.LittleEndian.Uint32(b[:4])
	if uint64(n) > uint64(max) || uint64(len(b)-HeaderLen) < uint64(n) ||
		crc32.Checksum(b[HeaderLen:HeaderLen+n], castagnoli) != binary.LittleEndian.Uint32(b[4:8]) {
		return 0, false
	}
	return int(n), true
}

// Scan calls f with the offset and the payload of each intact frame of b
// from its start, each after the one before, and returns the offset where
// they end: len(b), or the start of the first frame that is not intact.
// Bytes from there on hold no intact frame (a torn end, or padding), or
// Scan returns an error wrapping [ErrDamaged] naming where the intact
// frame starts. An error of f ends Scan and is returned.
func Scan(b []byte, max int, f func(off int, payload []byte) error) (end int, err error) {
	for end < len(b) {
		n, ok := Intact(b[end:], max)
		if !ok {
			for i := end + 1; i < len(b); i++ {
				if _, ok := Intact(b[i:], max); ok {
					return end, fmt.Errorf("%w: a bad frame at offset %d, an intact one at %d", ErrDamaged, end, i)
				}
			}
			return end, nil
		}
		if err := f(end, b[end+HeaderLen:end+HeaderLen+n]); err != nil {
			return end, err
		}
		end += HeaderLen + n
	}
	return end, nil
}
