package main

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// TestPostgresReplicas runs two portal replicas on one PostgreSQL database:
// a certificate issued through one is listed by the other, and the audit
// trail both wrote verifies as one chain.
func TestPostgresReplicas(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	// Started after Vault and before the portals, so the portals stop
	// before their database goes away.
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn}

	first := startPortal(t, v, env)
	alice := newBrowser(t, first.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")
	if r := alice.get("/"); !strings.Contains(string(r.Body), `data-serial="`+serial+`"`) {
		t.Fatalf("dashboard on the first replica does not list %s", serial)
	}

	second := startPortal(t, v, env)
	again := newBrowser(t, second.URL)
	again.mustLogin("alice", v.Password(t, "alice"))
	if r := again.get("/"); !strings.Contains(string(r.Body), `data-serial="`+serial+`"`) {
		t.Fatalf("dashboard on the second replica does not list %s", serial)
	}

	out, err := verifyChain(dsn)
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	if !strings.Contains(out, "audit chain verified") {
		t.Fatalf("audit verify: %s", out)
	}
	t.Log(strings.TrimSpace(out))
}

// TestPostgresFailClosed: on PostgreSQL, an audit write the database refuses
// fails the issuance and the certificate Vault issued in that request is
// revoked; with the database stopped, nobody gets a certificate and /readyz
// fails.
func TestPostgresFailClosed(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	srv := pgtest.StartServer(t)
	admin := pgtest.NewDatabase(t, srv.DSN())
	// The portal connects as an ordinary role that owns its schema, as the
	// docs tell operators to run it: a superuser passes every privilege check.
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	dbName := strings.TrimPrefix(u.Path, "/")
	pgExec(t, admin, "CREATE ROLE certportal_fc LOGIN")
	pgExec(t, admin, "ALTER DATABASE "+dbName+" OWNER TO certportal_fc")
	u.User = url.User("certportal_fc")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_DB": u.String()})
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	b.issue("modern") // works while the trail takes writes

	// The database refuses the audit insert, as a revoked grant or a full
	// tablespace does: the issuance fails and its certificate is revoked.
	pgExec(t, admin, "REVOKE INSERT ON audit_events FROM certportal_fc")
	issueFailsAndIsRevoked(t, v, b)
	pgExec(t, admin, "GRANT INSERT ON audit_events TO certportal_fc")
	b.issue("modern") // and it recovers when the database does

	// The database is gone: no certificate, and readiness says why.
	before := certSet(t, v)
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	if r.StatusCode != http.StatusServiceUnavailable || r.Header.Get("Content-Type") == "application/x-pkcs12" {
		t.Fatalf("issue with PostgreSQL stopped: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	for s := range certSet(t, v) {
		if !before[s] && !slices.Contains(crl(t, v), s) {
			t.Fatalf("certificate %s issued with the store down and not revoked", s)
		}
	}
	if r := b.get("/readyz"); r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz with PostgreSQL stopped: %d", r.StatusCode)
	}
}

func pgExec(t *testing.T, dsn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
