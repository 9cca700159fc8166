package main

import (
	"context"
	"encoding/json"
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
	var d map[string]string
	if err := json.Unmarshal([]byte(held[0].Details), &d); err != nil {
		t.Fatal(err)
	}
	if d["held_employees"] != "alice (3)" || d["scope"] != "employees" {
		t.Errorf("reconcile.held details %v: want alice (3), scope employees", d)
	}
	for _, s := range alices {
		if !strings.Contains(d["serials"], s) {
			t.Errorf("reconcile.held serials %q lack alice's %s", d["serials"], s)
		}
	}
	if got := metricValue(t, p, "certportal_reconcile_held"); got != "1" {
		t.Errorf("certportal_reconcile_held %s, want 1", got)
	}
	for scope, want := range map[string]string{"employees": "1", "all": "0"} {
		if got := metricValue(t, p, `certportal_reconcile_held_scope{scope="`+scope+`"}`); got != want {
			t.Errorf("certportal_reconcile_held_scope{scope=%q} %s, want %s", scope, got, want)
		}
	}
}
