package main

import "testing"

func TestRunOrdersReceivesAfterSends(t *testing.T) {
	for seed := range uint64(20) {
		if !run(seed, 200) {
			t.Fatalf("seed %d: a receive was stamped before its send", seed)
		}
	}
}
