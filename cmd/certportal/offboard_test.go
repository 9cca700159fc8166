package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/postgres"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// storeStrings runs a query returning one text column against the portal's
// store, SQLite file or PostgreSQL DSN.
func storeStrings(t *testing.T, dsn, query string) []string {
	t.Helper()
	var out []string
	if strings.HasPrefix(dsn, "postgres") {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		rows, err := conn.Query(ctx, query)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		for rows.Next() {
			var s sql.NullString
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s.String)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	rows, err := openSQLite(t, dsn).Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	for rows.Next() {
		var s sql.NullString
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s.String)
	}
	return out
}

// offboardCLI runs `certportal offboard` with the portal's settings, as cron
// or an operator would.
func offboardCLI(t *testing.T, v *testenv.Vault, env map[string]string, args ...string) (string, error) {
	t.Helper()
	full := v.PortalEnv()
	for k, x := range env {
		full[k] = x
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"offboard"}, args...), func(k string) string { return full[k] }, &out, &errb)
	if err != nil {
		err = fmt.Errorf("%w (stderr: %s)", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

// enrol creates a userpass employee (unless it is a demo user), logs them
// in and issues one certificate; it returns the serial.
func enrol(t *testing.T, v *testenv.Vault, p *runningPortal, user string) string {
	t.Helper()
	pw := "pw-" + user + "-Offboard-1"
	if user == "alice" || user == "bob" {
		pw = v.Password(t, user)
	} else {
		v.CreateUser(t, user, pw, nil, "certportal-user")
	}
	b := newBrowser(t, p.URL)
	b.mustLogin(user, pw)
	return b.issue("modern")
}

// leave makes user leave Vault the way named: deleted from userpass,
// their identity entity disabled, or the employee policy taken away.
func leave(t *testing.T, v *testenv.Vault, user, how string) {
	t.Helper()
	switch how {
	case "deleted":
		if _, err := v.Admin.Logical().Delete("auth/userpass/users/" + user); err != nil {
			t.Fatal(err)
		}
	case "disabled":
		auths, err := v.Admin.Sys().ListAuth()
		if err != nil {
			t.Fatal(err)
		}
		e, err := v.Admin.Logical().Write("identity/lookup/entity", map[string]any{"alias_name": user, "alias_mount_accessor": auths["userpass/"].Accessor})
		if err != nil || e == nil {
			t.Fatalf("entity of %s: %v", user, err)
		}
		if _, err := v.Admin.Logical().Write("identity/entity/id/"+e.Data["id"].(string), map[string]any{"disabled": true}); err != nil {
			t.Fatal(err)
		}
	case "policy":
		if _, err := v.Admin.Logical().Write("auth/userpass/users/"+user, map[string]any{"token_policies": []string{"default"}}); err != nil {
			t.Fatal(err)
		}
	default:
		t.Fatalf("leave %s: unknown way %q", user, how)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func metricValue(t *testing.T, p *runningPortal, name string) string {
	t.Helper()
	body := string(newBrowser(t, p.URL).get("/metrics").Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// pauseSweeps takes the sweep's lock as a running sweep would (SQLite: in
// process, keyed by the file; PostgreSQL: the advisory lock), so that users
// can leave "at once" between two sweeps; a sweep in between would see one
// leaver at a time, which is never a mass removal.
func pauseSweeps(t *testing.T, dsn string) func() {
	t.Helper()
	st, err := app.OpenStore(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	var unlock func()
	waitUntil(t, "the sweep's lock free", 30*time.Second, func() bool {
		u, ok, err := st.TryLock(context.Background(), "offboard")
		if err != nil {
			t.Fatal(err)
		}
		unlock = u
		return ok
	})
	return func() { unlock(); st.Close() }
}

// TestOffboardSweep: a deleted user, a disabled one and one whose employee
// policy was removed lose their certificates within one sweep inside serve,
// revoked by "certportal" with the reason and the evidence; Vault's CRL, the
// inventory and the trail agree, the helpdesk page shows why, and the users
// Vault still admits keep theirs.
func TestOffboardSweep(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_OFFBOARD_INTERVAL": "300ms", "CERTPORTAL_OFFBOARD_MAX_SHARE": "100%"})
	serials := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		serials[u] = enrol(t, v, p, u)
	}
	// All three leave between two sweeps.
	unlock := pauseSweeps(t, p.DB)
	leave(t, v, "carol", "deleted")
	leave(t, v, "dave", "disabled")
	leave(t, v, "erin", "policy")
	unlock()

	gone := []string{"carol", "dave", "erin"}
	waitUntil(t, "offboarded certificates revoked in Vault and recorded", 30*time.Second, func() bool {
		for _, u := range gone {
			if revocationTime(t, v, serials[u]) == 0 {
				return false
			}
		}
		return storeInt(t, p.DB, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`) == 3
	})
	onCRL := map[string]bool{}
	for _, s := range crl(t, v) {
		onCRL[s] = true
	}
	wantReason := map[string]string{"carol": "affiliationChanged", "dave": "cessationOfOperation", "erin": "affiliationChanged"}
	wantEvidence := map[string]string{"carol": "user not found in userpass mount userpass", "dave": "disabled", "erin": "token_policies: [default]"}
	for _, u := range gone {
		s := serials[u]
		if !onCRL[s] {
			t.Errorf("%s's certificate %s is not on the CRL", u, s)
		}
		row := storeStrings(t, p.DB, `SELECT revoke_reason || '|' || revoked_by FROM certificates WHERE serial = '`+s+`'`)
		if len(row) != 1 || row[0] != wantReason[u]+"|certportal" {
			t.Errorf("%s inventory: %v, want %s|certportal", u, row, wantReason[u])
		}
		evs := storeStrings(t, p.DB, `SELECT outcome || '|' || details FROM audit_events WHERE action = 'certificate.revoke' AND actor = 'certportal' AND serial = '`+s+`' ORDER BY id`)
		if len(evs) != 2 || !strings.HasPrefix(evs[0], "intent|") || !strings.HasPrefix(evs[1], "success|") {
			t.Fatalf("%s trail: %v, want an intent and a success by certportal", u, evs)
		}
		for _, e := range evs {
			if !strings.Contains(e, wantEvidence[u]) || !strings.Contains(e, `"reason":"`+wantReason[u]+`"`) {
				t.Errorf("%s event %s: want reason %s and evidence %q", u, e, wantReason[u], wantEvidence[u])
			}
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if rt := revocationTime(t, v, serials[u]); rt != 0 || onCRL[serials[u]] {
			t.Errorf("%s (still in Vault with the policy) was revoked", u)
		}
	}
	if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.sweep' AND outcome = 'success'`); n != 1 {
		t.Errorf("%d offboard.sweep events, want 1 (one sweep did it all)", n)
	}

	// The helpdesk sees why each certificate went.
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	for _, u := range gone {
		page := string(helen.get("/helpdesk/users/" + u).Body)
		if !strings.Contains(page, `id="offboarding"`) || !strings.Contains(page, htmlEscape(wantEvidence[u])) || !strings.Contains(page, serials[u]) {
			t.Errorf("helpdesk page of %s lacks the offboarding evidence %q:\n%s", u, wantEvidence[u], extract([]byte(page), "<main", "</main>"))
		}
	}
	if out, err := verifyChain(p.DB); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestOffboardHeldUntilConfirmed: two of four employees gone at once is more
// than the default 10% share: the sweep inside serve revokes nothing,
// records why once and raises certportal_offboard_held; the dry run lists
// them and changes nothing; --confirm revokes them and names who confirmed.
func TestOffboardHeldUntilConfirmed(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	env := map[string]string{"CERTPORTAL_OFFBOARD_INTERVAL": "300ms"}
	p := startPortal(t, v, env)
	serials := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "erin"} {
		serials[u] = enrol(t, v, p, u)
	}
	if got := metricValue(t, p, "certportal_offboard_held"); got != "0" {
		t.Fatalf("certportal_offboard_held before: %q, want 0", got)
	}
	resume := pauseSweeps(t, p.DB)
	leave(t, v, "carol", "deleted")
	leave(t, v, "erin", "policy")
	resume()
	waitUntil(t, "certportal_offboard_held = 1", 60*time.Second, func() bool { return metricValue(t, p, "certportal_offboard_held") == "1" })
	// Let a few more sweeps hold: they must not record the same hold again.
	waitUntil(t, "three held sweeps", 30*time.Second, func() bool {
		n, _ := strconv.Atoi(metricValue(t, p, `certportal_offboard_sweeps_total{result="held"}`))
		return n >= 3
	})
	held := storeStrings(t, p.DB, `SELECT details FROM audit_events WHERE action = 'offboard.held'`)
	if len(held) != 1 || !strings.Contains(held[0], "2 of 4 users") || !strings.Contains(held[0], `"would_revoke_users":"2"`) || !strings.Contains(held[0], "carol erin") {
		t.Fatalf("offboard.held events: %v, want one with the numbers", held)
	}
	if !strings.Contains(p.Logs.String(), "offboarding sweep held") {
		t.Error("no error logged for the held sweep")
	}
	assertNothingRevoked := func(when string) {
		t.Helper()
		for u, s := range serials {
			if revocationTime(t, v, s) != 0 {
				t.Fatalf("%s: %s's certificate revoked in Vault", when, u)
			}
		}
		if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`); n != 0 {
			t.Fatalf("%s: %d revoked in the inventory", when, n)
		}
	}
	assertNothingRevoked("held")

	cliEnv := map[string]string{"CERTPORTAL_DB": p.DB}
	events := storeInt(t, p.DB, `SELECT COUNT(*) FROM audit_events WHERE action LIKE 'offboard.%' OR action = 'certificate.revoke'`)
	out, err := offboardCLI(t, v, cliEnv, "--once", "--dry-run")
	if err != nil {
		t.Fatalf("dry run: %v\n%s", err, out)
	}
	for _, want := range []string{"would revoke: carol: 1 certificate(s) " + serials["carol"], "would revoke: erin: 1 certificate(s) " + serials["erin"], "held: 2 of 4 users"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "alice") || strings.Contains(out, "bob") {
		t.Errorf("dry run lists users Vault still admits:\n%s", out)
	}
	assertNothingRevoked("dry run")
	if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM audit_events WHERE action LIKE 'offboard.%' OR action = 'certificate.revoke'`); n != events {
		t.Errorf("dry run changed the trail: %d offboarding events, was %d", n, events)
	}

	// A guarded run from cron holds too, with exit status 3.
	if out, err := offboardCLI(t, v, cliEnv, "--once"); exitCode(err) != 3 || !strings.Contains(out, "held, not revoked: carol") {
		t.Fatalf("guarded run: exit %d %v\n%s", exitCode(err), err, out)
	}
	assertNothingRevoked("guarded run")

	out, err = offboardCLI(t, v, cliEnv, "--once", "--confirm", "--by", "ops-anna")
	if err != nil {
		t.Fatalf("confirm: %v\n%s", err, out)
	}
	for _, u := range []string{"carol", "erin"} {
		if revocationTime(t, v, serials[u]) == 0 {
			t.Errorf("confirmed: %s not revoked in Vault", u)
		}
	}
	for _, u := range []string{"alice", "bob"} {
		if revocationTime(t, v, serials[u]) != 0 {
			t.Errorf("confirmed: %s revoked", u)
		}
	}
	if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL AND revoked_by = 'certportal'`); n != 2 {
		t.Errorf("confirmed: %d revoked in the inventory, want 2", n)
	}
	if got := storeStrings(t, p.DB, `SELECT actor FROM audit_events WHERE action = 'offboard.confirm'`); len(got) != 1 || got[0] != "ops-anna" {
		t.Errorf("offboard.confirm events: %v, want one by ops-anna", got)
	}
	if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM audit_events WHERE action = 'certificate.revoke' AND outcome = 'success' AND actor = 'certportal' AND details LIKE '%"confirmed_by":"ops-anna"%'`); n != 2 {
		t.Errorf("%d revocations name who confirmed, want 2", n)
	}
	// The next sweep in serve finds nothing to hold and lowers the alert.
	waitUntil(t, "certportal_offboard_held back to 0", 30*time.Second, func() bool { return metricValue(t, p, "certportal_offboard_held") == "0" })
	if out, err := verifyChain(p.DB); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}

// TestOffboardEmptyOrUnreadableList: a sweep that sees no users at all, or
// cannot read the list, revokes nothing — it does not read "nobody is
// there" as "everybody left" — records why and raises the metric.
func TestOffboardEmptyOrUnreadableList(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_OFFBOARD_INTERVAL": "300ms", "CERTPORTAL_OFFBOARD_MAX_SHARE": "100%", "CERTPORTAL_OFFBOARD_MAX_COUNT": "1000"})
	serials := []string{enrol(t, v, p, "alice"), enrol(t, v, p, "bob")}

	// Unreadable: the service identity may not list another mount.
	out, err := offboardCLI(t, v, map[string]string{"CERTPORTAL_DB": p.DB, "CERTPORTAL_USERPASS_MOUNT": "elsewhere"}, "--once")
	if exitCode(err) != 3 || !strings.Contains(out, "held: user list unreadable") {
		t.Fatalf("unreadable list: exit %d %v\n%s", exitCode(err), err, out)
	}
	if got := storeStrings(t, p.DB, `SELECT details FROM audit_events WHERE action = 'offboard.held'`); len(got) != 1 || !strings.Contains(got[0], "unreadable") {
		t.Fatalf("offboard.held after an unreadable list: %v", got)
	}

	// Empty: every user deleted (as a wrong mount or a botched import would
	// look).
	resume := pauseSweeps(t, p.DB)
	users, err := v.Admin.Logical().List("auth/userpass/users")
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range users.Data["keys"].([]any) {
		if _, err := v.Admin.Logical().Delete("auth/userpass/users/" + u.(string)); err != nil {
			t.Fatal(err)
		}
	}
	resume()
	waitUntil(t, "certportal_offboard_held = 1", 60*time.Second, func() bool { return metricValue(t, p, "certportal_offboard_held") == "1" })
	waitUntil(t, "an offboard.held event for the empty list", 30*time.Second, func() bool {
		return storeInt(t, p.DB, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.held' AND details LIKE '%is empty while 2 users hold active certificates%'`) == 1
	})
	for _, s := range serials {
		if revocationTime(t, v, s) != 0 {
			t.Fatalf("certificate %s revoked on an empty user list", s)
		}
	}
	if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`); n != 0 {
		t.Fatalf("%d revoked in the inventory on an empty user list", n)
	}
}

// TestOffboardOneRunnerPostgres: two replicas on one PostgreSQL never sweep
// at the same time. While the lock is held elsewhere a run does nothing;
// once free, the replicas' sweeps revoke each certificate exactly once (one
// intent, one result per serial, however many sweeps ran).
func TestOffboardOneRunnerPostgres(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn, "CERTPORTAL_OFFBOARD_INTERVAL": "200ms", "CERTPORTAL_OFFBOARD_MAX_SHARE": "100%"}
	a := startPortal(t, v, env)
	b := startPortal(t, v, env)
	serials := map[string]string{}
	for _, u := range []string{"alice", "carol", "dave", "erin"} {
		serials[u] = enrol(t, v, a, u)
	}

	// Hold the sweep's lock as a third replica would, then let users go.
	st, err := postgres.Open(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// The replicas sweep every 200ms: take the lock between two sweeps.
	// Released before st.Close on every way out: Close waits for the
	// connection that holds it, and a failure below would hang the run.
	var unlockOnce func()
	waitUntil(t, "the sweep's lock free", 30*time.Second, func() bool {
		u, ok, err := st.TryLock(context.Background(), "offboard")
		if err != nil {
			t.Fatal(err)
		}
		unlockOnce = u
		return ok
	})
	unlock := sync.OnceFunc(unlockOnce)
	defer unlock()
	leave(t, v, "carol", "deleted")
	leave(t, v, "dave", "policy")
	leave(t, v, "erin", "disabled")
	out, err := offboardCLI(t, v, map[string]string{"CERTPORTAL_DB": dsn}, "--once", "--wait", "0")
	if err != nil || !strings.Contains(out, "another sweep holds the lock") {
		t.Fatalf("run while the lock is held: %v\n%s", err, out)
	}
	for u, s := range serials {
		if at := revocationTime(t, v, s); at != 0 {
			t.Fatalf("%s revoked (at %d) while another runner held the lock; trail:\n%s", u, at, trailOf(t, st, s))
		}
	}
	skippedA := metricValue(t, a, `certportal_offboard_sweeps_total{result="skipped"}`)
	skippedB := metricValue(t, b, `certportal_offboard_sweeps_total{result="skipped"}`)
	if skippedA == "0" && skippedB == "0" {
		waitUntil(t, "a replica skipping a sweep", 30*time.Second, func() bool {
			return metricValue(t, a, `certportal_offboard_sweeps_total{result="skipped"}`) != "0"
		})
	}
	unlock()

	waitUntil(t, "the offboarded certificates revoked and recorded", 30*time.Second, func() bool {
		return storeInt(t, dsn, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`) == 3
	})
	// More sweeps on both replicas, then count.
	for _, p := range []*runningPortal{a, b} {
		before := metricValue(t, p, `certportal_offboard_sweeps_total{result="ok"}`)
		waitUntil(t, "another sweep", 30*time.Second, func() bool { return metricValue(t, p, `certportal_offboard_sweeps_total{result="ok"}`) != before })
	}
	for _, u := range []string{"carol", "dave", "erin"} {
		s := serials[u]
		if revocationTime(t, v, s) == 0 {
			t.Errorf("%s not revoked in Vault", u)
		}
		got := storeStrings(t, dsn, `SELECT outcome FROM audit_events WHERE action = 'certificate.revoke' AND serial = '`+s+`' ORDER BY id`)
		if strings.Join(got, ",") != "intent,success" {
			t.Errorf("%s: revocation events %v, want exactly one intent and one success", u, got)
		}
	}
	if revocationTime(t, v, serials["alice"]) != 0 {
		t.Error("alice revoked")
	}
}

// trailOf is every event of serial in st, one per line, for a failure's
// message.
func trailOf(t *testing.T, st store.Store, serial string) string {
	t.Helper()
	evs, err := st.QueryAudit(context.Background(), store.AuditFilter{Serial: serial})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "%s %s %s %s %s\n", e.Time.UTC().Format(time.RFC3339Nano), e.Actor, e.Action, e.Outcome, e.Details)
	}
	return b.String()
}
