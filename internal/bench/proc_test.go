package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

// childEnv makes the test binary run a portal instead of the benchmarks:
// the CPU and load benchmarks start the portal as a process of its own, so
// that its CPU time (getrusage in that process) is the portal's alone and
// not the benchmark clients' too.
const childEnv = "CERTPORTAL_BENCH_PORTAL"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChildPortal())
	}
	os.Exit(m.Run())
}

// runChildPortal serves the portal as `certportal serve` does (same server
// timeouts, a text logger at info level on stderr) and a control listener
// for the parent: /cpu (the process's user+system CPU in µs), /goroutines,
// /profile/start?path= and /profile/stop. It stops when stdin closes.
func runChildPortal() int {
	cfg := config.Default()
	cfg.VaultAddr = os.Getenv("VAULT_ADDR")
	cfg.AppRoleRoleID = os.Getenv("CERTPORTAL_APPROLE_ROLE_ID")
	cfg.AppRoleSecretID = os.Getenv("CERTPORTAL_APPROLE_SECRET_ID")
	cfg.DB = os.Getenv("CERTPORTAL_DB")
	// Set directly: the config flag stops at 100, and the benchmark's users
	// issue more than that each.
	cfg.MaxActive, _ = strconv.Atoi(os.Getenv("CERTPORTAL_BENCH_MAX_ACTIVE"))
	if n, _ := strconv.Atoi(os.Getenv("CERTPORTAL_BENCH_VAULT_MAX_INFLIGHT")); n > 0 {
		cfg.VaultMaxInFlight = n
	}
	app.TuneRuntime(os.Getenv)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h, cleanup, err := app.Build(context.Background(), cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench portal:", err)
		return 1
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench portal:", err)
		return 1
	}
	ctl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench portal:", err)
		return 1
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go srv.Serve(ln)
	var mu sync.Mutex
	var prof *os.File
	mux := http.NewServeMux()
	mux.HandleFunc("/cpu", func(w http.ResponseWriter, _ *http.Request) {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		fmt.Fprint(w, ru.Utime.Nano()/1000+ru.Stime.Nano()/1000)
	})
	mux.HandleFunc("/goroutines", func(w http.ResponseWriter, _ *http.Request) {
		c := countGoroutines()
		fmt.Fprint(w, c.keepAlive, " ", c.other)
	})
	mux.HandleFunc("/profile/start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		f, err := os.Create(r.URL.Query().Get("path"))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		prof = f
	})
	mux.HandleFunc("/profile/stop", func(http.ResponseWriter, *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if prof != nil {
			pprof.StopCPUProfile()
			prof.Close()
			prof = nil
		}
	})
	go http.Serve(ctl, mux)
	fmt.Printf("portal http://%s control http://%s\n", ln.Addr(), ctl.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_ = srv.Shutdown(ctx)
	cleanup()
	return 0
}

// portalProc is a portal running as a child process (runChildPortal).
type portalProc struct {
	URL string
	Pid int
	ctl string
	// Logs is the child's stderr, kept to look for errors afterwards.
	Logs *syncbuf.Buffer
}

// startPortalProc starts this test binary as a portal (runChildPortal) on
// Vault v with the store db (a SQLite path or a postgres:// DSN).
func startPortalProc(b *testing.B, v *testenv.Vault, db string, maxActive int, extraEnv ...string) *portalProc {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1", "VAULT_ADDR="+v.Addr,
		"CERTPORTAL_APPROLE_ROLE_ID="+v.Setup.ServiceRoleID, "CERTPORTAL_APPROLE_SECRET_ID="+v.Setup.ServiceSecretID,
		"CERTPORTAL_DB="+db, "CERTPORTAL_BENCH_MAX_ACTIVE="+strconv.Itoa(maxActive))
	cmd.Env = append(cmd.Env, extraEnv...)
	p := &portalProc{Logs: &syncbuf.Buffer{}}
	cmd.Stderr = p.Logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the child shuts down when its stdin closes
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				b.Errorf("bench portal: %v\n%s", err, p.Logs.String())
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			b.Error("bench portal did not stop within 30 s")
		}
	})
	p.Pid = cmd.Process.Pid
	sc := bufio.NewScanner(stdout)
	if !sc.Scan() {
		b.Fatalf("bench portal exited before listening:\n%s", p.Logs.String())
	}
	if _, err := fmt.Sscanf(sc.Text(), "portal %s control %s", &p.URL, &p.ctl); err != nil {
		b.Fatalf("bench portal said %q: %v", sc.Text(), err)
	}
	go io.Copy(io.Discard, stdout)
	return p
}

func (p *portalProc) get(b *testing.B, path string) string {
	b.Helper()
	resp, err := http.Get(p.ctl + path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("bench portal %s: %d %s", path, resp.StatusCode, body)
	}
	return string(body)
}

// cpu is the portal process's user+system CPU time so far.
func (p *portalProc) cpu(b *testing.B) time.Duration {
	b.Helper()
	us, err := strconv.ParseInt(p.get(b, "/cpu"), 10, 64)
	if err != nil {
		b.Fatal(err)
	}
	return time.Duration(us) * time.Microsecond
}

// goroutines is the portal process's goroutine count, kept-alive outgoing
// connections' loops apart (see countGoroutines).
func (p *portalProc) goroutines(b *testing.B) goroutineCount {
	b.Helper()
	var c goroutineCount
	if _, err := fmt.Sscan(p.get(b, "/goroutines"), &c.keepAlive, &c.other); err != nil {
		b.Fatal(err)
	}
	return c
}

// startProfile writes a CPU profile of the portal process to path (from
// CERTPORTAL_BENCH_CPUPROFILE) until the returned func is called; with an
// empty path it does nothing.
func (p *portalProc) startProfile(b *testing.B, path string) func() {
	b.Helper()
	if path == "" {
		return func() {}
	}
	p.get(b, "/profile/start?path="+path)
	return func() { p.get(b, "/profile/stop") }
}

// processPeakRSS is another process's peak resident memory (VmHWM) in MiB.
func processPeakRSS(b *testing.B, pid int) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.Atoi(strings.Fields(l)[1])
			return float64(kb) / 1024
		}
	}
	b.Fatalf("/proc/%d/status: no VmHWM", pid)
	return 0
}

// processCPU is another process's user+system CPU time from /proc (in clock
// ticks of 10 ms: enough over the hundreds of issuances measured).
func processCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name in parentheses may hold spaces: count after it.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%d/stat: %q", pid, s)
	}
	const clkTck = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / clkTck
}

// threadCPU is the calling OS thread's CPU time (the caller locks itself to
// its thread), for a measurement that other goroutines do not disturb.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	const rusageThread = 1 // RUSAGE_THREAD
	_ = syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
