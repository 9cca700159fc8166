package deploytest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/nginxtest"
	"github.com/certportal/certportal/internal/testenv/pgtest"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
	"github.com/certportal/certportal/internal/vault"
)

// replica is one `certportal serve` subprocess of the static binary, so the
// test can SIGKILL it as an OOM kill or a lost node would.
type replica struct {
	name   string
	addr   string
	cmd    *exec.Cmd
	logs   *syncbuf.Buffer
	exited chan struct{}
}

func startReplica(t *testing.T, bin, name string, env map[string]string) *replica {
	t.Helper()
	r := &replica{name: name, addr: nginxtest.FreeAddr(t), logs: &syncbuf.Buffer{}, exited: make(chan struct{})}
	r.cmd = exec.Command(bin, "serve")
	r.cmd.Env = []string{"CERTPORTAL_LISTEN=" + r.addr}
	for k, v := range env {
		r.cmd.Env = append(r.cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	r.cmd.Stdout = io.MultiWriter(pw, r.logs)
	r.cmd.Stderr = r.logs
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = r.cmd.Wait(); pw.Close(); close(r.exited) }()
	t.Cleanup(func() {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.exited:
		case <-time.After(20 * time.Second):
			_ = r.cmd.Process.Kill()
			<-r.exited
		}
	})
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "listening on ") {
				up <- true
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatalf("replica %s exited before listening:\n%s", name, r.logs.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("replica %s did not listen within 60s:\n%s", name, r.logs.String())
	}
	return r
}

// issuedSerials are the serials a replica's log says it issued.
func (r *replica) issuedSerials() map[string]bool {
	m := map[string]bool{}
	for _, l := range strings.Split(r.logs.String(), "\n") {
		if !strings.Contains(l, "certificate issued") {
			continue
		}
		for _, f := range strings.Fields(l) {
			if s, ok := strings.CutPrefix(f, "serial="); ok {
				m[s] = true
			}
		}
	}
	return m
}

type lbClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newLBClient(t *testing.T, base string) *lbClient {
	jar, _ := cookiejar.New(nil)
	return &lbClient{t: t, base: base, c: &http.Client{Jar: jar, Timeout: 60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (c *lbClient) post(path string, form url.Values, cookie string) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodPost, c.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.send(req, cookie)
}

func (c *lbClient) get(path, cookie string) (int, []byte, error) {
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.send(req, cookie)
}

// send uses the jar, or exactly the cookie given (to replay a session
// cookie after its browser logged out).
func (c *lbClient) send(req *http.Request, cookie string) (int, []byte, error) {
	hc := c.c
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
		hc = &http.Client{Timeout: c.c.Timeout, CheckRedirect: c.c.CheckRedirect}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (c *lbClient) login(user, password string) {
	c.t.Helper()
	code, body, err := c.post("/login", url.Values{"username": {user}, "password": {password}}, "")
	if err != nil || code != http.StatusSeeOther {
		c.t.Fatalf("login %s through the balancer: %d %v\n%s", user, code, err, body)
	}
}

const p12Password = "correct horse battery staple 42"

// issue asks for a certificate and returns its serial, or "" with the
// status when the request failed (as it may while a replica dies).
func (c *lbClient) issue() (string, int, error) {
	form := url.Values{"password": {p12Password}, "password_confirm": {p12Password}, "ttl": {"720h0m0s"}, "encryption": {"modern"}}
	code, body, err := c.post("/certificates", form, "")
	if err != nil || code != http.StatusOK {
		return "", code, err
	}
	_, cert, _, err := pkcs12.DecodeChain(body, p12Password)
	if err != nil {
		return "", code, fmt.Errorf("download is not the .p12: %w", err)
	}
	return vault.FormatSerial(cert.SerialNumber.Bytes()), code, nil
}

// TestReplicasBehindNginx runs two portal replicas on one PostgreSQL behind
// a real Nginx round-robin balancer with devvault: requests land on both,
// a session ended on one is gone on the other, and when one replica is
// SIGKILLed under load the other carries on with nothing lost from the
// inventory or the audit trail, whose chain still verifies.
func TestReplicasBehindNginx(t *testing.T) {
	bin := staticBinary(t)
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := v.PortalEnv()
	env["CERTPORTAL_DB"] = dsn
	// Every replica must share the session key (docs/deploy.md).
	env["CERTPORTAL_SESSION_KEY"] = "8f3c0d2b6a1e4f5d9c7b3a2e1f0d4c6b8a9e7f5d3c1b2a4e6f8d0c2b4a6e8f0d"
	env["CERTPORTAL_TRUSTED_PROXIES"] = "127.0.0.1"
	env["CERTPORTAL_MAX_ACTIVE"] = "100"
	env["CERTPORTAL_LOGIN_MAX_FAILURES"] = "0"
	a := startReplica(t, bin, "a", env)
	b := startReplica(t, bin, "b", env)

	lb := nginxtest.FreeAddr(t)
	conf := fmt.Sprintf(`
upstream portals {
    server %s max_fails=1 fail_timeout=30s;
    server %s max_fails=1 fail_timeout=30s;
}
server {
    listen %s;
    location / {
        proxy_pass http://portals;
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        # A dead replica refuses the connection before the request was
        # sent: nginx retries on the other, also for POST. A request a
        # replica dies in the middle of is not retried (issuing is not
        # idempotent): the client gets 502 and its next request succeeds.
        proxy_next_upstream error timeout http_502 http_503;
        proxy_next_upstream_tries 2;
        proxy_connect_timeout 2s;
        proxy_read_timeout 60s;
    }
}
`, a.addr, b.addr, lb)
	ng := nginxtest.Start(t, lb, []byte(conf))
	base := "http://" + lb

	alice := newLBClient(t, base)
	alice.login("alice", v.Password(t, "alice"))
	bob := newLBClient(t, base)
	bob.login("bob", v.Password(t, "bob"))

	// Issue and download repeatedly through the balancer.
	var received []string
	for i := 0; i < 6; i++ {
		for _, c := range []*lbClient{alice, bob} {
			s, code, err := c.issue()
			if s == "" {
				t.Fatalf("issue %d through the balancer: %d %v", i, code, err)
			}
			received = append(received, s)
		}
	}
	ia, ib := a.issuedSerials(), b.issuedSerials()
	if len(ia) == 0 || len(ib) == 0 {
		t.Fatalf("round robin: replica a issued %d, b %d of %d; want both", len(ia), len(ib), len(received))
	}
	for _, s := range received {
		if !ia[s] && !ib[s] {
			t.Errorf("serial %s was downloaded but neither replica logged issuing it", s)
		}
	}
	t.Logf("before the kill: replica a issued %d, b %d", len(ia), len(ib))

	// Log out on one replica; the session is gone on the other: replaying
	// the old cookie there lands on the login page.
	u, _ := url.Parse(base)
	var cookie string
	for _, ck := range alice.c.Jar.Cookies(u) {
		cookie += ck.Name + "=" + ck.Value + "; "
	}
	direct := func(r *replica) *lbClient { return &lbClient{t: t, base: "http://" + r.addr, c: alice.c} }
	if code, body, err := direct(a).get("/", cookie); err != nil || code != http.StatusOK {
		t.Fatalf("alice's session on replica a: %d %v\n%s", code, err, body)
	}
	if code, body, err := direct(b).get("/", cookie); err != nil || code != http.StatusOK {
		t.Fatalf("alice's session on replica b: %d %v\n%s", code, err, body)
	}
	if code, _, err := direct(a).post("/logout", url.Values{}, cookie); err != nil || code != http.StatusSeeOther {
		t.Fatalf("logout on replica a: %d %v", code, err)
	}
	if code, body, err := direct(b).get("/", cookie); err != nil || code != http.StatusSeeOther {
		t.Fatalf("alice's cookie on replica b after logging out on a: %d %v, want 303 to /login\n%s", code, err, body)
	}
	alice = newLBClient(t, base)
	alice.login("alice", v.Password(t, "alice"))

	// Load from both users while replica a is SIGKILLed.
	var (
		mu     sync.Mutex
		failed []string
		stop   = make(chan struct{})
		wg     sync.WaitGroup
		killed = make(chan struct{})
		after  int
	)
	for _, c := range []*lbClient{alice, bob} {
		wg.Add(1)
		go func(c *lbClient) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, code, err := c.issue()
				mu.Lock()
				if s != "" {
					received = append(received, s)
					select {
					case <-killed:
						after++
					default:
					}
				} else {
					failed = append(failed, fmt.Sprintf("%d %v", code, err))
				}
				mu.Unlock()
			}
		}(c)
	}
	// Kill once the load is running on both replicas.
	deadline := time.Now().Add(2 * time.Minute)
	for len(a.issuedSerials()) <= len(ia) || len(b.issuedSerials()) <= len(ib) {
		if time.Now().After(deadline) {
			close(stop)
			t.Fatal("load did not reach both replicas within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-a.exited
	close(killed)
	for {
		mu.Lock()
		n := after
		mu.Unlock()
		if n >= 8 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("only %d issues succeeded after the kill within the deadline; failures: %v", n, failed)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("after the kill: %d issued through replica b; %d requests failed during the kill: %v", after, len(failed), failed)
	// At most the requests in flight on a when it died fail.
	if len(failed) > 2 {
		t.Errorf("%d requests failed around the kill, want at most the 2 in flight: %v", len(failed), failed)
	}
	// The balancer met the dead replica and moved on (its error log names
	// the refused upstream), rather than the test never reaching it.
	if !strings.Contains(ng.Log.String(), a.addr) {
		t.Errorf("nginx's log never mentions the killed replica %s: did the load reach it after the kill?\n%s", a.addr, ng.Log.String())
	}

	// Nothing lost: every certificate a client downloaded is in the
	// inventory and has its issue event in the trail.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	for _, s := range received {
		var inv, ev int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM certificates WHERE serial = $1`, s).Scan(&inv); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE serial = $1 AND action = $2 AND outcome = 'success'`, s, audit.ActionIssue).Scan(&ev); err != nil {
			t.Fatal(err)
		}
		if inv != 1 || ev != 1 {
			t.Errorf("downloaded certificate %s: %d inventory rows, %d issue events; want 1 and 1", s, inv, ev)
		}
	}
	out, err := exec.Command(bin, "audit", "verify", "-db", dsn).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain verified") {
		t.Fatalf("audit verify after the kill: %v\n%s", err, out)
	}
	t.Logf("%d certificates downloaded; %s", len(received), strings.TrimSpace(string(out)))
}
