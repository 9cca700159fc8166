package main

import (
	"crypto/elliptic"
	"crypto/x509"
	"database/sql"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// issueLabelled issues a certificate as the page script's fetch (or a
// script) does, and returns its serial.
func (b *client) issueLabelled(label string) string {
	b.t.Helper()
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("label", label)
	r := b.post("/certificates", form)
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" || r.Header.Get("X-Certificate-Serial") == "" {
		b.t.Fatalf("issue %q: %d %s, want the .p12 itself\n%s", label, r.StatusCode, r.Header.Get("Content-Type"), r.Body)
	}
	return r.Header.Get("X-Certificate-Serial")
}

// hasReady reports whether the dashboard leads with "your certificate is
// ready … the password you just chose".
func hasReady(body []byte) bool { return strings.Contains(string(body), `id="issued"`) }

// revokedAt is when the inventory says serial was revoked.
func revokedAt(t *testing.T, db *sql.DB, serial string) time.Time {
	t.Helper()
	var ms int64
	if err := db.QueryRow(`SELECT revoked_at FROM certificates WHERE serial = ?`, serial).Scan(&ms); err != nil {
		t.Fatal(err)
	}
	if ms == 0 {
		t.Fatalf("%s is not revoked in the inventory", serial)
	}
	return time.UnixMilli(ms)
}

// revokedCell is the revoked row's line that dates the revocation, in
// the table's own date format.
func revokedCell(label string, at time.Time) string {
	return `<small class="revoked-at">` + label + ` <time datetime="` + at.UTC().Format(time.RFC3339) + `">` + at.UTC().Format("2006-01-02 15:04 UTC") + `</time> · `
}

// TestDashboardReadyOnlyRightAfterIssuing: "your certificate is ready, with
// the password you just chose" is shown by the browser session that just
// issued the certificate (the page script's fetch, the device-key JSON
// path, or a form without the script), not after a fresh login, not in
// another session, never for a revoked certificate and never next to the
// notice of a revocation. Scripts still get their file and JSON.
func TestDashboardReadyOnlyRightAfterIssuing(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MAX_ACTIVE": "10"})
	pw := v.Password(t, "alice")
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", pw)

	older := alice.issueLabelled("old laptop")
	if !hasReady(alice.get("/").Body) {
		t.Fatal("no \"ready\" on the dashboard right after this session issued")
	}
	// Another session (another device, a colleague's browser) of alice.
	phone := newBrowser(t, p.URL)
	phone.mustLogin("alice", pw)
	if r := phone.get("/"); !strings.Contains(string(r.Body), older) || hasReady(r.Body) {
		t.Error("another session's dashboard says its certificate is ready (with the password it just chose)")
	}
	// A fresh login in the same browser.
	alice.mustLogin("alice", pw)
	if hasReady(alice.get("/").Body) {
		t.Error("\"ready\" after a fresh login")
	}

	// The device-key path (JSON) counts as this session's issuance too,
	// and still answers with its JSON.
	csr := alice.post("/certificates/csr", csrForm(csrPEM(t, mustECKey(t, elliptic.P256()), &x509.CertificateRequest{}), "720h0m0s", "tablet"))
	if a := decodeCSRAnswer(t, csr); csr.StatusCode != http.StatusOK || a.Serial == "" || a.Certificate == "" {
		t.Fatalf("CSR: %d %+v", csr.StatusCode, a)
	}
	if !hasReady(alice.get("/").Body) {
		t.Error("no \"ready\" after this session's device-key issuance")
	}

	// Revoking an older certificate: the page is about that revocation,
	// not "ready" for the one issued before it; nor is a reload after.
	alice.issueLabelled("new laptop")
	r := alice.post("/certificates/"+older+"/revoke", url.Values{"reason": {"lost"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", r.StatusCode, r.Body)
	}
	dash := alice.get(r.Header.Get("Location"))
	if !strings.Contains(string(dash.Body), `id="notice"`) || hasReady(dash.Body) {
		t.Errorf("revoked notice without its notice, or next to \"ready\"\n%s", dash.Body)
	}
	if hasReady(alice.get("/").Body) {
		t.Error("\"ready\" again after a revocation")
	}

	// The certificate just issued, revoked: never "ready".
	latest := alice.issueLabelled("newer laptop")
	phone.post("/certificates/"+latest+"/revoke", url.Values{"reason": {"lost"}}) // from the other session
	if body := alice.get("/").Body; hasReady(body) {
		t.Error("\"ready\" for a revoked certificate")
	}

	// A form posted without the page script: its save page, then the
	// dashboard reloaded, lead with it.
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("form_id", formIDOn(t, alice.get("/").Body))
	if r := alice.post("/certificates", form, navigation...); r.StatusCode != http.StatusOK || !hasReady(r.Body) {
		t.Fatalf("save page: %d, ready %v", r.StatusCode, hasReady(r.Body))
	}
	if !hasReady(alice.get("/").Body) {
		t.Error("no \"ready\" on the dashboard reloaded after the save page")
	}
}

// TestRevokedRowsDated: a revoked certificate's row says when it was
// revoked, with the table's date format, next to reason, ticket and by
// whom, on the dashboard, the helpdesk page and the auditor's inventory,
// in English and Korean: one template for the three.
func TestRevokedRowsDated(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	db := openSQLite(t, p.DB)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	mine, theirs := alice.issueLabelled("laptop"), alice.issueLabelled("phone")
	if r := alice.post("/certificates/"+mine+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	if r := helen.post("/helpdesk/certificates/"+theirs+"/revoke", url.Values{"reason": {"left_company"}, "ticket": {"INC-7"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk revoke: %d", r.StatusCode)
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	for _, tc := range []struct {
		who         *client
		path, label string
	}{
		{alice, "/", "revoked"}, {alice, "/?lang=ko", "폐기"},
		{helen, "/helpdesk/users/alice", "revoked"}, {helen, "/helpdesk/users/alice?lang=ko", "폐기"},
		// The auditor's inventory drill-down lists revoked rows too.
		{audrey, "/audit/inventory/certificates?state=revoked", "revoked"}, {audrey, "/audit/inventory/certificates?state=revoked&lang=ko", "폐기"},
	} {
		body := string(tc.who.get(tc.path).Body)
		for _, serial := range []string{mine, theirs} {
			if want := revokedCell(tc.label, revokedAt(t, db, serial)); !strings.Contains(body, want) {
				t.Errorf("%s: the row of %s lacks %q", tc.path, serial, want)
			}
		}
		// Ticket and revoker are names, not words: a page translator
		// must leave them as recorded, on every page alike.
		if want := ` · <span translate="no">INC-7</span> · <span translate="no">helen</span></small>`; !strings.Contains(body, want) {
			t.Errorf("%s: the helpdesk revocation's line lacks %q", tc.path, want)
		}
	}
}

// TestHelpdeskRevokedNoticeNamesCertificate: after a helpdesk revocation
// (or a re-enrol revocation) the notice says which certificate: its label
// and its serial in full, as the page lists it; a serial in the link that
// is not the user's names nothing.
func TestHelpdeskRevokedNoticeNamesCertificate(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	labelled, unnamed := alice.issueLabelled("work laptop"), alice.issue("modern")
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))

	r := helen.post("/helpdesk/certificates/"+labelled+"/revoke", url.Values{"reason": {"lost"}, "ticket": {"INC-1"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk revoke: %d\n%s", r.StatusCode, r.Body)
	}
	loc := r.Header.Get("Location")
	for _, tc := range [][2]string{
		{loc + "&lang=en", "The certificate work laptop (" + labelled + ") of alice was revoked"},
		{loc + "&lang=ko", "alice 님의 인증서 work laptop (" + labelled + ") 이(가) 폐기"},
	} {
		path, want := tc[0], tc[1]
		if body := string(helen.get(path).Body); !strings.Contains(body, `id="notice"`) || !strings.Contains(body, want) {
			t.Errorf("%s: notice lacks %q", path, want)
		}
	}

	r = helen.post("/helpdesk/certificates/"+unnamed+"/reissue", url.Values{"ticket": {"INC-2"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk reissue: %d\n%s", r.StatusCode, r.Body)
	}
	loc = r.Header.Get("Location")
	for _, tc := range [][2]string{
		{loc + "&lang=en", "The certificate " + unnamed + " was revoked as superseded. Tell alice"},
		{loc + "&lang=ko", "인증서 " + unnamed + " 이(가) &#39;대체됨&#39;으로 폐기"},
	} {
		path, want := tc[0], tc[1]
		if body := string(helen.get(path).Body); !strings.Contains(body, want) {
			t.Errorf("%s: notice lacks %q", path, want)
		}
	}

	// A serial that is not alice's: no notice (nothing of alice's was
	// revoked by that link's account).
	bob := newBrowser(t, p.URL)
	bob.mustLogin("bob", v.Password(t, "bob"))
	bobs := bob.issueLabelled("bob's")
	body := string(helen.get("/helpdesk/users/alice?lang=en&notice=hdrevoked&serial=" + url.QueryEscape(bobs)).Body)
	if strings.Contains(body, `id="notice"`) || strings.Contains(body, "bob&#39;s") {
		t.Errorf("a notice about a certificate that is not alice's\n%s", body)
	}
}

// TestRevokeFormNothingToRevoke: the employee's own revoke page for a
// certificate already revoked, or expired, says so up front and offers no
// revoke button; an active one still gets the form.
func TestRevokeFormNothingToRevoke(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	db := openSQLite(t, p.DB)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	revoked, expired, active := alice.issueLabelled("a"), alice.issueLabelled("b"), alice.issueLabelled("c")
	if r := alice.post("/certificates/"+revoked+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	// Expired: its validity ended a minute ago (as the inventory records it).
	if _, err := db.Exec(`UPDATE certificates SET not_after = ? WHERE serial = ?`, time.Now().Add(-time.Minute).UnixMilli(), expired); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ serial, id, en, ko string }{
		{revoked, `id="already-revoked"`, "That certificate is already revoked.", "이미 폐기된 인증서입니다."},
		{expired, `id="already-expired"`, "This certificate has expired", "이 인증서는 만료되어"},
	} {
		for lang, want := range map[string]string{"en": tc.en, "ko": tc.ko} {
			r := alice.get("/certificates/" + tc.serial + "/revoke?lang=" + lang)
			body := string(r.Body)
			if r.StatusCode != http.StatusOK || !strings.Contains(body, tc.id) || !strings.Contains(body, want) {
				t.Errorf("%s page of %s: %d, want %s saying %q\n%s", lang, tc.serial, r.StatusCode, tc.id, want, body)
			}
			if strings.Contains(body, `id="revoke-form"`) || strings.Contains(body, `id="revoke-submit"`) {
				t.Errorf("%s page of %s offers to revoke it", lang, tc.serial)
			}
		}
	}
	if body := string(alice.get("/certificates/" + active + "/revoke").Body); !strings.Contains(body, `id="revoke-submit"`) || strings.Contains(body, `id="already-`) {
		t.Errorf("an active certificate's revoke page lacks its form\n%s", body)
	}
}
