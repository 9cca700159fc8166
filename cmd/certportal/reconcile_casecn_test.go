package main

import (
	"context"
	"encoding/json"
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

// mintDirectAs logs user in to Vault with password and issues common_name
// on role with their own token, around the portal, with extra parameters;
// it returns the serial.
func mintDirectAs(t *testing.T, v *testenv.Vault, user, password, role, cn string, extra map[string]any) string {
	t.Helper()
	c := v.ClientFrom(t, "127.0.0.1", "")
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": password})
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("vault login %s: %v", user, err)
	}
	c.SetToken(s.Auth.ClientToken)
	req := map[string]any{"common_name": cn}
	for k, x := range extra {
		req[k] = x
	}
	is, err := c.Logical().Write("pki/issue/"+role, req)
	if err != nil {
		t.Fatalf("%s issues %q on %s straight from Vault: %v", user, cn, role, err)
	}
	return is.Data["serial_number"].(string)
}

// TestReconcileRevokesCaseVariantCNsVault: against the real Vault, whose
// allowed-domains match is strings.EqualFold, employees issue straight
// from Vault with their own tokens on the users' role under case variants
// of their own address: "Alice@example.com" and "alice@EXAMPLE.com"; and
// kate, whose policy also lets her leave the CN out of the SANs (setup's
// does not: a non-ASCII CN then cannot be an email SAN, an IA5String), as
// "\u212Aate@example.com" (KELVIN SIGN, which folds to 'k'). Vault issues
// them all; once past the grace the background reconciliation revokes
// each of them, naming the employee, as it revokes the plain
// "alice@example.com". The helpdesk's on-behalf role (glob
// "*@example.com") issues an address that names no portal user: that one
// is held and named in reconcile.held and alerted
// (certportal_reconcile_held_scope{scope="unattributed"}), not skipped.
func TestReconcileRevokesCaseVariantCNsVault(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	o := setup.Defaults()
	o.HelpdeskOnBehalf = true
	if _, err := setup.Run(context.Background(), v.Admin, o); err != nil {
		t.Fatalf("setup with the on-behalf role: %v", err)
	}
	// A looser policy than setup's, as an operator's own or an older one
	// might be: the CN may stay out of the SANs.
	loose := `path "pki/issue/` + o.Role + `" {
  capabilities = ["update"]
  allowed_parameters = { "exclude_cn_from_sans" = [] }
}`
	if err := v.Admin.Sys().PutPolicy("loose-issue", loose); err != nil {
		t.Fatal(err)
	}
	v.CreateUser(t, "kate", "kate-password-1", nil, o.UserPolicy, "loose-issue")
	alice := func(cn string) string { return mintDirectAs(t, v, "alice", v.Password(t, "alice"), o.Role, cn, nil) }
	revoke := map[string]string{
		"alice@example.com": alice("alice@example.com"),
		"Alice@example.com": alice("Alice@example.com"),
		"alice@EXAMPLE.com": alice("alice@EXAMPLE.com"),
		"\u212Aate@example.com": mintDirectAs(t, v, "kate", "kate-password-1", o.Role, "\u212Aate@example.com",
			map[string]any{"exclude_cn_from_sans": true}),
	}
	unattributed := mintDirectAs(t, v, "helen", v.Password(t, "helen"), o.OnBehalfRole, "ops+alerts@example.com", nil)
	const grace = 2 * time.Minute // the least for the default 10 s Vault timeout
	// The portal's clock is past the grace already; Vault's is not.
	now := func() time.Time { return time.Now().Add(grace + time.Minute) }
	p := startPortalWith(t, v, map[string]string{
		"CERTPORTAL_RECONCILE_INTERVAL":          "1s",
		"CERTPORTAL_RECONCILE_AUTO_REVOKE_AFTER": grace.String(),
	}, app.Options{Now: now})
	st, err := sqlite.Open(context.Background(), p.DB)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	allRevoked := func() bool {
		for _, serial := range revoke {
			if revocationTime(t, v, serial) == 0 {
				return false
			}
		}
		return true
	}
	var held []*audit.Event
	for deadline := time.Now().Add(60 * time.Second); ; {
		held, err = st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionReconcileHeld, Limit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if allRevoked() && len(held) > 0 {
			break
		}
		if time.Now().After(deadline) {
			for cn, serial := range revoke {
				t.Logf("%q %s revoked at %d", cn, serial, revocationTime(t, v, serial))
			}
			t.Fatalf("within 60 s: not every certificate issued around the portal was revoked, or nothing was held (%d reconcile.held events)", len(held))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if revocationTime(t, v, unattributed) != 0 {
		t.Errorf("the unattributable %s was revoked automatically; want it held", unattributed)
	}
	var d map[string]string
	if err := json.Unmarshal([]byte(held[0].Details), &d); err != nil {
		t.Fatal(err)
	}
	if d["scope"] != "unattributed" || !strings.Contains(d["serials"], unattributed) || d["unattributed"] != "1" {
		t.Errorf("reconcile.held details %v: want scope unattributed naming %s", d, unattributed)
	}
	if got := metricValue(t, p, "certportal_reconcile_held"); got != "1" {
		t.Errorf("certportal_reconcile_held %s, want 1", got)
	}
	if got := metricValue(t, p, `certportal_reconcile_held_scope{scope="unattributed"}`); got != "1" {
		t.Errorf(`certportal_reconcile_held_scope{scope="unattributed"} %s, want 1`, got)
	}
	// The trail names the employee each case variant belongs to.
	revs, err := st.QueryAudit(context.Background(), store.AuditFilter{Actor: "certportal", Action: audit.ActionRevoke, Outcome: audit.OutcomeSuccess, Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	subjects := map[string]string{}
	for _, e := range revs {
		subjects[e.Serial] = e.Subject
	}
	for cn, serial := range revoke {
		want := "alice"
		if strings.HasSuffix(cn, "ate@example.com") {
			want = "kate"
		}
		if subjects[serial] != want {
			t.Errorf("revocation of %q %s names %q in the trail, want %q", cn, serial, subjects[serial], want)
		}
	}
}
