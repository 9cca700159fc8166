// Package bench measures certportal against the bars in DESIGN.md, each as a
// ratio of two measurements taken in the same run on the same Vault, so the
// machine's speed cancels out. Run with `make bench`.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

const (
	workers        = 8
	perWorker      = 100 // issuances per worker per round; 30 left the ratio ±0.05 between runs
	flowsPerWorker = 30  // whole flows per worker per round: each login is a bcrypt in Vault
	rounds         = 3   // whole-flow rounds; direct and portal alternate, to spread drift over both
	issueRounds    = 5   // issuance rounds: 3 left the ratio ±0.06 between runs on a noisy VM
	p12Password    = "benchmark-password"
)

type env struct {
	v     *testenv.Vault
	users []string // bench0..bench7, password = name + "-password"
	srv   *httptest.Server
	cfg   config.Config
}

func setupEnv(b *testing.B, users int) *env {
	b.Helper()
	quiesce()
	v := testenv.StartConfiguredVault(b)
	app.TuneRuntime(os.Getenv) // as serve does
	e := &env{v: v}
	for i := 0; i < users; i++ {
		u := fmt.Sprintf("bench%d", i)
		v.CreateUser(b, u, u+"-password", nil, "certportal-user")
		e.users = append(e.users, u)
	}
	cfg := config.Default()
	cfg.VaultAddr = v.Addr
	cfg.AppRoleRoleID = v.Setup.ServiceRoleID
	cfg.AppRoleSecretID = v.Setup.ServiceSecretID
	// The cap is for people, not this benchmark: every user issues
	// issueRounds*perWorker certificates (set directly; the config flag stops at 100).
	cfg.MaxActive = issueRounds*perWorker + 1
	cfg.DB = b.TempDir() + "/bench.db"
	e.cfg = cfg
	h, cleanup, err := app.Build(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cleanup)
	e.srv = httptest.NewServer(h)
	b.Cleanup(e.srv.Close)
	return e
}

// quiesce starts a benchmark on a quiet machine: the previous benchmark's
// dirty pages (BenchmarkAudit writes a 300 MB database without fsync, then
// deletes it) are flushed now rather than during this benchmark's fsyncs,
// and its garbage is collected.
func quiesce() {
	syscall.Sync()
	runtime.GC()
	debug.FreeOSMemory()
}

func (e *env) token(b *testing.B, user string) string {
	b.Helper()
	c, _ := e.v.Admin.Clone()
	c.ClearToken()
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": user + "-password"})
	if err != nil {
		b.Fatal(err)
	}
	return s.Auth.ClientToken
}

func (e *env) login(b *testing.B, user string) *http.Client {
	b.Helper()
	return e.loginAt(b, e.srv.URL, user)
}

// loginAt logs user in to the portal at base and returns its browser.
func (e *env) loginAt(b *testing.B, base, user string) *http.Client {
	b.Helper()
	c, err := loginClient(base, user)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// loginClient is loginAt for goroutines, which must not call b.Fatal: it
// returns what went wrong instead.
func loginClient(base, user string) (*http.Client, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: &http.Transport{MaxIdleConnsPerHost: 4},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(base+"/login", url.Values{"username": {user}, "password": {user + "-password"}})
	if err != nil {
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("login %s: status %d: %.200q", user, resp.StatusCode, body)
	}
	return c, nil
}

func issueViaPortal(c *http.Client, base string) error {
	resp, err := c.PostForm(base+"/certificates", url.Values{"password": {p12Password}, "password_confirm": {p12Password},
		"ttl": {"24h0m0s"}, "encryption": {"modern"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, _ := io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK || n < 500 {
		return fmt.Errorf("portal issue: status %d, %d bytes", resp.StatusCode, n)
	}
	return nil
}

// parallel runs fn n times on each of the workers and returns the rate per second.
func parallel(b *testing.B, n int, fn func(worker int) error) float64 {
	b.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < n; i++ {
				if err := fn(w); err != nil {
					errs <- err
					return
				}
			}
		}(w)
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return float64(workers*n) / elapsed.Seconds()
}

// BenchmarkIssuance: portal issuance (sessions open, .p12 built and
// downloaded) against pki/issue called directly with the same user tokens,
// 8 concurrent clients, EC P-256. Bar: ratio >= 0.8.
func BenchmarkIssuance(b *testing.B) {
	e := setupEnv(b, workers)
	direct := make([]*vaultapi.Client, workers)
	clients := make([]*http.Client, workers)
	for i, u := range e.users {
		c, _ := e.v.Admin.Clone()
		c.SetToken(e.token(b, u))
		direct[i] = c
		clients[i] = e.login(b, u)
	}
	b.ResetTimer()
	var directRate, portalRate float64
	for r := 0; r < issueRounds; r++ {
		directRate += parallel(b, perWorker, func(w int) error {
			_, err := direct[w].Logical().Write("pki/issue/user-auth", map[string]any{
				"common_name": e.users[w] + "@example.com", "ttl": "86400s"})
			return err
		})
		portalRate += parallel(b, perWorker, func(w int) error { return issueViaPortal(clients[w], e.srv.URL) })
	}
	directRate /= issueRounds
	portalRate /= issueRounds
	b.ReportMetric(directRate, "direct_issues/s")
	b.ReportMetric(portalRate, "portal_issues/s")
	b.ReportMetric(portalRate/directRate, "ratio(>=0.8)")
}

// BenchmarkWholeFlow: login + issue + .p12 download over HTTP against the
// same steps through portal.Service in-process. Bar: ratio >= 0.9.
func BenchmarkWholeFlow(b *testing.B) {
	e := setupEnv(b, workers)
	vc, err := vault.New(vault.Config{Addr: e.v.Addr})
	if err != nil {
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	ident, err := vc.NewService(vault.AppRole{RoleID: e.cfg.AppRoleRoleID, SecretID: e.cfg.AppRoleSecretID}, logger)
	if err != nil {
		b.Fatal(err)
	}
	st, err := sqlite.Open(context.Background(), b.TempDir()+"/inproc.db")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	svc := portal.NewService(vc, ident, st, app.PortalOptions(e.cfg), logger)
	req := portal.IssueRequest{Password: p12Password, PasswordConfirm: p12Password, TTL: "24h0m0s", Encryption: "modern"}
	b.ResetTimer()
	var inproc, overHTTP float64
	for r := 0; r < rounds; r++ {
		inproc += parallel(b, flowsPerWorker, func(w int) error {
			u := e.users[w]
			id, _, err := svc.Login(context.Background(), u, u+"-password")
			if err != nil {
				return err
			}
			dl, err := svc.Issue(context.Background(), id, req)
			if err != nil {
				return err
			}
			if len(dl.Data) < 500 {
				return fmt.Errorf("short .p12")
			}
			return nil
		})
		overHTTP += parallel(b, flowsPerWorker, func(w int) error {
			u := e.users[w]
			jar, _ := cookiejar.New(nil)
			c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.PostForm(e.srv.URL+"/login", url.Values{"username": {u}, "password": {u + "-password"}})
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/") {
				return fmt.Errorf("login: %d", resp.StatusCode)
			}
			return issueViaPortal(c, e.srv.URL)
		})
	}
	b.ReportMetric(inproc/rounds, "inprocess_flows/s")
	b.ReportMetric(overHTTP/rounds, "http_flows/s")
	b.ReportMetric(overHTTP/inproc, "ratio(>=0.9)")
}
