package main

import (
	"html"
	"net/http"
	"strings"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// TestIssueOnBehalfSavePage: helpdesk staff whose browser posts the
// on-behalf form itself (no page script) get the user's page back with
// the new certificate named in a notice and listed, and the file as a
// save link — not a bare download that leaves them on the filled-in form
// with the old list, where sending it again issues a second certificate.
// Sending that form again issues nothing (409, the certificate named);
// the page's fresh form and a script still issue. The staff member's own
// dashboard does not call the user's certificate "ready".
func TestIssueOnBehalfSavePage(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	setupVault(t, v, "--helpdesk-issue-on-behalf")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true", "CERTPORTAL_MAX_ACTIVE": "10"})
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))

	page := helen.get("/helpdesk/users/bob")
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("ticket", "INC-7")
	form.Set("label", "kiosk-3")
	form.Set("form_id", formIDOn(t, page.Body))
	before := certSet(t, v)

	// A refused form comes back with what was typed, the label too.
	bad := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	bad.Set("label", "kiosk-3")
	if r := helen.post("/helpdesk/users/bob/certificates", bad, navigation...); r.StatusCode != http.StatusBadRequest || !strings.Contains(string(r.Body), `value="kiosk-3"`) {
		t.Errorf("refused on-behalf form (no ticket): %d, want 400 with the label kept", r.StatusCode)
	}

	r := helen.post("/helpdesk/users/bob/certificates", form, navigation...)
	if ct := r.Header.Get("Content-Type"); r.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("on-behalf form as a navigation: %d %s, want bob's page with the file\n%s", r.StatusCode, ct, r.Body)
	}
	if cc, pragma := r.Header.Get("Cache-Control"), r.Header.Get("Pragma"); cc != "no-store" || pragma != "no-cache" {
		t.Errorf("Cache-Control %q Pragma %q, want no-store and no-cache: the page holds the key", cc, pragma)
	}
	name, data := savedFromPage(t, r.Body)
	_, cert, _, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatalf("the save link's file is not a .p12 for the password typed: %v", err)
	}
	if cert.Subject.CommonName != "bob@example.com" || !strings.HasSuffix(name, ".p12") {
		t.Fatalf("save link: %q for %s, want bob's .p12", name, cert.Subject.CommonName)
	}
	serial := vault.FormatSerial(cert.SerialNumber.Bytes())
	body := string(r.Body)
	notice := html.UnescapeString(extract(r.Body, `id="notice">`, "</p>"))
	if !strings.Contains(notice, "kiosk-3 ("+serial+")") || !strings.Contains(notice, "bob") || strings.Contains(notice, "%") {
		t.Errorf("notice %q does not name kiosk-3 (%s) and bob", notice, serial)
	}
	for _, want := range []string{`id="save-warning"`, `id="save-leave"`, `id="cert-` + serial + `"`, `action="/helpdesk/users/bob/certificates"`} {
		if !strings.Contains(body, want) {
			t.Errorf("bob's page with the file lacks %s", want)
		}
	}
	if strings.Contains(body, `value="INC-7"`) || strings.Contains(body, `value="kiosk-3"`) || strings.Contains(body, `hreflang=`) {
		t.Error("the page with the file carries the sent form's ticket or a language switch (which would reload it without the file)")
	}
	if outcome, d := downloadEvent(t, db, serial); outcome != audit.OutcomeSuccess || d["bytes"] == "" {
		t.Errorf("download event of the page with the file: %s %v", outcome, d)
	}
	if got := len(certSet(t, v)); got != len(before)+1 {
		t.Fatalf("Vault holds %d certificates, want %d", got, len(before)+1)
	}

	// The reload: the same form again.
	again := helen.post("/helpdesk/users/bob/certificates", form, navigation...)
	notice = html.UnescapeString(extract(again.Body, `id="notice">`, "</p>"))
	if again.StatusCode != http.StatusConflict || saveLink.Match(again.Body) || !strings.Contains(notice, serial) {
		t.Fatalf("the same form again: %d, notice %q, want 409 naming %s and no file", again.StatusCode, notice, serial)
	}
	if r := helen.post("/helpdesk/users/bob/certificates?lang=ko", form, append(navigation, "Accept-Language", "ko")...); r.StatusCode != http.StatusConflict ||
		!strings.Contains(string(r.Body), "이미 제출") {
		t.Errorf("the same form again in Korean: %d", r.StatusCode)
	}
	if got := len(certSet(t, v)); got != len(before)+1 {
		t.Fatalf("the repeated form issued: Vault holds %d certificates, want %d", got, len(before)+1)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_events WHERE action = 'certificate.issue_on_behalf' AND outcome = 'success'`); n != 1 {
		t.Errorf("%d on-behalf issuance events, want 1", n)
	}

	// The page's own fresh form issues; so does a script with the used id.
	fresh := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	fresh.Set("ticket", "INC-8")
	fresh.Set("form_id", formIDOn(t, r.Body))
	if r := helen.post("/helpdesk/users/bob/certificates", fresh, navigation...); r.StatusCode != http.StatusOK || !saveLink.Match(r.Body) {
		t.Fatalf("the page's fresh form: %d, want another page with a file", r.StatusCode)
	}
	if r := helen.post("/helpdesk/users/bob/certificates", form); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Errorf("a script's POST with a used form id: %d %s, want the .p12", r.StatusCode, r.Header.Get("Content-Type"))
	}

	// helen's own dashboard: no "your certificate is ready" for bob's.
	if dash := string(helen.get("/").Body); strings.Contains(dash, `id="issued"`) {
		t.Error("helen's dashboard shows bob's certificate as her own, just issued")
	}
}
