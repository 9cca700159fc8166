package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
)

// TestReconcileStrangersDoNotHoldEveryoneVault: against the real Vault,
// with CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX=3, a helpdesk member issues
// four certificates for made-up employees straight from Vault on the
// on-behalf role, and bob one on his own. Counted as employees, the five
// were more than the run's bound and held everyone's revocations, bob's
// too (review F3). Names Vault's userpass mount does not list are no
// employee's to protect: bob's is revoked at once, the made-up ones with
// what the bound leaves, two a run, each with the reason in its evidence,
// and nothing is held.
func TestReconcileStrangersDoNotHoldEveryoneVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	o := setup.Defaults()
	o.HelpdeskOnBehalf = true
	if _, err := setup.Run(context.Background(), v.Admin, o); err != nil {
		t.Fatalf("setup with the on-behalf role: %v", err)
	}
	ghosts := map[string]bool{}
	for _, name := range []string{"ghost1", "ghost2", "ghost3", "ghost4"} {
		ghosts[mintDirectAs(t, v, "helen", v.Password(t, "helen"), o.OnBehalfRole, name+"@example.com", nil)] = true
	}
	bobs := mintDirect(t, v, "bob")
	const grace = 2 * time.Minute
	now := func() time.Time { return time.Now().Add(grace + time.Minute) }
	p := startPortalWith(t, v, map[string]string{
		"CERTPORTAL_RECONCILE_INTERVAL":          "1s",
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": grace.String(),
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX":   "3",
	}, app.Options{Now: now})
	st, err := sqlite.Open(context.Background(), p.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var revokes []*audit.Event
	for deadline := time.Now().Add(60 * time.Second); ; {
		revokes, err = st.QueryAudit(context.Background(), store.AuditFilter{Actor: "certportal", Action: audit.ActionRevoke, Outcome: audit.OutcomeSuccess, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(revokes) >= 5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s: %d automatic revocations, want bob's and the four made-up ones", len(revokes))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if revocationTime(t, v, bobs) == 0 {
		t.Errorf("bob's %s is not revoked", bobs)
	}
	for serial := range ghosts {
		if revocationTime(t, v, serial) == 0 {
			t.Errorf("made-up employee's %s is not revoked", serial)
		}
	}
	for _, e := range revokes {
		var d map[string]string
		if err := json.Unmarshal([]byte(e.Details), &d); err != nil {
			t.Fatal(err)
		}
		stranger := strings.Contains(d["evidence"], "is not a user of Vault's userpass mount")
		if stranger != ghosts[e.Serial] {
			t.Errorf("revocation of %s (%s): evidence %q; want the missing Vault user named exactly for the made-up ones", e.Serial, e.Subject, d["evidence"])
		}
	}
	// Bob's went in the first run, with two made-up ones: no run revoked
	// more than the bound of 3.
	runs, err := st.QueryAudit(context.Background(), store.AuditFilter{Actor: "certportal", Action: audit.ActionReconcile, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range runs {
		var d map[string]string
		if err := json.Unmarshal([]byte(e.Details), &d); err != nil {
			t.Fatal(err)
		}
		if n, err := strconv.Atoi(d["auto_revoked"]); err != nil || n > 3 {
			t.Errorf("a run revoked %s, more than the bound of 3: %v", d["auto_revoked"], d)
		}
	}
	if held, err := st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionReconcileHeld, Limit: 10}); err != nil || len(held) != 0 {
		t.Errorf("reconcile.held events %+v (%v), want none: made-up names hold nobody", held, err)
	}
}
