// Package wiretest helps tests of msgpack decoders check that hostile input
// fails without being allocated for, on both of msgpack's read paths.
//
// # Usage
//
//	for path, dec := range wiretest.Decoders(hostile) {
//		n := wiretest.Allocated(func() { err = dec.Decode(&v) })
//		require.Less(t, n, uint64(1<<20), path)
//	}
//
// # Guarantees
//
// Decoders returns fresh decoders over the same bytes: "memory" reads an
// io.Seeker (msgpack's in-memory path), "stream" reads one byte at a time
// from a reader of unknown length. Allocated counts every byte allocated
// while fn runs, by any goroutine, so callers run it with nothing else
// allocating.
package wiretest

import (
	"bytes"
	"runtime"
	"testing/iotest"

	"github.com/vmihailenco/msgpack/v5"
)

// Decoders returns a decoder over b reading from memory and one reading a
// stream a byte at a time, keyed "memory" and "stream".
func Decoders(b []byte) map[string]*msgpack.Decoder {
	return map[string]*msgpack.Decoder{
		"memory": msgpack.NewDecoder(bytes.NewReader(b)),
		"stream": msgpack.NewDecoder(iotest.OneByteReader(bytes.NewReader(b))),
	}
}

// Allocated returns the bytes allocated while fn ran.
func Allocated(fn func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fn()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}
