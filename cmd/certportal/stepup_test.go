package main

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// The step-up age the tests run with: short enough to wait for, long
// enough that the request right after a step-up is still within it on a
// loaded machine.
const testStepUp = "6s"

var hiddenRe = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)

// stepUpPage asserts r is the step-up page for action (401 unless want
// says otherwise), with the code field exactly when code, and returns the
// form it re-submits: the kept (hidden) fields.
func stepUpPage(t *testing.T, r *response, action string, code bool, what string) url.Values {
	t.Helper()
	body := string(r.Body)
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(body, `id="stepup-submit"`) || !strings.Contains(body, `action="`+action+`"`) {
		t.Fatalf("%s: want 401 with the step-up page for %s, got %d %q\n%s", what, action, r.StatusCode, r.Header.Get("Content-Type"), body)
	}
	if got := strings.Contains(body, `name="stepup_code"`); got != code {
		t.Fatalf("%s: code field shown %v, want %v\n%s", what, got, code, body)
	}
	if r.Header.Get("Content-Type") == "application/x-pkcs12" {
		t.Fatalf("%s: a .p12 came back", what)
	}
	// The form's own fields, in <main>: the header's language switch
	// carries a copy of them.
	kept := url.Values{}
	for _, m := range hiddenRe.FindAllStringSubmatch(body[strings.Index(body, "<main"):], -1) {
		kept.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	return kept
}

// withStepUp is form plus the step-up credentials.
func withStepUp(form url.Values, password, code string) url.Values {
	out := url.Values{}
	for k, v := range form {
		out[k] = append([]string(nil), v...)
	}
	out.Set("stepup_password", password)
	if code != "" {
		out.Set("stepup_code", code)
	}
	return out
}

// stepUpDue: the dashboard (or any gated form) shows the step-up fields.
func stepUpDue(r *response) bool {
	return r.StatusCode == http.StatusOK && strings.Contains(string(r.Body), `name="stepup_password"`)
}

func mustP12(t *testing.T, r *response, what string) string {
	t.Helper()
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("%s: want a .p12, got %d %q\n%s", what, r.StatusCode, r.Header.Get("Content-Type"), r.Body)
	}
	return r.Header.Get("X-Certificate-Serial")
}

// mustStepUpRefused: the refusal names what the page asked for, the
// password and a code, or (MFA off) the password only.
func mustStepUpRefused(t *testing.T, r *response, action string, code bool, what string) {
	t.Helper()
	stepUpPage(t, r, action, code, what)
	want := "Password not accepted."
	if code {
		want = "Password or code not accepted."
	}
	if msg := extract(r.Body, `id="stepup-error">`, "</p>"); !strings.HasPrefix(msg, want) {
		t.Fatalf("%s: step-up page says %q, want %q\n%s", what, msg, want, r.Body)
	}
}

// TestStepUpMFA: with Vault Login MFA, a download, a revocation and a
// helpdesk action after the step-up age ask for password and code again
// (a fresh Vault login and sys/mfa/validate); the download form's choices
// survive the step-up page; a wrong password and a wrong code are refused
// alike and recorded; within the age nothing is asked.
func TestStepUpMFA(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	aliceSecret := adminEnrol(t, v, "alice", method)
	helenSecret := adminEnrol(t, v, "helen", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp})
	db := openSQLite(t, p.DB)
	alicePass, helenPass := v.Password(t, "alice"), v.Password(t, "helen")
	// Each code works once: the test walks the 30-second steps Vault's
	// skew of one accepts, and logs in with the previous step's codes.
	// Those are valid only while Vault's clock is still in now's step, so
	// now is taken early in a step (a login that crossed into the next
	// step got 401 under load).
	now := earlyInStep()
	alice := newBrowser(t, p.URL)
	alice.passwordStep("alice", alicePass)
	mustLanded(t, alice.codeStep(code(t, aliceSecret, now.Add(-30*time.Second))), "alice's login")
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", helenPass)
	mustLanded(t, helen.codeStep(code(t, helenSecret, now.Add(-30*time.Second))), "helen's login")

	// A fresh session downloads without being asked.
	first := mustP12(t, alice.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")), "download in a fresh session")

	waitFor(t, alice, "/", "step-up age passes", stepUpDue)
	form := issueForm(mfaPassword, mfaPassword, "168h0m0s", "compat")
	form.Set("label", "Laptop stepped")
	kept := stepUpPage(t, alice.post("/certificates", form), "/certificates", true, "download after the step-up age")
	for k, want := range map[string]string{"ttl": "168h0m0s", "encryption": "compat", "label": "Laptop stepped"} {
		if kept.Get(k) != want {
			t.Errorf("step-up page kept %s=%q, want %q", k, kept.Get(k), want)
		}
	}
	for _, k := range []string{"password", "password_confirm", "stepup_password"} {
		if kept.Has(k) {
			t.Errorf("step-up page keeps %s", k)
		}
	}
	if r := alice.post("/certificates", form); strings.Contains(string(r.Body), mfaPassword) {
		t.Error("the step-up page echoes the file password")
	}
	// The form the page re-submits: kept fields, the file password typed
	// again, the login password and a code.
	resubmit := func(password, c string) url.Values {
		f := withStepUp(kept, password, c)
		f.Set("password", mfaPassword)
		f.Set("password_confirm", mfaPassword)
		return f
	}
	mustStepUpRefused(t, alice.post("/certificates", resubmit("not-alices-password", code(t, aliceSecret, now))), "/certificates", true, "wrong password, right code")
	mustStepUpRefused(t, alice.post("/certificates", resubmit(alicePass, "000000")), "/certificates", true, "right password, wrong code")
	mustStepUpRefused(t, alice.post("/certificates", resubmit(alicePass, code(t, helenSecret, now))), "/certificates", true, "helen's code")
	second := mustP12(t, alice.post("/certificates", resubmit(alicePass, code(t, aliceSecret, now))), "download with password and code")
	if dash := alice.get("/"); !strings.Contains(string(dash.Body), "Laptop stepped") {
		t.Error("the label chosen before the step-up is not on the certificate")
	}
	// Stepped up: the next risky action within the age asks nothing.
	if r := alice.post("/certificates/"+first+"/revoke", url.Values{"reason": {"superseded"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke right after the step-up: status %d\n%s", r.StatusCode, r.Body)
	}
	third := mustP12(t, alice.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")), "download within the step-up")

	// Helpdesk: helen's login is past the age too.
	hdForm := url.Values{"reason": {"lost"}, "ticket": {"INC-7"}}
	kept = stepUpPage(t, helen.post("/helpdesk/certificates/"+second+"/revoke", hdForm), "/helpdesk/certificates/"+second+"/revoke", true, "helpdesk revoke after the age")
	if kept.Get("ticket") != "INC-7" || kept.Get("reason") != "lost" {
		t.Errorf("helpdesk step-up page kept %v", kept)
	}
	mustStepUpRefused(t, helen.post("/helpdesk/certificates/"+second+"/revoke", withStepUp(kept, helenPass, "123")), "/helpdesk/certificates/"+second+"/revoke", true, "malformed code")
	if r := helen.post("/helpdesk/certificates/"+second+"/revoke", withStepUp(kept, helenPass, code(t, helenSecret, now))); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk revoke with step-up: status %d\n%s", r.StatusCode, r.Body)
	}
	// Every POST under /helpdesk is gated: the enrolment link as well.
	waitFor(t, helen, "/helpdesk/users/bob", "helen's step-up age passes", stepUpDue)
	stepUpPage(t, helen.post("/helpdesk/users/bob/mfa", url.Values{"ticket": {"INC-8"}}), "/helpdesk/users/bob/mfa", true, "enrolment link after the age")
	if r := helen.post("/helpdesk/users/bob/mfa", withStepUp(url.Values{"ticket": {"INC-8"}}, helenPass, code(t, helenSecret, now.Add(30*time.Second)))); r.StatusCode != http.StatusOK || !enrolLinkRe.Match(r.Body) {
		t.Fatalf("enrolment link with step-up: status %d\n%s", r.StatusCode, r.Body)
	}

	// Alice's own revocation, once her step-up is old too.
	waitFor(t, alice, "/certificates/"+third+"/revoke", "alice's step-up age passes", stepUpDue)
	revoke := "/certificates/" + third + "/revoke"
	kept = stepUpPage(t, alice.post(revoke, url.Values{"reason": {"lost"}}), revoke, true, "revoke after the age")
	if r := alice.post(revoke, withStepUp(kept, alicePass, code(t, aliceSecret, now.Add(30*time.Second)))); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke with step-up: status %d\n%s", r.StatusCode, r.Body)
	}

	var fails, oks int
	for _, e := range sessionEvents(t, db, "session.step_up", "alice") {
		switch {
		case e.Outcome == "failure" && e.Details["for"] == "POST /certificates":
			fails++
		case e.Outcome == "success" && e.Details["mfa"] == "totp":
			oks++
		}
	}
	if fails != 3 || oks != 2 {
		t.Errorf("alice's session.step_up events: %d failures (want 3) and %d successes (want 2)", fails, oks)
	}
	if ev := sessionEvents(t, db, "session.step_up", "helen"); len(ev) != 3 || ev[0].Outcome != "failure" || ev[2].Outcome != "success" {
		t.Errorf("helen's session.step_up events: %+v", ev)
	}
	// Each step-up's token was given back: alice holds her login's only.
	if n := liveTokens(t, v, "alice"); n != 1 {
		t.Errorf("alice has %d live Vault tokens after two step-ups, want 1 (the session's)", n)
	}
	assertTrailClean(t, db)
	logs := p.Logs.String()
	for _, s := range []string{alicePass, helenPass, mfaPassword, aliceSecret} {
		if strings.Contains(logs, s) {
			t.Errorf("the log contains %q", s)
		}
	}
}

// TestStepUpPassword: with MFA off the step-up is the password again; a
// wrong one is refused, recorded, and counts toward the failed-login limit
// of the address like a wrong login does.
func TestStepUpPassword(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp,
		"CERTPORTAL_LOGIN_MAX_FAILURES": "3", "CERTPORTAL_LOGIN_USER_MAX_FAILURES": "100"})
	db := openSQLite(t, p.DB)
	alicePass := v.Password(t, "alice")
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", alicePass)
	waitFor(t, alice, "/", "step-up age passes", stepUpDue)

	form := issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")
	kept := stepUpPage(t, alice.post("/certificates", form), "/certificates", false, "download after the age, MFA off")
	resubmit := withStepUp(kept, alicePass, "")
	resubmit.Set("password", mfaPassword)
	resubmit.Set("password_confirm", mfaPassword)
	mustP12(t, alice.post("/certificates", resubmit), "download with the password again")
	if ev := sessionEvents(t, db, "session.step_up", "alice"); len(ev) != 1 || ev[0].Outcome != "success" || ev[0].Details["mfa"] != "password" {
		t.Errorf("session.step_up events: %+v", ev)
	}

	// Three wrong passwords at the step-up use the address's allowance:
	// the fourth attempt, and a login from there, are refused unasked.
	waitFor(t, alice, "/", "step-up age passes again", stepUpDue)
	wrong := withStepUp(kept, "not-alices-password", "")
	wrong.Set("password", mfaPassword)
	wrong.Set("password_confirm", mfaPassword)
	for i := 0; i < 3; i++ {
		mustStepUpRefused(t, alice.post("/certificates", wrong), "/certificates", false, "wrong password at the step-up")
	}
	if r := alice.post("/certificates", resubmit); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("step-up after three failures: status %d, want 429", r.StatusCode)
	}
	if r := newBrowser(t, p.URL).post("/login", url.Values{"username": {"bob"}, "password": {v.Password(t, "bob")}}); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("login from the address after three failed step-ups: status %d, want 429", r.StatusCode)
	}
	var fails int
	for _, e := range sessionEvents(t, db, "session.step_up", "alice") {
		if e.Outcome == "failure" && e.Details["reason"] == "invalid credentials" {
			fails++
		}
	}
	if fails != 3 {
		t.Errorf("%d failed step-ups recorded, want 3", fails)
	}
}

// TestStepUpLanguageSwitch: the step-up page's language switch shows the
// same page in the other language with the form's choices (a helpdesk
// revocation's reason and ticket) still in it — a link would have lost
// them — and never runs the action or counts as an attempt, even with a
// password in the request; the page it shows then completes the action.
func TestStepUpLanguageSwitch(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp})
	db := openSQLite(t, p.DB)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")
	helenPass := v.Password(t, "helen")
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", helenPass)
	action := "/helpdesk/certificates/" + serial + "/revoke"
	waitFor(t, helen, action, "step-up age passes", stepUpDue)

	form := url.Values{"reason": {"left_company"}, "ticket": {"INC-4242"}}
	r := helen.post(action, form)
	kept := stepUpPage(t, r, action, false, "helpdesk revocation after the age")
	if kept.Get("reason") != "left_company" || kept.Get("ticket") != "INC-4242" {
		t.Fatalf("kept fields %v", kept)
	}
	switchTo := extract(r.Body, `<button type="submit" class="lang" formaction="`, `"`)
	if want := action + "?stepup_relang=1&amp;lang=ko"; switchTo != want {
		t.Fatalf("language switch posts to %q, want %q\n%s", switchTo, want, r.Body)
	}
	revoked := func() bool {
		return countRows(t, db, `SELECT count(*) FROM certificates WHERE serial = '`+serial+`' AND revoked_at IS NOT NULL`) == 1
	}
	for _, tc := range []struct {
		name string
		form url.Values
	}{
		{"the switch", kept},
		{"the switch with a password", withStepUp(kept, helenPass, "")},
	} {
		r := helen.post(html.UnescapeString(switchTo), tc.form)
		body := string(r.Body)
		if r.StatusCode != http.StatusOK || !strings.Contains(body, `<html lang="ko">`) || !strings.Contains(body, `id="stepup-submit"`) {
			t.Fatalf("%s: %d, want the step-up page in Korean\n%s", tc.name, r.StatusCode, body)
		}
		again := url.Values{}
		for _, m := range hiddenRe.FindAllStringSubmatch(body[strings.Index(body, "<main"):], -1) {
			again.Add(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
		}
		if again.Get("reason") != "left_company" || again.Get("ticket") != "INC-4242" || again.Has("stepup_password") {
			t.Errorf("%s: the Korean page's form keeps %v", tc.name, again)
		}
		if strings.Contains(body, helenPass) {
			t.Fatalf("%s: the password is in the page", tc.name)
		}
		if revoked() {
			t.Fatalf("%s revoked the certificate", tc.name)
		}
	}
	if ev := sessionEvents(t, db, "session.step_up", "helen"); len(ev) != 0 {
		t.Errorf("the language switch counted as step-ups: %+v", ev)
	}
	if r := helen.post(action, withStepUp(kept, helenPass, "")); r.StatusCode != http.StatusSeeOther || !revoked() {
		t.Fatalf("revocation from the switched page: %d, revoked %v\n%s", r.StatusCode, revoked(), r.Body)
	}
	var ticket string
	if err := db.QueryRow(`SELECT ticket FROM certificates WHERE serial = ?`, serial).Scan(&ticket); err != nil || ticket != "INC-4242" {
		t.Errorf("ticket %q (%v), want INC-4242", ticket, err)
	}
}

// TestMFATOFU: with CERTPORTAL_MFA_TOFU=true an enforced user without a
// secret gets one at the first login (QR code, then the first code
// finishes the login); the next login is the usual code step; an enrolled
// user never sees a QR code. With the switch off (the default) the same
// user is told to ask the helpdesk (TestMFANotEnrolled).
func TestMFATOFU(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	bobSecret := adminEnrol(t, v, "bob", method)
	off := startPortal(t, v, nil)
	b := newBrowser(t, off.URL)
	b.passwordStep("alice", v.Password(t, "alice"))
	if r := b.codeStep("123456"); r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), "Ask the helpdesk to enrol you") {
		t.Fatalf("TOFU off, not enrolled: status %d\n%s", r.StatusCode, r.Body)
	}

	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_TOFU": "true"})
	db := openSQLite(t, p.DB)
	alice := newBrowser(t, p.URL)
	r := alice.post("/login", url.Values{"username": {"alice"}, "password": {v.Password(t, "alice")}})
	m := totpSecretRe.FindSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil || !strings.Contains(string(r.Body), `src="data:image/png;base64,`) || !strings.Contains(string(r.Body), `action="/login/mfa"`) {
		t.Fatalf("first login with TOFU: status %d\n%s", r.StatusCode, r.Body)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("TOFU scan page Cache-Control %q", r.Header.Get("Cache-Control"))
	}
	secret := strings.ReplaceAll(string(m[1]), " ", "") // shown in groups of four
	// The pre-login session grants nothing until the code.
	if r := alice.get("/"); !isLoginRedirect(r) {
		t.Errorf("GET / before the first code: status %d", r.StatusCode)
	}
	mustCodeRefused(t, alice.codeStep("000000"), "wrong first code")
	mustLanded(t, alice.codeStep(code(t, secret, time.Now())), "first code")
	mustP12(t, alice.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")), "download after TOFU enrolment")

	// Enrolled now: the next login is the code step, with that secret.
	again := newBrowser(t, p.URL)
	again.passwordStep("alice", v.Password(t, "alice"))
	mustLanded(t, again.codeStep(code(t, secret, time.Now().Add(30*time.Second))), "second login")
	// An enrolled user never sees a QR code.
	bob := newBrowser(t, p.URL)
	bob.passwordStep("bob", v.Password(t, "bob"))
	mustLanded(t, bob.codeStep(code(t, bobSecret, time.Now())), "bob's login with TOFU on")

	if ev := sessionEvents(t, db, "mfa.enrol", "alice"); len(ev) != 1 || ev[0].Outcome != "success" || !strings.Contains(ev[0].Details["via"], "trust on first use") {
		t.Errorf("mfa.enrol events for alice: %+v", ev)
	}
	if ev := sessionEvents(t, db, "mfa.enrol", "bob"); len(ev) != 0 {
		t.Errorf("mfa.enrol events for bob, who was enrolled: %+v", ev)
	}
	if strings.Contains(p.Logs.String(), secret) {
		t.Error("the log contains the TOFU secret")
	}
}

// liveTokens counts the valid Vault tokens user's userpass logins hold.
func liveTokens(t *testing.T, v *testenv.Vault, user string) int {
	t.Helper()
	list, err := v.Admin.Logical().List("auth/token/accessors")
	if err != nil || list == nil {
		t.Fatalf("list token accessors: %v", err)
	}
	keys, _ := list.Data["keys"].([]any)
	n := 0
	for _, k := range keys {
		info, err := v.Admin.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": k})
		if err != nil || info == nil {
			continue // revoked meanwhile
		}
		if info.Data["display_name"] == "userpass-"+user {
			n++
		}
	}
	return n
}

// TestStepUpPostgresReplicas: the time of the last proof lives in the
// session, so on PostgreSQL a step-up made through one replica counts on
// the other, and a session due on one is due on both.
func TestStepUpPostgresReplicas(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn, "CERTPORTAL_MFA_STEP_UP": testStepUp, "CERTPORTAL_SESSION_KEY": strings.Repeat("5e", 32)}
	first, second := startPortal(t, v, env), startPortal(t, v, env)
	alicePass := v.Password(t, "alice")
	a := newBrowser(t, first.URL)
	a.mustLogin("alice", alicePass)
	b := &client{t: t, base: second.URL, c: a.c} // the same browser, the other replica
	serial := mustP12(t, a.post("/certificates", issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")), "fresh download")
	waitFor(t, a, "/", "step-up age passes", stepUpDue)
	revoke := "/certificates/" + serial + "/revoke"
	stepUpPage(t, b.post(revoke, url.Values{"reason": {"lost"}}), revoke, false, "revoke on the second replica after the age")
	// Step up on the first replica with a download; the revocation on
	// the second then needs nothing more.
	mustP12(t, a.post("/certificates", withStepUp(issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern"), alicePass, "")), "download with step-up on the first replica")
	if r := b.post(revoke, url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke on the second replica right after the step-up on the first: status %d\n%s", r.StatusCode, r.Body)
	}
}

// TestMFATOFUNotAfterHelpdesk: trust on first use is for users nobody has
// enrolled yet. Once the helpdesk has made a link for a user (or reset a
// lost phone, which makes one), the link is the way in: someone who knows
// only the password must not enrol their own authenticator by logging in
// first and leave the real user's link worthless.
func TestMFATOFUNotAfterHelpdesk(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	helenSecret := adminEnrol(t, v, "helen", method)
	bobSecret := adminEnrol(t, v, "bob", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_TOFU": "true"})
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, helen.codeStep(code(t, helenSecret, time.Now())), "helen's login")
	aliceLink := makeEnrolLink(t, helen, "alice", false) // never enrolled; the helpdesk chose the link
	bobLink := makeEnrolLink(t, helen, "bob", true)      // lost phone: secret destroyed, new link

	for _, user := range []string{"alice", "bob"} {
		thief := newBrowser(t, p.URL)
		r := thief.post("/login", url.Values{"username": {user}, "password": {v.Password(t, user)}})
		if totpSecretRe.Match(r.Body) || r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login/mfa" {
			t.Fatalf("%s's password alone after the helpdesk made a link: status %d, QR code shown %v (trust on first use enrolled the password holder)",
				user, r.StatusCode, totpSecretRe.Match(r.Body))
		}
		if r := thief.codeStep("123456"); r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), "Ask the helpdesk to enrol you") {
			t.Errorf("%s without a secret after the helpdesk made a link: status %d\n%s", user, r.StatusCode, r.Body)
		}
	}
	// The links still do their job.
	enrolThroughLink(t, p, aliceLink, "alice", v.Password(t, "alice"))
	_, again := enrolThroughLink(t, p, bobLink, "bob", v.Password(t, "bob"))
	if again == bobSecret {
		t.Error("bob's reset enrolment has the old secret")
	}
}

// TestMFATOFUOnlyPortalUsers: the enforcement covers every user of the
// userpass mount, and Vault names a login's policies only after the code.
// Trust on first use must not enrol a Vault user the portal has nothing to
// do with (an operator logging in to Vault directly): whoever had that
// password would otherwise get, through the portal, a second factor that
// opens Vault itself.
func TestMFATOFUOnlyPortalUsers(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	enableMFA(t, v)
	if _, err := v.Admin.Logical().Write("auth/userpass/users/ops", map[string]any{"password": "ops-password-1234", "token_policies": "default"}); err != nil {
		t.Fatal(err)
	}
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_TOFU": "true"})
	thief := newBrowser(t, p.URL)
	r := thief.post("/login", url.Values{"username": {"ops"}, "password": {"ops-password-1234"}})
	if totpSecretRe.Match(r.Body) || r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/login/mfa" {
		t.Fatalf("a Vault user without portal policies: status %d, QR code shown %v (trust on first use enrolled them)", r.StatusCode, totpSecretRe.Match(r.Body))
	}
	if r := thief.codeStep("123456"); r.StatusCode != http.StatusForbidden {
		t.Errorf("ops without a secret: status %d\n%s", r.StatusCode, r.Body)
	}
	// Nor a Vault admin who also holds a certificate: the second factor
	// guards their Vault powers too.
	v.CreateUser(t, "dave", "ops-password-1234", nil, setup.Defaults().UserPolicy, "vault-admin")
	thief = newBrowser(t, p.URL)
	if r := thief.post("/login", url.Values{"username": {"dave"}, "password": {"ops-password-1234"}}); totpSecretRe.Match(r.Body) || r.StatusCode != http.StatusSeeOther {
		t.Fatalf("a portal user with Vault policies beyond the portal's: status %d, QR code shown %v (trust on first use enrolled them)", r.StatusCode, totpSecretRe.Match(r.Body))
	}
	// A portal user still enrols on first use.
	alice := newBrowser(t, p.URL)
	if r := alice.post("/login", url.Values{"username": {"alice"}, "password": {v.Password(t, "alice")}}); r.StatusCode != http.StatusOK || !totpSecretRe.Match(r.Body) {
		t.Fatalf("alice's first login with TOFU: status %d\n%s", r.StatusCode, r.Body)
	}
}

// TestEnrolLinkAlreadyEnrolledRecorded: a link used by a user who already
// has a secret is spent and refused; the trail must say so (before, the
// link disappeared without an event).
func TestEnrolLinkAlreadyEnrolledRecorded(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	helenSecret := adminEnrol(t, v, "helen", method)
	adminEnrol(t, v, "bob", method)
	p := startPortal(t, v, nil)
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, helen.codeStep(code(t, helenSecret, time.Now())), "helen's login")
	link := makeEnrolLink(t, helen, "bob", false)
	if r := newBrowser(t, p.URL).post("/enrol", url.Values{"token": {enrolToken(link)}, "username": {"bob"}, "password": {v.Password(t, "bob")}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("link for an enrolled user: status %d\n%s", r.StatusCode, r.Body)
	}
	var refused int
	for _, e := range sessionEvents(t, db, "mfa.enrol", "bob") {
		if e.Outcome == "failure" && strings.Contains(e.Details["reason"], "already") && e.Details["link_by"] == "helen" {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d mfa.enrol failures for bob's spent link, want 1: %+v", refused, sessionEvents(t, db, "mfa.enrol", "bob"))
	}
}

// earlyInStep returns the current time once at least 20 s of its 30-second
// TOTP step remain, waiting for the next step if need be (at most 10 s).
func earlyInStep() time.Time {
	for {
		now := time.Now()
		into := time.Duration(now.UnixNano() % int64(30*time.Second))
		if into <= 10*time.Second {
			return now
		}
		time.Sleep(30*time.Second - into)
	}
}
