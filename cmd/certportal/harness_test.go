package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

// portal is a `certportal serve` running in-process through run(), exactly
// as the binary's main would call it.
type runningPortal struct {
	URL  string
	DB   string // its CERTPORTAL_DB: a fresh SQLite file unless env chose one
	Logs *syncbuf.Buffer
}

func startPortal(t *testing.T, v *testenv.Vault, env map[string]string) *runningPortal {
	t.Helper()
	return startPortalWith(t, v, env, app.Options{})
}

// startPortalWith is startPortal with build options (a portal clock off
// Vault's, say), through the same serve code path.
func startPortalWith(t *testing.T, v *testenv.Vault, env map[string]string, o app.Options) *runningPortal {
	t.Helper()
	full := v.PortalEnv()
	full["CERTPORTAL_LISTEN"] = "127.0.0.1:0"
	full["CERTPORTAL_DB"] = t.TempDir() + "/certportal.db"
	for k, x := range env {
		full[k] = x
	}
	getenv := func(k string) string { return full[k] }
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		err := runServeWith(ctx, nil, getenv, pw, io.MultiWriter(logs, testLogWriter{t}), o)
		pw.Close()
		done <- err
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop within 20s")
		}
	})
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if _, addr, ok := strings.Cut(sc.Text(), "listening on "); ok {
			go io.Copy(io.Discard, pr)
			return &runningPortal{URL: addr, DB: full["CERTPORTAL_DB"], Logs: logs}
		}
	}
	t.Fatalf("serve exited before listening: %v\n%s", <-done, logs.String())
	return nil
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	if os.Getenv("CERTPORTAL_TEST_LOGS") != "" {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// client is an HTTP client with a cookie jar that does not follow redirects,
// so tests see the 303s the portal answers with.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newBrowser(t *testing.T, base string) *client {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: base, c: &http.Client{
		Jar:           jar,
		Timeout:       60 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

type response struct {
	*http.Response
	Body []byte
}

func (b *client) do(req *http.Request) *response {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("read body: %v", err)
	}
	return &response{Response: resp, Body: body}
}

func (b *client) get(path string) *response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	return b.do(req)
}

func (b *client) post(path string, form url.Values, headers ...string) *response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return b.do(req)
}

func (b *client) mustLogin(user, password string) {
	b.t.Helper()
	r := b.post("/login", url.Values{"username": {user}, "password": {password}})
	// Each role lands on its own page: employees on /, helpdesk staff on
	// /helpdesk, auditors on /audit.
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusSeeOther || (loc != "/" && loc != "/helpdesk" && loc != "/audit") {
		b.t.Fatalf("login %s: status %d location %q\n%s", user, r.StatusCode, r.Header.Get("Location"), r.Body)
	}
}

func issueForm(password, confirm, ttl, enc string) url.Values {
	return url.Values{"password": {password}, "password_confirm": {confirm}, "ttl": {ttl}, "encryption": {enc}}
}
