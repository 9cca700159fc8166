package main

import (
	"encoding/base64"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

func hiddenField(name string) *regexp.Regexp {
	return regexp.MustCompile(`name="` + name + `" value="([^"]*)"`)
}

// TestMFAScanAgainAfterWrongCode: a wrong code from the scan page shows the
// scan page again, with the same QR code and key, so a user whose app did
// not take the account can scan or type it again; the right code then
// finishes the login. Only the page this session showed comes back: a key
// the browser made up gets the plain code page.
func TestMFAScanAgainAfterWrongCode(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	// The smallest body limit the portal accepts: what the page sends back
	// must fit in it (review 80 F2: the QR image did not).
	p := startPortal(t, v, map[string]string{"CERTPORTAL_PUBLIC_URL": "https://certs.example.com", "CERTPORTAL_MAX_BODY_BYTES": "1024"})
	helenSecret := adminEnrol(t, v, "helen", method)
	hb := newBrowser(t, p.URL)
	hb.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, hb.codeStep(code(t, helenSecret, time.Now())), "helen's login")
	link := makeEnrolLink(t, hb, "alice", false)

	b := newBrowser(t, p.URL)
	r := b.post("/enrol", url.Values{"token": {enrolToken(link)}, "username": {"alice"}, "password": {v.Password(t, "alice")}})
	m := totpSecretRe.FindSubmatch(r.Body)
	if r.StatusCode != http.StatusOK || m == nil {
		t.Fatalf("scan page: status %d\n%s", r.StatusCode, r.Body)
	}
	shown := string(m[1])
	secret := strings.ReplaceAll(shown, " ", "")
	hidden := url.Values{}
	for _, name := range []string{"scan_key", "scan_intro"} {
		hm := hiddenField(name).FindSubmatch(r.Body)
		if hm == nil {
			t.Fatalf("scan page lacks the hidden %s", name)
		}
		hidden.Set(name, html.UnescapeString(string(hm[1])))
	}
	post := func(c string, h url.Values) *response {
		f := url.Values{"code": {c}}
		for k, vs := range h {
			f[k] = vs
		}
		return b.post("/login/mfa", f)
	}
	// A wrong code: the same page, the same key, saying what to do.
	again := post("000000", hidden)
	if again.StatusCode != http.StatusUnauthorized || !strings.Contains(string(again.Body), `id="scan-again"`) || !strings.Contains(string(again.Body), "Code not accepted") {
		t.Fatalf("wrong code from the scan page: status %d, want 401 with the scan page again\n%s", again.StatusCode, again.Body)
	}
	if m := totpSecretRe.FindSubmatch(again.Body); m == nil || string(m[1]) != shown {
		t.Fatalf("the scan page after a wrong code does not show the same key")
	}
	// The QR code, drawn anew, holds the same key.
	qm := regexp.MustCompile(`src="data:image/png;base64,([^"]+)"`).FindSubmatch(again.Body)
	if qm == nil {
		t.Fatal("the scan page after a wrong code has no QR code")
	}
	img, err := base64.StdEncoding.DecodeString(html.UnescapeString(string(qm[1])))
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeQR(t, img); got != hidden.Get("scan_key") {
		t.Errorf("the QR code shown again reads %q, want the page's key %q", got, hidden.Get("scan_key"))
	}
	if again.Header.Get("Cache-Control") != "no-store" {
		t.Error("the scan page shown again may be cached")
	}
	// A key the browser made up is not shown as the user's.
	forged := url.Values{"scan_key": {"otpauth://totp/certportal:alice?secret=AAAAAAAAAAAAAAAA&issuer=certportal"}}
	if r := post("000000", forged); strings.Contains(string(r.Body), `id="totp-secret"`) || r.StatusCode != http.StatusUnauthorized {
		t.Errorf("a made-up key: status %d, want 401 with the plain code page, no key shown", r.StatusCode)
	}
	// The right code from the page shown again finishes the login.
	mustLanded(t, post(code(t, secret, time.Now()), hidden), "the right code after the scan page came back")
	// The page the login leads to says the app is set up, once.
	if home := b.get("/"); home.StatusCode != http.StatusOK || !strings.Contains(string(home.Body), `id="flash"`) || !strings.Contains(string(home.Body), "Your authenticator app is set up") {
		t.Errorf("the first page after enrolling: status %d, want the \"app is set up\" notice\n%s", home.StatusCode, home.Body)
	}
	if home := b.get("/?lang=ko"); strings.Contains(string(home.Body), `id="flash"`) {
		t.Error("the enrolment notice is shown a second time")
	}
	// A login with a code from an app set up before says nothing of it.
	hb2 := newBrowser(t, p.URL)
	hb2.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, hb2.codeStep(code(t, helenSecret, time.Now().Add(30*time.Second))), "helen's second login")
	if home := hb2.get("/helpdesk"); strings.Contains(string(home.Body), `id="flash"`) {
		t.Error("an ordinary code login shows the enrolment notice")
	}
	db := openSQLite(t, p.DB)
	assertTrailClean(t, db)
	if strings.Contains(p.Logs.String(), secret) {
		t.Error("the log holds the TOTP secret")
	}
}

// TestEnrolRelangAsksPasswordAgain: the enrolment form in the other
// language keeps the name but never the password, so it puts the cursor in
// the password field and says why it is empty.
func TestEnrolRelangAsksPasswordAgain(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	enableMFA(t, v)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.get("/enrol")
	r := b.post("/enrol?enrol_relang=1&lang=ko", url.Values{"token": {"some-token-from-the-link"}, "username": {"alice"}, "password": {"typed-before"}})
	body := string(r.Body)
	if r.StatusCode != http.StatusOK || strings.Contains(body, "typed-before") {
		t.Fatalf("relang: status %d, or the password came back\n%s", r.StatusCode, body)
	}
	if !regexp.MustCompile(`id="password"[^>]*autofocus`).MatchString(body) || regexp.MustCompile(`id="username"[^>]*autofocus`).MatchString(body) ||
		!strings.Contains(body, `id="password-again"`) {
		t.Errorf("relang with the name filled: want the focus on the password and the hint\n%s", body)
	}
	// Without a name, the name field first, as before.
	r = b.post("/enrol?enrol_relang=1&lang=ko", url.Values{"token": {"some-token-from-the-link"}})
	if !regexp.MustCompile(`id="username"[^>]*autofocus`).MatchString(string(r.Body)) || strings.Contains(string(r.Body), `id="password-again"`) {
		t.Errorf("relang without a name: want the focus on the name, no hint")
	}
}

// TestMFAFormTicketErrorMarksItsField: the helpdesk user page has two
// ticket fields (second factor, on behalf); a refused ticket from the
// enrolment form names and marks that form's field, empty, not the other.
func TestMFAFormTicketErrorMarksItsField(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	setupVault(t, v, "--helpdesk-issue-on-behalf", "--mfa", "totp")
	helenSecret := adminEnrol(t, v, "helen", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true"})
	hb := newBrowser(t, p.URL)
	hb.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, hb.codeStep(code(t, helenSecret, time.Now())), "helen's login")
	r := hb.post("/helpdesk/users/alice/mfa", url.Values{"ticket": {"INC-7\u3164"}})
	body := string(r.Body)
	if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, "Ticket reference (second factor)") {
		t.Fatalf("refused MFA ticket: status %d, want 400 naming the second factor's ticket\n%s", r.StatusCode, body)
	}
	if !regexp.MustCompile(`id="mfa-ticket"[^>]*aria-invalid="true"`).MatchString(body) {
		t.Error("the enrolment form's ticket field is not marked")
	}
	if regexp.MustCompile(`id="ticket"[^>]*aria-invalid`).MatchString(body) {
		t.Error("the on-behalf form's ticket field is marked for the enrolment form's error")
	}
	if m := refilledTicket.FindStringSubmatch(body); m != nil && m[1] != "" {
		t.Errorf("the on-behalf ticket field is filled with the refused ticket %q", m[1])
	}
}
