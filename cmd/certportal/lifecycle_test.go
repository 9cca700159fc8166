package main

import (
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// issue downloads a certificate and returns its serial in Vault's form.
func (b *client) issue(enc string) string {
	b.t.Helper()
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", enc))
	if r.StatusCode != http.StatusOK {
		b.t.Fatalf("issue: %d\n%s", r.StatusCode, r.Body)
	}
	_, cert, _, err := pkcs12.DecodeChain(r.Body, p12Password)
	if err != nil {
		b.t.Fatal(err)
	}
	return vault.FormatSerial(cert.SerialNumber.Bytes())
}

func crl(t *testing.T, v *testenv.Vault) []string {
	t.Helper()
	c, err := vault.New(vault.Config{Addr: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	// Vault rebuilds the CRL on revoke; ask it to be sure it is current.
	if _, err := v.Admin.Logical().Read("pki/crl/rotate"); err != nil {
		t.Fatal(err)
	}
	serials, err := c.CRLSerials(t.Context(), "pki")
	if err != nil {
		t.Fatal(err)
	}
	return serials
}

// TestRevokeOwnAndOthers: alice revokes her own certificate (it lands in
// Vault's CRL and the inventory agrees); alice revoking bob's is refused and
// changes nothing.
func TestRevokeOwnAndOthers(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice, bob := newBrowser(t, p.URL), newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	bob.mustLogin("bob", v.Password(t, "bob"))
	mine := alice.issue("modern")
	bobs := bob.issue("compat")

	home := alice.get("/")
	if !strings.Contains(string(home.Body), `data-serial="`+mine+`"`) || strings.Contains(string(home.Body), bobs) {
		t.Fatal("dashboard does not list exactly alice's certificate")
	}
	// Screen readers read each field's hint with the field.
	for _, want := range []string{`aria-describedby="password-hint"`, `id="password-hint"`, `aria-describedby="label-hint"`, `id="label-hint"`, `id="enc-hint"`} {
		if !strings.Contains(string(home.Body), want) {
			t.Errorf("issue form: no %s", want)
		}
	}
	if r := alice.get("/certificates/" + mine + "/revoke"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="revoke-form"`) {
		t.Fatalf("confirm page: %d", r.StatusCode)
	} else if b := string(r.Body); !strings.Contains(extract(r.Body, `id="revoke-cert">`, "</dl>"), "alice@example.com") ||
		!strings.Contains(b, `id="revoke-submit" class="danger"`) || !strings.Contains(b, `id="revoke-cancel"`) {
		// What is revoked, in facts a person reads (name, identity, serial,
		// expiry), and a red button beside a way out.
		t.Errorf("confirm page lacks the certificate's facts, the danger button or Cancel:\n%s", b)
	}
	// Someone else's serial: 404 on the confirm page and the post, as an
	// unknown serial (TestOthersSerialLooksUnknown), nothing revoked.
	if r := alice.get("/certificates/" + bobs + "/revoke"); r.StatusCode != http.StatusNotFound {
		t.Fatalf("confirm page for bob's serial: %d", r.StatusCode)
	}
	if r := alice.post("/certificates/"+bobs+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusNotFound {
		t.Fatalf("alice revoking bob's: %d", r.StatusCode)
	}
	if slices.Contains(crl(t, v), bobs) {
		t.Fatal("bob's certificate was revoked by alice")
	}
	if r := bob.get("/"); !strings.Contains(string(r.Body), `class="badge active"`) {
		t.Fatal("bob's certificate no longer shows active")
	}

	// Bad input before any Vault call.
	for _, tc := range []struct {
		name, serial, reason string
		status               int
	}{
		{"malformed serial", "zz:zz", "lost", 404},
		{"overlong serial", strings.Repeat("aa:", 30) + "aa", "lost", 404},
		{"unknown serial", "01:02:03", "lost", 404},
		{"missing reason", mine, "", 400},
		{"reason not offered", mine, "left_company", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := alice.post("/certificates/"+tc.serial+"/revoke", url.Values{"reason": {tc.reason}}); r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.status)
			}
		})
	}

	r := alice.post("/certificates/"+mine+"/revoke", url.Values{"reason": {"lost"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke own: %d\n%s", r.StatusCode, r.Body)
	}
	if !slices.Contains(crl(t, v), mine) {
		t.Fatal("revoked certificate is not on Vault's CRL")
	}
	home = alice.get(r.Header.Get("Location"))
	if !strings.Contains(string(home.Body), `class="badge revoked"`) || !strings.Contains(string(home.Body), `id="notice"`) {
		t.Fatal("inventory does not show the revocation")
	}
	// The notice names the certificate (it has no label here: its serial).
	if !strings.Contains(string(home.Body), "The certificate "+mine[:8]) {
		t.Errorf("revocation notice does not name the certificate %s", mine)
	}
	// A link naming a serial that is not one of alice's gets no notice.
	if home := alice.get("/?notice=revoked&serial=%3Cb%3Eforged"); strings.Contains(string(home.Body), `id="notice"`) {
		t.Error("a revocation notice about a serial that is not the user's")
	}
	if r := alice.post("/certificates/"+mine+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("revoking twice: %d", r.StatusCode)
	}
}

// TestCapAndRenew: the per-user cap refuses a fourth active certificate with
// a clear message; renewing with "revoke the old one" works at the cap.
func TestCapAndRenew(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	var serials []string
	for i := 0; i < 3; i++ {
		serials = append(serials, b.issue("modern"))
	}
	before := certCount(t, v)
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	if r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), "maximum number of active certificates") {
		t.Fatalf("over the cap: %d\n%s", r.StatusCode, r.Body)
	}
	if certCount(t, v) != before {
		t.Fatal("Vault issued a certificate over the cap")
	}
	if r := b.get("/certificates/" + serials[0] + "/renew"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `name="renew_serial"`) {
		t.Fatalf("renew page: %d", r.StatusCode)
	}
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("renew_serial", serials[0])
	form.Set("revoke_old", "1")
	if r := b.post("/certificates", form); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("renew at the cap: %d\n%s", r.StatusCode, r.Body)
	}
	if !slices.Contains(crl(t, v), serials[0]) {
		t.Fatal("renewed certificate's predecessor not revoked")
	}
	// Renewing someone else's certificate is refused, as one that does
	// not exist is (404: TestOthersSerialLooksUnknown).
	bob := newBrowser(t, p.URL)
	bob.mustLogin("bob", v.Password(t, "bob"))
	form.Set("renew_serial", serials[1])
	if r := bob.post("/certificates", form); r.StatusCode != http.StatusNotFound {
		t.Fatalf("bob renewing alice's: %d", r.StatusCode)
	}
	if slices.Contains(crl(t, v), serials[1]) {
		t.Fatal("bob revoked alice's certificate through renew")
	}
}

// TestHelpdesk: search, a user's certificates, revoke with reason and ticket
// (both required), reissue; employees get 403 on every helpdesk route.
func TestHelpdesk(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	s1, s2 := alice.issue("modern"), alice.issue("modern")

	for _, path := range []string{"/helpdesk", "/helpdesk?q=a", "/helpdesk/users/alice"} {
		if r := alice.get(path); r.StatusCode != http.StatusForbidden {
			t.Errorf("employee GET %s: %d", path, r.StatusCode)
		}
	}
	if r := alice.post("/helpdesk/certificates/"+s1+"/revoke", url.Values{"reason": {"lost"}, "ticket": {"INC-1"}}); r.StatusCode != http.StatusForbidden {
		t.Errorf("employee helpdesk revoke: %d", r.StatusCode)
	}

	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	if r := helen.get("/"); !strings.Contains(string(r.Body), `id="nav-helpdesk"`) {
		t.Error("no helpdesk link for helpdesk staff")
	}
	r := helen.get("/helpdesk?q=al")
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `href="/helpdesk/users/alice"`) {
		t.Fatalf("search: %d\n%s", r.StatusCode, r.Body)
	}
	if r := helen.get("/helpdesk?q=b"); !strings.Contains(string(r.Body), `href="/helpdesk/users/bob"`) {
		t.Error("search does not find bob, who never enrolled")
	}
	if r := helen.get("/helpdesk?q=%25"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("search with %%: %d", r.StatusCode)
	}
	if r := helen.get("/helpdesk/users/alice"); !strings.Contains(string(r.Body), s1) || !strings.Contains(string(r.Body), s2) {
		t.Fatal("user page lacks alice's certificates")
	}
	for _, tc := range []struct {
		name           string
		reason, ticket string
		status         int
	}{
		{"missing ticket", "lost", "", 400},
		{"missing reason", "", "INC-7", 400},
		{"bad reason", "because", "INC-7", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := helen.post("/helpdesk/certificates/"+s1+"/revoke", url.Values{"reason": {tc.reason}, "ticket": {tc.ticket}}); r.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", r.StatusCode, tc.status)
			}
		})
	}
	if slices.Contains(crl(t, v), s1) {
		t.Fatal("revoked despite bad input")
	}
	if r := helen.post("/helpdesk/certificates/"+s1+"/revoke", url.Values{"reason": {"left_company"}, "ticket": {"INC-7"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk revoke: %d\n%s", r.StatusCode, r.Body)
	}
	if r := helen.post("/helpdesk/certificates/"+s2+"/reissue", url.Values{"ticket": {"INC-8"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk reissue: %d\n%s", r.StatusCode, r.Body)
	}
	revoked := crl(t, v)
	if !slices.Contains(revoked, s1) || !slices.Contains(revoked, s2) {
		t.Fatal("helpdesk revocations missing from the CRL")
	}
	page := string(helen.get("/helpdesk/users/alice?notice=reissued").Body)
	if !strings.Contains(page, "INC-7") || !strings.Contains(page, "INC-8") || !strings.Contains(page, "helen") {
		t.Fatal("inventory does not record ticket and actor")
	}
	// After a reissue alice enrols again.
	alice.issue("modern")
}

// TestProtectedRoutesNeedSession: every protected route refuses a request
// without a session, and one whose session expired.
func TestProtectedRoutesNeedSession(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_IDLE": "1s", "CERTPORTAL_SESSION_ABSOLUTE": "1h"})
	routes := []struct{ method, path string }{
		{"GET", "/"}, {"POST", "/certificates"}, {"GET", "/certificates/01:02/revoke"}, {"POST", "/certificates/01:02/revoke"},
		{"GET", "/certificates/01:02/renew"}, {"POST", "/logout"}, {"GET", "/helpdesk"}, {"GET", "/helpdesk/users/alice"},
		{"POST", "/helpdesk/certificates/01:02/revoke"}, {"POST", "/helpdesk/certificates/01:02/reissue"},
	}
	check := func(t *testing.T, b *client) {
		for _, rt := range routes {
			var r *response
			if rt.method == "GET" {
				r = b.get(rt.path)
			} else {
				r = b.post(rt.path, url.Values{"reason": {"lost"}, "ticket": {"x"}})
			}
			want := http.StatusUnauthorized
			if rt.method == "GET" {
				want = http.StatusSeeOther
			}
			if r.StatusCode != want {
				t.Errorf("%s %s: %d, want %d", rt.method, rt.path, r.StatusCode, want)
			}
		}
	}
	t.Run("no session", func(t *testing.T) { check(t, newBrowser(t, p.URL)) })
	t.Run("idle session", func(t *testing.T) {
		b := newBrowser(t, p.URL)
		b.mustLogin("helen", v.Password(t, "helen"))
		time.Sleep(1500 * time.Millisecond)
		check(t, b)
	})
}

// TestInventoryFailureRevokes: when the inventory cannot be written, the
// user gets an error, no .p12, and the certificate Vault issued is revoked.
func TestInventoryFailureRevokes(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	// A real SQLite failure on insert, as a full or broken disk gives.
	db := openSQLite(t, p.DB)
	if _, err := db.Exec(`CREATE TRIGGER fail_insert BEFORE INSERT ON certificates BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END`); err != nil {
		t.Fatal(err)
	}
	issueFailsAndIsRevoked(t, v, b)
}

// issueFailsAndIsRevoked posts the certificate form, expects 503 and no
// .p12, and checks that the one certificate Vault issued in that request
// ended up on the CRL.
func issueFailsAndIsRevoked(t *testing.T, v *testenv.Vault, b *client) {
	t.Helper()
	before := certSet(t, v)
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Content-Type") == "application/x-pkcs12" {
		t.Fatalf("status %d, content type %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	var issued []string
	for s := range certSet(t, v) {
		if !before[s] {
			issued = append(issued, s)
		}
	}
	if len(issued) != 1 {
		t.Fatalf("Vault issued %d certificates, want 1", len(issued))
	}
	if !slices.Contains(crl(t, v), issued[0]) {
		t.Fatal("certificate from the failed request is not revoked")
	}
}

func certSet(t *testing.T, v *testenv.Vault) map[string]bool {
	t.Helper()
	s, err := v.Admin.Logical().List("pki/certs")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	if s != nil {
		keys, _ := s.Data["keys"].([]any)
		for _, k := range keys {
			out[strings.ReplaceAll(k.(string), "-", ":")] = true
		}
	}
	return out
}

// TestRenewRefusedKeepsRevokeOld: a renewal refused for a form error (the
// passwords differ) comes back with "revoke the old one" as the user left
// it. Re-ticked, the next submit would revoke a certificate the user chose
// to keep.
func TestRenewRefusedKeepsRevokeOld(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	serial := b.issue("modern")
	for _, tc := range []struct {
		name, revokeOld string
		checked         bool
	}{
		{"unticked stays unticked", "", false},
		{"ticked stays ticked", "1", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			form := issueForm(p12Password, p12Password+"x", "720h0m0s", "modern")
			form.Set("renew_serial", serial)
			if tc.revokeOld != "" {
				form.Set("revoke_old", tc.revokeOld)
			}
			r := b.post("/certificates", form)
			if r.StatusCode != http.StatusBadRequest {
				t.Fatalf("mismatched passwords: %d\n%s", r.StatusCode, r.Body)
			}
			m := regexp.MustCompile(`<input type="checkbox" name="revoke_old"[^>]*>`).Find(r.Body)
			if m == nil {
				t.Fatalf("refused renewal has no revoke_old checkbox:\n%s", r.Body)
			}
			if got := strings.Contains(string(m), " checked"); got != tc.checked {
				t.Errorf("revoke_old checked = %v, want %v: %s", got, tc.checked, m)
			}
		})
	}
}
