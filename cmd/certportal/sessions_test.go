package main

import (
	"database/sql"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// Sessions follow Vault: a session's token is re-checked against Vault at
// least every CERTPORTAL_SESSION_RECHECK, roles follow the token's live
// policies, and every way a session ends gives its Vault token back.

// loginAccessor logs b in as user and returns the accessor of the Vault
// token the login created (the token itself never leaves the portal).
func loginAccessor(t *testing.T, v *testenv.Vault, b *client, user string) string {
	t.Helper()
	before := accessors(t, v)
	b.mustLogin(user, v.Password(t, user))
	var acc string
	for a := range accessors(t, v) {
		if !before[a] {
			if acc != "" {
				t.Fatalf("login of %s created more than one token", user)
			}
			acc = a
		}
	}
	if acc == "" {
		t.Fatalf("login of %s created no Vault token", user)
	}
	return acc
}

func tokenAlive(t *testing.T, v *testenv.Vault, accessor string) bool {
	t.Helper()
	_, err := v.Admin.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": accessor})
	return err == nil
}

// waitTokenRevoked polls until the token behind accessor is gone.
func waitTokenRevoked(t *testing.T, v *testenv.Vault, accessor, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for tokenAlive(t, v, accessor) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: the session's Vault token is still valid after 30s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitFor polls GET path until the response satisfies ok, and returns it.
func waitFor(t *testing.T, b *client, path, what string, ok func(*response) bool) *response {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := b.get(path)
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: GET %s still answers %d %q after 30s", what, path, r.StatusCode, r.Header.Get("Location"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isLoginRedirect: a 303 to the login page, which may carry the page to
// return to afterwards (?next=).
func isLoginRedirect(r *response) bool {
	loc := r.Header.Get("Location")
	return r.StatusCode == http.StatusSeeOther && (loc == "/login" || strings.HasPrefix(loc, "/login?next=%2F"))
}

type sessionEvent struct {
	Actor, Outcome string
	Details        map[string]string
}

// sessionEvents returns the trail's events of action about user.
func sessionEvents(t *testing.T, db *sql.DB, action, user string) []sessionEvent {
	t.Helper()
	rows, err := db.Query(`SELECT actor, outcome, details FROM audit_events WHERE action = ? AND subject = ? ORDER BY id`, action, user)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []sessionEvent
	for rows.Next() {
		var e sessionEvent
		var d string
		if err := rows.Scan(&e.Actor, &e.Outcome, &d); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(d), &e.Details); err != nil {
			t.Fatalf("details %q: %v", d, err)
		}
		out = append(out, e)
	}
	return out
}

// mustSessionEnded fails unless the trail says user's session ended with a
// reason containing want and the given revocation outcome.
func mustSessionEnded(t *testing.T, db *sql.DB, user, want, revoked string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var seen []string
		for _, e := range sessionEvents(t, db, "session.ended", user) {
			if strings.Contains(e.Details["reason"], want) && e.Details["token"] == revoked {
				return
			}
			seen = append(seen, e.Details["reason"]+"/"+e.Details["token"])
		}
		if time.Now().After(deadline) {
			t.Fatalf("no session.ended event for %s with reason %q and token %q; have %q", user, want, revoked, seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// assertTrailClean fails if any audit event carries something token-shaped.
func assertTrailClean(t *testing.T, db *sql.DB) {
	t.Helper()
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE details LIKE '%hvs.%' OR details LIKE '%hvb.%'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		t.Errorf("%d audit events carry a Vault token", n)
	}
}

// TestSessionEndsWhenVaultRevokesToken: helpdesk staff whose Vault user is
// deleted and whose tokens are revoked lose the portal within the recheck
// interval: the next page is the login page, a post is refused, nothing is
// revoked on their word, and the trail says why.
func TestSessionEndsWhenVaultRevokesToken(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_RECHECK": "1s"})
	db := openSQLite(t, p.DB)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")

	// Two sessions of helen's: one browses, one will try to revoke.
	poster := newBrowser(t, p.URL)
	poster.mustLogin("helen", v.Password(t, "helen"))
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	if r := helen.get("/helpdesk/users/alice"); r.StatusCode != http.StatusOK {
		t.Fatalf("helpdesk page before: %d", r.StatusCode)
	}

	// The offboarding an operator does in Vault: every token of helen's
	// revoked, the user deleted.
	if _, err := v.Admin.Logical().Write("sys/leases/revoke-prefix/auth/userpass/login/helen", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Admin.Logical().Delete("auth/userpass/users/helen"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	waitFor(t, helen, "/helpdesk/users/alice", "helen after her tokens were revoked", isLoginRedirect)
	t.Logf("session ended %v after the revocation (recheck 1s)", time.Since(began).Round(10*time.Millisecond))
	// The cookie is worthless now: the next page is the login page too.
	if r := helen.get("/"); !isLoginRedirect(r) {
		t.Fatalf("GET / after the session ended: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	// poster logged in before helen, so its recheck is due as well.
	r := poster.post("/helpdesk/certificates/"+serial+"/revoke", url.Values{"reason": {"key_compromise"}, "ticket": {"INC-9"}})
	if r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("helpdesk revoke by a revoked token's session: %d, want 401", r.StatusCode)
	}
	for _, s := range crl(t, v) {
		if s == serial {
			t.Fatal("alice's certificate was revoked on the word of a dead session")
		}
	}
	// Dead already: nothing to revoke, and the trail says so.
	mustSessionEnded(t, db, "helen", "token revoked", "already invalid")
	if n := len(sessionEvents(t, db, "session.ended", "helen")); n != 2 {
		t.Errorf("%d session.ended events for helen's two sessions, want 2", n)
	}
	assertTrailClean(t, db)
	assertNoSecrets(t, p.Logs.String())
}

// entityUser creates a userpass user with no portal policy of its own and
// an entity that carries pols; the returned function sets the entity's
// policies, the way an operator grants or takes a role in Vault.
func entityUser(t *testing.T, v *testenv.Vault, name, pw string, pols ...string) func(pols ...string) {
	t.Helper()
	v.CreateUser(t, name, pw, nil)
	auths, err := v.Admin.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	ent, err := v.Admin.Logical().Write("identity/entity", map[string]any{"name": name, "policies": pols})
	if err != nil {
		t.Fatal(err)
	}
	entityID, _ := ent.Data["id"].(string)
	if _, err := v.Admin.Logical().Write("identity/entity-alias", map[string]any{
		"name": name, "canonical_id": entityID, "mount_accessor": auths["userpass/"].Accessor,
	}); err != nil {
		t.Fatal(err)
	}
	return func(pols ...string) {
		t.Helper()
		if _, err := v.Admin.Logical().Write("identity/entity/id/"+entityID, map[string]any{"policies": pols}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSessionRolesFollowPolicies: roles come from the token's live policies
// on every recheck. A user whose portal policies come from their Vault
// identity (entity) loses the helpdesk role as soon as the entity loses
// certportal-helpdesk, and the session ends when no portal policy is left;
// its still-valid token is revoked then.
func TestSessionRolesFollowPolicies(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_RECHECK": "1s"})
	db := openSQLite(t, p.DB)

	// hank's userpass user carries no portal policy; his entity does.
	const pw = "hank-password-1234"
	setPolicies := entityUser(t, v, "hank", pw, "certportal-user", "certportal-helpdesk")

	before := accessors(t, v)
	hank := newBrowser(t, p.URL)
	hank.mustLogin("hank", pw)
	var acc string
	for a := range accessors(t, v) {
		if !before[a] {
			acc = a
		}
	}
	if r := hank.get("/helpdesk"); r.StatusCode != http.StatusOK {
		t.Fatalf("helpdesk page with the entity's helpdesk policy: %d", r.StatusCode)
	}

	setPolicies("certportal-user")
	waitFor(t, hank, "/helpdesk", "hank after losing certportal-helpdesk", func(r *response) bool { return r.StatusCode == http.StatusForbidden })
	if r := hank.get("/"); r.StatusCode != http.StatusOK || strings.Contains(string(r.Body), `id="nav-helpdesk"`) {
		t.Fatalf("dashboard as a plain employee: %d, helpdesk link shown: %v", r.StatusCode, strings.Contains(string(r.Body), `id="nav-helpdesk"`))
	}
	if r := hank.post("/helpdesk/certificates/01:02/revoke", url.Values{"reason": {"lost"}, "ticket": {"INC-1"}}); r.StatusCode != http.StatusForbidden {
		t.Fatalf("helpdesk revoke without the role: %d", r.StatusCode)
	}
	var roleEvents int
	for _, e := range sessionEvents(t, db, "session.roles", "hank") {
		if e.Details["roles"] == "employee" && e.Details["was"] == "employee,helpdesk" {
			roleEvents++
		}
	}
	if roleEvents != 1 {
		t.Errorf("%d session.roles events employee,helpdesk -> employee, want 1", roleEvents)
	}
	if !tokenAlive(t, v, acc) {
		t.Fatal("a lost role revoked the token; only a lost session should")
	}

	setPolicies()
	waitFor(t, hank, "/", "hank after losing every portal policy", isLoginRedirect)
	mustSessionEnded(t, db, "hank", "no portal policy", "revoked")
	if tokenAlive(t, v, acc) {
		t.Error("the token of a session that lost its portal policies is still valid")
	}
	assertTrailClean(t, db)
}

// TestSecondLoginRevokesFirstToken: logging in over an existing session
// replaces it, and the replaced session's token is revoked, not orphaned.
func TestSecondLoginRevokesFirstToken(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	db := openSQLite(t, p.DB)
	b := newBrowser(t, p.URL)
	first := loginAccessor(t, v, b, "alice")
	second := loginAccessor(t, v, b, "bob")
	if tokenAlive(t, v, first) {
		t.Fatal("the first login's token is still valid after a second login replaced its session")
	}
	if !tokenAlive(t, v, second) {
		t.Fatal("the second login's token was revoked")
	}
	if r := b.get("/"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), "bob") {
		t.Fatalf("dashboard after the second login: %d", r.StatusCode)
	}
	mustSessionEnded(t, db, "alice", "replaced by a new login", "revoked")
	assertTrailClean(t, db)
}

// TestExpiredSessionTokensRevoked: a session that ends by idle timeout —
// noticed on its next request, or by the periodic sweep when it never comes
// back — gives its Vault token back.
func TestExpiredSessionTokensRevoked(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	t.Run("on the next request", func(t *testing.T) {
		p := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_IDLE": "1s", "CERTPORTAL_SESSION_ABSOLUTE": "1h"})
		db := openSQLite(t, p.DB)
		b := newBrowser(t, p.URL)
		acc := loginAccessor(t, v, b, "alice")
		waitFor(t, b, "/", "an idle session", isLoginRedirect)
		if tokenAlive(t, v, acc) {
			t.Fatal("the idle session's token is still valid after the session was dropped")
		}
		mustSessionEnded(t, db, "alice", "idle", "revoked")
		assertTrailClean(t, db)
	})
	t.Run("by the sweep", func(t *testing.T) {
		p := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_IDLE": "1s", "CERTPORTAL_SESSION_ABSOLUTE": "1h",
			"CERTPORTAL_SESSION_SWEEP": "200ms"})
		db := openSQLite(t, p.DB)
		b := newBrowser(t, p.URL)
		acc := loginAccessor(t, v, b, "bob")
		// bob never comes back: only the sweep can end his session.
		waitTokenRevoked(t, v, acc, "sweep")
		mustSessionEnded(t, db, "bob", "idle", "revoked")
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sessions`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d sessions left after the sweep", n)
		}
		assertTrailClean(t, db)
	})
}

// TestRestartKeepsOrRevokesSessions: with a fixed session key a session
// survives a restart and keeps its token; with the default random key no
// later process can read a session, so a graceful shutdown revokes the
// tokens of every session it leaves behind.
func TestRestartKeepsOrRevokesSessions(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dir := t.TempDir()
	t.Run("random key", func(t *testing.T) {
		dbPath := dir + "/random.db"
		var acc string
		t.Run("first process", func(t *testing.T) {
			p := startPortal(t, v, map[string]string{"CERTPORTAL_DB": dbPath})
			acc = loginAccessor(t, v, newBrowser(t, p.URL), "alice")
		}) // the portal is shut down when the subtest ends
		if tokenAlive(t, v, acc) {
			t.Fatal("a session no later process can read still holds a valid Vault token after shutdown")
		}
		mustSessionEnded(t, openSQLite(t, dbPath), "alice", "shutdown", "revoked")
	})
	t.Run("fixed key", func(t *testing.T) {
		env := map[string]string{"CERTPORTAL_DB": dir + "/fixed.db",
			"CERTPORTAL_SESSION_KEY": "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}
		var acc string
		var cookies []*http.Cookie
		t.Run("first process", func(t *testing.T) {
			p := startPortal(t, v, env)
			b := newBrowser(t, p.URL)
			acc = loginAccessor(t, v, b, "bob")
			u, _ := url.Parse(p.URL)
			cookies = b.c.Jar.Cookies(u)
		})
		if !tokenAlive(t, v, acc) {
			t.Fatal("a shutdown with a fixed session key revoked a session the next process can resume")
		}
		p := startPortal(t, v, env)
		b := newBrowser(t, p.URL)
		u, _ := url.Parse(p.URL)
		b.c.Jar.SetCookies(u, cookies)
		if r := b.get("/"); r.StatusCode != http.StatusOK {
			t.Fatalf("session after restart with a fixed key: %d %q", r.StatusCode, r.Header.Get("Location"))
		}
	})
}

// countingVault is a pass-through proxy in front of the real Vault that
// counts the token lookups the portal makes: the measurement, not a fake.
type countingVault struct {
	URL     string
	lookups atomic.Int64
}

func newCountingVault(t *testing.T, v *testenv.Vault) *countingVault {
	t.Helper()
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c := &countingVault{}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/auth/token/lookup-self" {
			c.lookups.Add(1)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

// TestSessionRecheckCheapAndFailsClosed: one lookup per session per
// interval, however many requests — concurrent ones included — and while
// Vault cannot vouch for a session (sealed) role-gated pages, exports and
// posts are refused with 503 instead of served on stale roles; the session
// survives the outage and logout still works.
func TestSessionRecheckCheapAndFailsClosed(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	cv := newCountingVault(t, v)
	const recheck = time.Second
	p := startPortal(t, v, map[string]string{"VAULT_ADDR": cv.URL, "CERTPORTAL_SESSION_RECHECK": recheck.String()})
	// At most one lookup per interval: over a stretch of d, at most
	// d/recheck + 1 — counted on the time the requests really took, so that
	// a loaded machine stretching them does not look like extra lookups.
	perInterval := func(d time.Duration) int64 { return int64(d/recheck) + 1 }
	loggedIn := time.Now()
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))

	// Sequential: 2.5 s of requests every 25 ms, about 100 requests.
	start, requests := time.Now(), 0
	for time.Since(start) < 2500*time.Millisecond {
		if r := audrey.get("/audit"); r.StatusCode != http.StatusOK {
			t.Fatalf("audit page: %d", r.StatusCode)
		}
		requests++
		time.Sleep(25 * time.Millisecond)
	}
	seq := cv.lookups.Load()
	took := time.Since(loggedIn)
	t.Logf("%d sequential requests over %v: %d token lookups", requests, time.Since(start).Round(time.Millisecond), seq)
	if seq < 1 || seq > perInterval(took) {
		t.Fatalf("%d token lookups for %d requests over %s with a %s recheck, want 1 to %d", seq, requests, took.Round(time.Millisecond), recheck, perInterval(took))
	}

	// Concurrent: once the recheck is due, 16 requests at once.
	time.Sleep(recheck + 100*time.Millisecond) // the recheck interval, once
	concStart := time.Now()
	var wg sync.WaitGroup
	codes := make([]int, 16)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, p.URL+"/audit", nil)
			resp, err := audrey.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	concTook := time.Since(concStart)
	conc := cv.lookups.Load() - seq
	t.Logf("16 concurrent requests with the recheck due: %d token lookups", conc)
	for _, c := range codes {
		if c != http.StatusOK {
			t.Fatalf("concurrent audit pages: %v", codes)
		}
	}
	// One for the 16 (they wait on the one under way), another only when
	// they took longer than the interval.
	if conc < 1 || conc > perInterval(concTook) {
		t.Fatalf("%d token lookups for 16 concurrent requests of one session over %s, want 1 to %d", conc, concTook.Round(time.Millisecond), perInterval(concTook))
	}

	// Vault sealed: no word on the token, so no auditor pages.
	v.Seal(t)
	sealed := true
	defer func() {
		if sealed {
			v.Unseal(t)
		}
	}()
	before := cv.lookups.Load()
	r := waitFor(t, audrey, "/audit/export?format=csv", "export while Vault is sealed", func(r *response) bool { return r.StatusCode != http.StatusOK })
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), "cannot be confirmed") {
		t.Fatalf("export while sealed: %d\n%s", r.StatusCode, r.Body)
	}
	if cv.lookups.Load() == before {
		t.Fatal("refused without asking Vault")
	}
	for _, path := range []string{"/audit", "/"} {
		if r := audrey.get(path); r.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("GET %s while sealed: %d, want 503", path, r.StatusCode)
		}
	}
	v.Unseal(t)
	sealed = false
	// Back: the same session works again, no new login needed.
	waitFor(t, audrey, "/audit", "audit page after unsealing", func(r *response) bool { return r.StatusCode == http.StatusOK })

	// Logout never waits for Vault's word.
	v.Seal(t)
	sealed = true
	waitFor(t, audrey, "/", "dashboard while sealed", func(r *response) bool { return r.StatusCode == http.StatusServiceUnavailable })
	if r := audrey.get("/logout"); r.StatusCode != http.StatusOK {
		t.Fatalf("logout form while sealed: %d", r.StatusCode)
	}
	if r := audrey.post("/logout", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout while sealed: %d", r.StatusCode)
	}
	if r := audrey.get("/"); !isLoginRedirect(r) {
		t.Fatalf("after logout: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
}
