package kv

import (
	"bytes"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoders and decoders are pooled with their buffers: encoding a
// message or an object then allocates only its result, and decoding
// allocates only what it decodes.

// pooledEncoder is a msgpack encoder writing into its own buffer.
type pooledEncoder struct {
	buf bytes.Buffer
	e   *msgpack.Encoder
}

// maxPooledBuffer is the largest buffer an encoder returns to the pool
// with: one that grew past it for a large message is dropped, so the pool
// holds no more than this per encoder.
const maxPooledBuffer = 64 << 10

var encoders = sync.Pool{New: func() any {
	p := &pooledEncoder{}
	p.e = msgpack.NewEncoder(&p.buf)
	return p
}}

// encode returns the bytes body writes with a pooled encoder, in a slice
// of their own.
func encode(body func(e *msgpack.Encoder) error) ([]byte, error) {
	p := encoders.Get().(*pooledEncoder)
	p.buf.Reset()
	p.e.Reset(&p.buf)
	err := body(p.e)
	var out []byte
	if err == nil {
		out = bytes.Clone(p.buf.Bytes())
	}
	putEncoder(p)
	return out, err
}

// putEncoder returns p to the pool, unless its buffer grew too large.
func putEncoder(p *pooledEncoder) {
	if p.buf.Cap() <= maxPooledBuffer {
		encoders.Put(p)
	}
}

// pooledDecoder is a msgpack decoder reading from its own bytes.Reader.
type pooledDecoder struct {
	r bytes.Reader
	d *msgpack.Decoder
}

var decoders = sync.Pool{New: func() any {
	p := &pooledDecoder{}
	p.d = msgpack.NewDecoder(&p.r)
	return p
}}

// decode runs body with a pooled decoder over b, and rest, the bytes
// body left unread.
func decode(b []byte, body func(d *msgpack.Decoder) error) (rest int, err error) {
	p := decoders.Get().(*pooledDecoder)
	p.r.Reset(b)
	p.d.Reset(&p.r)
	err = body(p.d)
	rest = p.r.Len()
	p.r.Reset(nil) // hold no reference to b
	decoders.Put(p)
	return rest, err
}
