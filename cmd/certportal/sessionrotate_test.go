package main

import (
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// A session gains privilege under a new id: a step-up and a role Vault
// grants on a recheck each move the session to a fresh cookie, and the one
// before names nothing once session.MoveGrace is over (within it, it is
// forwarded: see sessiongrace_test.go). A cookie copied from the browser
// earlier (a shared machine, a leaked HAR file) does not become stepped up
// or privileged when the real user does.

const sessionCookie = "certportal_session" // plain HTTP in the tests

// copyCookies is a second browser holding b's cookies as they are now.
func copyCookies(t *testing.T, b *client) *client {
	t.Helper()
	u, _ := url.Parse(b.base)
	c := newBrowser(t, b.base)
	c.c.Jar.SetCookies(u, b.c.Jar.Cookies(u))
	return c
}

// portalClock is a portal clock the test moves ahead of the real one, past
// a session move's grace, without waiting for it.
type portalClock struct{ ahead atomic.Int64 }

func (c *portalClock) now() time.Time { return time.Now().Add(time.Duration(c.ahead.Load())) }

// moveGrace is session.MoveGrace: how long the id a session moved away
// from still names it.
const moveGrace = 10 * time.Second

// pastGrace moves the clock past the grace.
func (c *portalClock) pastGrace() { c.ahead.Add(int64(moveGrace + time.Second)) }

// mustSessionGone fails unless the copy's session is over: the login page
// for a GET, 401 for the page script's JSON post.
func mustSessionGone(t *testing.T, copied *client, page, what string) {
	t.Helper()
	if r := copied.get(page); !isLoginRedirect(r) {
		t.Fatalf("%s: GET %s with the cookie from before: %d %q, want the login page", what, page, r.StatusCode, r.Header.Get("Location"))
	}
	form := csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}), "720h0m0s", "")
	if r := copied.post("/certificates/csr", form, "Accept", "application/json"); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("%s: POST /certificates/csr with the cookie from before: %d, want 401\n%s", what, r.StatusCode, r.Body)
	}
}

// TestStepUpNewSessionID: a step-up (the form's, and the page script's
// JSON one) gives the session a new id; the old cookie logs nobody in
// after the grace, the
// new one is stepped up, and the page the script fetches next works with
// the cookie the step-up's answer set. On SQLite and on PostgreSQL.
func TestStepUpNewSessionID(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			clock, alice, pass := stepUpPortal(t, db)

			waitFor(t, alice, "/", "step-up age passes", stepUpDue)
			copied := copyCookies(t, alice)
			before := alice.cookieOf(sessionCookie)
			mustP12(t, alice.post("/certificates", withStepUp(issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern"), pass, "")), "download with the step-up")
			if after := alice.cookieOf(sessionCookie); after == "" || after == before {
				t.Fatal("the step-up's answer set no new session cookie")
			}
			if r := alice.get("/"); r.StatusCode != http.StatusOK || stepUpDue(r) {
				t.Fatalf("the new cookie after the step-up: %d, step-up still due %v", r.StatusCode, stepUpDue(r))
			}
			clock.pastGrace()
			mustSessionGone(t, copied, "/", "after the form's step-up")

			// The device-key path: the step-up comes with the CSR post, and
			// the script then fetches the page after it.
			waitFor(t, alice, "/", "step-up age passes again", stepUpDue)
			copied = copyCookies(t, alice)
			before = alice.cookieOf(sessionCookie)
			form := withStepUp(csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}), "720h0m0s", ""), pass, "")
			if ans := decodeCSRAnswer(t, alice.post("/certificates/csr", form, "Accept", "application/json")); ans.Certificate == "" {
				t.Fatalf("CSR with the step-up: %+v", ans)
			}
			if after := alice.cookieOf(sessionCookie); after == "" || after == before {
				t.Fatal("the JSON step-up's answer set no new session cookie")
			}
			if r := alice.get("/"); r.StatusCode != http.StatusOK || stepUpDue(r) || !strings.Contains(string(r.Body), `id="certificates"`) {
				t.Fatalf("the page after the JSON step-up: %d, step-up still due %v", r.StatusCode, stepUpDue(r))
			}
			clock.pastGrace()
			mustSessionGone(t, copied, "/", "after the JSON step-up")
		})
	}
}

// TestRoleGainNewSessionID: a role Vault grants (a policy added to the
// user's entity) reaches the session on the next recheck under a new id:
// the cookie from before is not the helpdesk's, nor anyone's (after the
// grace). A role lost
// keeps the id (nothing to gain by stealing less).
func TestRoleGainNewSessionID(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	clock := &portalClock{}
	p := startPortalWith(t, v, map[string]string{"CERTPORTAL_SESSION_RECHECK": "1s"}, app.Options{Now: clock.now})
	const pw = "hank-password-1234"
	setPolicies := entityUser(t, v, "hank", pw, "certportal-user")
	hank := newBrowser(t, p.URL)
	hank.mustLogin("hank", pw)
	if r := hank.get("/helpdesk"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("helpdesk page before the role: %d", r.StatusCode)
	}

	copied := copyCookies(t, hank)
	before := hank.cookieOf(sessionCookie)
	setPolicies("certportal-user", "certportal-helpdesk")
	waitFor(t, hank, "/helpdesk", "hank after gaining certportal-helpdesk", func(r *response) bool { return r.StatusCode == http.StatusOK })
	clock.pastGrace()
	if r := copied.get("/helpdesk"); !isLoginRedirect(r) {
		t.Fatalf("helpdesk page with the cookie from before the role: %d %q, want the login page", r.StatusCode, r.Header.Get("Location"))
	}
	if after := hank.cookieOf(sessionCookie); after == "" || after == before {
		t.Fatal("the role's arrival set no new session cookie")
	}
	mustSessionGone(t, copied, "/", "after the role")
	if r := hank.get("/"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="nav-helpdesk"`) {
		t.Fatalf("dashboard with the new cookie: %d, helpdesk link shown %v", r.StatusCode, strings.Contains(string(r.Body), `id="nav-helpdesk"`))
	}

	// Losing the role again keeps the cookie: only privilege gained moves it.
	kept := hank.cookieOf(sessionCookie)
	setPolicies("certportal-user")
	waitFor(t, hank, "/helpdesk", "hank after losing certportal-helpdesk", func(r *response) bool { return r.StatusCode == http.StatusForbidden })
	if hank.cookieOf(sessionCookie) != kept {
		t.Error("a lost role gave the session a new id")
	}
}

// stepUpPortal is a portal on db ("sqlite" or "postgres") whose step-up
// is due after testStepUp, on a clock the test moves, with alice logged in
// (pass: her password).
func stepUpPortal(t *testing.T, db string) (clock *portalClock, alice *client, pass string) {
	t.Helper()
	v := testenv.StartConfiguredVault(t)
	env := map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp}
	if db == "postgres" {
		env["CERTPORTAL_DB"] = pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	}
	clock = &portalClock{}
	p := startPortalWith(t, v, env, app.Options{Now: clock.now})
	pass = v.Password(t, "alice")
	alice = newBrowser(t, p.URL)
	alice.mustLogin("alice", pass)
	return clock, alice, pass
}
