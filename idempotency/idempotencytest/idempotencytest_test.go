package idempotencytest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/distkit/distkit/clock/clocktest"
	"github.com/distkit/distkit/idempotency"
	"github.com/distkit/distkit/idempotency/idempotencytest"
)

const brokenEnv = "IDEMPOTENCYTEST_BROKEN"

// broken is a MemStore with one deliberate defect.
type broken struct {
	idempotency.MemStore
	defect string
	mu     sync.Mutex
	real   map[string]uint64 // key → the token MemStore granted last
	perKey map[string]uint64 // token-per-key: the tokens handed out, per key
}

func (b *broken) Claim(ctx context.Context, key string, fp []byte, lock time.Duration) (uint64, *idempotency.Record, error) {
	if b.defect == "lock-too-long" {
		lock += time.Millisecond
	}
	token, rec, err := b.MemStore.Claim(ctx, key, fp, lock)
	b.mu.Lock()
	defer b.mu.Unlock()
	if token != 0 {
		b.real[key] = token
	}
	switch b.defect {
	case "claim-always-wins":
		return 1, nil, err
	case "token-per-key": // counts per key: repeats across keys
		if token != 0 {
			b.perKey[key]++
			return b.perKey[key], rec, err
		}
	}
	return token, rec, err
}

// fence maps the token a caller gives to the one MemStore knows, as the
// defect requires.
func (b *broken) fence(key string, token uint64) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch b.defect {
	case "ignore-token": // acts on whatever claim the key has
		return b.real[key]
	case "token-per-key":
		if token == b.perKey[key] {
			return b.real[key]
		}
	}
	return token
}

func (b *broken) Complete(ctx context.Context, key string, token uint64, resp []byte, retain time.Duration) error {
	err := b.MemStore.Complete(ctx, key, b.fence(key, token), resp, retain)
	if b.defect == "complete-anything" && errors.Is(err, idempotency.ErrNotClaimed) {
		return nil
	}
	return err
}

func (b *broken) Release(ctx context.Context, key string, token uint64) error {
	return b.MemStore.Release(ctx, key, b.fence(key, token))
}

// TestBrokenStore runs the suite on a broken store when
// TestSuiteCatchesDefects asks it to.
func TestBrokenStore(t *testing.T) {
	defect := os.Getenv(brokenEnv)
	if defect == "" {
		t.Skip("run by TestSuiteCatchesDefects")
	}
	idempotencytest.TestStore(t, func(t *testing.T) (idempotency.Store, func(time.Duration)) {
		clk := clocktest.NewManual(time.Unix(1e9, 0))
		return &broken{MemStore: idempotency.MemStore{Clock: clk}, defect: defect,
			real: map[string]uint64{}, perKey: map[string]uint64{}}, clk.Advance
	})
}

// TestSuiteCatchesDefects checks that the suite fails stores that break
// the contract, each in the subtest that covers the defect.
func TestSuiteCatchesDefects(t *testing.T) {
	for defect, subtest := range map[string]string{
		"claim-always-wins": "ClaimRace",
		"lock-too-long":     "LockExpiry",
		"complete-anything": "CompleteUnclaimed",
		"ignore-token":      "LateOwner",
		"token-per-key":     "Tokens",
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStore$", "-test.v")
		cmd.Env = append(os.Environ(), brokenEnv+"="+defect)
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Errorf("%s: the suite passed", defect)
		}
		if !strings.Contains(string(out), "--- FAIL: TestBrokenStore/"+subtest) {
			t.Errorf("%s: subtest %s did not fail:\n%s", defect, subtest, out)
		}
	}
}
