// Package servertest starts throwaway PostgreSQL and Redis servers for
// tests, from the binaries installed on the machine: real servers, never
// mocks. The stores module and the examples test with it, and so can the
// applications that use them.
//
// # Usage
//
//	func TestMain(m *testing.M) { os.Exit(servertest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		pool := servertest.Postgres(t) // a fresh database on a shared server
//		rdb := servertest.Redis(t)     // a fresh logical database on a shared server
//	}
//
// # Guarantees
//
//   - Each package's test binary starts at most one PostgreSQL and one
//     Redis server, on first use, and [Main] stops both when the tests
//     end, whatever their outcome; their files live in a temporary
//     directory that is removed then. The servers are children of the
//     test process and die with it, even when a test panics.
//   - PostgreSQL runs from a fresh initdb, listens only on a Unix socket
//     in that directory, and runs with fsync on, as in production. Redis
//     listens only on a Unix socket, without persistence.
//   - Every call of [Postgres] returns a pool on a new, empty database,
//     and every call of [Redis] a client on an empty logical database (16
//     of them; a package needing more fails loudly), so tests never see
//     each other's data and may run in parallel.
//   - When a server's binary is missing, the test is skipped with a
//     message naming the Debian package to install, unless the
//     environment has CI=true: then it fails.
//
// As root (a CI container), PostgreSQL, which refuses to run as root,
// runs as the "postgres" system user that the Debian package creates.
package servertest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// startTimeout bounds a server's start; a slow CI machine gets a minute.
const startTimeout = time.Minute

// servers are the package's shared servers, started on first use.
var servers struct {
	mu     sync.Mutex
	pg     *pgServer
	pgErr  error
	rd     *redisServer
	rdErr  error
	dbs    int // databases created on pg
	rdbs   int // logical databases handed out on rd
	stops  []func()
	inMain bool
}

// Main runs the tests and then stops the servers they started. Call it
// from TestMain: os.Exit(servertest.Main(m)).
func Main(m *testing.M) int {
	servers.mu.Lock()
	servers.inMain = true
	servers.mu.Unlock()
	code := m.Run()
	servers.mu.Lock()
	defer servers.mu.Unlock()
	for _, stop := range slices.Backward(servers.stops) {
		stop()
	}
	return code
}

// missing skips or, in CI, fails the test for a missing binary.
func missing(t testing.TB, what, pkg string) {
	t.Helper()
	msg := fmt.Sprintf("%s not found: install the Debian package %s (apt-get install %s)", what, pkg, pkg)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// errNoBinary is returned when a server's binary is not installed.
var errNoBinary = errors.New("servertest: binary not installed")

// ---- PostgreSQL ----

type pgServer struct {
	dir   string // the socket directory; the data directory is dir/data
	bin   string
	cred  *syscall.Credential
	cmd   *exec.Cmd // the postmaster
	admin *pgxpool.Pool
}

// PostgresDSN returns the connection string of a new, empty database on
// the package's PostgreSQL server, starting the server on first use.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	servers.mu.Lock()
	defer servers.mu.Unlock()
	if !servers.inMain {
		t.Fatal("servertest: call servertest.Main from TestMain")
	}
	if servers.pg == nil && servers.pgErr == nil {
		servers.pg, servers.pgErr = startPostgres()
		if servers.pg != nil {
			servers.stops = append(servers.stops, servers.pg.stop)
		}
	}
	if errors.Is(servers.pgErr, errNoBinary) {
		missing(t, "PostgreSQL (pg_ctl, initdb)", "postgresql")
	}
	if servers.pgErr != nil {
		t.Fatalf("servertest: start PostgreSQL: %v", servers.pgErr)
	}
	servers.dbs++
	name := fmt.Sprintf("test%d", servers.dbs)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if _, err := servers.pg.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("servertest: create database: %v", err)
	}
	return servers.pg.dsn(name)
}

// Postgres returns a pool on a new, empty database of the package's
// PostgreSQL server; the pool is closed when the test ends.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), PostgresDSN(t))
	if err != nil {
		t.Fatalf("servertest: connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func (s *pgServer) dsn(db string) string {
	return fmt.Sprintf("host=%s port=5432 user=postgres dbname=%s sslmode=disable", s.dir, db)
}

// pgBin finds the directory of pg_ctl and initdb: on PATH, or where the
// Debian package puts them (/usr/lib/postgresql/<version>/bin), newest
// version first.
func pgBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errNoBinary
}

func startPostgres() (*pgServer, error) {
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "distkit-pg-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{dir: dir, bin: bin}
	fail := func(err error) (*pgServer, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if os.Geteuid() == 0 {
		// initdb and postgres refuse to run as root.
		u, err := user.Lookup("postgres")
		if err != nil {
			return fail(fmt.Errorf("running as root needs the postgres system user: %w", err))
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			return fail(err)
		}
	}
	data := filepath.Join(dir, "data")
	// initdb's own fsyncs are skipped (the directory is thrown away); the
	// server runs with fsync on.
	if err := s.run("initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		return fail(err)
	}
	// The postmaster runs as a child of the test process, which it
	// follows in death (SIGQUIT: immediate shutdown), so that a test that
	// panics leaves no server behind.
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", data,
		"-k", dir, "-c", "listen_addresses=", "-p", "5432",
		"-c", "fsync=on", "-c", "synchronous_commit=on",
		"-c", "max_connections=200", "-c", "shared_buffers=128MB")
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGQUIT}
	if err := startAndWait(cmd, "database system is ready to accept connections"); err != nil {
		return fail(fmt.Errorf("postgres: %w", err))
	}
	s.cmd = cmd
	s.admin, err = pgxpool.New(context.Background(), s.dsn("postgres"))
	if err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// run runs one of the server's programs as the server's user.
func (s *pgServer) run(prog string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, prog), args...)
	cmd.Dir = s.dir
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w\n%s", prog, err, out)
	}
	return nil
}

func (s *pgServer) stop() {
	if s.admin != nil {
		s.admin.Close()
	}
	s.cmd.Process.Signal(syscall.SIGQUIT) // immediate shutdown: the data is thrown away
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}

// startAndWait starts cmd and returns once a line of its output contains
// ready, or with an error if it exits first or does not get ready within
// startTimeout. Its output is drained afterwards, so it never blocks on a
// full pipe.
func startAndWait(cmd *exec.Cmd, ready string) error {
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return err
	}
	// A timer kills a server that never gets ready, which ends the scan.
	kill := time.AfterFunc(startTimeout, func() { cmd.Process.Kill() })
	defer kill.Stop()
	var logged strings.Builder
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		logged.WriteString(sc.Text() + "\n")
		if strings.Contains(strings.ToLower(sc.Text()), ready) {
			go func() {
				for sc.Scan() {
				}
			}()
			return nil
		}
	}
	cmd.Wait()
	return fmt.Errorf("exited before it was ready:\n%s", logged.String())
}

// ---- Redis ----

// redisDatabases is the number of logical databases redis-server has by
// default.
const redisDatabases = 16

type redisServer struct {
	dir  string
	sock string
	cmd  *exec.Cmd
}

// Redis returns a client on an empty logical database of the package's
// redis-server, starting the server on first use; the client is closed
// when the test ends.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	servers.mu.Lock()
	defer servers.mu.Unlock()
	if !servers.inMain {
		t.Fatal("servertest: call servertest.Main from TestMain")
	}
	if servers.rd == nil && servers.rdErr == nil {
		servers.rd, servers.rdErr = startRedis()
		if servers.rd != nil {
			servers.stops = append(servers.stops, servers.rd.stop)
		}
	}
	if errors.Is(servers.rdErr, errNoBinary) {
		missing(t, "redis-server", "redis-server")
	}
	if servers.rdErr != nil {
		t.Fatalf("servertest: start redis-server: %v", servers.rdErr)
	}
	if servers.rdbs == redisDatabases {
		t.Fatalf("servertest: all %d Redis databases are in use by this package", redisDatabases)
	}
	c := redis.NewClient(&redis.Options{Network: "unix", Addr: servers.rd.sock, DB: servers.rdbs, PoolSize: 128})
	servers.rdbs++
	t.Cleanup(func() { c.Close() })
	return c
}

func startRedis() (*redisServer, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errNoBinary
	}
	dir, err := os.MkdirTemp("", "distkit-redis-")
	if err != nil {
		return nil, err
	}
	s := &redisServer{dir: dir, sock: filepath.Join(dir, "redis.sock")}
	s.cmd = exec.Command(bin, "--port", "0", "--unixsocket", s.sock, "--unixsocketperm", "700",
		"--save", "", "--appendonly", "no", "--dir", dir, "--databases", strconv.Itoa(redisDatabases))
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM} // dies with the test process
	if err := startAndWait(s.cmd, "ready to accept connections"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	return s, nil
}

func (s *redisServer) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
	os.RemoveAll(s.dir)
}
