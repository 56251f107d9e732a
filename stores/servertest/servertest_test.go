package servertest

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestPostgres(t *testing.T) {
	ctx := context.Background()
	a, b := Postgres(t), Postgres(t)
	var fsync string
	if err := a.QueryRow(ctx, "SHOW fsync").Scan(&fsync); err != nil || fsync != "on" {
		t.Fatalf("fsync = %q, %v; want on", fsync, err)
	}
	if _, err := a.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
	// b is another database: it does not see a's table.
	var n int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees %d tables named t (%v), want 0", n, err)
	}
}

func TestRedis(t *testing.T) {
	ctx := context.Background()
	a, b := Redis(t), Redis(t)
	if err := a.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := b.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("the second database has k: %d, %v", n, err)
	}
	if v, err := a.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("Get = %q, %v", v, err)
	}
}

// TestMissingBinary runs this test binary again with a server reported
// missing: outside CI the test is skipped, naming the package to install;
// with CI=true it fails.
func TestMissingBinary(t *testing.T) {
	if os.Getenv("SERVERTEST_HELPER") == "1" {
		missing(t, "redis-server", "redis-server")
		return
	}
	for _, ci := range []string{"", "true"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissingBinary$", "-test.v")
		cmd.Env = append(os.Environ(), "SERVERTEST_HELPER=1", "CI="+ci)
		out, err := cmd.CombinedOutput()
		if !strings.Contains(string(out), "install the Debian package redis-server") {
			t.Fatalf("CI=%q: the message does not name the package:\n%s", ci, out)
		}
		switch failed := err != nil; {
		case ci == "true" && !failed:
			t.Fatalf("CI=true: a missing server did not fail the test:\n%s", out)
		case ci == "" && (failed || !strings.Contains(string(out), "--- SKIP")):
			t.Fatalf("outside CI: a missing server did not skip the test (%v):\n%s", err, out)
		}
	}
}
