package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/testenv"
)

// TestSetupRecorded: `certportal setup -db` puts who configured Vault, and
// what changed, in the portal's audit trail; a trail it cannot open stops it
// before Vault is touched; a record it cannot write fails the command.
func TestSetupRecorded(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dbPath := t.TempDir() + "/certportal.db"
	runSetup := func(args ...string) (string, error) { return runSetupCmd(v, args...) }
	setupEvents := func(outcome string) []*audit.Event {
		t.Helper()
		st, err := app.OpenStore(context.Background(), dbPath)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		evs, err := st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionConfigSetup, Outcome: outcome})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	onBehalfRole := func() bool {
		sec, err := v.Admin.Logical().Read("pki/roles/user-auth-onbehalf")
		if err != nil {
			t.Fatal(err)
		}
		return sec != nil
	}

	if out, err := runSetup("-db", dbPath, "--helpdesk-issue-on-behalf"); err != nil || !onBehalfRole() {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	evs := setupEvents("")
	if len(evs) != 1 {
		t.Fatalf("config.setup events: %d", len(evs))
	}
	e := evs[0]
	var d map[string]string
	if err := json.Unmarshal([]byte(e.Details), &d); err != nil {
		t.Fatal(err)
	}
	if e.Actor != "root" || e.Outcome != audit.OutcomeSuccess || d["helpdesk_issue_on_behalf"] != "true" ||
		!strings.Contains(d["changed"], "user-auth-onbehalf") {
		t.Fatalf("event: %+v details %v", e, d)
	}
	if out, err := verifyChain(dbPath); err != nil {
		t.Fatalf("verify: %v %s", err, out)
	}
	raw, _ := os.ReadFile(dbPath)
	wal, _ := os.ReadFile(dbPath + "-wal")
	if tok := v.Admin.Token(); bytes.Contains(raw, []byte(tok)) || bytes.Contains(wal, []byte(tok)) {
		t.Fatal("the admin token is in the database")
	}

	// A run that fails is recorded as a failure, with the reason.
	if _, err := runSetup("-db", dbPath, "-key-bits", "1000"); err == nil {
		t.Fatal("setup with a 1000-bit EC key succeeded")
	}
	if evs := setupEvents(audit.OutcomeFailure); len(evs) != 1 || !strings.Contains(evs[0].Details, "1000 bits") {
		t.Fatalf("failed run: %d events %+v", len(evs), evs)
	}

	// A trail that cannot be opened: nothing in Vault changes (this run
	// would remove the on-behalf role).
	out, err := runSetup("-db", t.TempDir()+"/missing/dir/certportal.db")
	if err == nil || !strings.Contains(err.Error(), "nothing in Vault was changed") || !onBehalfRole() {
		t.Fatalf("unopenable trail: %v (role still there: %v)\n%s", err, onBehalfRole(), out)
	}

	// A trail that refuses the insert: Vault has changed and cannot be
	// taken back, so the command fails and says the record is missing.
	db := openSQLite(t, dbPath)
	if _, err := db.Exec(`CREATE TRIGGER audit_full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(FAIL, 'database or disk is full'); END`); err != nil {
		t.Fatal(err)
	}
	out, err = runSetup("-db", dbPath)
	if err == nil || exitCode(err) == 0 || !strings.Contains(err.Error(), "audit record could not be written") {
		t.Fatalf("refused insert: %v\n%s", err, out)
	}
	if strings.Contains(out+err.Error(), v.Admin.Token()) {
		t.Fatal("the admin token is in setup's output")
	}
}
