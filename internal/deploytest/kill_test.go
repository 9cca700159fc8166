package deploytest

import (
	"crypto/x509"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	_ "modernc.org/sqlite"             // registers the "sqlite" driver

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// trailDB reads a portal's database from outside, as an operator would
// after a crash: SQLite or PostgreSQL through database/sql.
type trailDB struct {
	*sql.DB
	pg bool
}

func openTrail(t *testing.T, dsn string) *trailDB {
	t.Helper()
	driver, src, pg := "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)", false
	if strings.HasPrefix(dsn, "postgres") {
		driver, src, pg = "pgx", dsn, true
	}
	db, err := sql.Open(driver, src)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return &trailDB{db, pg}
}

// q rewrites ?-placeholders for PostgreSQL.
func (d *trailDB) q(query string) string {
	if !d.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (d *trailDB) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRow(d.q(query), args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (d *trailDB) strings(t *testing.T, query string, args ...any) []string {
	t.Helper()
	rows, err := d.Query(d.q(query), args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// issueAround issues a certificate straight from Vault with user's own
// token, with only the parameters the policy admits and a ttl from the
// offered list: a certificate issued around the portal.
func issueAround(t *testing.T, v *testenv.Vault, user string) string {
	t.Helper()
	c, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": v.Password(t, user)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(s.Auth.ClientToken)
	s, err = c.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": user + "@example.com", "ttl": "86400s"})
	if err != nil {
		t.Fatalf("issue around the portal as %s: %v", user, err)
	}
	return s.Data["serial_number"].(string)
}

// vaultCert reads serial from Vault with the admin token.
func vaultCert(t *testing.T, v *testenv.Vault, serial string) (*x509.Certificate, bool) {
	t.Helper()
	sec, err := v.Admin.Logical().Read("pki/cert/" + serial)
	if err != nil || sec == nil {
		t.Fatalf("read %s: %v", serial, err)
	}
	block, _ := pem.Decode([]byte(sec.Data["certificate"].(string)))
	if block == nil {
		t.Fatalf("%s: no PEM", serial)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := sec.Data["revocation_time"].(json.Number)
	rt, _ := n.Int64()
	return cert, rt > 0
}

// vaultSerials lists every serial in the pki mount.
func vaultSerials(t *testing.T, v *testenv.Vault) []string {
	t.Helper()
	sec, err := v.Admin.Logical().List("pki/certs")
	if err != nil || sec == nil {
		t.Fatalf("list pki/certs: %v", err)
	}
	var out []string
	for _, k := range sec.Data["keys"].([]any) {
		out = append(out, strings.ReplaceAll(k.(string), "-", ":"))
	}
	return out
}

// TestKillDuringIssuance SIGKILLs a portal (the static binary, as a process)
// while eight clients issue certificates, restarts it on the same database,
// SQLite and PostgreSQL, and checks what a crash may leave: every inventory
// row has its issue event and every issue event its row, no row is half
// written, every certificate a client received is there, and `audit verify`
// passes. Certificates Vault issued whose record never committed — those in
// flight at the kill, and one alice issued straight from Vault with her own
// token — are found by the restarted portal's background reconciliation and
// revoked once past the grace, with actor certportal, reason and evidence;
// a younger one, a server certificate and the CA are left alone.
func TestKillDuringIssuance(t *testing.T) {
	bin := staticBinary(t)
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			dsn := filepath.Join(t.TempDir(), "certportal.db")
			if backend == "postgres" {
				dsn = pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
			}
			killDuringIssuance(t, bin, dsn)
		})
	}
}

func killDuringIssuance(t *testing.T, bin, dsn string) {
	v := testenv.StartConfiguredVault(t)
	const vaultTimeout = 2 * time.Second
	grace := config.MinAutoRevokeAfter(vaultTimeout)
	// Issued before anything else, so that it is past the grace first.
	around := issueAround(t, v, "alice")
	if _, err := v.Admin.Logical().Write("pki/roles/legacy-nginx-server", setup.ServerRoleData(setup.Defaults(), []string{"localhost"})); err != nil {
		t.Fatal(err)
	}
	sec, err := v.Admin.Logical().Write("pki/issue/legacy-nginx-server", map[string]any{"common_name": "localhost", "ttl": "24h"})
	if err != nil {
		t.Fatal(err)
	}
	server := sec.Data["serial_number"].(string)

	env := v.PortalEnv()
	env["CERTPORTAL_DB"] = dsn
	env["CERTPORTAL_SESSION_KEY"] = "8f3c0d2b6a1e4f5d9c7b3a2e1f0d4c6b8a9e7f5d3c1b2a4e6f8d0c2b4a6e8f0d"
	env["CERTPORTAL_MAX_ACTIVE"] = "100"
	env["CERTPORTAL_LOGIN_MAX_FAILURES"] = "0"
	env["CERTPORTAL_VAULT_TIMEOUT"] = vaultTimeout.String()
	env["CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER"] = grace.String()
	// The first process does not reconcile: what is found and revoked is
	// the restarted one's doing.
	env["CERTPORTAL_RECONCILE_INTERVAL"] = "0"
	first := startReplica(t, bin, "first", env)

	users := []string{"alice", "bob", "helen", "audrey"}
	var clients []*lbClient
	for i := 0; i < 8; i++ {
		c := newLBClient(t, "http://"+first.addr)
		c.login(users[i%len(users)], v.Password(t, users[i%len(users)]))
		clients = append(clients, c)
	}
	var (
		mu       sync.Mutex
		received []string
		failed   int
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for _, c := range clients {
		wg.Add(1)
		go func(c *lbClient) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, _, _ := c.issue()
				mu.Lock()
				if s != "" {
					received = append(received, s)
				} else {
					failed++
				}
				mu.Unlock()
			}
		}(c)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n >= 24 {
			break
		}
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("only %d issuances within 2 minutes:\n%s", n, first.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killedAt := time.Now()
	<-first.exited
	close(stop)
	wg.Wait()
	t.Logf("killed under load after %d issuances (%d requests failed: those in flight at the kill, then refused connections until the clients stopped)", len(received), failed)

	env["CERTPORTAL_RECONCILE_INTERVAL"] = "1s"
	second := startReplica(t, bin, "second", env)
	again := newLBClient(t, "http://"+second.addr)
	again.login("bob", v.Password(t, "bob"))
	if s, code, err := again.issue(); s == "" {
		t.Fatalf("issue after the restart: %d %v", code, err)
	}
	recovered := time.Since(killedAt)
	t.Logf("time to recover: %s from the SIGKILL to a certificate issued by the restarted portal", recovered.Round(time.Millisecond))
	// A certificate issued around the portal after the restart is younger
	// than the grace when the older ones go. The ones the kill cut off were
	// signed just before it, so this one is made at least freshGap after the
	// kill: with reconciliation every second, the run that revokes them
	// comes well before this one is past the grace too (in CI, made 0.3 s
	// after the kill, it crossed in the same run and was revoked).
	const freshGap = 15 * time.Second
	if d := time.Until(killedAt.Add(freshGap)); d > 0 {
		time.Sleep(d) // a certificate age to set up, not a wait for an event
	}
	fresh := issueAround(t, v, "bob")

	db := openTrail(t, dsn)
	// Every inventory row has its issue event, every issue event its row,
	// and no row is half written.
	if n := db.count(t, `SELECT count(*) FROM certificates c WHERE NOT EXISTS (SELECT 1 FROM audit_events e
		WHERE e.serial = c.serial AND e.action = ? AND e.outcome = ?)`, audit.ActionIssue, audit.OutcomeSuccess); n != 0 {
		t.Errorf("%d inventory rows without their issue event", n)
	}
	if n := db.count(t, `SELECT count(*) FROM audit_events e WHERE e.action = ? AND e.outcome = ? AND NOT EXISTS
		(SELECT 1 FROM certificates c WHERE c.serial = e.serial)`, audit.ActionIssue, audit.OutcomeSuccess); n != 0 {
		t.Errorf("%d issue events without their inventory row", n)
	}
	if n := db.count(t, `SELECT count(*) FROM certificates WHERE subject <> username || '@example.com' OR key_type = ''
		OR encryption = '' OR issued_by = '' OR not_after <= issued_at OR revoked_at IS NOT NULL`); n != 0 {
		t.Errorf("%d inventory rows half written or not as issued", n)
	}
	inventory := map[string]bool{}
	for _, s := range db.strings(t, `SELECT serial FROM certificates`) {
		inventory[s] = true
	}
	for _, s := range received {
		if !inventory[s] {
			t.Errorf("certificate %s reached its client but is not in the inventory", s)
		}
	}

	// What Vault issued that the inventory lacks: alice's own, the server
	// certificate, and any the kill cut off between Vault and the record.
	var lost []string
	for _, s := range vaultSerials(t, v) {
		if inventory[s] || s == around || s == fresh || s == server {
			continue
		}
		cert, _ := vaultCert(t, v, s)
		if cert.IsCA {
			continue
		}
		if !strings.HasSuffix(cert.Subject.CommonName, "@example.com") {
			t.Errorf("unexpected certificate %s (%s) in Vault", s, cert.Subject.CommonName)
			continue
		}
		lost = append(lost, s)
	}
	t.Logf("%d inventory rows; %d certificates Vault signed for requests the kill cut off before their record", len(inventory), len(lost))

	// The restarted portal revokes each once it is past the grace.
	wait := time.Until(killedAt.Add(grace + 90*time.Second))
	t.Logf("waiting up to %s for the automatic revocations (grace %s)", wait.Round(time.Second), grace)
	until := time.Now().Add(wait)
	for _, s := range append([]string{around}, lost...) {
		for {
			if _, revoked := vaultCert(t, v, s); revoked {
				break
			}
			if time.Now().After(until) {
				t.Fatalf("%s not revoked %s after the kill (grace %s):\n%s", s, time.Since(killedAt).Round(time.Second), grace, second.logs.String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		if n := db.count(t, `SELECT count(*) FROM audit_events WHERE serial = ? AND action = ? AND outcome = ? AND actor = ?`,
			s, audit.ActionRevoke, audit.OutcomeIntent, portal.ReconcileActor); n != 1 {
			t.Errorf("%s: %d intent events by %s, want 1", s, n, portal.ReconcileActor)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			var details string
			err := db.QueryRow(db.q(`SELECT details FROM audit_events WHERE serial = ? AND action = ? AND outcome = ? AND actor = ?`),
				s, audit.ActionRevoke, audit.OutcomeSuccess, portal.ReconcileActor).Scan(&details)
			if err == nil {
				d := map[string]string{}
				_ = json.Unmarshal([]byte(details), &d)
				if d["reason"] != portal.ReasonIssuedAroundPortal || !strings.Contains(d["evidence"], "not in the inventory") || d["inventory"] != "none" {
					t.Errorf("revocation of %s: details %v", s, d)
				}
				break
			}
			if err != sql.ErrNoRows || time.Now().After(deadline) {
				t.Fatalf("revocation event of %s: %v", s, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("issued-around certificates revoked %s after the kill", time.Since(killedAt).Round(time.Second))
	// Never revoked automatically: a certificate younger than the grace,
	// a server certificate, the portal's own certificates.
	if c, _ := vaultCert(t, v, fresh); c == nil || time.Since(c.NotBefore) >= grace {
		t.Fatalf("the younger certificate is past the grace already (not before %v, grace %s): the revocations took too long to tell", c, grace)
	}
	for name, s := range map[string]string{"younger than the grace": fresh, "server certificate": server} {
		if _, revoked := vaultCert(t, v, s); revoked {
			t.Errorf("%s %s revoked automatically", name, s)
		}
	}
	for s := range inventory {
		if _, revoked := vaultCert(t, v, s); revoked {
			t.Errorf("inventory certificate %s revoked", s)
		}
	}
	if n := db.count(t, `SELECT count(*) FROM audit_events WHERE action = ? AND actor = ? AND outcome = ?`,
		audit.ActionRevoke, portal.ReconcileActor, audit.OutcomeSuccess); n != 1+len(lost) {
		t.Errorf("%d automatic revocations recorded, want %d", n, 1+len(lost))
	}

	out, err := exec.Command(bin, "audit", "verify", "-db", dsn).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "audit chain verified") {
		t.Fatalf("audit verify after the kill: %v\n%s", err, out)
	}
	t.Log(strings.TrimSpace(string(out)))
	if code, body, err := again.get("/metrics", ""); err != nil || code != http.StatusOK || !strings.Contains(string(body), "certportal_reconcile_runs_total") {
		t.Errorf("metrics: %d %v", code, err)
	}
}
