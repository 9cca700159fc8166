package main

import (
	"bytes"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

// reconcileEntry is one row of GET /audit/reconcile?format=json.
type reconcileEntry struct {
	Serial   string `json:"serial"`
	Subject  string `json:"subject"`
	NotAfter string `json:"not_after"`
	Revoked  bool   `json:"revoked"`
}

var reconcileGroups = []string{"vault_only", "inventory_only", "state_mismatch", "known"}

// runReconcile starts a reconciliation (POST /audit/reconcile, as the
// page's button does) and waits until the page shows a newer finished run
// than before; it returns that run's JSON answer. The run proceeds in the
// background, so this polls the page's run headers, bounded in time.
func runReconcile(t *testing.T, b *client) *response {
	t.Helper()
	before := b.get("/audit/reconcile?format=json").Header.Get("X-Reconcile-Run")
	if r := b.post("/audit/reconcile", nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("start reconciliation: %d\n%.300s", r.StatusCode, r.Body)
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		r := b.get("/audit/reconcile?format=json")
		state := r.Header.Get("X-Reconcile-State")
		if state == "failed" {
			t.Fatalf("reconciliation failed: %v", r.Header)
		}
		if run := r.Header.Get("X-Reconcile-Run"); run != before && state == "done" {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no finished reconciliation after 5 minutes: %v", r.Header)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reconcileJSON runs a reconciliation, fetches its JSON form and checks its
// shape: exactly the four lists scripts rely on, each entry with exactly
// its four fields.
func reconcileJSON(t *testing.T, b *client) map[string][]reconcileEntry {
	t.Helper()
	return parseReconcileJSON(t, runReconcile(t, b))
}

func parseReconcileJSON(t *testing.T, r *response) map[string][]reconcileEntry {
	t.Helper()
	if r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("reconcile json: %d %s\n%.300s", r.StatusCode, r.Header.Get("Content-Type"), r.Body)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(r.Body, &raw); err != nil {
		t.Fatalf("reconcile json: %v\n%.300s", err, r.Body)
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := append([]string{"expired_tidied", "hold"}, reconcileGroups...)
	sort.Strings(want)
	if strings.Join(keys, ",") != strings.Join(want, ",") {
		t.Fatalf("reconcile json keys %v, want %v", keys, want)
	}
	// Pointers tell a missing field from a zero one; unknown fields and a
	// revoked that is not a boolean fail the decode.
	type strict struct {
		Serial   *string `json:"serial"`
		Subject  *string `json:"subject"`
		NotAfter *string `json:"not_after"`
		Revoked  *bool   `json:"revoked"`
	}
	if n := reconcileTidied(t, r); n < 0 {
		t.Fatalf("expired_tidied %d", n)
	}
	decodeReconcileHold(t, raw["hold"])
	out := map[string][]reconcileEntry{}
	for _, g := range reconcileGroups {
		if string(raw[g]) == "null" {
			t.Fatalf("%s is null, want a list", g)
		}
		var entries []strict
		dec := json.NewDecoder(bytes.NewReader(raw[g]))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&entries); err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		list := make([]reconcileEntry, 0, len(entries))
		for _, e := range entries {
			if e.Serial == nil || e.Subject == nil || e.NotAfter == nil || e.Revoked == nil {
				t.Fatalf("%s entry %+v: want serial, subject, not_after, revoked", g, e)
			}
			if _, err := time.Parse(time.RFC3339, *e.NotAfter); err != nil {
				t.Fatalf("%s entry %s: not_after is not RFC 3339: %v", g, *e.Serial, err)
			}
			list = append(list, reconcileEntry{*e.Serial, *e.Subject, *e.NotAfter, *e.Revoked})
		}
		out[g] = list
	}
	return out
}

// reconcileHold is the hold object of GET /audit/reconcile?format=json.
type reconcileHold struct {
	Scope            string              `json:"scope"`
	Since            string              `json:"since"`
	EventID          int64               `json:"event_id"`
	Trail            string              `json:"trail"`
	Employees        []reconcileHeldUser `json:"employees"`
	EmployeesUnnamed int                 `json:"employees_unnamed"`
	Unattributed     int                 `json:"unattributed"`
}

type reconcileHeldUser struct {
	Username     string `json:"username"`
	Certificates int    `json:"certificates"`
}

// decodeReconcileHold reads a JSON answer's hold: nil for null, otherwise
// an object with exactly reconcileHold's fields, every one present, since
// in RFC 3339 and employees a list (empty, never null, without any).
func decodeReconcileHold(t *testing.T, raw json.RawMessage) *reconcileHold {
	t.Helper()
	if string(raw) == "null" {
		return nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatalf("hold: %v\n%s", err, raw)
	}
	for _, k := range []string{"scope", "since", "event_id", "trail", "employees", "employees_unnamed", "unattributed"} {
		if _, ok := fields[k]; !ok {
			t.Errorf("hold without %s: %s", k, raw)
		}
	}
	if string(fields["employees"]) == "null" {
		t.Errorf("hold's employees is null, want a list: %s", raw)
	}
	var h reconcileHold
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		t.Fatalf("hold: %v\n%s", err, raw)
	}
	if _, err := time.Parse(time.RFC3339, h.Since); err != nil {
		t.Errorf("hold's since %q is not RFC 3339: %v", h.Since, err)
	}
	return &h
}

// reconcileTidied is the expired_tidied count of a JSON answer: expired
// inventory rows Vault no longer holds, counted, not listed.
func reconcileTidied(t *testing.T, r *response) int {
	t.Helper()
	var v struct {
		N *int `json:"expired_tidied"`
	}
	if err := json.Unmarshal(r.Body, &v); err != nil || v.N == nil {
		t.Fatalf("reconcile json: expired_tidied missing or not an integer: %v\n%.300s", err, r.Body)
	}
	return *v.N
}

func findEntry(list []reconcileEntry, serial string) *reconcileEntry {
	for i := range list {
		if list[i].Serial == serial {
			return &list[i]
		}
	}
	return nil
}

// groupsOf names every group serial appears in.
func groupsOf(rec map[string][]reconcileEntry, serial string) []string {
	var in []string
	for _, g := range reconcileGroups {
		if findEntry(rec[g], serial) != nil {
			in = append(in, g)
		}
	}
	return in
}

// issueServerCert issues an Nginx server certificate in the portal's own
// issuing mount, as nginx-server did before server certificates got a mount
// of their own (setup removes that role; its certificates stay in the list
// until they expire): the role setup wrote then, with the admin token.
func issueServerCert(t *testing.T, v *testenv.Vault) string {
	t.Helper()
	if _, err := v.Admin.Logical().Write("pki/roles/legacy-nginx-server", setup.ServerRoleData(setup.Defaults(), []string{"localhost"})); err != nil {
		t.Fatal(err)
	}
	sec, err := v.Admin.Logical().Write("pki/issue/legacy-nginx-server", map[string]any{"common_name": "localhost", "ttl": "24h"})
	if err != nil {
		t.Fatal(err)
	}
	return sec.Data["serial_number"].(string)
}

// TestReconcileStates: a certificate alice issues straight from Vault with
// her own token is vault_only; a certificate revoked in Vault behind the
// portal's back, or marked revoked in the inventory but live in Vault, is a
// state_mismatch (found by the first run too, which learns the portal's
// own certificates from the inventory without reading them); the portal's own Nginx server certificate is known; the
// portal's own consistent certificates and the CA appear nowhere. The HTML
// page shows the same four groups and links vault_only rows to helpdesk.
func TestReconcileStates(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice, bob := newBrowser(t, p.URL), newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	bob.mustLogin("bob", v.Password(t, "bob"))
	consistent := alice.issue("modern")
	revokedInVault := alice.issue("modern")
	revokedInInventory := bob.issue("modern")
	around := nginxCertsUserSerial(t, v, "alice") // alice's own token, straight to Vault
	server := issueServerCert(t, v)
	// A CA in the mount's certificate list is not a user certificate.
	rogue, err := v.Admin.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Rogue Root", "issuer_name": "rogue", "ttl": "48h"})
	if err != nil {
		t.Fatal(err)
	}
	rogueCA := rogue.Data["serial_number"].(string)

	if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": revokedInVault}); err != nil {
		t.Fatal(err)
	}
	db := openSQLite(t, p.DB)
	if _, err := db.Exec(`UPDATE certificates SET revoked_at = 1, revoke_reason = 'lost', revoked_by = 'bob' WHERE serial = ?`, revokedInInventory); err != nil {
		t.Fatal(err)
	}

	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	check := func(t *testing.T) {
		rec := reconcileJSON(t, audrey)
		want := map[string]struct {
			group   string
			revoked bool
			subject string
		}{
			around:             {"vault_only", false, "alice@example.com"},
			revokedInVault:     {"state_mismatch", true, "alice@example.com"},
			revokedInInventory: {"state_mismatch", false, "bob@example.com"},
			server:             {"known", false, "localhost"},
		}
		for serial, w := range want {
			if g := groupsOf(rec, serial); len(g) != 1 || g[0] != w.group {
				t.Errorf("%s (%s) in %v, want [%s]", serial, w.subject, g, w.group)
				continue
			}
			e := findEntry(rec[w.group], serial)
			if e.Revoked != w.revoked || e.Subject != w.subject {
				t.Errorf("%s in %s: %+v, want revoked=%v subject=%s", serial, w.group, e, w.revoked, w.subject)
			}
		}
		if g := groupsOf(rec, consistent); len(g) != 0 {
			t.Errorf("consistent portal certificate %s listed in %v", consistent, g)
		}
		if g := groupsOf(rec, rogueCA); len(g) != 0 {
			t.Errorf("CA certificate %s listed in %v", rogueCA, g)
		}
		for _, g := range reconcileGroups {
			for _, e := range rec[g] {
				if strings.Contains(e.Subject, "CA") {
					t.Errorf("CA certificate listed in %s: %+v", g, e)
				}
			}
		}
	}
	check(t)

	page := audrey.get("/audit/reconcile")
	if page.StatusCode != http.StatusOK {
		t.Fatalf("reconcile page: %d", page.StatusCode)
	}
	for id, serial := range map[string]string{"vault-only": around, "state-mismatch": revokedInVault, "known": server} {
		if table := extract(page.Body, `id="`+id+`">`, "</table>"); !strings.Contains(table, serial) {
			t.Errorf("table %s lacks %s:\n%s", id, serial, table)
		}
	}
	if table := extract(page.Body, `id="vault-only">`, "</table>"); !strings.Contains(table, `href="/helpdesk/vault-certificates/`+around+`/revoke"`) {
		t.Errorf("vault_only row not linked to the helpdesk revoke page:\n%s", table)
	}
	if r := audrey.get("/audit/reconcile?format=xml"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown format: %d", r.StatusCode)
	}

	// A service policy from before this change cannot list revoked serials:
	// the revocation state then comes from each certificate, same result.
	t.Run("without list on certs/revoked", func(t *testing.T) {
		pol, err := v.Admin.Sys().GetPolicy("certportal-service")
		if err != nil {
			t.Fatal(err)
		}
		old := strings.Replace(pol, `path "pki/certs/revoked"`, `path "pki/certs/revoked-not-granted"`, 1)
		if old == pol {
			t.Fatalf("service policy has no pki/certs/revoked path:\n%s", pol)
		}
		if err := v.Admin.Sys().PutPolicy("certportal-service", old); err != nil {
			t.Fatal(err)
		}
		check(t)
		// And as a first run: without the revoked list the portal's own
		// certificates are read too (the inventory does not say whether
		// Vault revoked them), so the mismatches are still found.
		if _, err := db.Exec(`DELETE FROM vault_certs`); err != nil {
			t.Fatal(err)
		}
		check(t)
	})
}

// TestHelpdeskRevokesVaultOnly: helpdesk revokes a certificate alice issued
// straight from Vault, with a reason and a ticket, on the record; nobody else
// may, a bad ticket is refused naming the field, a cross-site post is
// refused, and certificates the portal issued, the CA and the portal's own
// server certificate are not revoked by this route.
func TestHelpdeskRevokesVaultOnly(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	mine := alice.issue("modern")
	around := nginxCertsUserSerial(t, v, "alice")
	server := issueServerCert(t, v)
	// The mount's own issuing CA is not in its certificate list; a second
	// root generated in the mount is (the default issuer stays as it was).
	ca, err := v.Admin.Logical().Write("pki/root/generate/internal", map[string]any{"common_name": "Rogue Root CA", "issuer_name": "rogue", "ttl": "48h"})
	if err != nil {
		t.Fatal(err)
	}
	caSerial := ca.Data["serial_number"].(string)
	path := "/helpdesk/vault-certificates/" + around + "/revoke"
	good := url.Values{"reason": {"compromised"}, "ticket": {"SEC-4711"}}

	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	for who, b := range map[string]*client{"employee": alice, "auditor": audrey} {
		if r := b.get(path); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s GET: %d", who, r.StatusCode)
		}
		if r := b.post(path, good); r.StatusCode != http.StatusForbidden {
			t.Errorf("%s POST: %d", who, r.StatusCode)
		}
	}

	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	form := helen.get(path)
	if form.StatusCode != http.StatusOK || !strings.Contains(string(form.Body), "alice@example.com") || !strings.Contains(string(form.Body), `name="ticket"`) {
		t.Fatalf("helpdesk form: %d\n%s", form.StatusCode, form.Body)
	}
	// The facts as one list (a table of one-row cards on a phone before),
	// and a red button beside a way out, as on the other revoke pages.
	if b := string(form.Body); !strings.Contains(b, `<dl class="kv card" id="vault-certificate">`) || !strings.Contains(b, `id="vault-revoke-submit" class="danger"`) {
		t.Errorf("helpdesk form layout:\n%s", b)
	}
	bad := []struct {
		name   string
		path   string
		form   url.Values
		status int
		want   string // the field the error names
	}{
		{"no ticket", path, url.Values{"reason": {"compromised"}}, 400, "Ticket reference"},
		{"ticket with newline", path, url.Values{"reason": {"compromised"}, "ticket": {"A\nB"}}, 400, "Ticket reference"},
		{"bad reason", path, url.Values{"reason": {"bored"}, "ticket": {"SEC-1"}}, 400, "Reason"},
		{"bad serial", "/helpdesk/vault-certificates/zz-top/revoke", good, 404, ""},
		{"unknown serial", "/helpdesk/vault-certificates/01:02:03/revoke", good, 404, ""},
		{"in the inventory", "/helpdesk/vault-certificates/" + mine + "/revoke", good, 400, ""},
		{"the CA", "/helpdesk/vault-certificates/" + caSerial + "/revoke", good, 400, ""},
		{"server certificate unconfirmed", "/helpdesk/vault-certificates/" + server + "/revoke", good, 400, ""},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			r := helen.post(tt.path, tt.form)
			if r.StatusCode != tt.status {
				t.Errorf("status %d, want %d\n%s", r.StatusCode, tt.status, r.Body)
			}
			if msg := extract(r.Body, `id="form-error">`, "</p>"); tt.want != "" && !strings.Contains(msg, tt.want) {
				t.Errorf("error %q does not name %q", msg, tt.want)
			}
		})
	}
	if r := helen.post(path, good, "Sec-Fetch-Site", "cross-site"); r.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %d", r.StatusCode)
	}
	for _, s := range []string{around, mine, server, caSerial} {
		if revokedInVault(t, v, s) {
			t.Fatalf("%s revoked by a refused request", s)
		}
	}

	r := helen.post(path, good)
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk revoke: %d\n%s", r.StatusCode, r.Body)
	}
	if !revokedInVault(t, v, around) {
		t.Fatal("Vault does not show the certificate revoked")
	}
	// The page it leads to says so, naming the certificate, in both
	// languages (it once read "The certificate of %s was revoked").
	for _, lang := range []string{"en", "ko"} {
		done := helen.get(r.Header.Get("Location") + "&lang=" + lang)
		notice := html.UnescapeString(extract(done.Body, `id="notice">`, "</p>"))
		if done.StatusCode != http.StatusOK || strings.Contains(notice, "%") || !strings.Contains(notice, around) {
			t.Errorf("%s: the page after the revoke: %d, notice %q, want one naming %s", lang, done.StatusCode, notice, around)
		}
	}
	db := openSQLite(t, p.DB)
	var actor, subject, details string
	if err := db.QueryRow(`SELECT actor, subject, details FROM audit_events WHERE action = 'certificate.revoke' AND outcome = 'success' AND serial = ?`,
		around).Scan(&actor, &subject, &details); err != nil {
		t.Fatalf("no revoke event for %s: %v", around, err)
	}
	var d map[string]string
	if err := json.Unmarshal([]byte(details), &d); err != nil {
		t.Fatal(err)
	}
	if actor != "helen" || d["reason"] != "compromised" || d["ticket"] != "SEC-4711" || d["subject"] != "alice@example.com" {
		t.Errorf("revoke event: actor %q subject %q details %v", actor, subject, d)
	}
	var rows int
	if err := db.QueryRow(`SELECT count(*) FROM certificates WHERE serial = ?`, around).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("revoking a vault-only certificate wrote an inventory row: %d %v", rows, err)
	}
	if r := helen.post(path, good); r.StatusCode != http.StatusBadRequest {
		t.Errorf("second revoke: %d", r.StatusCode)
	}
	rec := reconcileJSON(t, audrey)
	if e := findEntry(rec["vault_only"], around); e == nil || !e.Revoked {
		t.Errorf("reconciliation after the revoke: %+v", e)
	}

	// The portal's own server certificate goes only when asked for by name.
	if r := helen.post("/helpdesk/vault-certificates/"+server+"/revoke", url.Values{"reason": {"other"}, "ticket": {"OPS-1"}, "confirm_server": {"yes"}}); r.StatusCode != http.StatusSeeOther {
		t.Errorf("confirmed server certificate revoke: %d", r.StatusCode)
	}
	if !revokedInVault(t, v, server) {
		t.Error("confirmed server certificate not revoked")
	}
}

// revokedInVault asks Vault itself whether serial is revoked.
func revokedInVault(t *testing.T, v *testenv.Vault, serial string) bool {
	t.Helper()
	sec, err := v.Admin.Logical().Read("pki/cert/" + serial)
	if err != nil || sec == nil {
		t.Fatalf("read %s: %v", serial, err)
	}
	n, _ := sec.Data["revocation_time"].(json.Number)
	rt, _ := n.Int64()
	return rt > 0
}

// TestReconcilePast200kRows: with more than 200,000 inventory rows, a
// certificate the portal issued is still matched with Vault, and rows past
// the 200,000th that Vault does not know are still reported.
func TestReconcilePast200kRows(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	mine := alice.issue("modern")

	// 200,001 rows issued "tomorrow", so they sort before the real one by
	// issue time, and one row issued in 1970 that Vault never saw. One
	// statement, one transaction: under a second (without -race). The
	// fillers are revoked, which keeps them out of the partial index of
	// active certificates: less to build.
	const filler = 200001
	db := openSQLite(t, p.DB)
	began := time.Now()
	if _, err := db.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
		INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after, revoked_at)
		SELECT printf('fe:%02x:%02x:%02x', i >> 16, (i >> 8) & 255, i & 255), 'filler', 'filler@example.com', 'ec-256', 'modern', 'filler', ?2, ?3, ?2
		FROM n`, filler, time.Now().Add(24*time.Hour).UnixMilli(), time.Now().Add(48*time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
		VALUES('0d:0d:0d:0d', 'ghost', 'ghost@example.com', 'ec-256', 'modern', 'ghost', 0, ?)`, time.Now().Add(48*time.Hour).UnixMilli()); err != nil {
		t.Fatal(err)
	}
	t.Logf("inserted %d rows in %s", filler+1, time.Since(began))

	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	// Each run reads all 200,003 rows; under -race the pure-Go SQLite takes
	// tens of seconds for that (about 1.5 s without), more than the usual
	// client timeout allows.
	audrey.c.Timeout = 10 * time.Minute
	began = time.Now()
	rec := reconcileJSON(t, audrey)
	t.Logf("reconcile run and json over %d rows in %s", filler+2, time.Since(began))
	began = time.Now()
	page := audrey.get("/audit/reconcile")
	t.Logf("reconcile page over %d rows in %s", filler+2, time.Since(began))
	if page.StatusCode != http.StatusOK {
		t.Fatalf("reconcile page: %d", page.StatusCode)
	}
	if table := extract(page.Body, `id="vault-only">`, "</table>"); strings.Contains(table, `data-serial="`+mine+`"`) {
		t.Errorf("a certificate the portal issued, row 200,002 by issue time, shown as issued around the portal")
	}
	if table := extract(page.Body, `id="inventory-only">`, "</table>"); !strings.Contains(table, `data-serial="0d:0d:0d:0d"`) {
		t.Errorf("inventory row past the 200,000th that Vault does not know is not shown")
	}

	if g := groupsOf(rec, mine); len(g) != 0 {
		t.Errorf("portal certificate past row 200,000 listed in %v", g)
	}
	if len(rec["inventory_only"]) != filler+1 || findEntry(rec["inventory_only"], "0d:0d:0d:0d") == nil || findEntry(rec["inventory_only"], "fe:03:0d:41") == nil {
		t.Errorf("inventory_only has %d rows, want %d including 0d:0d:0d:0d and fe:03:0d:41", len(rec["inventory_only"]), filler+1)
	}
	if len(rec["vault_only"]) != 0 {
		t.Errorf("vault_only: %v", rec["vault_only"])
	}
}
