package main

import (
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// The id a session moved away from (a step-up, a role gained) names it for
// a short grace (session.MoveGrace): a browser whose answer carrying the
// new cookie was lost — a double-click on the issue form, a reload while
// Vault issues, an aborted fetch — still sends the old cookie, and is
// served as the session and given the new cookie again rather than logged
// out (its certificate issued and the file lost). After the grace the old
// cookie names nothing.

// TestSessionMoveGrace: on SQLite and on PostgreSQL, the cookie from
// before a step-up, sent within the grace, is the stepped-up session (a
// page, a JSON post) and gets the new cookie, which still works after the
// grace; a copy of the old cookie sent only after the grace logs nobody in.
func TestSessionMoveGrace(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			clock, alice, pass := stepUpPortal(t, db)
			clock.ahead.Add(int64(7 * time.Second)) // past the step-up age (testStepUp)
			if r := alice.get("/"); !stepUpDue(r) {
				t.Fatalf("step-up not due after its age: %d", r.StatusCode)
			}

			lost := copyCookies(t, alice) // the browser whose answer is lost
			late := copyCookies(t, alice) // a copy sent only after the grace
			old := alice.cookieOf(sessionCookie)
			mustP12(t, alice.post("/certificates", withStepUp(issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern"), pass, "")), "download with the step-up")
			if alice.cookieOf(sessionCookie) == old {
				t.Fatal("the step-up's answer set no new session cookie")
			}

			// Within the grace: the old cookie is the stepped-up session.
			r := lost.get("/")
			if r.StatusCode != http.StatusOK || stepUpDue(r) || !strings.Contains(string(r.Body), `id="certificates"`) {
				t.Fatalf("old cookie within the grace: %d %q, step-up due %v; want the stepped-up dashboard", r.StatusCode, r.Header.Get("Location"), stepUpDue(r))
			}
			if got := lost.cookieOf(sessionCookie); got == "" || got == old {
				t.Fatal("the forwarded request's answer set no new session cookie")
			}
			form := csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{Subject: pkix.Name{CommonName: "alice@example.com"}}), "720h0m0s", "")
			if ans := decodeCSRAnswer(t, lost.post("/certificates/csr", form, "Accept", "application/json")); ans.Certificate == "" {
				t.Fatalf("CSR with the forwarded cookie: %+v", ans)
			}

			// After the grace: the reissued cookie works, the old one not.
			clock.pastGrace()
			if r := lost.get("/"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="certificates"`) {
				t.Fatalf("reissued cookie after the grace: %d %q", r.StatusCode, r.Header.Get("Location"))
			}
			if r := alice.get("/"); r.StatusCode != http.StatusOK {
				t.Fatalf("the step-up's cookie after the grace: %d %q", r.StatusCode, r.Header.Get("Location"))
			}
			mustSessionGone(t, late, "/", "the cookie from before the step-up, after the grace")
		})
	}
}

// lookupGate holds Vault's lookup-self answers (the portal's session
// recheck) while hold is set until two have been asked for, so that two
// requests of one session on two replicas are both past loading the
// session under its old id before either hears of the new role.
type lookupGate struct {
	URL   string
	hold  atomic.Bool
	mu    sync.Mutex
	n     int
	both  chan struct{}
	asked atomic.Int64
}

func newLookupGate(t *testing.T, v *testenv.Vault) *lookupGate {
	t.Helper()
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	g := &lookupGate{both: make(chan struct{})}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.hold.Load() && strings.HasSuffix(r.URL.Path, "/auth/token/lookup-self") {
			g.asked.Add(1)
			g.mu.Lock()
			if g.n++; g.n == 2 {
				close(g.both)
			}
			g.mu.Unlock()
			select {
			case <-g.both:
			case <-r.Context().Done():
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	g.URL = srv.URL
	return g
}

// TestRoleGainRace: two requests of one session at once, on two replicas
// of one store, both find on their recheck the role Vault just granted and
// both move the session to a new id. The slower one follows the first's
// move rather than being served as logged out; both answers' cookies name
// the session, with the role. On SQLite and on PostgreSQL.
func TestRoleGainRace(t *testing.T) {
	for _, db := range []string{"sqlite", "postgres"} {
		t.Run(db, func(t *testing.T) {
			v := testenv.StartConfiguredVault(t)
			gate := newLookupGate(t, v)
			env := map[string]string{
				"VAULT_ADDR":                 gate.URL,
				"CERTPORTAL_SESSION_RECHECK": "1s",
				"CERTPORTAL_SESSION_KEY":     strings.Repeat("ab", 32),
				"CERTPORTAL_DB":              filepath.Join(t.TempDir(), "certportal.db"),
			}
			if db == "postgres" {
				env["CERTPORTAL_DB"] = pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
			}
			clock := &portalClock{}
			first := startPortalWith(t, v, env, app.Options{Now: clock.now})
			second := startPortalWith(t, v, env, app.Options{Now: clock.now})
			const pw = "rita-password-1234"
			setPolicies := entityUser(t, v, "rita", pw, "certportal-user")
			a := newBrowser(t, first.URL)
			a.mustLogin("rita", pw)
			if r := a.get("/helpdesk"); r.StatusCode != http.StatusForbidden {
				t.Fatalf("helpdesk page before the role: %d", r.StatusCode)
			}
			b := copyCookies(t, a)
			b.base = second.URL // the same browser's other request, on the other replica

			setPolicies("certportal-user", "certportal-helpdesk")
			clock.ahead.Add(int64(2 * time.Second)) // both recheck
			gate.hold.Store(true)
			var wg sync.WaitGroup
			answers := make([]*response, 2)
			for i, c := range []*client{a, b} {
				wg.Add(1)
				go func() { defer wg.Done(); answers[i] = c.get("/helpdesk") }()
			}
			wg.Wait()
			gate.hold.Store(false)
			if n := gate.asked.Load(); n < 2 {
				t.Fatalf("Vault was asked %d times, want a recheck on each replica", n)
			}
			for i, r := range answers {
				if r.StatusCode != http.StatusOK {
					t.Fatalf("request %d of the two at once: %d %q, want the helpdesk page", i+1, r.StatusCode, r.Header.Get("Location"))
				}
			}
			for i, c := range []*client{a, b} {
				clock.pastGrace() // no help from the old id's grace
				if r := c.get("/helpdesk"); r.StatusCode != http.StatusOK {
					t.Fatalf("the cookie answer %d set, after the grace: %d %q", i+1, r.StatusCode, r.Header.Get("Location"))
				}
			}
		})
	}
}
