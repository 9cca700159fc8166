// Package pgtest starts Debian's real PostgreSQL for tests — a throwaway
// server in a temporary directory, a fresh database per test — and fails,
// never skips, when PostgreSQL is not installed.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// BinDirEnv names a directory holding initdb and postgres, for machines
// where PostgreSQL is not where Debian puts it.
const BinDirEnv = "CERTPORTAL_PG_BINDIR"

// Server is a running PostgreSQL postmaster, a child of the test process.
type Server struct {
	dir     string // owns data/, sock/ and the log
	dsn     string
	logPath string
	bin     string
	cred    *syscall.Credential

	mu     sync.Mutex    // guards cmd and exited, which Up replaces
	cmd    *exec.Cmd     // the running (or last) postmaster
	exited chan struct{} // closed once that postmaster has exited
	stop   sync.Once
}

// DSN is a postgres:// URL for the server's "postgres" database as the
// superuser "postgres" (trust authentication, unix socket only).
func (s *Server) DSN() string { return s.dsn }

// shared is the one server per test process that Start hands out. It is
// package state on purpose: starting PostgreSQL takes about a second, too
// long to pay per test, and Main stops it when the package's tests end.
var shared struct {
	main atomic.Bool
	once sync.Once
	srv  *Server
	err  error
}

// Main runs a package's tests and stops the shared server afterwards. Call
// it from TestMain in packages that use Start:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
func Main(m *testing.M) {
	shared.main.Store(true)
	code := m.Run()
	if shared.srv != nil {
		if err := shared.srv.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	os.Exit(code)
}

// Start returns the DSN of the test process's shared server, starting it on
// first use. Without Main in TestMain nothing could stop a shared server, so
// each caller then gets its own server, stopped when the test ends.
func Start(tb testing.TB) string {
	tb.Helper()
	if !shared.main.Load() {
		return StartServer(tb).DSN()
	}
	shared.once.Do(func() {
		began := time.Now()
		if shared.srv, shared.err = start(); shared.err == nil {
			tb.Logf("pgtest: shared PostgreSQL ready in %s", time.Since(began).Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		tb.Fatal(shared.err)
	}
	return shared.srv.DSN()
}

// StartServer starts a server for this test alone — for tests that stop it —
// and stops it when the test ends.
func StartServer(tb testing.TB) *Server {
	tb.Helper()
	began := time.Now()
	s, err := start()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Logf("pgtest: PostgreSQL ready in %s", time.Since(began).Round(time.Millisecond))
	tb.Cleanup(func() {
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// NewDatabase creates an empty database on the server behind dsn, drops it
// when the test ends, and returns a DSN for it.
func NewDatabase(tb testing.TB, dsn string) string {
	tb.Helper()
	b := make([]byte, 8)
	rand.Read(b)
	name := "t_" + hex.EncodeToString(b) // only [0-9a-f_]: safe to splice into SQL
	if err := exec1(dsn, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		// FORCE ends connections a test left open; a server the test
		// stopped itself has nothing left to drop.
		if err := exec1(dsn, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: drop database %s: %v", name, err)
		}
	})
	out, err := withDatabase(dsn, name)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func exec1(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// withDatabase points dsn, in URL or keyword/value form, at database name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("pgtest: parse dsn: %w", err)
		}
		u.Path = "/" + name
		return u.String(), nil
	}
	// In keyword/value form the last setting of a key wins.
	return dsn + " dbname=" + name, nil
}

// Stop shuts the server down (fast shutdown, then SIGKILL if it lingers)
// and removes its directory. It is safe to call more than once.
func (s *Server) Stop() error {
	var err error
	s.stop.Do(func() {
		err = s.shutdown()
		if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
			err = fmt.Errorf("pgtest: %w", rmErr)
		}
	})
	return err
}

// shutdown stops the running postmaster, if any, keeping its data.
func (s *Server) shutdown() error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return nil
	default:
	}
	_ = s.signal(syscall.SIGCONT) // a paused server could not shut down
	// SIGINT is PostgreSQL's fast shutdown: it ends open sessions
	// instead of waiting for the test's pools to close.
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("pgtest: postgres ignored fast shutdown for 15s and was killed")
	}
}

// Down shuts the server down as an operator's restart or a failover does
// (fast shutdown: every open session is ended, clients see their
// connections drop) and keeps its data; Up starts it again on the same
// data and socket.
func (s *Server) Down(tb testing.TB) {
	tb.Helper()
	if err := s.shutdown(); err != nil {
		tb.Fatal(err)
	}
}

// Up starts a server that Down stopped, and waits until it takes
// connections.
func (s *Server) Up(tb testing.TB) {
	tb.Helper()
	select {
	case <-s.exitedChan():
	default:
		tb.Fatal("pgtest: Up on a server that is running")
	}
	if err := s.launch(); err != nil {
		tb.Fatal(err)
	}
}

func (s *Server) exitedChan() chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exited
}

// launch starts the postmaster on s's data directory and waits for it.
func (s *Server) launch() error {
	logFile, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("pgtest: %w", err)
	}
	defer logFile.Close() // the child holds its own descriptor
	const port = "5432"   // names the socket file only: the socket directory is ours alone
	cmd := command(s.bin, "postgres", s.cred, s.dir, "-D", filepath.Join(s.dir, "data"), "-k", filepath.Join(s.dir, "sock"), "-p", port,
		"-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=32MB")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("pgtest: start postgres: %w", err)
	}
	exited := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if err := s.waitReady(60 * time.Second); err != nil {
		_ = cmd.Process.Kill()
		<-exited
		return err
	}
	return nil
}

// Pause freezes the postmaster and every backend (SIGSTOP): connections stay
// open but nothing answers, the way a wedged or unreachable database looks
// to a client. Resume lets it run again, as does the end of the test:
// stopped backends would not notice their postmaster die with the test.
func (s *Server) Pause(tb testing.TB) {
	tb.Helper()
	tb.Cleanup(func() { _ = s.signal(syscall.SIGCONT) })
	if err := s.signal(syscall.SIGSTOP); err != nil {
		tb.Fatalf("pgtest: pause: %v", err)
	}
}

// Resume undoes Pause.
func (s *Server) Resume(tb testing.TB) {
	tb.Helper()
	if err := s.signal(syscall.SIGCONT); err != nil {
		tb.Fatalf("pgtest: resume: %v", err)
	}
}

// signal signals the postmaster and the backends it forked. A process group
// would not do: each backend calls setsid. The postmaster goes first so that
// it forks no backend the list misses.
func (s *Server) signal(sig syscall.Signal) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	select {
	case <-exited:
		return errors.New("server has exited") // its pid may be someone else's now
	default:
	}
	pid := cmd.Process.Pid
	if err := syscall.Kill(pid, sig); err != nil {
		return err
	}
	procs, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return err
	}
	for _, stat := range procs {
		b, err := os.ReadFile(stat)
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid ...": comm may hold spaces, so read after ')'.
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, _ := strconv.Atoi(filepath.Base(filepath.Dir(stat)))
		_ = syscall.Kill(child, sig) // may have exited meanwhile
	}
	return nil
}

// binDir finds initdb and postgres: BinDirEnv, else the newest
// /usr/lib/postgresql/<version>/bin that Debian's package installs.
func binDir() (string, error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err != nil {
			return "", fmt.Errorf("pgtest: %s=%s: %w", BinDirEnv, dir, err)
		}
		return dir, nil
	}
	found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(found) == 0 {
		return "", errors.New("postgresql not installed: run `make deps`")
	}
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(found, func(i, j int) bool { return version(found[i]) > version(found[j]) })
	return filepath.Dir(found[0]), nil
}

// runAs is who runs initdb and postgres: PostgreSQL refuses to run as root,
// and tests and CI do, so root hands over to the "postgres" system user
// Debian's package creates (or nobody). nil means the current user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return nil, fmt.Errorf("pgtest: running as root and no postgres or nobody user to run PostgreSQL as")
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: uid of %s: %w", u.Username, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("pgtest: gid of %s: %w", u.Username, err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func start() (_ *Server, err error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	// Under root, t.TempDir's parents are 0700 and the postgres user could
	// not reach its data directory; /tmp is world-traversable, and short
	// enough for the 107-byte limit on unix socket paths.
	parent := os.TempDir()
	if cred != nil {
		parent = "/tmp"
	}
	dir, err := os.MkdirTemp(parent, "pgtest-")
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	sock := filepath.Join(dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	if cred != nil {
		for _, p := range []string{dir, sock} {
			if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
				return nil, fmt.Errorf("pgtest: %w", err)
			}
		}
	}
	data := filepath.Join(dir, "data")

	// --no-sync and the fsync settings below trade durability, which these
	// throwaway servers do not need, for start-up time on a busy machine;
	// C locale keeps sorting and messages the same everywhere.
	initdb := command(bin, "initdb", cred, dir, "-D", data, "--auth=trust", "-U", "postgres",
		"--no-sync", "--no-locale", "--encoding=UTF8", "--no-instructions")
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgtest: initdb: %w\n%s", err, out)
	}

	s := &Server{
		dir:     dir,
		logPath: filepath.Join(dir, "postgres.log"),
		bin:     bin,
		cred:    cred,
		dsn:     "postgres://postgres@/postgres?host=" + url.QueryEscape(sock) + "&port=5432&sslmode=disable",
	}
	if err := s.launch(); err != nil {
		return nil, err
	}
	return s, nil
}

func command(bin, name string, cred *syscall.Credential, dir string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir // the postgres user may not be allowed into the test's working directory
	// PG* variables (PGDATA, PGPORT, ...) from the developer's shell must
	// not steer the throwaway server.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// Pdeathsig: a test binary that panics or times out takes its
	// postmaster with it instead of leaving it running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// waitReady polls until the server accepts a connection, failing early with
// the server's log when the postmaster exits.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("pgtest: postgres exited during start-up: %s\n%s", cmd.ProcessState, s.log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn, err := pgconn.Connect(ctx, s.dsn)
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		last = err
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("pgtest: postgres not ready within %s: %v\n%s", timeout, last, s.log())
}

func (s *Server) log() string {
	b, _ := os.ReadFile(s.logPath)
	return string(b)
}
