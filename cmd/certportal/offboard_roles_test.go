package main

import (
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestOffboardKeepsEveryPortalRole: the sweep judges a user by what the
// login judges (review 81 F1). Helpdesk and auditor staff hold their own
// certificates with their staff policy alone, and an employee may get the
// user policy from an identity group; none of them has left. A group
// member taken out of the group has, and goes.
func TestOffboardKeepsEveryPortalRole(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_OFFBOARD_INTERVAL": "300ms", "CERTPORTAL_OFFBOARD_MAX_SHARE": "100%"})
	serials := map[string]string{}
	for _, u := range []string{"helen", "audrey"} {
		b := newBrowser(t, p.URL)
		b.mustLogin(u, v.Password(t, u))
		serials[u] = b.issue("modern")
	}
	// carol and frank: userpass users with only Vault's default policy,
	// employees through the identity group "employees".
	var ids []string
	for _, u := range []string{"carol", "frank"} {
		v.CreateUser(t, u, "pw-"+u+"-Offboard-1", nil, "default")
		ids = append(ids, identityEntity(t, v, u, false))
	}
	identityGroup(t, v, "employees", []string{"certportal-user"}, ids...)
	for _, u := range []string{"carol", "frank"} {
		b := newBrowser(t, p.URL)
		b.mustLogin(u, "pw-"+u+"-Offboard-1")
		serials[u] = b.issue("modern")
	}
	// frank leaves the group between two sweeps.
	unlock := pauseSweeps(t, p.DB)
	if _, err := v.Admin.Logical().Write("identity/group/name/employees", map[string]any{"member_entity_ids": ids[:1], "policies": []string{"certportal-user"}}); err != nil {
		t.Fatal(err)
	}
	unlock()
	waitUntil(t, "frank's certificate revoked", 30*time.Second, func() bool {
		return revocationTime(t, v, serials["frank"]) != 0 &&
			storeInt(t, p.DB, `SELECT COUNT(*) FROM audit_events WHERE action = 'offboard.sweep' AND outcome = 'success'`) >= 1
	})
	ev := storeStrings(t, p.DB, `SELECT details FROM audit_events WHERE action = 'certificate.revoke' AND outcome = 'success' AND serial = '`+serials["frank"]+`'`)
	if len(ev) != 1 || !strings.Contains(ev[0], "identity policies: [") {
		t.Errorf("frank's revocation: %v, want the identity's policies in the evidence", ev)
	}
	// The sweep that took frank's judged the others too.
	for _, u := range []string{"helen", "audrey", "carol"} {
		if revocationTime(t, v, serials[u]) != 0 {
			t.Errorf("%s (still a portal user in Vault) was offboarded", u)
		}
	}
	if n := storeInt(t, p.DB, `SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL`); n != 1 {
		t.Errorf("%d revoked certificates in the inventory, want 1 (frank's)", n)
	}
}
