package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestAuditTrail: every action lands in the trail with who, what and from
// where; auditors filter, page and export it; nobody else can read it; no
// export carries a secret.
func TestAuditTrail(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alicePW := v.Password(t, "alice")
	if r := newBrowser(t, p.URL).post("/login", url.Values{"username": {"alice"}, "password": {"wrong-password"}}); r.StatusCode != 401 {
		t.Fatalf("failed login: %d", r.StatusCode)
	}
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", alicePW)
	s1 := alice.issue("modern")
	if r := alice.post("/certificates/"+s1+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke: %d", r.StatusCode)
	}
	for _, path := range []string{"/audit", "/audit/export?format=csv", "/audit/inventory", "/audit/reconcile"} {
		if r := alice.get(path); r.StatusCode != http.StatusForbidden {
			t.Errorf("employee GET %s: %d", path, r.StatusCode)
		}
	}
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	if r := helen.get("/audit"); r.StatusCode != http.StatusForbidden {
		t.Errorf("helpdesk GET /audit: %d", r.StatusCode)
	}

	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	page := audrey.get("/audit")
	if page.StatusCode != http.StatusOK || !bytes.Contains(page.Body, []byte("<svg")) {
		t.Fatalf("/audit: %d", page.StatusCode)
	}
	filtered := string(audrey.get("/audit?actor=alice&action=certificate.issue").Body)
	if strings.Count(filtered, `class="outcome-success"`) != 1 || !strings.Contains(filtered, "certificate.issue") {
		t.Fatalf("filtered page:\n%s", filtered)
	}
	if r := audrey.get("/audit?from=yesterday"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("bad date: %d", r.StatusCode)
	}
	if r := audrey.get("/audit?action=drop+table"); r.StatusCode != http.StatusBadRequest {
		t.Errorf("bad action: %d", r.StatusCode)
	}

	csvResp := audrey.get("/audit/export?format=csv")
	if csvResp.StatusCode != http.StatusOK || csvResp.Header.Get("Content-Type") != "text/csv; charset=utf-8" {
		t.Fatalf("csv export: %d %s", csvResp.StatusCode, csvResp.Header.Get("Content-Type"))
	}
	rows, err := csv.NewReader(bytes.NewReader(csvResp.Body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	type key struct{ actor, subject, action, outcome string }
	seen := map[key]bool{}
	for _, row := range rows[1:] {
		seen[key{row[2], row[3], row[4], row[5]}] = true
		if row[4] != "portal.start" && (row[6] != "127.0.0.1" || row[8] == "") || len(row[12]) != 64 {
			t.Errorf("row lacks client ip, request id or hash: %v", row)
		}
	}
	for _, want := range []key{
		{"", "alice", "login", "failure"},
		{"alice", "alice", "login", "success"},
		{"alice", "alice", "certificate.issue", "success"},
		{"alice", "alice", "certificate.download", "success"},
		{"alice", "alice", "certificate.revoke", "success"},
		{"alice", "alice", "access.denied", "denied"},
		{"helen", "helen", "access.denied", "denied"},
		{"certportal", "", "portal.start", "success"},
	} {
		if !seen[want] {
			t.Errorf("no %+v event in the trail", want)
		}
	}
	jsonl := audrey.get("/audit/export?format=jsonl&actor=alice")
	lines := strings.Split(strings.TrimSpace(string(jsonl.Body)), "\n")
	for _, l := range lines {
		var e map[string]any
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("bad JSON line %q: %v", l, err)
		}
		if e["actor"] != "alice" {
			t.Fatalf("filter not applied: %v", e)
		}
	}
	// The exports themselves were recorded.
	if !strings.Contains(string(audrey.get("/audit?action=audit.export").Body), "audrey") {
		t.Error("export not recorded")
	}
	all := string(csvResp.Body) + string(jsonl.Body) + string(page.Body) + p.Logs.String()
	assertNoSecrets(t, all, alicePW, "wrong-password", p12Password, v.Password(t, "audrey"))
}

// TestAuditVerifyDetectsTampering edits the SQLite file directly, as an
// intruder with the file would, and `certportal audit verify` names the row.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	b.issue("modern")
	b.issue("compat")

	verify := func() (string, error) { return verifyChain(p.DB) }
	out, err := verify()
	if err != nil || !strings.Contains(out, "audit chain verified") {
		t.Fatalf("untouched chain: %v %s", err, out)
	}
	db := openSQLite(t, p.DB)
	// Download events are committed just after the response (the deferred
	// write window); tamper only once both have landed, so the portal does
	// not append while a row is edited and restored.
	waitForEvents(t, db, "certificate.download", 2)
	// The portal's own connection cannot change history.
	if _, err := db.Exec(`UPDATE audit_events SET actor = 'mallory' WHERE id = 2`); err == nil {
		t.Fatal("an UPDATE of the audit trail was allowed")
	}
	if _, err := db.Exec(`DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete`); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tamper, undo, row string
	}{
		{"actor", `UPDATE audit_events SET actor = 'mallory' WHERE id = 3`, `UPDATE audit_events SET actor = 'alice' WHERE id = 3`, "row 3"},
		{"details", `UPDATE audit_events SET details = '{}' WHERE id = 4`, "", "row 4"},
		{"time", `UPDATE audit_events SET time_us = time_us + 1 WHERE id = 2`, "", "row 2"},
		{"client ip", `UPDATE audit_events SET client_ip = '10.0.0.1' WHERE id = 3`, "", "row 3"},
		{"subject", `UPDATE audit_events SET subject = 'bob' WHERE id = 3`, "", "row 3"},
		{"action", `UPDATE audit_events SET action = 'logout' WHERE id = 4`, "", "row 4"},
		{"outcome", `UPDATE audit_events SET outcome = 'failure' WHERE id = 3`, "", "row 3"},
		{"user agent", `UPDATE audit_events SET user_agent = 'curl' WHERE id = 2`, "", "row 2"},
		{"request id", `UPDATE audit_events SET request_id = 'x' WHERE id = 4`, "", "row 4"},
		{"serial", `UPDATE audit_events SET serial = '01:02' WHERE id = 4`, "", "row 4"},
		{"prev hash", `UPDATE audit_events SET prev_hash = hash WHERE id = 3`, "", "row 3"},
		{"hash rewritten", `UPDATE audit_events SET outcome = 'failure', hash = 'ab' WHERE id = 3`, "", "row 3"},
		{"deleted row", `DELETE FROM audit_events WHERE id = 2`, "", "row 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snapshot := dumpAudit(t, db)
			defer restoreAudit(t, db, snapshot)
			if _, err := db.Exec(tt.tamper); err != nil {
				t.Fatal(err)
			}
			_, err := verify()
			if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error(), tt.row) {
				t.Fatalf("tampering not named: %v", err)
			}
		})
	}
	out, err = verify()
	if err != nil {
		t.Fatalf("restored chain: %v", err)
	}
	// Rows cut from the end leave a chain that verifies on its own; the
	// anchor an earlier run printed finds them.
	_, anchor, ok := strings.Cut(out, "anchor for the next run: ")
	if !ok {
		t.Fatalf("no anchor printed:\n%s", out)
	}
	anchorArgs := strings.Fields(anchor) // -anchor ID:HASH
	var last int
	if err := db.QueryRow(`SELECT max(id) FROM audit_events`).Scan(&last); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`DELETE FROM audit_events WHERE id = ?`, last); err != nil {
		t.Fatal(err)
	}
	if _, err := verify(); err != nil {
		t.Fatalf("a cut tail without anchor: %v", err)
	}
	_, err = verifyChain(p.DB, anchorArgs...)
	if err == nil || exitCode(err) != 1 || !strings.Contains(err.Error(), fmt.Sprintf("row %d", last)) || !strings.Contains(err.Error(), "cut from the end") {
		t.Fatalf("cut tail with anchor %v: %v", anchorArgs, err)
	}
	if _, err := verifyChain(p.DB, "-anchor", "3:nothex"); err == nil || exitCode(err) == 0 {
		t.Fatalf("bad anchor accepted: %v", err)
	}
}

// verifyChain runs `certportal audit verify -db dsn args...` and returns
// what it printed and its error; a usage message is in the error's place.
func verifyChain(dsn string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"audit", "verify", "-db", dsn}, args...), func(string) string { return "" }, &out, &errb)
	if err != nil && errb.Len() > 0 {
		err = fmt.Errorf("%w: %s", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

type auditRow []any

// openSQLite opens the portal's database file beside the running portal, as
// an intruder or an operator would; it waits for the portal's writer like
// any other SQLite client.
func openSQLite(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func waitForEvents(t *testing.T, db *sql.DB, action string, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE action = ?`, action).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d %s events after 30s, want %d", n, action, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dumpAudit(t *testing.T, db *sql.DB) []auditRow {
	t.Helper()
	rows, err := db.Query(`SELECT * FROM audit_events ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []auditRow
	for rows.Next() {
		r := make(auditRow, len(cols))
		ptrs := make([]any, len(cols))
		for i := range r {
			ptrs[i] = &r[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

func restoreAudit(t *testing.T, db *sql.DB, rows []auditRow) {
	t.Helper()
	if _, err := db.Exec(`DELETE FROM audit_events`); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if _, err := db.Exec(`INSERT INTO audit_events VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)`, r...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAuditFailClosed: when the audit store refuses writes, nobody logs in and
// nothing is issued; a certificate Vault issued in that request is revoked.
func TestAuditFailClosed(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	db := openSQLite(t, p.DB)
	if _, err := db.Exec(`CREATE TRIGGER audit_full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	issueFailsAndIsRevoked(t, v, b)
	var rows int
	if err := db.QueryRow(`SELECT COUNT(*) FROM certificates`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("inventory row written without its audit event: %d %v", rows, err)
	}
	// Operators alert on this: every failure is an action refused.
	if m := b.get("/metrics"); !strings.Contains(string(m.Body), "certportal_audit_write_failures_total 1\n") {
		t.Error("/metrics does not count the refused audit write")
	}
	acc := accessors(t, v)
	if r := newBrowser(t, p.URL).post("/login", url.Values{"username": {"bob"}, "password": {v.Password(t, "bob")}}); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("login with audit down: %d", r.StatusCode)
	}
	if len(accessors(t, v)) != len(acc) {
		t.Error("login with audit down left a live Vault token")
	}
}

// TestReconcile: a certificate issued straight from Vault with an admin token
// shows up as issued around the portal; an unexpired inventory row Vault does
// not know shows up too, and an expired one (what Vault's tidy removes) is
// counted, not listed.
func TestReconcile(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	mine := alice.issue("modern")
	if _, err := v.Admin.Logical().Write("pki/roles/adhoc", map[string]any{"allow_any_name": true, "enforce_hostnames": false, "client_flag": true}); err != nil {
		t.Fatal(err)
	}
	sec, err := v.Admin.Logical().Write("pki/issue/adhoc", map[string]any{"common_name": "mallory@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	around := sec.Data["serial_number"].(string)
	db := openSQLite(t, p.DB)
	if _, err := db.Exec(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
		VALUES('0f:0f:0f', 'ghost', 'ghost@example.com', 'ec-256', 'modern', 'ghost', 0, 9999999999999),
		('0e:0e:0e', 'ghost', 'ghost@example.com', 'ec-256', 'modern', 'ghost', 0, 86400000)`); err != nil {
		t.Fatal(err)
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	js := runReconcile(t, audrey)
	rec := parseReconcileJSON(t, js)
	if n := reconcileTidied(t, js); n != 1 || findEntry(rec["inventory_only"], "0e:0e:0e") != nil || findEntry(rec["inventory_only"], "0f:0f:0f") == nil {
		t.Errorf("json: expired_tidied %d (want 1), inventory_only %v (want 0f:0f:0f, not the expired 0e:0e:0e)", n, rec["inventory_only"])
	}
	r := audrey.get("/audit/reconcile")
	if r.StatusCode != http.StatusOK {
		t.Fatalf("reconcile: %d", r.StatusCode)
	}
	body := string(r.Body)
	vaultOnly := extract(r.Body, `id="vault-only">`, "</table>")
	invOnly := extract(r.Body, `id="inventory-only">`, "</table>")
	if !strings.Contains(vaultOnly, around) || !strings.Contains(vaultOnly, "mallory@example.com") {
		t.Errorf("certificate issued around the portal not listed:\n%s", body)
	}
	// On a phone the rows stack as cards: each cell says what it is.
	if !strings.Contains(vaultOnly, `data-label="Subject"`) || !strings.Contains(body, `<a href="/audit/inventory">`) {
		t.Errorf("reconciliation rows without labels, or no way to the inventory report:\n%s", vaultOnly)
	}
	if strings.Contains(vaultOnly, mine) || strings.Contains(vaultOnly, "Issuing CA") {
		t.Errorf("portal certificate or CA listed as issued around the portal:\n%s", vaultOnly)
	}
	if !strings.Contains(invOnly, "0f:0f:0f") {
		t.Errorf("inventory row unknown to Vault not listed:\n%s", invOnly)
	}
	if strings.Contains(invOnly, "0e:0e:0e") || extract(r.Body, `id="expired-tidied"><small>`, "<") != "Expired and removed from Vault by tidy: 1 — normal, not listed." {
		t.Errorf("expired inventory row listed, or its count not shown: %q\n%s", extract(r.Body, `id="expired-tidied">`, "</p>"), invOnly)
	}
	inv := audrey.get("/audit/inventory")
	if inv.StatusCode != http.StatusOK || extract(inv.Body, `id="count-active">`, "<") != "2" {
		t.Errorf("inventory report: %d active=%q", inv.StatusCode, extract(inv.Body, `id="count-active">`, "<"))
	}
}
