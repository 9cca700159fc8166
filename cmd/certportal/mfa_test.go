package main

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

const mfaPassword = "file-password-123"

// enableMFA runs setup --mfa totp on v, twice: the second run must change
// nothing. It returns the TOTP method id.
func enableMFA(t *testing.T, v *testenv.Vault) string {
	t.Helper()
	o := setup.Defaults()
	o.MFA = setup.MFATOTP
	res, err := setup.Run(context.Background(), v.Admin, o)
	if err != nil {
		t.Fatalf("setup --mfa totp: %v", err)
	}
	if res.MFAMethodID == "" {
		t.Fatal("setup --mfa totp returned no method id")
	}
	again, err := setup.Run(context.Background(), v.Admin, o)
	if err != nil {
		t.Fatalf("setup --mfa totp again: %v", err)
	}
	for _, s := range again.Steps {
		if s.Changed {
			t.Errorf("second setup --mfa totp changed %q", s.What)
		}
	}
	if again.MFAMethodID != res.MFAMethodID {
		t.Errorf("second run found method %q, first wrote %q", again.MFAMethodID, res.MFAMethodID)
	}
	return res.MFAMethodID
}

// adminEnrol gives user a TOTP secret the way an operator with a root token
// would (the portal's own enrolment is tested elsewhere) and returns it.
func adminEnrol(t *testing.T, v *testenv.Vault, user, methodID string) string {
	t.Helper()
	auths, err := v.Admin.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	accessor := auths["userpass/"].Accessor
	ent, err := v.Admin.Logical().Write("identity/entity", map[string]any{"name": "user-" + user})
	if err != nil {
		t.Fatalf("create entity: %v", err)
	}
	entityID, _ := ent.Data["id"].(string)
	if _, err := v.Admin.Logical().Write("identity/entity-alias", map[string]any{"name": user, "canonical_id": entityID, "mount_accessor": accessor}); err != nil {
		t.Fatalf("create alias: %v", err)
	}
	g, err := v.Admin.Logical().Write("identity/mfa/method/totp/admin-generate", map[string]any{"method_id": methodID, "entity_id": entityID})
	if err != nil {
		t.Fatalf("admin-generate: %v", err)
	}
	return secretFromURL(t, g.Data["url"].(string))
}

func secretFromURL(t *testing.T, u string) string {
	t.Helper()
	k, err := otp.NewKeyFromURL(u)
	if err != nil {
		t.Fatalf("otpauth url: %v", err)
	}
	if k.Period() != 30 || k.Digits() != otp.DigitsSix {
		t.Fatalf("otpauth key period %d digits %d, want 30 and 6", k.Period(), k.Digits())
	}
	return k.Secret()
}

// code is the TOTP code for the 30-second step containing at. Vault's skew
// of one step lets the test use the previous and next step's codes as
// fresh ones without waiting.
func code(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// passwordStep posts the password and expects the code page.
func (b *client) passwordStep(user, password string) {
	b.t.Helper()
	r := b.post("/login", url.Values{"username": {user}, "password": {password}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login/mfa" {
		b.t.Fatalf("password step %s: status %d location %q\n%s", user, r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	pg := b.get("/login/mfa")
	if pg.StatusCode != http.StatusOK || !strings.Contains(string(pg.Body), `action="/login/mfa"`) || !strings.Contains(string(pg.Body), `name="code"`) {
		b.t.Fatalf("code page: status %d\n%s", pg.StatusCode, pg.Body)
	}
	// Someone with no code (a lost phone, a QR page closed before it was
	// scanned) is told who can help.
	if !strings.Contains(string(pg.Body), `id="mfa-no-code"`) {
		b.t.Errorf("code page says nothing to a user without a code:\n%s", pg.Body)
	}
}

func (b *client) codeStep(c string) *response {
	b.t.Helper()
	return b.post("/login/mfa", url.Values{"code": {c}})
}

func mustLanded(t *testing.T, r *response, what string) {
	t.Helper()
	if loc := r.Header.Get("Location"); r.StatusCode != http.StatusSeeOther || (loc != "/" && loc != "/helpdesk" && loc != "/audit") {
		t.Fatalf("%s: status %d location %q\n%s", what, r.StatusCode, loc, r.Body)
	}
}

func mustCodeRefused(t *testing.T, r *response, what string) {
	t.Helper()
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(string(r.Body), "Code not accepted") || !strings.Contains(string(r.Body), `action="/login/mfa"`) {
		t.Fatalf("%s: want 401 with the code page and \"Code not accepted\", got %d\n%s", what, r.StatusCode, r.Body)
	}
}

// TestMFALogin: with setup --mfa totp the password alone opens nothing; the
// code from the user's authenticator does, once; the pre-login session is
// logged out everywhere else; a wrong code can be retried; a reused code,
// another user's code and a padded code are refused; every step is in the
// trail and no code or token in the log.
func TestMFALogin(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	aliceSecret := adminEnrol(t, v, "alice", method)
	bobSecret := adminEnrol(t, v, "bob", method)
	p := startPortal(t, v, nil)
	db := openSQLite(t, p.DB)

	// A wrong password looks exactly as without MFA: nothing says the
	// password was the factor that failed, and no code page follows.
	b := newBrowser(t, p.URL)
	wrong := b.post("/login", url.Values{"username": {"alice"}, "password": {"not-her-password"}})
	unknown := b.post("/login", url.Values{"username": {"nobody"}, "password": {"not-a-password"}})
	for _, r := range []*response{wrong, unknown} {
		if r.StatusCode != http.StatusUnauthorized || !strings.Contains(string(r.Body), "Check your username and password") || strings.Contains(string(r.Body), "code") {
			t.Fatalf("wrong password with MFA on: status %d\n%s", r.StatusCode, r.Body)
		}
	}

	b.passwordStep("alice", v.Password(t, "alice"))
	// The pre-login session grants nothing: pages send to the login,
	// posts are refused.
	for _, path := range []string{"/", "/helpdesk", "/audit", "/logout"} {
		if r := b.get(path); !isLoginRedirect(r) {
			t.Errorf("pre-login GET %s: status %d location %q, want 303 /login", path, r.StatusCode, r.Header.Get("Location"))
		}
	}
	if r := b.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")); r.StatusCode != http.StatusUnauthorized || r.Header.Get("Content-Type") == "application/x-pkcs12" {
		t.Errorf("pre-login POST /certificates: status %d, want 401", r.StatusCode)
	}
	if r := b.post("/logout", url.Values{}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("pre-login POST /logout: status %d, want 401", r.StatusCode)
	}

	now := time.Now()
	// Wrong, padded and bob's codes are refused alike, and the login can
	// still be finished.
	mustCodeRefused(t, b.codeStep("000000"), "wrong code")
	good := code(t, aliceSecret, now)
	mustCodeRefused(t, b.codeStep(" "+good[:3]+"\t"+good[3:]+"0"), "code with a digit too many")
	mustCodeRefused(t, b.codeStep(good+"\u00a0"), "code padded with a no-break space")
	mustCodeRefused(t, b.codeStep("0"+good), "code padded with a zero")
	mustCodeRefused(t, b.codeStep(code(t, bobSecret, now)), "bob's code for alice's login")
	mustLanded(t, b.codeStep(good[:3]+" "+good[3:]), "right code, spaced as apps show it")
	if r := b.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("download after MFA login: status %d %q\n%s", r.StatusCode, r.Header.Get("Content-Type"), r.Body)
	}
	// The code page of a completed login is gone: nothing to finish. A
	// code sent again (a double click, Back and send) leads where the
	// login did, and logs nobody in twice.
	if r := b.codeStep(good); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
		t.Errorf("code after the login was completed: status %d to %q, want 303 to /", r.StatusCode, r.Header.Get("Location"))
	}

	// A code works once: a new login with the same code is refused,
	// the next step's code is taken.
	b2 := newBrowser(t, p.URL)
	b2.passwordStep("alice", v.Password(t, "alice"))
	mustCodeRefused(t, b2.codeStep(good), "reused code")
	mustLanded(t, b2.codeStep(code(t, aliceSecret, now.Add(30*time.Second))), "next step's code")

	// Bob's pending login with alice's code: refused; with his own: in.
	b3 := newBrowser(t, p.URL)
	b3.passwordStep("bob", v.Password(t, "bob"))
	mustCodeRefused(t, b3.codeStep(code(t, aliceSecret, now.Add(-30*time.Second))), "alice's code for bob's login")
	mustLanded(t, b3.codeStep(code(t, bobSecret, now)), "bob's own code")

	// A POST /login/mfa without a password step is refused outright.
	b4 := newBrowser(t, p.URL)
	if r := b4.codeStep(code(t, bobSecret, now.Add(30*time.Second))); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("code without a password step: status %d, want 401", r.StatusCode)
	}

	waitForEvents(t, db, "login.mfa_required", 3)
	if n := len(sessionEvents(t, db, "login.mfa_failure", "alice")); n != 6 {
		t.Errorf("%d login.mfa_failure events for alice, want 6 (wrong, long, two padded, bob's, reused)", n)
	}
	var ok int
	for _, e := range sessionEvents(t, db, "login", "alice") {
		if e.Outcome == "success" && e.Details["mfa"] == "totp" {
			ok++
		}
	}
	if ok != 2 {
		t.Errorf("%d successful MFA logins of alice in the trail, want 2", ok)
	}
	assertTrailClean(t, db)
	logs := p.Logs.String()
	for _, secret := range []string{good, aliceSecret, bobSecret, "mfa_request_id"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// TestMFANotEnrolled: an enforced user without a secret is told to ask the
// helpdesk, not sent round the login again and again.
func TestMFANotEnrolled(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	enableMFA(t, v)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.passwordStep("alice", v.Password(t, "alice"))
	r := b.codeStep("123456")
	if r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), "Ask the helpdesk to enrol you") {
		t.Fatalf("not enrolled: status %d\n%s", r.StatusCode, r.Body)
	}
	// No code page again: GET /login/mfa (the page's language switch)
	// shows the same end.
	if r := b.get("/login/mfa"); r.StatusCode != http.StatusForbidden || strings.Contains(string(r.Body), `name="code"`) {
		t.Errorf("code page after the enrol page: status %d, want the enrol page again\n%s", r.StatusCode, r.Body)
	}
}

// TestMFAPendingExpires: a login left at the code page past its window
// starts over; the right code no longer finishes it.
func TestMFAPendingExpires(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	secret := adminEnrol(t, v, "alice", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_PENDING": "2s"})
	b := newBrowser(t, p.URL)
	b.passwordStep("alice", v.Password(t, "alice"))
	waitFor(t, b, "/login/mfa", "pending login expiry", isLoginRedirect)
	r := b.codeStep(code(t, secret, time.Now()))
	// The pre-login session ends with the window too: either way the
	// login starts over, and the page says so and is the login form (it
	// said "Your session has expired" with a link to the start page).
	body := string(r.Body)
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "The login took too long and has expired. Log in again with your password.") ||
		!strings.Contains(body, `action="/login"`) || strings.Contains(body, "start page") || strings.Contains(body, "session has expired") {
		t.Fatalf("code after the window: status %d, want 401 and the login form saying the login has to start over\n%s", r.StatusCode, r.Body)
	}
	if r := b.get("/"); !isLoginRedirect(r) {
		t.Errorf("after an expired pending login: GET / status %d", r.StatusCode)
	}
}

// TestMFALanguageSwitchAfterEnd: the pages a code step ends on for good
// (not enrolled, expired) answer a POST, and their language switch links to
// GET /login/mfa, where no pending login is left. That page shows the same
// end again in the other language (and back), instead of the 303 to a blank
// login page that lost the message. Only the browser the portal told shows
// it: another browser gets the plain redirect.
func TestMFALanguageSwitchAfterEnd(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	secret := adminEnrol(t, v, "alice", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_PENDING": "2s"})

	expired := newBrowser(t, p.URL)
	for _, tc := range []struct {
		name   string
		b      *client
		start  func(*client) string // the password step; returns the code to send
		status int
		key    string
	}{
		{"not enrolled", newBrowser(t, p.URL), func(b *client) string {
			b.passwordStep("bob", v.Password(t, "bob")) // bob has no secret
			return "123456"
		}, http.StatusForbidden, "login.mfa_enrol_needed"},
		{"expired", expired, func(b *client) string {
			b.passwordStep("alice", v.Password(t, "alice"))
			waitFor(t, b, "/login/mfa", "pending login expiry", isLoginRedirect)
			return code(t, secret, time.Now())
		}, http.StatusUnauthorized, "error.mfa_expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			says := func(r *response, lang i18n.Lang) bool {
				return r.StatusCode == tc.status && strings.Contains(string(r.Body), `<html lang="`+string(lang)+`"`) &&
					strings.Contains(string(r.Body), html.EscapeString(i18n.T(lang, tc.key)))
			}
			r := tc.b.codeStep(tc.start(tc.b))
			if !says(r, i18n.English) {
				t.Fatalf("the code step's end: status %d, want %d and %q\n%s", r.StatusCode, tc.status, i18n.T(i18n.English, tc.key), r.Body)
			}
			ko := tc.b.get(langHref(t, r.Body, "ko"))
			if !says(ko, i18n.Korean) {
				t.Fatalf("after switching to Korean: status %d, want %d and %q\n%s", ko.StatusCode, tc.status, i18n.T(i18n.Korean, tc.key), ko.Body)
			}
			if strings.Contains(string(ko.Body), `name="code"`) {
				t.Error("the Korean page asks for a code again: the login must start over")
			}
			if en := tc.b.get(langHref(t, ko.Body, "en")); !says(en, i18n.English) {
				t.Errorf("back to English: status %d\n%s", en.StatusCode, en.Body)
			}
			if r := newBrowser(t, p.URL).get("/login/mfa?lang=ko"); !isLoginRedirect(r) {
				t.Errorf("another browser's /login/mfa: status %d, want 303 /login", r.StatusCode)
			}
		})
	}
	// A new login forgets how the last one ended: after it and a logout
	// the code page's address is the plain redirect again.
	expired.passwordStep("alice", v.Password(t, "alice"))
	mustLanded(t, expired.codeStep(code(t, secret, time.Now().Add(30*time.Second))), "alice's next login")
	if r := expired.post("/logout", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: status %d", r.StatusCode)
	}
	if r := expired.get("/login/mfa"); !isLoginRedirect(r) {
		t.Errorf("/login/mfa after a new login and logout: status %d, want 303 /login\n%s", r.StatusCode, r.Body)
	}
}

// TestMFASetupOff: setup --mfa off removes the enforcement (a password
// login is complete again) and --mfa totp puts it back, idempotently.
func TestMFASetupOff(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	enableMFA(t, v)
	o := setup.Defaults()
	o.MFA = setup.MFAOff
	for i := 0; i < 2; i++ {
		res, err := setup.Run(context.Background(), v.Admin, o)
		if err != nil {
			t.Fatalf("setup --mfa off: %v", err)
		}
		if changed := res.Changed(); changed != (i == 0) {
			t.Errorf("setup --mfa off run %d changed=%v", i+1, changed)
		}
	}
	if s, err := v.Admin.Logical().Read("identity/mfa/login-enforcement/certportal"); err == nil && s != nil {
		t.Fatalf("enforcement still there after --mfa off: %v", s.Data)
	}
	p := startPortal(t, v, nil)
	newBrowser(t, p.URL).mustLogin("alice", v.Password(t, "alice"))
	enableMFA(t, v)
	newBrowser(t, p.URL).passwordStep("alice", v.Password(t, "alice"))
}

var enrolLinkRe = regexp.MustCompile(`id="enrol-link">([^<]+)<`)
var totpSecretRe = regexp.MustCompile(`id="totp-secret">([A-Z2-7= ]+)<`)

// makeEnrolLink has helpdesk staff b make alice's link and returns it.
func makeEnrolLink(t *testing.T, b *client, user string, reset bool) string {
	t.Helper()
	form := url.Values{"ticket": {"INC-42"}}
	if reset {
		form.Set("reset", "1")
	}
	r := b.post("/helpdesk/users/"+user+"/mfa", form)
	m := enrolLinkRe.FindSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("enrolment link for %s: status %d\n%s", user, r.StatusCode, r.Body)
	}
	// Shown once: no language link may load another page in its place.
	if strings.Contains(string(r.Body), "hreflang=") {
		t.Errorf("the one-time enrolment link page offers a language switch, which would lose the link:\n%s", r.Body)
	}
	// A helpdesk page: the header marks the helpdesk, not the agent's own
	// certificates (found in a Korean walk).
	if body := string(r.Body); !strings.Contains(body, `id="nav-helpdesk" aria-current="page"`) || strings.Contains(body, `id="nav-mine" aria-current`) {
		t.Errorf("the enrolment link page's header marks the wrong section:\n%s", body[:strings.Index(body, "<main")])
	}
	u, err := url.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatal(err)
	}
	// The token is in the fragment only, which no browser sends: never in
	// the path or the query, where a proxy's access log would keep it.
	tok := strings.TrimPrefix(u.Fragment, "token=")
	if u.Path != "/enrol" || u.RawQuery != "" || tok == "" || tok == u.Fragment || strings.Contains(u.RequestURI(), tok) {
		t.Fatalf("enrolment link %q: want /enrol#token=<token> with nothing in the query", m[1])
	}
	return u.RequestURI() + "#" + u.Fragment
}

// enrolToken is the token of an enrolment link made by makeEnrolLink.
func enrolToken(link string) string {
	_, frag, _ := strings.Cut(link, "#token=")
	return frag
}

// enrolThroughLink opens link as user, logs in, reads the secret from the
// page (the QR code's key, shown for typing in) and confirms with a code.
func enrolThroughLink(t *testing.T, p *runningPortal, link, user, password string) (*client, string) {
	t.Helper()
	b := newBrowser(t, p.URL)
	form := b.get(link)
	if form.StatusCode != http.StatusOK || !strings.Contains(string(form.Body), `action="/enrol"`) {
		t.Fatalf("enrolment form: status %d\n%s", form.StatusCode, form.Body)
	}
	if !strings.Contains(string(form.Body), `id="enrol-token"`) {
		t.Fatalf("enrolment form without a field for the link's code (the fragment never reaches the server):\n%s", form.Body)
	}
	r := b.post("/enrol", url.Values{"token": {enrolToken(link)}, "username": {user}, "password": {password}})
	m := totpSecretRe.FindSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil || !strings.Contains(string(r.Body), `src="data:image/png;base64,`) {
		t.Fatalf("enrolment scan page: status %d\n%s", r.StatusCode, r.Body)
	}
	// The page's own data: image, and the page script as everywhere else
	// (without script-src, default-src 'none' blocked it); nothing more.
	if csp, want := r.Header.Get("Content-Security-Policy"), "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"; csp != want {
		t.Errorf("scan page CSP %q, want %q", csp, want)
	}
	// Shown once: a language switch would load the login page in its
	// place and the secret, already made in Vault, would be lost.
	if strings.Contains(string(r.Body), "hreflang=") {
		t.Errorf("the one-time scan page offers a language switch:\n%s", r.Body)
	}
	// Shown in groups of four for typing in.
	secret := strings.ReplaceAll(string(m[1]), " ", "")
	mustLanded(t, b.codeStep(code(t, secret, time.Now())), "confirm enrolment")
	return b, secret
}

// TestMFAEnrolment: helpdesk makes a one-time link (ticket required); the
// user opens it, logs in with the password, gets Vault's QR code once,
// confirms with a code and is in; the link works once and for its user
// only; a reset destroys the old secret and a new link enrols again.
func TestMFAEnrolment(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	// The first helpdesk agent is enrolled by the operator (docs/mfa.md).
	helenSecret := adminEnrol(t, v, "helen", method)
	p := startPortal(t, v, nil)
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, helen.codeStep(code(t, helenSecret, time.Now())), "helen's login")

	if r := helen.post("/helpdesk/users/alice/mfa", url.Values{"ticket": {""}}); r.StatusCode != http.StatusBadRequest {
		t.Errorf("enrolment without a ticket: status %d, want 400", r.StatusCode)
	}
	if page := string(helen.get("/helpdesk/users/alice").Body); !strings.Contains(page, `id="mfa-enrol"`) || strings.Contains(page, `id="mfa-off"`) {
		t.Error("helpdesk user page with MFA on has no enrolment form")
	}
	link := makeEnrolLink(t, helen, "alice", false)
	bobLink := makeEnrolLink(t, helen, "bob", false)

	// A wrong password spends nothing; alice cannot use bob's link.
	stranger := newBrowser(t, p.URL)
	tok := enrolToken
	if r := stranger.post("/enrol", url.Values{"token": {tok(link)}, "username": {"alice"}, "password": {"wrong-password"}}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("enrolment with a wrong password: status %d", r.StatusCode)
	}
	if r := stranger.post("/enrol", url.Values{"token": {tok(bobLink)}, "username": {"alice"}, "password": {v.Password(t, "alice")}}); r.StatusCode != http.StatusUnauthorized || !strings.Contains(string(r.Body), "not valid") {
		t.Errorf("alice with bob's link: status %d\n%s", r.StatusCode, r.Body)
	}

	alice, secret := enrolThroughLink(t, p, link, "alice", v.Password(t, "alice"))
	if r := alice.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("download after enrolment: status %d", r.StatusCode)
	}
	// The link is spent.
	if r := newBrowser(t, p.URL).post("/enrol", url.Values{"token": {tok(link)}, "username": {"alice"}, "password": {v.Password(t, "alice")}}); r.StatusCode != http.StatusUnauthorized || !strings.Contains(string(r.Body), "not valid") {
		t.Errorf("second use of the link: status %d\n%s", r.StatusCode, r.Body)
	}
	// The next login asks for a code from the enrolled secret.
	b := newBrowser(t, p.URL)
	b.passwordStep("alice", v.Password(t, "alice"))
	mustLanded(t, b.codeStep(code(t, secret, time.Now().Add(30*time.Second))), "login with the enrolled secret")

	// Lost phone: reset destroys the secret; alice is told to ask the
	// helpdesk until she uses the new link, whose secret differs.
	reset := makeEnrolLink(t, helen, "alice", true)
	b = newBrowser(t, p.URL)
	b.passwordStep("alice", v.Password(t, "alice"))
	if r := b.codeStep(code(t, secret, time.Now().Add(-30*time.Second))); r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), "Ask the helpdesk to enrol you") {
		t.Fatalf("old secret after reset: status %d\n%s", r.StatusCode, r.Body)
	}
	_, again := enrolThroughLink(t, p, reset, "alice", v.Password(t, "alice"))
	if again == secret {
		t.Error("the reset enrolment has the old secret")
	}

	if n := len(sessionEvents(t, db, "mfa.enrolment_link", "alice")); n != 2 {
		t.Errorf("%d mfa.enrolment_link events for alice, want 2", n)
	}
	// The intent before the secret is destroyed, the success after.
	if ev := sessionEvents(t, db, "mfa.reset", "alice"); len(ev) != 2 || ev[0].Outcome != "intent" || ev[1].Outcome != "success" ||
		ev[0].Actor != "helen" || ev[1].Actor != "helen" || ev[0].Details["ticket"] != "INC-42" || ev[1].Details["ticket"] != "INC-42" {
		t.Errorf("mfa.reset events: %+v, want an intent then a success by helen with ticket INC-42", ev)
	}
	if n := len(sessionEvents(t, db, "mfa.enrol", "alice")); n < 2 {
		t.Errorf("%d mfa.enrol events for alice, want 2 successes (and the refused ones)", n)
	}
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM mfa_enrolments WHERE token_hash = ?`, tok(link)).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("a link token stored in clear: %d rows, %v", rows, err)
	}
	logs := p.Logs.String()
	for _, s := range []string{secret, again, helenSecret, tok(link), tok(reset)} {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains a secret or link token %q", s)
		}
	}
	dump := fmt.Sprint(dumpAudit(t, db))
	for _, s := range []string{secret, again, tok(link)} {
		if strings.Contains(dump, s) {
			t.Errorf("the trail contains %q", s)
		}
	}
}

// vaultMFALogin logs user in to Vault directly, password then a code from
// secret: whether their second factor is still the one they enrolled.
func vaultMFALogin(t *testing.T, v *testenv.Vault, user, password, methodID, secret string) error {
	t.Helper()
	c := v.ClientFrom(t, "127.0.0.1", "")
	l, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": password})
	if err != nil {
		return fmt.Errorf("password: %w", err)
	}
	if l == nil || l.Auth == nil || l.Auth.MFARequirement == nil {
		return fmt.Errorf("vault asked %s for no code", user)
	}
	res, err := c.Logical().Write("sys/mfa/validate", map[string]any{"mfa_request_id": l.Auth.MFARequirement.MFARequestID,
		"mfa_payload": map[string]any{methodID: []string{code(t, secret, time.Now())}}})
	if err != nil {
		return fmt.Errorf("code: %w", err)
	}
	if res == nil || res.Auth == nil || res.Auth.ClientToken == "" {
		return fmt.Errorf("no token after the code")
	}
	return nil
}

// TestMFAHelpdeskOnlyPortalUsers: Vault's login enforcement covers every
// user of the userpass mount, Vault operators too. The portal's helpdesk
// resets and enrols the second factor of portal users only: not of a
// Vault user without a portal policy, nor of one whose userpass user holds
// Vault policies beyond the portal's (a Vault admin who also has a
// certificate). Otherwise a helpdesk agent could destroy an operator's
// second factor and, with the password, enrol a phone of their own for
// Vault itself. Refused before Vault is touched, and recorded.
func TestMFAHelpdeskOnlyPortalUsers(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	helenSecret := adminEnrol(t, v, "helen", method)
	const pw = "operator-password-1"
	v.CreateUser(t, "vera", pw, nil, "vault-admin")                              // a Vault operator
	v.CreateUser(t, "dave", pw, nil, setup.Defaults().UserPolicy, "vault-admin") // an operator with a certificate
	v.CreateUser(t, "erin", pw, nil, setup.Defaults().UserPolicy, "default")     // an employee
	secrets := map[string]string{}
	for _, u := range []string{"vera", "dave", "erin"} {
		secrets[u] = adminEnrol(t, v, u, method)
	}
	p := startPortal(t, v, map[string]string{"CERTPORTAL_PUBLIC_URL": "https://certs.example.com"})
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, helen.codeStep(code(t, helenSecret, time.Now())), "helen's login")

	for _, u := range []string{"vera", "dave"} {
		for _, reset := range []bool{true, false} {
			form := url.Values{"ticket": {"INC-7"}}
			if reset {
				form.Set("reset", "1")
			}
			r := helen.post("/helpdesk/users/"+u+"/mfa", form)
			if r.StatusCode != http.StatusForbidden || enrolLinkRe.Match(r.Body) {
				t.Errorf("helpdesk enrolment for %s (reset %t): status %d, want 403 and no link\n%s", u, reset, r.StatusCode, r.Body)
			}
		}
		if err := vaultMFALogin(t, v, u, pw, method, secrets[u]); err != nil {
			t.Errorf("%s's own second factor after the helpdesk's attempts: %v", u, err)
		}
		if ev := sessionEvents(t, db, "mfa.reset", u); len(ev) != 1 || ev[0].Outcome != "denied" || ev[0].Actor != "helen" {
			t.Errorf("mfa.reset events for %s: %+v, want one denied by helen", u, ev)
		}
		if ev := sessionEvents(t, db, "mfa.enrolment_link", u); len(ev) != 1 || ev[0].Outcome != "denied" {
			t.Errorf("mfa.enrolment_link events for %s: %+v, want one denied", u, ev)
		}
	}
	var links int
	if err := db.QueryRow(`SELECT count(*) FROM mfa_enrolments WHERE username IN ('vera', 'dave')`).Scan(&links); err != nil || links != 0 {
		t.Errorf("%d enrolment links stored for operators (%v)", links, err)
	}
	// A portal user whose role comes from an identity group (not in
	// token_policies) and who has logged in to the portal: the helpdesk's.
	v.CreateUser(t, "gina", pw, nil, "default")
	ginaSecret := adminEnrol(t, v, "gina", method)
	ent, err := v.Admin.Logical().Read("identity/entity/name/user-gina")
	if err != nil || ent == nil {
		t.Fatalf("gina's entity: %v", err)
	}
	if _, err := v.Admin.Logical().Write("identity/group", map[string]any{"name": "portal-users",
		"policies": []string{setup.Defaults().UserPolicy}, "member_entity_ids": []string{ent.Data["id"].(string)}}); err != nil {
		t.Fatal(err)
	}
	gina := newBrowser(t, p.URL)
	gina.passwordStep("gina", pw)
	mustLanded(t, gina.codeStep(code(t, ginaSecret, time.Now())), "gina's login")
	makeEnrolLink(t, helen, "gina", true)
	// An employee is the helpdesk's to reset, as before; the link leads to
	// the portal's configured address whatever Host the request named.
	req, _ := http.NewRequest(http.MethodPost, p.URL+"/helpdesk/users/erin/mfa", strings.NewReader(url.Values{"ticket": {"INC-8"}, "reset": {"1"}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Host = "evil.example"
	base, _ := url.Parse(p.URL)
	for _, c := range helen.c.Jar.Cookies(base) {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{}).Do(req) // helen's cookies, sent whatever the Host
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	r := &response{Response: resp, Body: body}
	m := enrolLinkRe.FindSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil || !strings.HasPrefix(html.UnescapeString(string(m[1])), "https://certs.example.com/enrol#token=") {
		t.Fatalf("erin's link with Host evil.example: status %d, link %q\n%s", r.StatusCode, m, r.Body)
	}
	u, err := url.Parse(html.UnescapeString(string(m[1])))
	if err != nil {
		t.Fatal(err)
	}
	link := u.RequestURI() + "#" + u.Fragment
	if err := vaultMFALogin(t, v, "erin", pw, method, secrets["erin"]); err == nil {
		t.Error("erin's old secret still works after the helpdesk's reset")
	}
	enrolThroughLink(t, p, link, "erin", pw)
}
