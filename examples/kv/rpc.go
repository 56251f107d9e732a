package kv

import (
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/distkit/distkit/vclock"
)

// op is the kind of a replica RPC.
type op uint8

const (
	opRead       op = iota + 1 // read key's object (data and hints)
	opWrite                    // merge Object into key (as a hint when Hint is set)
	opCoordinate               // coordinate a client's write on this replica
	opTree                     // answer a merkle request from Group's tree
	opScan                     // list Group's entries in Segments
	opReapable                 // may the dead Object of Key be reaped here?
	opReap                     // reap the dead Object of Key
	opMerge                    // merge Entries, all of Group, into the store
	opMax
)

func (o op) String() string {
	switch o {
	case opRead:
		return "read"
	case opWrite:
		return "write"
	case opCoordinate:
		return "coordinate"
	case opTree:
		return "tree"
	case opScan:
		return "scan"
	case opReapable:
		return "reapable"
	case opReap:
		return "reap"
	case opMerge:
		return "merge"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// request is one replica RPC, encoded as a msgpack array of its fields in
// order. Fields an op does not use are zero.
type request struct {
	Op       op
	Key      []byte
	Object   Object        // opWrite, opReapable, opReap
	Hint     string        // opWrite: the home node the receiver holds the write for
	Context  vclock.VClock // opCoordinate: the client's context
	Value    Version       // opCoordinate
	W        int           // opCoordinate: the acknowledgements to wait for
	Group    string        // opTree, opScan
	Tree     []byte        // opTree: an encoded merkle.Request
	Segments []int         // opScan: increasing
	After    []byte        // opScan: the key the page starts after; empty: the first
	Limit    int           // opScan: the bytes of keys and objects after which the page ends
	Entries  []Entry       // opMerge
}

// response answers a request.
type response struct {
	Found   bool          // opRead: the replica holds the key; opReapable, opReap: yes
	Object  Object        // opRead: the key's object
	Context vclock.VClock // opCoordinate: the key's context after the write
	Dot     vclock.Dot    // opCoordinate: the dot of the client's write
	Tree    []byte        // opTree: an encoded merkle.Response
	Entries []Entry       // opScan
	Leaving bool          // any op: the receiver is leaving and did not apply the request
	More    bool          // opScan: the page ended at its limit; entries may follow its last
}

const (
	requestFields  = 13
	responseFields = 8
)

// opOf returns the op of an encoded request, read from its first bytes
// as encode writes them, or 0 for bytes that do not begin as a request.
func opOf(b []byte) op {
	if len(b) >= 3 && b[0] == msgpcode.FixedArrayLow|requestFields && b[1] == msgpcode.Uint8 {
		return op(b[2])
	}
	return 0
}

func (r *request) marshal() ([]byte, error) {
	return encode(r.encode)
}

func (r *request) encode(e *msgpack.Encoder) error {
	err := firstErr(
		e.EncodeArrayLen(requestFields),
		e.EncodeUint8(uint8(r.Op)),
		e.EncodeBytes(r.Key),
		r.Object.EncodeMsgpack(e),
		e.EncodeString(r.Hint),
		r.Context.EncodeMsgpack(e),
		r.Value.EncodeMsgpack(e),
		e.EncodeInt(int64(r.W)),
		e.EncodeString(r.Group),
		e.EncodeBytes(r.Tree),
		e.EncodeArrayLen(len(r.Segments)),
	)
	for _, s := range r.Segments {
		err = firstErr(err, e.EncodeInt(int64(s)))
	}
	err = firstErr(err, e.EncodeBytes(r.After), e.EncodeInt(int64(r.Limit)), encodeEntries(e, r.Entries))
	return err
}

func (r *request) unmarshal(b []byte) error {
	return decodeMessage(b, "request", requestFields, func(d *msgpack.Decoder) error {
		var q request
		o, err := d.DecodeUint8()
		if err != nil {
			return err
		}
		if q.Op = op(o); q.Op == 0 || q.Op >= opMax {
			return fmt.Errorf("unknown op %d", o)
		}
		if q.Key, err = decodeBin(d); err != nil {
			return err
		}
		if err := d.Decode(&q.Object); err != nil {
			return err
		}
		if q.Hint, err = d.DecodeString(); err != nil {
			return err
		}
		if err := d.Decode(&q.Context); err != nil {
			return err
		}
		if err := d.Decode(&q.Value); err != nil {
			return err
		}
		if q.W, err = d.DecodeInt(); err != nil {
			return err
		}
		if q.Group, err = d.DecodeString(); err != nil {
			return err
		}
		if q.Tree, err = decodeBin(d); err != nil {
			return err
		}
		n, err := decodeLen(d, 1)
		if err != nil {
			return err
		}
		for range n {
			s, err := d.DecodeInt()
			if err != nil {
				return err
			}
			q.Segments = append(q.Segments, s)
		}
		if q.After, err = decodeBin(d); err != nil {
			return err
		}
		if q.Limit, err = d.DecodeInt(); err != nil {
			return err
		}
		if q.Entries, err = decodeEntries(d); err != nil {
			return err
		}
		*r = q
		return nil
	})
}

func (r *response) marshal() ([]byte, error) {
	return encode(r.encode)
}

func (r *response) encode(e *msgpack.Encoder) error {
	err := firstErr(
		e.EncodeArrayLen(responseFields),
		e.EncodeBool(r.Found),
		r.Object.EncodeMsgpack(e),
		r.Context.EncodeMsgpack(e),
		r.Dot.EncodeMsgpack(e),
		e.EncodeBytes(r.Tree),
		encodeEntries(e, r.Entries),
		e.EncodeBool(r.Leaving),
		e.EncodeBool(r.More),
	)
	return err
}

func (r *response) unmarshal(b []byte) error {
	return decodeMessage(b, "response", responseFields, func(d *msgpack.Decoder) error {
		var p response
		var err error
		if p.Found, err = d.DecodeBool(); err != nil {
			return err
		}
		if err := d.Decode(&p.Object); err != nil {
			return err
		}
		if err := d.Decode(&p.Context); err != nil {
			return err
		}
		if err := d.Decode(&p.Dot); err != nil {
			return err
		}
		if p.Tree, err = decodeBin(d); err != nil {
			return err
		}
		if p.Entries, err = decodeEntries(d); err != nil {
			return err
		}
		if p.Leaving, err = d.DecodeBool(); err != nil {
			return err
		}
		if p.More, err = d.DecodeBool(); err != nil {
			return err
		}
		*r = p
		return nil
	})
}

// encodeEntries encodes entries as an array of [key, object] pairs.
func encodeEntries(e *msgpack.Encoder, entries []Entry) error {
	err := e.EncodeArrayLen(len(entries))
	for _, en := range entries {
		err = firstErr(err, e.EncodeArrayLen(2), e.EncodeBytes(en.Key), en.Object.EncodeMsgpack(e))
	}
	return err
}

// decodeEntries decodes what encodeEntries encodes.
func decodeEntries(d *msgpack.Decoder) ([]Entry, error) {
	n, err := decodeLen(d, 3)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for range n {
		if k, err := d.DecodeArrayLen(); err != nil || k != 2 {
			return nil, fmt.Errorf("entry of %d fields (%v), want 2", k, err)
		}
		var en Entry
		if en.Key, err = decodeBin(d); err != nil {
			return nil, err
		}
		if err := d.Decode(&en.Object); err != nil {
			return nil, err
		}
		out = append(out, en)
	}
	return out, nil
}

// decodeMessage decodes the array of fields fields in b with body,
// rejecting trailing bytes; errors wrap ErrMalformed.
func decodeMessage(b []byte, what string, fields int, body func(d *msgpack.Decoder) error) error {
	rest, err := decode(b, func(d *msgpack.Decoder) error {
		n, err := d.DecodeArrayLen()
		if err == nil && n != fields {
			err = fmt.Errorf("%d fields, want %d", n, fields)
		}
		if err == nil {
			err = body(d)
		}
		return err
	})
	if err == nil && rest > 0 {
		err = fmt.Errorf("%d trailing bytes", rest)
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

// decodeLen reads an array length, refusing one whose elements of at
// least minSize bytes could not fit in the rest of an in-memory input.
func decodeLen(d *msgpack.Decoder, minSize int) (int, error) {
	n, err := d.DecodeArrayLen()
	if err != nil || n <= 0 {
		return 0, err
	}
	return n, fits(d, n, minSize)
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
