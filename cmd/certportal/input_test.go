package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// storeInt runs a query returning one integer against the portal's store,
// SQLite file or PostgreSQL DSN, as an operator would.
func storeInt(t *testing.T, dsn, query string) int64 {
	t.Helper()
	var n sql.NullInt64
	if strings.HasPrefix(dsn, "postgres") {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if err := conn.QueryRow(ctx, query).Scan(&n); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		return n.Int64
	}
	if err := openSQLite(t, dsn).QueryRow(query).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n.Int64
}

// revocationTime is what Vault itself says about serial: 0 while it is not
// revoked.
func revocationTime(t *testing.T, v *testenv.Vault, serial string) int64 {
	t.Helper()
	s, err := v.Admin.Logical().Read("pki/cert/" + serial)
	if err != nil || s == nil {
		t.Fatalf("read pki/cert/%s: %v", serial, err)
	}
	n, err := s.Data["revocation_time"].(json.Number).Int64()
	if err != nil {
		t.Fatalf("revocation_time %v: %v", s.Data["revocation_time"], err)
	}
	return n
}

// pgPortalDB makes a PostgreSQL database the portal reaches as an ordinary
// role that owns it (a superuser passes every privilege check) and returns
// the portal's DSN and the admin DSN.
func pgPortalDB(t *testing.T, role string) (portalDSN, admin string) {
	t.Helper()
	admin = pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	pgExec(t, admin, "CREATE ROLE "+role+" LOGIN")
	pgExec(t, admin, "ALTER DATABASE "+strings.TrimPrefix(u.Path, "/")+" OWNER TO "+role)
	u.User = url.User(role)
	return u.String(), admin
}

// TestBadTextRefusedBeforeVault: a ticket (or any text field) with invalid
// UTF-8 or a control character is refused with 400 naming the field before
// Vault is asked, on both stores: Vault did not revoke, the inventory and the
// trail are unchanged.
func TestBadTextRefusedBeforeVault(t *testing.T) {
	for _, storeName := range []string{"sqlite", "postgres"} {
		t.Run(storeName, func(t *testing.T) {
			v := testenv.StartConfiguredVault(t)
			env := map[string]string{}
			if storeName == "postgres" {
				env["CERTPORTAL_DB"], _ = pgPortalDB(t, "certportal_text")
			}
			p := startPortal(t, v, env)
			alice := newBrowser(t, p.URL)
			alice.mustLogin("alice", v.Password(t, "alice"))
			serial := alice.issue("modern")
			helen := newBrowser(t, p.URL)
			helen.mustLogin("helen", v.Password(t, "helen"))
			audrey := newBrowser(t, p.URL)
			audrey.mustLogin("audrey", v.Password(t, "audrey"))

			events := func() int64 { return storeInt(t, p.DB, `SELECT count(*) FROM audit_events`) }
			revoked := func() int64 {
				return storeInt(t, p.DB, `SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL OR ticket <> ''`)
			}
			for _, tc := range []struct{ name, ticket string }{
				{"byte 0xFF", "INC-\xff1"},
				{"NUL", "INC-\x001"},
				{"escape", "INC-\x1b[2J"},
				{"too long", strings.Repeat("x", 65)},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := events()
					r := helen.post("/helpdesk/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}, "ticket": {tc.ticket}})
					if r.StatusCode != http.StatusBadRequest {
						t.Fatalf("status %d, want 400\n%s", r.StatusCode, r.Body)
					}
					if !fieldNamed(r.Body, "ticket") {
						t.Fatalf("the page does not name the field ticket\n%s", r.Body)
					}
					if rt := revocationTime(t, v, serial); rt != 0 {
						t.Fatalf("Vault revoked the certificate (revocation_time %d) for a refused request", rt)
					}
					if n := revoked(); n != 0 {
						t.Fatalf("%d inventory rows changed", n)
					}
					if after := events(); after != before {
						t.Fatalf("%d audit events written for a refused request", after-before)
					}
				})
			}
			// Other text fields: the same 400 with the field named, never a
			// 503 from a database that refuses the bytes.
			for _, tc := range []struct {
				name, path, field string
				b                 *client
			}{
				{"audit filter actor", "/audit?actor=%FF", "actor", audrey},
				{"audit filter subject", "/audit?subject=a%00b", "subject", audrey},
				{"audit export actor", "/audit/export?format=csv&actor=%FF", "actor", audrey},
				{"helpdesk username in path", "/helpdesk/users/al%FFice", "username", helen},
				{"helpdesk search", "/helpdesk?q=%FF", "q", helen},
			} {
				t.Run(tc.name, func(t *testing.T) {
					before := events()
					r := tc.b.get(tc.path)
					if r.StatusCode != http.StatusBadRequest {
						t.Fatalf("status %d, want 400\n%s", r.StatusCode, r.Body)
					}
					if !fieldNamed(r.Body, tc.field) {
						t.Fatalf("page does not name the field %s\n%s", tc.field, r.Body)
					}
					if after := events(); after != before {
						t.Fatalf("%d audit events written for a refused request", after-before)
					}
				})
			}
			// A good ticket still revokes, on the record.
			if r := helen.post("/helpdesk/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}, "ticket": {"INC-42"}}); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("revoke with a good ticket: %d\n%s", r.StatusCode, r.Body)
			}
			if revocationTime(t, v, serial) == 0 || revoked() != 1 {
				t.Fatal("good revocation not done or not recorded")
			}
		})
	}
}

// fieldLabels are the catalog's names for the fields the tests refuse.
var fieldLabels = map[string]string{"password": "File password", "ticket": "Ticket reference", "q": "Search", "username": "Username", "actor": "Actor", "subject": "Subject"}

// fieldNamed reports whether the page's error message names field, by its
// label or its name, as the catalog's field.error does ("Check the field
// \"Ticket reference\": ...").
func fieldNamed(body []byte, field string) bool {
	for _, id := range []string{`id="error-message">`, `id="form-error">`} {
		msg := html.UnescapeString(extract(body, id, "</p>"))
		if strings.Contains(msg, `"`+field+`"`) || strings.Contains(msg, `"`+fieldLabels[field]+`"`) {
			return true
		}
	}
	return false
}

// TestRevocationRecordRetried: when the store refuses the record of a
// revocation Vault already performed, the trail holds the intent written
// before the Vault call, the user is told the certificate is revoked, and
// the portal keeps trying until the inventory and the trail have it.
func TestRevocationRecordRetried(t *testing.T) {
	for _, storeName := range []string{"sqlite", "postgres"} {
		t.Run(storeName, func(t *testing.T) {
			v := testenv.StartConfiguredVault(t)
			env := map[string]string{}
			var admin string
			if storeName == "postgres" {
				env["CERTPORTAL_DB"], admin = pgPortalDB(t, "certportal_retry")
			}
			p := startPortal(t, v, env)
			alice := newBrowser(t, p.URL)
			alice.mustLogin("alice", v.Password(t, "alice"))
			serial := alice.issue("modern")
			helen := newBrowser(t, p.URL)
			helen.mustLogin("helen", v.Password(t, "helen"))

			// The store refuses to update the inventory row, as a lost
			// grant or a broken disk does, after Vault has revoked.
			block, unblock := func() {
				if storeName == "postgres" {
					pgExec(t, admin, "REVOKE UPDATE ON certificates FROM certportal_retry")
					return
				}
				if _, err := openSQLite(t, p.DB).Exec(`CREATE TRIGGER refuse_revoke BEFORE UPDATE ON certificates BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END`); err != nil {
					t.Fatal(err)
				}
			}, func() {
				if storeName == "postgres" {
					pgExec(t, admin, "GRANT UPDATE ON certificates TO certportal_retry")
					return
				}
				if _, err := openSQLite(t, p.DB).Exec(`DROP TRIGGER refuse_revoke`); err != nil {
					t.Fatal(err)
				}
			}
			block()
			r := helen.post("/helpdesk/certificates/"+serial+"/revoke", url.Values{"reason": {"compromised"}, "ticket": {"INC-9"}})
			if r.StatusCode != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503\n%s", r.StatusCode, r.Body)
			}
			if msg := extract(r.Body, `id="error-message">`, "</p>"); !strings.Contains(msg, "revoked") {
				t.Errorf("the user is not told the certificate is revoked: %q", msg)
			}
			if revocationTime(t, v, serial) == 0 {
				t.Fatal("Vault did not revoke")
			}
			q := `SELECT count(*) FROM audit_events WHERE action = 'certificate.revoke' AND serial = '` + serial + `' AND outcome = `
			if n := storeInt(t, p.DB, q+`'intent'`); n != 1 {
				t.Fatalf("%d intent events for the revocation, want 1", n)
			}
			unblock()
			deadline := time.Now().Add(30 * time.Second)
			for storeInt(t, p.DB, `SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL AND ticket = 'INC-9'`) != 1 ||
				storeInt(t, p.DB, q+`'success'`) != 1 {
				if time.Now().After(deadline) {
					t.Fatalf("revocation still not recorded 30s after the store recovered\n%s", p.Logs.String())
				}
				time.Sleep(100 * time.Millisecond)
			}
			if !strings.Contains(p.Logs.String(), "recorded after retry") {
				t.Error("the log does not say the record was retried")
			}
			out, err := verifyChain(p.DB)
			if err != nil {
				t.Fatalf("audit verify: %v %s", err, out)
			}
		})
	}
}

// trailBytes is the size of everything the trail stores.
func trailBytes(t *testing.T, dbPath string) int64 {
	t.Helper()
	return storeInt(t, dbPath, `SELECT COALESCE(SUM(length(CAST(actor||subject||action||outcome||client_ip||user_agent||request_id||serial||details||prev_hash||hash AS BLOB))), 0) FROM audit_events`)
}

// TestTrailFlood: 200 denied requests for a 30,000-character path add a
// bounded amount to the trail and the log: the path is cut, and repeated
// denials of one user are one event plus one event with their count.
func TestTrailFlood(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_DENIED_WINDOW": "10s"})
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	trail0, log0 := trailBytes(t, p.DB), len(p.Logs.String())
	path := "/helpdesk/users/" + strings.Repeat("x", 30000)
	for range 200 {
		if r := alice.get(path); r.StatusCode != http.StatusForbidden {
			t.Fatalf("status %d, want 403", r.StatusCode)
		}
	}
	trail, logged := trailBytes(t, p.DB)-trail0, len(p.Logs.String())-log0
	t.Logf("200 denied requests with a 30,000-character path: trail +%d bytes, log +%d bytes", trail, logged)
	if trail > 4<<10 {
		t.Errorf("trail grew by %d bytes, want at most 4 KiB", trail)
	}
	if logged > 256<<10 {
		t.Errorf("log grew by %d bytes, want at most 256 KiB", logged)
	}
	if strings.Contains(p.Logs.String(), strings.Repeat("x", 600)) {
		t.Error("the log holds the path uncut")
	}
	if n := storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'access.denied' AND details LIKE '%(cut)%'`); n != 1 {
		t.Errorf("%d denied events with the path marked cut, want 1", n)
	}
	// When the window closes the rest are recorded as one event with their count.
	deadline := time.Now().Add(60 * time.Second)
	for storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'access.denied' AND details LIKE '%"count":"199"%'`) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("no denied event with count 199 after the window closed")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'access.denied'`); n != 2 {
		t.Errorf("%d denied events, want 2", n)
	}
}

var (
	refilledTicket = regexp.MustCompile(`id="ticket"[^>]*value="([^"]*)"`)
	refilledLabel  = regexp.MustCompile(`id="label"[^>]*value="([^"]*)"`)
)

// TestBidiEscaped: a right-to-left override in a ticket is refused before
// Vault is asked; in a user agent (not typed into a form) it is stored
// escaped and never reaches a page or the CSV export raw.
func TestBidiEscaped(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	for _, ticket := range []string{"INC-\u202e7", "INC-\u200b7", "INC-\u20667", "INC-\ufeff7", "INC-\u20287", "INC-7\u3164", "\u115fINC-7", "I\u0336\u0336\u0336NC-7"} {
		r := helen.post("/helpdesk/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}, "ticket": {ticket}})
		if r.StatusCode != http.StatusBadRequest || !bytes.Contains(r.Body, []byte("Ticket reference")) {
			t.Fatalf("ticket %q: status %d, want 400 naming the ticket\n%s", ticket, r.StatusCode, r.Body)
		}
		// Not put back: the page would show it escaped ("INC\u200b-7"),
		// which a second click would send as a valid ticket.
		if m := refilledTicket.FindSubmatch(r.Body); m == nil || len(m[1]) != 0 {
			t.Errorf("ticket %q refused, but the form comes back with ticket %q", ticket, m)
		}
	}
	// A refused label on the dashboard likewise.
	r0 := alice.post("/certificates", url.Values{"password": {p12Password}, "password_confirm": {p12Password}, "ttl": {"720h0m0s"},
		"encryption": {"modern"}, "label": {"work\u200blaptop"}})
	if m := refilledLabel.FindSubmatch(r0.Body); r0.StatusCode != http.StatusBadRequest || m == nil || len(m[1]) != 0 {
		t.Errorf("refused label: status %d, label field %q; want 400 and an empty field", r0.StatusCode, m)
	}
	if n := storeInt(t, p.DB, `SELECT count(*) FROM certificates WHERE revoked_at IS NOT NULL`); n != 0 {
		t.Fatalf("%d certificates revoked by refused requests", n)
	}
	r := helen.post("/helpdesk/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}, "ticket": {"INC-7"}},
		"User-Agent", "Mozilla/5.0 \u202eevil")
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d\n%s", r.StatusCode, r.Body)
	}
	raw := storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE instr(details||user_agent, char(8238)) > 0`)
	escaped := storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'certificate.revoke' AND outcome = 'success' AND instr(user_agent, '\u202eevil') > 0`)
	if raw != 0 || escaped != 1 {
		t.Fatalf("%d events hold U+202E raw, %d hold it escaped (want 0 and 1)", raw, escaped)
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	for _, page := range []struct {
		b    *client
		path string
	}{{audrey, "/audit"}, {audrey, "/audit/export?format=csv"}, {helen, "/helpdesk/users/alice"}} {
		body := page.b.get(page.path).Body
		if bytes.Contains(body, []byte("\u202e")) {
			t.Errorf("%s renders U+202E raw", page.path)
		}
	}
	if body := audrey.get("/audit/export?format=csv").Body; !bytes.Contains(body, []byte(`\u202eevil`)) {
		t.Error("the CSV export does not show the user agent escaped")
	}
}

// TestDeniedPathNoForgedLine: an employee's refused request for a path
// holding U+202E, a line break, a tab and U+200B is recorded with the path
// escaped in the details themselves, not only in their JSON text: decoded
// (from the store or from the JSON Lines export, as jq -r or a SIEM would),
// the path holds none of them raw, so it cannot start a forged line or
// reorder one. The trail still verifies.
func TestDeniedPathNoForgedLine(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	if r := alice.get("/helpdesk/users/bob%E2%80%AE%0a%20--%20HELPDESK%20helen%20revoked%0d%09alice%E2%80%8B"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", r.StatusCode)
	}
	noneRaw := func(where, v string) {
		t.Helper()
		if i := strings.IndexFunc(v, audit.Hidden); i >= 0 {
			t.Errorf("%s decodes to %q: a raw %U", where, v, []rune(v[i:])[0])
		}
	}
	var stored string
	if err := openSQLite(t, p.DB).QueryRow(`SELECT details FROM audit_events WHERE action = 'access.denied' AND actor = 'alice'`).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	var d map[string]string
	if err := json.Unmarshal([]byte(stored), &d); err != nil {
		t.Fatalf("details %q: %v", stored, err)
	}
	noneRaw("the stored path", d["path"])
	if want := `GET /helpdesk/users/bob\u202e\u000a -- HELPDESK helen revoked\u000d\u0009alice\u200b`; d["path"] != want {
		t.Errorf("stored path %q, want %q", d["path"], want)
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	export := audrey.get("/audit/export?format=jsonl&action=access.denied")
	lines := strings.Split(strings.TrimSpace(string(export.Body)), "\n")
	if export.StatusCode != http.StatusOK || len(lines) != 1 {
		t.Fatalf("export: %d, %d lines\n%s", export.StatusCode, len(lines), export.Body)
	}
	var e struct {
		Details map[string]string `json:"details"`
	}
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil {
		t.Fatalf("export line %q: %v", lines[0], err)
	}
	noneRaw("the exported path", e.Details["path"])
	if e.Details["path"] != d["path"] {
		t.Errorf("exported path %q, stored %q", e.Details["path"], d["path"])
	}
	if out, err := verifyChain(p.DB); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

// fetchHeaders are the Fetch metadata a browser sends with one kind of
// request, for the tests of GETs that do work.
type fetchHeaders struct{ name, site, mode, dest string }

var (
	// The user's own: a link or form on the portal, a typed URL or a
	// bookmark, and a client that sends no Fetch metadata (curl, scripts).
	ownNavigations = []fetchHeaders{
		{"same-origin navigation", "same-origin", "navigate", "document"},
		{"typed URL", "none", "navigate", "document"},
		{"no fetch metadata", "", "", ""},
	}
	// Not the user's: SameSite=Lax sends the cookie on all of them.
	foreignRequests = []fetchHeaders{
		{"cross-site navigation", "cross-site", "navigate", "document"},
		{"same-site navigation", "same-site", "navigate", "document"},
		{"same-site image", "same-site", "no-cors", "image"},
		{"same-site, no mode", "same-site", "", "image"},
		{"same-origin image", "same-origin", "no-cors", "image"},
		{"same-origin, no mode", "same-origin", "", ""},
		{"typed URL, no mode", "none", "", ""},
	}
)

// continueLink is the address the continue page's one link opens ("" if
// body is not that page).
func continueLink(body []byte) string {
	m := regexp.MustCompile(`<a href="([^"]*)" id="continue"`).FindSubmatch(body)
	if m == nil {
		return ""
	}
	return html.UnescapeString(string(m[1]))
}

func getWithFetch(b *client, path string, h fetchHeaders) *response {
	b.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, b.base+path, nil)
	for k, v := range map[string]string{"Sec-Fetch-Site": h.site, "Sec-Fetch-Mode": h.mode, "Sec-Fetch-Dest": h.dest} {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	return b.do(req)
}

// TestCrossSiteGETRefused: a GET that does work or writes events does it,
// and leaves an event, only for the user's own navigation. A navigation
// from another site (cross-site, or a sibling subdomain's link) gets a
// page with one same-origin link to the same address and no work done;
// every other request the cookie rides on (a sibling's <img>, an <img> on
// the portal itself, a fetch: the page script fetches none of these) is
// refused. Same-origin navigations, typed URLs and clients that send no
// Fetch metadata still work.
func TestCrossSiteGETRefused(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	events := func() int64 { return storeInt(t, p.DB, `SELECT count(*) FROM audit_events`) }
	refused := append(foreignRequests, fetchHeaders{"same-origin fetch", "same-origin", "cors", "empty"})
	for _, tc := range []struct {
		b    *client
		path string
	}{
		{audrey, "/audit/export?format=csv"},
		{audrey, "/audit/export?format=jsonl"},
		{audrey, "/audit/reconcile"},
		{audrey, "/audit/inventory/export"},
		{alice, "/certificates/" + serial + "/revoke"},
		// Helpdesk confirmation pages read the inventory (and Vault, for
		// certificates the portal never issued) with the portal's identity.
		{helen, "/helpdesk/certificates/" + serial + "/revoke"},
		{helen, "/helpdesk/certificates/" + serial + "/reissue"},
		// The renew page a reminder links to gets a same-origin link
		// instead of a refusal: TestRenewLinkFromMail.
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, h := range refused {
				before := events()
				r := getWithFetch(tc.b, tc.path, h)
				if h.mode == "navigate" {
					if r.StatusCode != http.StatusOK {
						t.Errorf("%s: status %d, want 200 with a continue link", h.name, r.StatusCode)
					} else if link := continueLink(r.Body); link != tc.path {
						t.Errorf("%s: continue link %q, want %q", h.name, link, tc.path)
					}
				} else {
					if r.StatusCode != http.StatusForbidden {
						t.Errorf("%s: status %d, want 403", h.name, r.StatusCode)
						continue
					}
					if msg := extract(r.Body, `id="error-message">`, "<"); !strings.Contains(msg, "open it yourself as a page of the portal") {
						t.Errorf("%s: message %q", h.name, msg)
					}
				}
				if after := events(); after != before {
					t.Fatalf("%s: %d audit events written", h.name, after-before)
				}
			}
			for _, h := range ownNavigations {
				if r := getWithFetch(tc.b, tc.path, h); r.StatusCode != http.StatusOK {
					t.Errorf("%s: status %d, want 200", h.name, r.StatusCode)
				}
			}
		})
	}
}

// TestAuditVerifyMissingDB: verify of a path with no database fails and
// creates nothing.
func TestAuditVerifyMissingDB(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nothing-here.db")
	out, err := verifyChain(path)
	if err == nil || !strings.Contains(err.Error(), "no database") {
		t.Fatalf("verify of a missing database: %v\n%s", err, out)
	}
	for _, f := range []string{path, path + "-wal", path + "-shm"} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s was created (%v)", f, err)
		}
	}
}

// TestSQLiteFileModes: the database and its WAL and shared-memory files are
// readable by the portal's user only, whatever the umask.
func TestSQLiteFileModes(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	b.issue("modern")
	for _, f := range []string{p.DB, p.DB + "-wal", p.DB + "-shm"} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m != 0o600 {
			t.Errorf("%s: mode %o, want 600", filepath.Base(f), m)
		}
	}
}

// TestStaticAndHead: /static/ lists nothing; HEAD answers like GET on the
// public endpoints.
func TestStaticAndHead(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	for _, path := range []string{"/static/", "/static", "/static/nothing/"} {
		if r := b.get(path); r.StatusCode != http.StatusNotFound || bytes.Contains(r.Body, []byte(`<a href="style.css">`)) {
			t.Errorf("GET %s: %d\n%s", path, r.StatusCode, r.Body)
		}
	}
	if r := b.get("/static/style.css"); r.StatusCode != http.StatusOK {
		t.Errorf("GET /static/style.css: %d", r.StatusCode)
	}
	for _, tc := range []struct{ path, contentType string }{
		{"/ca.pem", "application/pem-certificate-chain"},
		{"/healthz", "text/plain; charset=utf-8"},
		{"/readyz", "text/plain; charset=utf-8"},
		{"/static/style.css", "text/css; charset=utf-8"},
	} {
		req, _ := http.NewRequest(http.MethodHead, p.URL+tc.path, nil)
		r := b.do(req)
		if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != tc.contentType || len(r.Body) != 0 {
			t.Errorf("HEAD %s: %d %q, %d body bytes", tc.path, r.StatusCode, r.Header.Get("Content-Type"), len(r.Body))
		}
	}
}

// TestPasswordCharsRefusedBeforeVault: a file password PKCS#12 cannot
// carry (a character outside the BMP, such as an emoji, a control
// character, invalid UTF-8) is refused with 400 naming the field before
// Vault issues anything; it used to fail after issuance, with a 500.
func TestPasswordCharsRefusedBeforeVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	before := certCount(t, v)
	for _, tc := range []struct{ name, password string }{
		{"emoji", "correct horse \U0001F40E battery"},
		{"NUL", "correct horse\x00battery"},
		{"invalid UTF-8", "correct horse \xff battery"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, enc := range []string{"modern", "compat"} {
				r := b.post("/certificates", issueForm(tc.password, tc.password, "720h0m0s", enc))
				if r.StatusCode != http.StatusBadRequest || !fieldNamed(r.Body, "password") {
					t.Fatalf("%s: status %d, want 400 naming the password\n%s", enc, r.StatusCode, r.Body)
				}
			}
		})
	}
	if after := certCount(t, v); after != before {
		t.Fatalf("Vault issued %d certificates for refused passwords", after-before)
	}
	// A password in Korean or with accents is fine.
	r := b.post("/certificates", issueForm("비밀번호는 충분히 길다 élan", "비밀번호는 충분히 길다 élan", "720h0m0s", "compat"))
	if r.StatusCode != http.StatusOK {
		t.Fatalf("BMP password: %d", r.StatusCode)
	}
}

// TestEnrolLinkFromMail: the helpdesk's enrolment link is sent by mail or
// chat, so it is opened by a cross-site or same-site navigation; its page
// is a form that does nothing until posted (the token travels in the
// fragment and the form), so it opens, as it does typed or without Fetch
// metadata. The post stays behind the cross-origin protection.
func TestEnrolLinkFromMail(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	for _, h := range append([]fetchHeaders{foreignRequests[0], foreignRequests[1]}, ownNavigations...) {
		r := getWithFetch(b, "/enrol", h)
		if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `name="token"`) {
			t.Errorf("%s: status %d, want 200 with the enrolment form\n%s", h.name, r.StatusCode, r.Body)
		}
	}
}
