// Package editingtrace reads the real-world editing traces kept in
// crdt/testdata/editing-traces (see the README there for their format,
// source and licence), for the tests and benchmarks that replay them.
//
// A trace is a JSON object whose "txns" hold lists of patches
// [position, deleted, inserted] over a text counted in Unicode code points,
// and whose "endContent" is the text after every patch.
package editingtrace

import (
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"os"
)

// Patch is one edit: at Pos, delete Del runes, then insert Ins.
type Patch struct {
	Pos, Del int
	Ins      string
}

// Load reads the first limit patches of the gzipped trace at path (all of
// them when limit is 0) and the trace's endContent. It streams the JSON, so
// a prefix costs only its own decoding; endContent is returned only when it
// precedes the point where reading stopped, which holds for every trace in
// the repository (they list it first).
func Load(path string, limit int) ([]Patch, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	ps, end, err := decode(json.NewDecoder(z), limit)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return ps, end, nil
}

func decode(dec *json.Decoder, limit int) ([]Patch, string, error) {
	var end string
	var ps []Patch
	if err := delim(dec, '{'); err != nil {
		return nil, "", err
	}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return nil, "", err
		}
		switch key {
		case "endContent":
			if err := dec.Decode(&end); err != nil {
				return nil, "", err
			}
		case "txns":
			if err := delim(dec, '['); err != nil {
				return nil, "", err
			}
			for dec.More() && (limit == 0 || len(ps) < limit) {
				var txn struct{ Patches []json.RawMessage }
				if err := dec.Decode(&txn); err != nil {
					return nil, "", err
				}
				for _, raw := range txn.Patches {
					p, err := patch(raw)
					if err != nil {
						return nil, "", err
					}
					ps = append(ps, p)
				}
			}
			if limit > 0 && len(ps) >= limit {
				return ps[:limit], end, nil
			}
			if err := delim(dec, ']'); err != nil {
				return nil, "", err
			}
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return nil, "", err
			}
		}
	}
	return ps, end, nil
}

// patch decodes one [pos, del, ins] triple, refusing any other shape.
func patch(raw json.RawMessage) (Patch, error) {
	var f [3]json.RawMessage
	var p Patch
	if err := json.Unmarshal(raw, &f); err != nil {
		return p, err
	}
	if json.Unmarshal(f[0], &p.Pos) != nil || json.Unmarshal(f[1], &p.Del) != nil ||
		json.Unmarshal(f[2], &p.Ins) != nil || p.Pos < 0 || p.Del < 0 {
		return p, fmt.Errorf("bad patch %s", raw)
	}
	return p, nil
}

func delim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != want {
		return errors.New("unexpected " + fmt.Sprint(tok) + ", want " + want.String())
	}
	return nil
}

// Apply replays ps in order through del and ins: each patch first deletes
// (when Del > 0), then inserts (when Ins is not empty).
func Apply(ps []Patch, del func(pos, n int), ins func(pos int, s string)) {
	for _, p := range ps {
		if p.Del > 0 {
			del(p.Pos, p.Del)
		}
		if p.Ins != "" {
			ins(p.Pos, p.Ins)
		}
	}
}
