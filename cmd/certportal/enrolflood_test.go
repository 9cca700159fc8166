package main

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// TestEnrolPostsThrottledBeforeVault: the enrolment form is open to
// anyone, so its posts are guarded like logins: a stream of wrong
// passwords from one address costs Vault one login each until the limit,
// then nothing — no read of the MFA enforcement before the password is
// right, and none for a post without a link token at all.
func TestEnrolPostsThrottledBeforeVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	enableMFA(t, v)
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var enforcementReads, logins atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/v1/identity/mfa/login-enforcement/"):
			enforcementReads.Add(1)
		case strings.HasPrefix(r.URL.Path, "/v1/auth/userpass/login/"):
			logins.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	p := startPortal(t, v, map[string]string{"VAULT_ADDR": srv.URL, "CERTPORTAL_LOGIN_MAX_FAILURES": "3", "CERTPORTAL_LOGIN_USER_MAX_FAILURES": "100"})
	b := newBrowser(t, p.URL)
	b.get("/enrol") // the form a link opens
	readsBefore, loginsBefore := enforcementReads.Load(), logins.Load()
	// No token: refused without a word to Vault.
	if r := b.post("/enrol", url.Values{"username": {"alice"}, "password": {"wrong-password-1"}}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("enrol post without a token: status %d, want 401", r.StatusCode)
	}
	var throttled int
	for i := 0; i < 10; i++ {
		r := b.post("/enrol", url.Values{"token": {"not-a-real-token-0123456789"}, "username": {"alice"}, "password": {"wrong-password-1"}})
		if r.StatusCode == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled != 7 {
		t.Errorf("%d of 10 wrong-password enrol posts got 429, want 7 (limit 3)", throttled)
	}
	if n := enforcementReads.Load() - readsBefore; n != 0 {
		t.Errorf("%d reads of the MFA enforcement for posts with wrong passwords, want 0", n)
	}
	if n := logins.Load() - loginsBefore; n != 3 {
		t.Errorf("%d userpass logins sent to Vault for 11 refused posts, want 3 (the limit)", n)
	}
}
