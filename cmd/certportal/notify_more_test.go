package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
	"github.com/certportal/certportal/internal/testenv/smtptest"
)

// notifyCLI runs `certportal notify --once` with the portal's settings, as
// cron would.
func notifyCLI(t *testing.T, v *testenv.Vault, env map[string]string) (string, error) {
	t.Helper()
	full := v.PortalEnv()
	for k, x := range env {
		full[k] = x
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), []string{"notify", "--once"}, func(k string) string { return full[k] }, &out, &errb)
	if err != nil {
		err = fmt.Errorf("%w (stderr: %s)", err, strings.TrimSpace(errb.String()))
	}
	return out.String(), err
}

func mailEnv(srv *smtptest.Server) map[string]string {
	return map[string]string{
		"CERTPORTAL_SMTP_URL": srv.URL(), "CERTPORTAL_SMTP_CACERT": srv.CAFile, "CERTPORTAL_MAIL_FROM": "certportal@example.com",
		"CERTPORTAL_PUBLIC_URL": "https://certs.example.com",
	}
}

// TestOwnerAddressFromVaultMetadata: with CERTPORTAL_NOTIFY_EMAIL_METADATA
// set, `notify --once` reads the owner's address from their Vault entity's
// metadata with the portal's own identity (the policy setup writes lets it
// look the entity up); an owner whose entity has no such field, or who has
// no entity yet, gets <user>@<email domain>.
func TestOwnerAddressFromVaultMetadata(t *testing.T) {
	ctx := context.Background()
	v := testenv.StartConfiguredVault(t)
	srv := smtptest.Start(t)
	// alice's first login makes her entity; an operator records her address.
	if _, err := v.Admin.Logical().Write("auth/userpass/login/alice", map[string]any{"password": v.Password(t, "alice")}); err != nil {
		t.Fatal(err)
	}
	auths, err := v.Admin.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	e, err := v.Admin.Logical().Write("identity/lookup/entity", map[string]any{"alias_name": "alice", "alias_mount_accessor": auths["userpass/"].Accessor})
	if err != nil || e == nil {
		t.Fatalf("alice's entity: %v", err)
	}
	if _, err := v.Admin.Logical().Write("identity/entity/id/"+e.Data["id"].(string),
		map[string]any{"metadata": map[string]string{"email": "alice.kim@corp.example.org", "team": "pki"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Admin.Logical().Write("auth/userpass/login/bob", map[string]any{"password": v.Password(t, "bob")}); err != nil {
		t.Fatal(err)
	}

	dbPath := filepath.Join(t.TempDir(), "certportal.db")
	db, err := sqlite.Open(ctx, dbPath)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, u := range []string{"alice", "bob", "carol"} { // carol never logged in: no entity
		if err := db.InsertCertificate(ctx, &store.Certificate{Serial: "ab:" + u, Username: u, Subject: u + "@example.com", KeyType: "ec-256",
			Encryption: "modern", IssuedBy: u, IssuedAt: now.Add(-85 * 24 * time.Hour), NotAfter: now.Add(5 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	env := mailEnv(srv)
	env["CERTPORTAL_DB"] = dbPath
	env["CERTPORTAL_NOTIFY_EMAIL_METADATA"] = "email"
	out, err := notifyCLI(t, v, env)
	if err != nil || !strings.Contains(out, "sent 3,") {
		t.Fatalf("notify --once: %v\n%s", err, out)
	}
	got := map[string]string{}
	for _, m := range srv.Mails() {
		got[m.Header("X-Certportal-Serial")] = m.To[0]
	}
	want := map[string]string{"ab:alice": "alice.kim@corp.example.org", "ab:bob": "bob@example.com", "ab:carol": "carol@example.com"}
	for s, to := range want {
		if got[s] != to {
			t.Errorf("reminder of %s went to %q, want %q (all: %v)", s, got[s], to, got)
		}
	}
}

// TestOffboardHoldToldToHelpdeskOnce: two replicas on one PostgreSQL hold a
// suspicious sweep every 200ms, and cron runs `offboard --once` beside
// them; the helpdesk address is told once, by the reminder outbox
// (`notify --once` here), not once per sweep, replica or run. When the hold
// ends by itself the trail says so (offboard.resumed), and the same
// situation coming back is a new hold, told again.
func TestOffboardHoldToldToHelpdeskOnce(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	srv := smtptest.Start(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := mailEnv(srv)
	env["CERTPORTAL_DB"] = dsn
	env["CERTPORTAL_HELPDESK_EMAIL"] = "helpdesk@example.com"
	env["CERTPORTAL_OFFBOARD_INTERVAL"] = "200ms"
	a := startPortal(t, v, env)
	b := startPortal(t, v, env)
	pw := map[string]string{}
	for _, u := range []string{"alice", "bob", "carol", "erin"} {
		enrol(t, v, a, u)
		pw[u] = "pw-" + u + "-Offboard-1"
	}
	heldTold := func() []smtptest.Mail {
		var out []smtptest.Mail
		for _, m := range srv.Mails() {
			if m.To[0] == "helpdesk@example.com" && strings.HasPrefix(m.Header("Subject"), "Offboarding held") {
				out = append(out, m)
			}
		}
		return out
	}
	heldSweeps := func() int {
		n := 0
		for _, p := range []*runningPortal{a, b} {
			var k int
			fmt.Sscan(metricValue(t, p, `certportal_offboard_sweeps_total{result="held"}`), &k)
			n += k
		}
		return n
	}
	hold := func() {
		t.Helper()
		resume := pauseSweeps(t, dsn)
		leave(t, v, "carol", "deleted")
		leave(t, v, "erin", "deleted")
		resume()
		start := heldSweeps()
		deadline := time.Now().Add(60 * time.Second)
		for heldSweeps() < start+4 {
			if time.Now().After(deadline) {
				dry, derr := offboardCLI(t, v, map[string]string{"CERTPORTAL_DB": dsn}, "--once", "--dry-run")
				t.Fatalf("several held sweeps on the replicas: %d, from %d; dry run %v:\n%s\nmetrics:\n%s\nlogs:\n%s", heldSweeps(), start, derr, dry,
					grepLines(string(newBrowser(t, a.URL).get("/metrics").Body), "offboard"), grepLines(a.Logs.String(), "offboard"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		for i := 0; i < 2; i++ {
			if out, err := offboardCLI(t, v, map[string]string{"CERTPORTAL_DB": dsn, "CERTPORTAL_HELPDESK_EMAIL": "helpdesk@example.com",
				"CERTPORTAL_SMTP_URL": srv.URL(), "CERTPORTAL_MAIL_FROM": "certportal@example.com", "CERTPORTAL_PUBLIC_URL": "https://certs.example.com"},
				"--once"); exitCode(err) != 3 {
				t.Fatalf("cron run: exit %d %v\n%s", exitCode(err), err, out)
			}
		}
		if out, err := notifyCLI(t, v, env); err != nil {
			t.Fatalf("notify --once: %v\n%s", err, out)
		}
	}

	hold()
	told := heldTold()
	if len(told) != 1 {
		t.Fatalf("%d held notices to the helpdesk, want 1", len(told))
	}
	body := told[0].Body()
	for _, want := range []string{"2 of 4 users", "carol erin", "certportal offboard --once --dry-run"} {
		if !strings.Contains(body, want) {
			t.Errorf("notice lacks %q:\n%s", want, body)
		}
	}
	if n := storeInt(t, dsn, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.held'`); n != 1 {
		t.Fatalf("%d offboard.held events, want 1 for one hold", n)
	}
	if n := storeInt(t, dsn, `SELECT COUNT(*) FROM audit_events WHERE action = 'notification.send' AND outcome = 'success' AND serial = '' AND details LIKE '%offboard-held%'`); n != 1 {
		t.Fatalf("%d notice send events, want 1", n)
	}

	// Vault's list is right again (the two come back): the hold ends by itself.
	resume := pauseSweeps(t, dsn) // both at once: one back alone would leave the other a single leaver, revoked
	for _, u := range []string{"carol", "erin"} {
		v.CreateUser(t, u, pw[u], nil, "certportal-user")
	}
	resume()
	waitUntil(t, "an offboard.resumed event", 30*time.Second, func() bool {
		return storeInt(t, dsn, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.resumed'`) == 1
	})
	for _, p := range []*runningPortal{a, b} {
		waitUntil(t, "certportal_offboard_held back to 0", 60*time.Second, func() bool { return metricValue(t, p, "certportal_offboard_held") == "0" })
	}

	// The same two go again: a new hold, told again; still one resumption.
	hold()
	if n := len(heldTold()); n != 2 {
		t.Fatalf("%d held notices after the second hold, want 2", n)
	}
	if n := storeInt(t, dsn, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.held'`); n != 2 {
		t.Fatalf("%d offboard.held events, want 2", n)
	}
	if n := storeInt(t, dsn, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.resumed'`); n != 1 {
		t.Fatalf("%d offboard.resumed events, want 1", n)
	}
	if n := storeInt(t, dsn, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`); n != 0 {
		t.Fatalf("%d certificates revoked while held", n)
	}
	if out, err := verifyChain(dsn); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
}
