package main

import (
	"html"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// outageLangs are the two languages an outage page is checked in, with the
// header that asks for each.
var outageLangs = []struct {
	lang   i18n.Lang
	accept string
}{{i18n.English, "en"}, {i18n.Korean, "ko-KR,ko;q=0.9"}}

// mustOutageForm checks r is the form at action again after an outage: 503,
// Vault's unavailability said in lang with the reference the 5xx pages
// quote (the request's X-Request-Id, which the log names too), and none of
// absent (the password, the code) anywhere in the page.
func mustOutageForm(t *testing.T, p *runningPortal, r *response, lang i18n.Lang, action string, absent ...string) string {
	t.Helper()
	body, id := string(r.Body), r.Header.Get("X-Request-Id")
	if r.StatusCode != http.StatusServiceUnavailable || id == "" {
		t.Fatalf("status %d, X-Request-Id %q; want 503 with the form\n%s", r.StatusCode, id, body)
	}
	for _, want := range []string{
		`<form method="post" action="` + action + `"`,
		`<html lang="` + string(lang) + `">`,
		`id="login-error">` + html.EscapeString(i18n.T(lang, "error.vault_unavailable_login")) + `</p>`,
		`id="error-reference">` + html.EscapeString(i18n.T(lang, "error.reference", id)) + `</p>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("%s: page lacks %s\n%s", lang, want, body)
		}
	}
	for _, secret := range absent {
		if strings.Contains(body, secret) {
			t.Errorf("%s: page shows what was typed in a secret field", lang)
		}
	}
	if !strings.Contains(p.Logs.String(), id) {
		t.Errorf("no log line names request %s", id)
	}
	return body
}

// TestLoginFormAfterVaultOutage: when Vault cannot be asked during login
// (sealed, or not reachable at all), the password step answers 503 with the
// login form again, not the bare error page: the username kept (the cursor
// in the password field), never the password, the destination kept, the
// outage said in EN and KO with the reference; once Vault is back the same
// form logs in. The code step (Vault Login MFA) does the same with its code
// form. Vault keeps a pending login in memory only, so a seal ends it: the
// code sent once Vault is back is answered "log in again" with the login
// form, not a bare error.
func TestLoginFormAfterVaultOutage(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	bobPass := v.Password(t, "bob")
	form := url.Values{"username": {"bob"}, "password": {bobPass}, "next": {"/ca.pem"}}

	t.Run("sealed", func(t *testing.T) {
		v.Seal(t)
		sealed := true
		defer func() {
			if sealed {
				v.Unseal(t)
			}
		}()
		b := newBrowser(t, p.URL)
		for _, l := range outageLangs {
			body := mustOutageForm(t, p, b.post("/login", form, "Accept-Language", l.accept), l.lang, "/login", bobPass)
			for _, want := range []string{
				`id="username" name="username"`, `value="bob"`,
				`<input type="hidden" name="next" value="/ca.pem">`,
				// The name is kept: the password is what to type again.
				`type="password" autocomplete="current-password" required autofocus>`,
			} {
				if !strings.Contains(body, want) {
					t.Errorf("%s: login form lacks %s\n%s", l.lang, want, body)
				}
			}
		}
		v.Unseal(t)
		sealed = false
		if r := b.post("/login", form); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ca.pem" {
			t.Fatalf("login once Vault is back: %d %q\n%s", r.StatusCode, r.Header.Get("Location"), r.Body)
		}
	})

	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + ln.Addr().String()
		ln.Close()
		p2 := startPortal(t, &testenv.Vault{Addr: dead}, map[string]string{
			"CERTPORTAL_APPROLE_ROLE_ID": "unused", "CERTPORTAL_APPROLE_SECRET_ID": "unused"})
		body := mustOutageForm(t, p2, newBrowser(t, p2.URL).post("/login", form), i18n.English, "/login", bobPass)
		if !strings.Contains(body, `value="bob"`) {
			t.Errorf("login form without the username\n%s", body)
		}
	})

	t.Run("code step", func(t *testing.T) {
		secret := adminEnrol(t, v, "alice", enableMFA(t, v))
		b := newBrowser(t, p.URL)
		b.passwordStep("alice", v.Password(t, "alice"))
		v.Seal(t)
		sealed := true
		defer func() {
			if sealed {
				v.Unseal(t)
			}
		}()
		c := code(t, secret, time.Now())
		for _, l := range outageLangs {
			body := mustOutageForm(t, p, b.post("/login/mfa", url.Values{"code": {c}}, "Accept-Language", l.accept), l.lang, "/login/mfa", `value="`+c)
			if !strings.Contains(body, `name="code"`) || !strings.Contains(body, "alice") {
				t.Errorf("%s: code form without its field or the user's name\n%s", l.lang, body)
			}
		}
		v.Unseal(t)
		sealed = false
		r := b.codeStep(code(t, secret, time.Now().Add(30*time.Second)))
		if want := html.EscapeString(i18n.T(i18n.English, "error.mfa_expired")); r.StatusCode != http.StatusUnauthorized ||
			!strings.Contains(string(r.Body), want) || !strings.Contains(string(r.Body), `action="/login"`) {
			t.Fatalf("code once Vault is back from a seal: %d, want 401 with %q and the login form\n%s", r.StatusCode, want, r.Body)
		}
		b.passwordStep("alice", v.Password(t, "alice"))
		mustLanded(t, b.codeStep(code(t, secret, time.Now().Add(30*time.Second))), "the login again once Vault is back")
	})
	assertNoSecrets(t, p.Logs.String(), bobPass, v.Password(t, "alice"))
}
