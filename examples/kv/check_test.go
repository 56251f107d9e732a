package kv

import (
	"errors"
	"testing"

	"github.com/distkit/distkit/vclock"
)

func TestCheck(t *testing.T) {
	// The key's history: a1 and a2 written blind, b overwrote a1 knowingly.
	var o Object
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a1")})
	ctxA1 := o.Context()
	o.Update(vclock.VClock{}, "n1", Version{Value: []byte("a2")})
	o.Update(ctxA1, "n1", Version{Value: []byte("b")})
	a1 := Ack{Key: "k", Version: Version{Value: []byte("a1")}, Dot: vclock.Dot{ID: "n1", Counter: 1}}
	a2 := Ack{Key: "k", Version: Version{Value: []byte("a2")}, Dot: vclock.Dot{ID: "n1", Counter: 2}}
	b := Ack{Key: "k", Version: Version{Value: []byte("b")}, Context: ctxA1, Dot: vclock.Dot{ID: "n1", Counter: 3}}
	ghost := Ack{Key: "k", Version: Version{Value: []byte("a2")}, Dot: vclock.Dot{ID: "n2", Counter: 1}}
	same := map[string][]Object{"k": {o, o.Clone(), o.Clone()}}

	if err := Check([]Ack{a1, a2, b}, nil, same).Err(); err != nil {
		t.Fatalf("kept and superseded writes: %v", err)
	}
	// a1 without the acknowledged b that replaced it is lost, unless an
	// indeterminate write whose dot took effect or is unknown replaced it.
	if v := Check([]Ack{a1, a2}, nil, same); len(v.Lost) != 1 || !errors.Is(v.Err(), ErrLost) {
		t.Fatalf("a1 replaced by no acknowledged write: %+v", v)
	}
	if err := Check([]Ack{a1, a2}, []Ack{b}, same).Err(); err != nil {
		t.Fatalf("a1 replaced by an indeterminate write that took effect: %v", err)
	}
	unknown := b
	unknown.Dot = vclock.Dot{}
	if err := Check([]Ack{a1, a2}, []Ack{unknown}, same).Err(); err != nil {
		t.Fatalf("a1 replaced by an indeterminate write of unknown dot: %v", err)
	}
	never := b
	never.Dot = vclock.Dot{ID: "n9", Counter: 1}
	if v := Check([]Ack{a1, a2}, []Ack{never}, same); len(v.Lost) != 1 {
		t.Fatalf("a1 replaced by a write that never took effect: %+v", v)
	}
	// A value present with a dot outside the history is lost too.
	if v := Check([]Ack{ghost}, nil, same); len(v.Lost) != 1 {
		t.Fatalf("a write whose dot is not in the history: %+v", v)
	}
	// Replicas that differ.
	var stale Object
	stale.Update(vclock.VClock{}, "n1", Version{Value: []byte("a1")})
	v := Check([]Ack{a2}, nil, map[string][]Object{"k": {o, stale}, "j": {{}, {}}})
	if len(v.Diverged) != 1 || v.Diverged[0] != "k" || !errors.Is(v.Err(), ErrDiverged) || v.Keys != 2 {
		t.Fatalf("diverged replicas: %+v", v)
	}
}
