package main

import (
	"database/sql"
	"encoding/base64"
	"html"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"

	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// navigation is what a browser sends with a form it posts itself (no page
// script): a top-level navigation from the portal's own page.
var navigation = []string{"Sec-Fetch-Mode", "navigate", "Sec-Fetch-Site", "same-origin", "Sec-Fetch-Dest", "document"}

var saveLink = regexp.MustCompile(`<a class="button" id="save-link" download="([^"]*)" href="data:application/x-pkcs12;base64,([A-Za-z0-9+/=]+)"`)

// savedFromPage returns the file name and the .p12 a save page offers.
func savedFromPage(t *testing.T, body []byte) (string, []byte) {
	t.Helper()
	m := saveLink.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no save link with a data: URL on the page:\n%s", body)
	}
	data, err := base64.StdEncoding.DecodeString(string(m[2]))
	if err != nil {
		t.Fatalf("save link's data: %v", err)
	}
	return html.UnescapeString(string(m[1])), data
}

// dispositionName is the name a browser saves a download under
// (filename*, else filename).
func dispositionName(t *testing.T, h string) string {
	t.Helper()
	_, params, err := mime.ParseMediaType(h)
	if err != nil {
		t.Fatalf("Content-Disposition %q: %v", h, err)
	}
	return params["filename"]
}

// savePagePortal is a portal on a real Vault with room for several
// certificates each, its database, and alice logged in.
func savePagePortal(t *testing.T) (*testenv.Vault, *runningPortal, *sql.DB, *client) {
	t.Helper()
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MAX_ACTIVE": "10"})
	db := openSQLite(t, p.DB)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	return v, p, db, alice
}

// TestIssueSavePage: a form the browser posts itself (Sec-Fetch-Mode:
// navigate, no page script) gets the page the script shows after its
// download — the new certificate, install steps, the file as a data: save
// link under the download's own name, no-store — and the trail records
// the page's delivery as the download's. Without the header (curl, a
// script, the page script's fetch) the answer is still the file itself.
// Refused forms come back as before, and a renewal answers the same way.
func TestIssueSavePage(t *testing.T) {
	_, p, db, alice := savePagePortal(t)
	const label = "업무용 노트북"

	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("label", label)
	raw := alice.post("/certificates", form)
	if ct := raw.Header.Get("Content-Type"); raw.StatusCode != http.StatusOK || ct != "application/x-pkcs12" {
		t.Fatalf("POST without Sec-Fetch-Mode: %d %s, want the .p12 itself", raw.StatusCode, ct)
	}
	if _, _, _, err := pkcs12.DecodeChain(raw.Body, p12Password); err != nil {
		t.Fatalf("POST without Sec-Fetch-Mode: not a .p12: %v", err)
	}
	rawName := dispositionName(t, raw.Header.Get("Content-Disposition"))

	// A refused form is the form again with its error, as before.
	bad := issueForm(p12Password, p12Password+"x", "720h0m0s", "modern")
	r := alice.post("/certificates", bad, navigation...)
	if r.StatusCode < 400 || !strings.Contains(string(r.Body), `id="form-error"`) || saveLink.Match(r.Body) {
		t.Fatalf("refused form posted by the browser: %d, want the form with its error and no file\n%s", r.StatusCode, r.Body)
	}

	r = alice.post("/certificates", form, navigation...)
	if ct := r.Header.Get("Content-Type"); r.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("POST as a navigation: %d %s, want the save page\n%s", r.StatusCode, ct, p.Logs.String())
	}
	if cc, pragma := r.Header.Get("Cache-Control"), r.Header.Get("Pragma"); cc != "no-store" || pragma != "no-cache" {
		t.Errorf("save page: Cache-Control %q Pragma %q, want no-store and no-cache: it holds the key", cc, pragma)
	}
	if r.Header.Get("Content-Disposition") != "" {
		t.Errorf("save page sent as an attachment: %q", r.Header.Get("Content-Disposition"))
	}
	if n, err := strconv.Atoi(r.Header.Get("Content-Length")); err != nil || n != len(r.Body) {
		t.Errorf("save page Content-Length %q, body %d bytes", r.Header.Get("Content-Length"), len(r.Body))
	}
	name, data := savedFromPage(t, r.Body)
	if name != rawName || !strings.Contains(name, "업무용-노트북") {
		t.Errorf("save link names the file %q, the download %q", name, rawName)
	}
	_, cert, _, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatalf("save link's file is not a .p12 for the password typed: %v", err)
	}
	serial := vault.FormatSerial(cert.SerialNumber.Bytes())
	body := string(r.Body)
	for _, want := range []string{`id="issued"`, `id="install"`, `id="save-warning"`, `data-serial="` + serial + `"`} {
		if !strings.Contains(body, want) {
			t.Errorf("save page lacks %s", want)
		}
	}
	if strings.Contains(body, `id="form-error"`) {
		t.Error("the earlier try's error is still on the page after the certificate was issued")
	}
	if strings.Contains(body, `hreflang=`) {
		t.Error("save page offers a language switch, which would reload it without the file")
	}
	if got := r.Header.Get("X-Certificate-Serial"); got != serial {
		t.Errorf("X-Certificate-Serial %q, want %s", got, serial)
	}
	if outcome, d := downloadEvent(t, db, serial); outcome != audit.OutcomeSuccess || d["bytes"] != strconv.Itoa(len(data)) {
		t.Errorf("download event of the save page: %s %v, want success with the file's %d bytes", outcome, d, len(data))
	}

	// Renewal: the same page, for the new certificate; the old one revoked.
	renew := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	renew.Set("renew_serial", serial)
	renew.Set("revoke_old", "1")
	r = alice.post("/certificates", renew, navigation...)
	if ct := r.Header.Get("Content-Type"); r.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/html") || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("renewal as a navigation: %d %s %q, want the save page", r.StatusCode, ct, r.Header.Get("Cache-Control"))
	}
	_, data = savedFromPage(t, r.Body)
	_, renewed, _, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatalf("renewal's save link: %v", err)
	}
	newSerial := vault.FormatSerial(renewed.SerialNumber.Bytes())
	if newSerial == serial || !strings.Contains(string(r.Body), `id="cert-`+newSerial+`"`) {
		t.Errorf("renewal's page: new serial %s (old %s) not in the list", newSerial, serial)
	}
	if !strings.Contains(string(r.Body), `class="status-revoked" data-serial="`+serial+`"`) {
		t.Errorf("renewal's page: the old certificate %s is not shown revoked", serial)
	}
	if outcome, _ := downloadEvent(t, db, newSerial); outcome != audit.OutcomeSuccess {
		t.Errorf("download event of the renewal's save page: %s", outcome)
	}
}

var formIDField = regexp.MustCompile(`<input type="hidden" name="form_id" value="([A-Z2-7]+)">`)

// formIDOn returns the certificate form's id on a page.
func formIDOn(t *testing.T, body []byte) string {
	t.Helper()
	m := formIDField.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no form_id in the certificate form:\n%s", body)
	}
	return string(m[1])
}

// TestIssueSavePageSentAgain: reloading the save page makes the browser
// send the same form again. It must not issue a second certificate: the
// answer is 409 with the dashboard, a notice naming the certificate the
// form issued, no file, and a fresh form; Vault issued one certificate
// and the trail holds one issuance. A fresh form issues again, and so
// does a script (not a navigation).
func TestIssueSavePageSentAgain(t *testing.T) {
	v, _, db, alice := savePagePortal(t)

	dash := alice.get("/")
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("label", "laptop")
	form.Set("form_id", formIDOn(t, dash.Body))
	first := alice.post("/certificates", form, navigation...)
	if first.StatusCode != http.StatusOK {
		t.Fatalf("first POST: %d\n%s", first.StatusCode, first.Body)
	}
	_, data := savedFromPage(t, first.Body)
	_, cert, _, err := pkcs12.DecodeChain(data, p12Password)
	if err != nil {
		t.Fatal(err)
	}
	serial := vault.FormatSerial(cert.SerialNumber.Bytes())
	again := formIDOn(t, first.Body)
	if again == form.Get("form_id") {
		t.Fatal("the save page's form has the id of the form that was just sent")
	}

	// The reload: the same form, the same cookie.
	r := alice.post("/certificates", form, navigation...)
	body := string(r.Body)
	if r.StatusCode != http.StatusConflict || saveLink.Match(r.Body) || r.Header.Get("X-Certificate-Serial") != "" {
		t.Fatalf("the same form again: %d, serial %q, want 409 and no file\n%s", r.StatusCode, r.Header.Get("X-Certificate-Serial"), body)
	}
	if !strings.Contains(body, `id="notice"`) || !strings.Contains(body, "laptop (") || !strings.Contains(body, `id="issue-form"`) {
		t.Errorf("the same form again: no notice naming the certificate, or no fresh form\n%s", body)
	}
	if n := countRows(t, db, `SELECT count(*) FROM certificates WHERE username = 'alice'`); n != 1 {
		t.Errorf("%d certificates for alice after the form was sent twice, want 1", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_events WHERE action = 'certificate.issue'`); n != 1 {
		t.Errorf("%d issuance events after the form was sent twice, want 1", n)
	}
	before := certSet(t, v)
	if !before[serial] {
		t.Fatalf("Vault does not list %s", serial)
	}

	// In Korean too.
	r = alice.post("/certificates?lang=ko", form, append(navigation, "Accept-Language", "ko")...)
	if r.StatusCode != http.StatusConflict || !strings.Contains(string(r.Body), "이미 제출") {
		t.Errorf("the same form again in Korean: %d\n%s", r.StatusCode, r.Body)
	}

	// The save page's own form is a new one: it issues.
	form.Set("form_id", again)
	if r = alice.post("/certificates", form, navigation...); r.StatusCode != http.StatusOK || !saveLink.Match(r.Body) {
		t.Fatalf("the save page's fresh form: %d, want another save page", r.StatusCode)
	}
	// A script (not a navigation) sending an id that was used still gets its file.
	if r = alice.post("/certificates", form); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Errorf("a script's POST with a used form id: %d %s, want the .p12", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if got := len(certSet(t, v)); got != len(before)+2 {
		t.Errorf("Vault holds %d certificates, want %d: one per form, none for the repeats", got, len(before)+2)
	}
	if n := countRows(t, db, `SELECT count(*) FROM certificates WHERE username = 'alice' AND serial = '`+serial+`'`); n != 1 {
		t.Errorf("the first certificate is recorded %d times", n)
	}
}

func countRows(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// TestSavePageLeaveWarning: the save page says, in the page's language,
// that the file must be saved before leaving, after the save link and
// before every control that leaves it — here the cap's renew and revoke
// links, the certificate this form issued being the last one allowed —
// and the install steps' check link above it opens a tab of its own.
func TestSavePageLeaveWarning(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MAX_ACTIVE": "1", "CERTPORTAL_SERVICE_URL": "https://apps.example.test/secure/"})
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	r := alice.post("/certificates?lang=ko", issueForm(p12Password, p12Password, "24h", "modern"), append(navigation, "Accept-Language", "ko")...)
	if r.StatusCode != http.StatusOK || !saveLink.Match(r.Body) {
		t.Fatalf("save page: %d\n%s", r.StatusCode, r.Body)
	}
	body := string(r.Body)
	leave := strings.Index(body, html.EscapeString(i18n.T(i18n.Korean, "save.leave_first")))
	link := strings.Index(body, `id="save-link"`)
	capBox := strings.Index(body, `id="at-cap"`)
	if leave < 0 || capBox < 0 || !strings.Contains(body, html.EscapeString(i18n.T(i18n.Korean, "save.leave_why"))) {
		t.Fatalf("save page at the cap: leave warning at %d, cap box at %d\n%s", leave, capBox, body)
	}
	if link > leave {
		t.Errorf("the warning (at %d) comes before the save link (at %d)", leave, link)
	}
	// Every link or button of the page's main after the save link's
	// warning but the install steps' check link.
	main := body[strings.Index(body, "<main"):]
	for _, m := range regexp.MustCompile(`<(a|button)\b[^>]*>`).FindAllStringIndex(main, -1) {
		tag, at := main[m[0]:m[1]], len(body)-len(main)+m[0]
		if strings.Contains(tag, `id="save-link"`) || strings.Contains(tag, `id="check-link"`) {
			continue
		}
		if at < leave {
			t.Errorf("%s (at %d) comes before the warning to save the file first (at %d)", tag, at, leave)
		}
	}
	// The install steps' check link comes before the warning, so it must
	// not leave the page: it opens a tab of its own and says so. On the
	// dashboard without a file it is an ordinary link.
	checkLink := regexp.MustCompile(`<a id="check-link"[^>]*>`)
	if tag := checkLink.FindString(body); !strings.Contains(tag, `target="_blank"`) || !strings.Contains(tag, `rel="noopener"`) {
		t.Errorf("the save page's check link leaves the page: %q", tag)
	}
	if !strings.Contains(body, html.EscapeString(i18n.T(i18n.Korean, "install.check_new_tab"))) {
		t.Error("the save page does not say that the check opens a new tab")
	}
	dash := string(alice.get("/?lang=ko").Body)
	if tag := checkLink.FindString(dash); tag == "" || strings.Contains(tag, "target=") {
		t.Errorf("the dashboard's check link: %q", tag)
	}
}
