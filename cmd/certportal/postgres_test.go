package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

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

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"audit", "verify", "-db", dsn}, func(string) string { return "" }, &out, &errb); err != nil {
		t.Fatalf("audit verify: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "audit chain verified") {
		t.Fatalf("audit verify: %s", out.String())
	}
	t.Log(strings.TrimSpace(out.String()))
}
