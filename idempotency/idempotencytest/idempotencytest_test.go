package idempotencytest_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
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
}

func (b *broken) Claim(ctx context.Context, key string, fp []byte, lock time.Duration) (*idempotency.Record, error) {
	if b.defect == "lock-too-long" {
		lock += time.Millisecond
	}
	rec, err := b.MemStore.Claim(ctx, key, fp, lock)
	if b.defect == "claim-always-wins" {
		return nil, err
	}
	return rec, err
}

func (b *broken) Complete(ctx context.Context, key string, resp []byte, retain time.Duration) error {
	err := b.MemStore.Complete(ctx, key, resp, retain)
	if b.defect == "complete-anything" && errors.Is(err, idempotency.ErrNotClaimed) {
		return nil
	}
	return err
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
		return &broken{MemStore: idempotency.MemStore{Clock: clk}, defect: defect}, clk.Advance
	})
}

// TestSuiteCatchesDefects checks that the suite fails stores that break
// the contract, each in the subtest that covers the defect.
func TestSuiteCatchesDefects(t *testing.T) {
	for defect, subtest := range map[string]string{
		"claim-always-wins": "ClaimRace",
		"lock-too-long":     "LockExpiry",
		"complete-anything": "CompleteUnclaimed",
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
