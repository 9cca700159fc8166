package main

import (
	"crypto/elliptic"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// serialRoute is one request that names a certificate by its serial: in
// the address, or in the renew form's hidden field.
type serialRoute struct {
	name, method, path string
	form               url.Values
	json               bool // the device-key path: a JSON answer
}

func (b *client) send(rt serialRoute, lang string) *response {
	b.t.Helper()
	if rt.method == http.MethodGet {
		req, _ := http.NewRequest(http.MethodGet, b.base+rt.path, nil)
		req.Header.Set("Accept-Language", lang)
		return b.do(req)
	}
	return b.post(rt.path, rt.form, "Accept-Language", lang)
}

// employeeSerialRoutes are an employee's routes that take serial: the
// revoke confirmation and the revocation, the renew form, and renewing it
// by download and by the device-key path (JSON).
func employeeSerialRoutes(t *testing.T, serial string) []serialRoute {
	renew := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	renew.Set("renew_serial", serial)
	csr := csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}), "720h0m0s", "")
	csr.Set("encryption", "modern")
	csr.Set("renew_serial", serial)
	return []serialRoute{
		{"revoke confirmation", http.MethodGet, "/certificates/" + serial + "/revoke", nil, false},
		{"revoke", http.MethodPost, "/certificates/" + serial + "/revoke", url.Values{"reason": {"lost"}}, false},
		{"renew form", http.MethodGet, "/certificates/" + serial + "/renew", nil, false},
		{"renew download", http.MethodPost, "/certificates", renew, false},
		{"renew device key", http.MethodPost, "/certificates/csr", csr, true},
	}
}

// helpdeskSerialRoutes are the helpdesk's: revoke and re-enrol (each a
// confirmation and a post) and the Vault-only revocation.
func helpdeskSerialRoutes(serial string) []serialRoute {
	form := url.Values{"reason": {"lost"}, "ticket": {"INC-1"}}
	return []serialRoute{
		{"helpdesk revoke confirmation", http.MethodGet, "/helpdesk/certificates/" + serial + "/revoke", nil, false},
		{"helpdesk revoke", http.MethodPost, "/helpdesk/certificates/" + serial + "/revoke", form, false},
		{"helpdesk re-enrol confirmation", http.MethodGet, "/helpdesk/certificates/" + serial + "/reissue", nil, false},
		{"helpdesk re-enrol", http.MethodPost, "/helpdesk/certificates/" + serial + "/reissue", form, false},
		{"vault-only revoke page", http.MethodGet, "/helpdesk/vault-certificates/" + serial + "/revoke", nil, false},
		{"vault-only revoke", http.MethodPost, "/helpdesk/vault-certificates/" + serial + "/revoke", form, false},
	}
}

// refusal is what a page or JSON answer says, and the catalog key the JSON
// names.
func refusal(t *testing.T, r *response, isJSON bool) (msg, key string) {
	t.Helper()
	if isJSON {
		var a struct {
			Error string `json:"error"`
			Code  string `json:"code"`
			Field string `json:"field"`
		}
		if err := json.Unmarshal(r.Body, &a); err != nil {
			t.Fatalf("JSON: %v\n%s", err, r.Body)
		}
		if a.Field != "" {
			t.Errorf("JSON names the field %q", a.Field)
		}
		return a.Error, a.Code
	}
	return html.UnescapeString(extract(r.Body, `id="error-message">`, "</p>")), ""
}

// TestCertificateAddress: a serial in an address (or the renew form's
// hidden field) that is no serial at all is answered on every route that
// takes one with a page-level 404 in the user's language ("this
// certificate address is not valid"), never "Check the field Serial" on a
// page with no such field; "already revoked" names no field either.
func TestCertificateAddress(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice, helen := newBrowser(t, p.URL), newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	helen.mustLogin("helen", v.Password(t, "helen"))

	for _, bad := range []string{"not-a-serial", "zz:zz"} {
		for _, lang := range i18n.Supported {
			want := i18n.T(lang, "error.certificate_address_invalid")
			check := func(b *client, rt serialRoute) {
				t.Run(rt.name+"/"+bad+"/"+string(lang), func(t *testing.T) {
					r := b.send(rt, string(lang))
					if r.StatusCode != http.StatusNotFound {
						t.Errorf("status %d, want 404\n%.400s", r.StatusCode, r.Body)
					}
					msg, key := refusal(t, r, rt.json)
					if msg != want || (rt.json && key != "error.certificate_address_invalid") {
						t.Errorf("says %q (%s), want %q", msg, key, want)
					}
					if field := i18n.T(lang, "field.serial"); strings.Contains(msg, field) {
						t.Errorf("names the field %q: %q", field, msg)
					}
				})
			}
			for _, rt := range employeeSerialRoutes(t, bad) {
				check(alice, rt)
			}
			for _, rt := range helpdeskSerialRoutes(bad) {
				check(helen, rt)
			}
		}
	}
	if certs, issues := recorded(t, p.DB); len(certs) != 0 || issues != 0 {
		t.Errorf("refused renewals issued: %d certificates, %d issue events", len(certs), issues)
	}

	// Revoked twice: said on its own, with no field to check.
	mine := alice.issue("modern")
	if r := alice.post("/certificates/"+mine+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", r.StatusCode, r.Body)
	}
	for _, lang := range i18n.Supported {
		r := alice.post("/certificates/"+mine+"/revoke", url.Values{"reason": {"lost"}}, "Accept-Language", string(lang))
		if msg, _ := refusal(t, r, false); r.StatusCode != http.StatusBadRequest || msg != i18n.T(lang, "error.already_revoked") {
			t.Errorf("%s: revoked again: %d %q, want 400 %q", lang, r.StatusCode, msg, i18n.T(lang, "error.already_revoked"))
		}
	}
}

// TestOthersSerialLooksUnknown: an employee naming another user's
// certificate, on every route that takes a serial, gets exactly the answer
// an unknown serial gets (404, the same page or JSON, byte for byte), so a
// leaked or guessed serial does not tell that it exists; nothing happens
// to the certificate and nothing is issued. Helpdesk staff, who may see
// every certificate, keep their pages and are told plainly on an
// employee's page that it is not theirs.
func TestOthersSerialLooksUnknown(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice, bob, helen := newBrowser(t, p.URL), newBrowser(t, p.URL), newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	bob.mustLogin("bob", v.Password(t, "bob"))
	helen.mustLogin("helen", v.Password(t, "helen"))
	bobs := bob.issue("modern")
	const unknown = "01:02:03:04:05:06:07:08"

	others, unknowns := employeeSerialRoutes(t, bobs), employeeSerialRoutes(t, unknown)
	for i := range others {
		for _, lang := range i18n.Supported {
			t.Run(others[i].name+"/"+string(lang), func(t *testing.T) {
				o, u := alice.send(others[i], string(lang)), alice.send(unknowns[i], string(lang))
				if o.StatusCode != http.StatusNotFound || u.StatusCode != http.StatusNotFound {
					t.Errorf("bob's serial: %d, an unknown one: %d; want 404 for both\n%.400s", o.StatusCode, u.StatusCode, o.Body)
				}
				// The pages name their own address (the language switch):
				// that is the serial asked for, nothing learned.
				if strings.ReplaceAll(string(o.Body), bobs, "SERIAL") != strings.ReplaceAll(string(u.Body), unknown, "SERIAL") {
					t.Errorf("bob's serial and an unknown one answered differently:\n%s\n---\n%s", o.Body, u.Body)
				}
				if msg, _ := refusal(t, o, others[i].json); msg != i18n.T(lang, "error.certificate_not_found") {
					t.Errorf("says %q, want %q", msg, i18n.T(lang, "error.certificate_not_found"))
				}
			})
		}
	}
	if slices.Contains(crl(t, v), bobs) {
		t.Fatal("bob's certificate was revoked by alice")
	}
	if certs, _ := recorded(t, p.DB); len(certs) != 1 {
		t.Errorf("%d certificates in the inventory, want bob's one only", len(certs))
	}
	// The attempts are on the record all the same.
	if n := storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'access.denied' AND actor = 'alice'`); n == 0 {
		t.Error("alice's attempts on bob's certificate are not in the trail")
	}

	// Helpdesk staff keep their access to every user's certificate.
	if r := helen.get("/helpdesk/certificates/" + bobs + "/revoke"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="hd-revoke-form"`) {
		t.Errorf("helpdesk confirmation for bob's certificate: %d", r.StatusCode)
	}
	if r := helen.get("/certificates/" + bobs + "/renew"); r.StatusCode != http.StatusForbidden ||
		html.UnescapeString(extract(r.Body, `id="error-message">`, "</p>")) != i18n.T(i18n.English, "error.not_your_certificate") {
		t.Errorf("helpdesk on an employee's page for bob's certificate: %d, want 403 not yours\n%.400s", r.StatusCode, r.Body)
	}
}

// TestStepUpPasswordOnlyRefusal: with MFA off the step-up asks for the
// password only, and a wrong one is refused in those words, with no word
// of a code: on the step-up page and in the device-key path's JSON, in
// English and Korean. (With MFA, "password or code": TestStepUpMFA.)
func TestStepUpPasswordOnlyRefusal(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp,
		"CERTPORTAL_LOGIN_MAX_FAILURES": "100", "CERTPORTAL_LOGIN_USER_MAX_FAILURES": "100"})
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	waitFor(t, alice, "/", "step-up age passes", stepUpDue)

	wrong := withStepUp(issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern"), "not-alices-password", "")
	csr := withStepUp(csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: "alice@example.com"}}), "720h0m0s", ""), "not-alices-password", "")
	for _, lang := range i18n.Supported {
		want := i18n.T(lang, "error.stepup_password_failed")
		if want == i18n.T(lang, "error.stepup_failed") || strings.Contains(want, i18n.T(lang, "login.mfa_code")) {
			t.Fatalf("%s: the password-only refusal %q reads as the one with a code", lang, want)
		}
		r := alice.post("/certificates", wrong, "Accept-Language", string(lang))
		stepUpPage(t, r, "/certificates", false, "wrong password, MFA off")
		if msg := html.UnescapeString(extract(r.Body, `id="stepup-error">`, "</p>")); msg != want {
			t.Errorf("%s: step-up page says %q, want %q", lang, msg, want)
		}
		j := alice.post("/certificates/csr", csr, "Accept-Language", string(lang))
		var a struct {
			Error  string `json:"error"`
			StepUp bool   `json:"stepup"`
			MFA    bool   `json:"mfa"`
		}
		if err := json.Unmarshal(j.Body, &a); err != nil || j.StatusCode != http.StatusUnauthorized || !a.StepUp || a.MFA || a.Error != want {
			t.Errorf("%s: device-key step-up: %d %+v (%v), want 401 stepup without mfa saying %q", lang, j.StatusCode, a, err, want)
		}
	}
}

// TestHelpdeskSearchRejected: a search the portal refuses shows the reason
// only, not also "No users found" as if it had looked; a search that finds
// nobody still says so.
func TestHelpdeskSearchRejected(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	for _, lang := range i18n.Supported {
		for _, q := range []string{"Bad Name!", strings.Repeat("a", 300)} {
			r := helen.get("/helpdesk?lang=" + string(lang) + "&q=" + url.QueryEscape(q))
			body := string(r.Body)
			if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="form-error"`) {
				t.Errorf("%s %.20q: %d, want 400 with the error\n%s", lang, q, r.StatusCode, body)
			}
			if strings.Contains(body, `id="no-users"`) || strings.Contains(body, html.EscapeString(i18n.T(lang, "helpdesk.no_users"))) {
				t.Errorf("%s %.20q: a refused search also says no users were found", lang, q)
			}
		}
		if r := helen.get("/helpdesk?lang=" + string(lang) + "&q=nobody-by-this-name"); r.StatusCode != http.StatusOK ||
			!strings.Contains(string(r.Body), `id="no-users"`) || strings.Contains(string(r.Body), `id="form-error"`) {
			t.Errorf("%s: a search that finds nobody: %d\n%s", lang, r.StatusCode, r.Body)
		}
	}
}

// TestReconcileRunningPage: while a reconciliation runs (held here at its
// LIST of Vault), its page says one is running, not "none has run yet" nor
// "0 of 0", offers no start button but a link to refresh, in English and
// Korean; a second start is refused with a clear message (409) and starts
// nothing; when the run is done the page offers to start again.
func TestReconcileRunningPage(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	cv := startReadCountingVault(t, v)
	p := startPortal(t, v, map[string]string{"VAULT_ADDR": cv.URL})
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))

	hold := make(chan struct{})
	arrive := make(chan struct{}, 4)
	cv.mu.Lock()
	cv.hold, cv.listArrive = hold, arrive
	cv.mu.Unlock()
	released := false
	release := func() {
		if !released {
			released = true
			cv.mu.Lock()
			cv.hold = nil
			cv.mu.Unlock()
			close(hold)
		}
	}
	t.Cleanup(release)

	runningPage := func(what string) {
		t.Helper()
		for _, lang := range i18n.Supported {
			r := audrey.get("/audit/reconcile?lang=" + string(lang))
			body := string(r.Body)
			if r.StatusCode != http.StatusOK || !strings.Contains(body, `id="reconcile-running"`) {
				t.Fatalf("%s, %s: %d, no word of the run\n%s", what, lang, r.StatusCode, body)
			}
			// Vault's list is not read yet: no count is known.
			zero := map[i18n.Lang]string{i18n.English: "0 of 0", i18n.Korean: "0개 중 0개"}[lang]
			if running := extract(r.Body, `id="reconcile-running" role="status">`, "</p>"); strings.Contains(running, zero) {
				t.Errorf("%s, %s: %q", what, lang, running)
			}
			if strings.Contains(body, html.EscapeString(i18n.T(lang, "audit.reconcile_never"))) {
				t.Errorf("%s, %s: says none has run yet while one runs", what, lang)
			}
			if strings.Contains(body, `id="reconcile-start"`) || strings.Contains(body, `action="/audit/reconcile"`) {
				t.Errorf("%s, %s: a start button while one runs", what, lang)
			}
			if !strings.Contains(body, `<a href="/audit/reconcile" id="reconcile-refresh">`+html.EscapeString(i18n.T(lang, "audit.reconcile_refresh"))+`</a>`) {
				t.Errorf("%s, %s: no refresh link", what, lang)
			}
			if strings.Contains(body, `http-equiv="refresh"`) {
				t.Errorf("%s, %s: the page reloads itself", what, lang)
			}
		}
	}
	if r := audrey.post("/audit/reconcile", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("start: %d\n%s", r.StatusCode, r.Body)
	}
	// At once, whether the run has started yet or is still asked for.
	runningPage("right after the start")
	select {
	case <-arrive:
	case <-time.After(2 * time.Minute):
		t.Fatal("the run never listed Vault")
	}
	runningPage("while it lists Vault")
	for _, lang := range i18n.Supported {
		r := audrey.post("/audit/reconcile?lang="+string(lang), nil)
		if msg := html.UnescapeString(extract(r.Body, `id="error-message">`, "</p>")); r.StatusCode != http.StatusConflict || msg != i18n.T(lang, "error.reconcile_busy") {
			t.Errorf("%s: second start: %d %q, want 409 %q", lang, r.StatusCode, msg, i18n.T(lang, "error.reconcile_busy"))
		}
	}
	release()
	deadline := time.Now().Add(2 * time.Minute)
	for audrey.get("/audit/reconcile?format=json").Header.Get("X-Reconcile-State") != "done" {
		if time.Now().After(deadline) {
			t.Fatal("the run did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	r := audrey.get("/audit/reconcile")
	if body := string(r.Body); !strings.Contains(body, `id="reconcile-start"`) || strings.Contains(body, `id="reconcile-running"`) || !strings.Contains(body, `id="reconcile-last"`) {
		t.Errorf("after the run: no start button, or still running:\n%s", body)
	}
	if n := storeInt(t, p.DB, `SELECT count(*) FROM reconcile_runs`); n != 1 {
		t.Errorf("%d runs, want 1: the refused start ran one after all", n)
	}
	if n := cv.lists.Load(); n != 1 {
		t.Errorf("Vault listed %d times, want 1", n)
	}
}
