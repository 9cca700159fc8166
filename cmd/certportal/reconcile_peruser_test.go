package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
)

// mintDirect logs user in to Vault and issues a certificate with their own
// token, around the portal; it returns the serial.
func mintDirect(t *testing.T, v *testenv.Vault, user string) string {
	t.Helper()
	c := v.ClientFrom(t, "127.0.0.1", "")
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": v.Password(t, user)})
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("vault login %s: %v", user, err)
	}
	c.SetToken(s.Auth.ClientToken)
	is, err := c.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": user + "@example.com"})
	if err != nil {
		t.Fatalf("%s issues straight from Vault: %v", user, err)
	}
	return is.Data["serial_number"].(string)
}

// TestReconcileHoldsOnlyTheEmployeeOverTheLimitVault: against the real
// Vault, with CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX=2, alice issues three
// certificates straight from Vault with her own token and bob one. Once
// past the grace (the portal's clock ahead), the background reconciliation
// revokes bob's in Vault and holds alice's, naming her in reconcile.held;
// the alert's gauge says the hold's scope is employees, not all.
func TestReconcileHoldsOnlyTheEmployeeOverTheLimitVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	var alices []string
	for range 3 {
		alices = append(alices, mintDirect(t, v, "alice"))
	}
	bobs := mintDirect(t, v, "bob")
	const grace = 2 * time.Minute // the least for the default 10 s Vault timeout
	// The portal's clock is past the grace already; Vault's is not.
	now := func() time.Time { return time.Now().Add(grace + time.Minute) }
	p := startPortalWith(t, v, map[string]string{
		"CERTPORTAL_RECONCILE_INTERVAL":                 "1s",
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER":        grace.String(),
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "2",
	}, app.Options{Now: now})
	st, err := sqlite.Open(context.Background(), p.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var held []*audit.Event
	for deadline := time.Now().Add(60 * time.Second); ; {
		held, err = st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionReconcileHeld, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(held) > 0 && revocationTime(t, v, bobs) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s: %d reconcile.held events, bob's %s revoked at %d", len(held), bobs, revocationTime(t, v, bobs))
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, s := range alices {
		if revocationTime(t, v, s) != 0 {
			t.Errorf("alice's %s, over the limit, was revoked", s)
		}
	}
	checkHeldEmployees(t, held[0], "alice (3)", alices)
	if got := metricValue(t, p, "certportal_reconcile_held"); got != "1" {
		t.Errorf("certportal_reconcile_held %s, want 1", got)
	}
	for scope, want := range map[string]string{"employees": "1", "all": "0"} {
		if got := metricValue(t, p, `certportal_reconcile_held_scope{scope="`+scope+`"}`); got != want {
			t.Errorf("certportal_reconcile_held_scope{scope=%q} %s, want %s", scope, got, want)
		}
	}
}

// TestReconcileRevokesPastTheCapVault: against the real Vault, with
// CERTPORTAL_MAX_ACTIVE=2 and CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX=2,
// alice issues five certificates straight from Vault with her own token.
// The portal never gives an employee more than two valid certificates, so
// at least three of the five are not its own, whatever its database says:
// the background reconciliation revokes her three oldest in Vault, each
// with the cap in its evidence, and holds the two newest, naming her
// (review F3: over the per-employee bound she used to keep all five until
// an operator acted).
func TestReconcileRevokesPastTheCapVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	var alices []string
	for range 5 {
		alices = append(alices, mintDirect(t, v, "alice"))
	}
	const grace = 2 * time.Minute
	now := func() time.Time { return time.Now().Add(grace + time.Minute) }
	p := startPortalWith(t, v, map[string]string{
		"CERTPORTAL_MAX_ACTIVE":                         "2",
		"CERTPORTAL_RECONCILE_INTERVAL":                 "1s",
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER":        grace.String(),
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX": "2",
	}, app.Options{Now: now})
	st, err := sqlite.Open(context.Background(), p.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var held, revokes []*audit.Event
	for deadline := time.Now().Add(60 * time.Second); ; {
		held, err = st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionReconcileHeld, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		revokes, err = st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionRevoke, Outcome: audit.OutcomeSuccess, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if len(held) > 0 && len(revokes) >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("within 60 s: %d reconcile.held events, %d revocations", len(held), len(revokes))
		}
		time.Sleep(200 * time.Millisecond)
	}
	notBefore := func(serial string) time.Time {
		t.Helper()
		s, err := v.Admin.Logical().Read("pki/cert/" + serial)
		if err != nil || s == nil {
			t.Fatalf("read pki/cert/%s: %v", serial, err)
		}
		blk, _ := pem.Decode([]byte(s.Data["certificate"].(string)))
		if blk == nil {
			t.Fatalf("pki/cert/%s: no PEM", serial)
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c.NotBefore
	}
	var revoked, kept []string
	for _, s := range alices {
		if revocationTime(t, v, s) != 0 {
			revoked = append(revoked, s)
		} else {
			kept = append(kept, s)
		}
	}
	if len(revoked) != 3 || len(revokes) != 3 {
		t.Fatalf("revoked in Vault %v, %d revocation events; want alice's 3 oldest of 5", revoked, len(revokes))
	}
	for _, r := range revoked {
		for _, k := range kept {
			if notBefore(r).After(notBefore(k)) {
				t.Errorf("revoked %s is newer than %s, which was kept", r, k)
			}
		}
	}
	for _, e := range revokes {
		var d map[string]string
		if err := json.Unmarshal([]byte(e.Details), &d); err != nil {
			t.Fatal(err)
		}
		if e.Subject != "alice" || e.Actor != "certportal" || !strings.Contains(d["evidence"], "the 2 valid ones the portal ever gives an employee") {
			t.Errorf("revocation %s by %s of %s: evidence %q, want the cap of 2 named", e.Serial, e.Actor, e.Subject, d["evidence"])
		}
	}
	d := checkHeldEmployees(t, held[0], "alice (2)", kept)
	for _, s := range revoked {
		if strings.Contains(d["serials"], s) {
			t.Errorf("reconcile.held serials %q name %s, which was revoked", d["serials"], s)
		}
	}
}

// checkHeldEmployees checks a reconcile.held event of scope employees that
// names employees (as "alice (3)") and lists every one of serials; it
// returns the event's details.
func checkHeldEmployees(t *testing.T, held *audit.Event, employees string, serials []string) map[string]string {
	t.Helper()
	var d map[string]string
	if err := json.Unmarshal([]byte(held.Details), &d); err != nil {
		t.Fatal(err)
	}
	if d["held_employees"] != employees || d["scope"] != "employees" {
		t.Errorf("reconcile.held details %v: want %s, scope employees", d, employees)
	}
	for _, s := range serials {
		if !strings.Contains(d["serials"], s) {
			t.Errorf("reconcile.held serials %q lack %s", d["serials"], s)
		}
	}
	return d
}
