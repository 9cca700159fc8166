package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

// identityEntity gives userpass user an identity entity (disabled if asked)
// with policies of its own, and returns its id.
func identityEntity(t *testing.T, v *testenv.Vault, user string, disabled bool, policies ...string) string {
	t.Helper()
	auths, err := v.Admin.Sys().ListAuth()
	if err != nil {
		t.Fatal(err)
	}
	ent, err := v.Admin.Logical().Write("identity/entity", map[string]any{"name": "ent-" + user, "disabled": disabled, "policies": policies})
	if err != nil {
		t.Fatalf("create entity: %v", err)
	}
	id := ent.Data["id"].(string)
	if _, err := v.Admin.Logical().Write("identity/entity-alias", map[string]any{"name": user, "canonical_id": id, "mount_accessor": auths["userpass/"].Accessor}); err != nil {
		t.Fatalf("create alias: %v", err)
	}
	return id
}

// identityGroup makes a group with policies whose members are entities.
func identityGroup(t *testing.T, v *testenv.Vault, name string, policies []string, entities ...string) {
	t.Helper()
	if _, err := v.Admin.Logical().Write("identity/group", map[string]any{"name": name, "policies": policies, "member_entity_ids": entities}); err != nil {
		t.Fatalf("create group %s: %v", name, err)
	}
}

// TestIssueOnBehalfIdentityGrants: "employees only" judges everything
// Vault grants the user, not token_policies alone: staff or operator power
// through an identity group or the entity's own policies, and a disabled
// (suspended) entity, are refused like the same in token_policies. A group
// that grants nothing beyond the portal does not stand in the way.
func TestIssueOnBehalfIdentityGrants(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	setupVault(t, v, "--helpdesk-issue-on-behalf")
	d := setup.Defaults()
	const pw = "some-password-12"
	for _, u := range []string{"harry", "vera", "fay", "sam", "erin"} {
		v.CreateUser(t, u, pw, nil, d.UserPolicy)
	}
	identityGroup(t, v, "helpdesk-staff", []string{d.HelpdeskPolicy}, identityEntity(t, v, "harry", false))
	// A parent group's policies reach its subgroups' members.
	identityGroup(t, v, "ops", []string{"default"}, identityEntity(t, v, "vera", false))
	ops, err := v.Admin.Logical().Read("identity/group/name/ops")
	if err != nil || ops == nil {
		t.Fatalf("read group ops: %v", err)
	}
	if _, err := v.Admin.Logical().Write("identity/group", map[string]any{"name": "vault-admins", "policies": []string{"vault-admin"},
		"member_group_ids": []string{ops.Data["id"].(string)}}); err != nil {
		t.Fatal(err)
	}
	identityEntity(t, v, "fay", false, "vault-admin")
	identityEntity(t, v, "sam", true)
	identityGroup(t, v, "engineering", []string{"default", d.UserPolicy}, identityEntity(t, v, "erin", false))

	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true"})
	db := openSQLite(t, p.DB)
	hb := newBrowser(t, p.URL)
	hb.mustLogin("harry", pw)
	if r := hb.get("/helpdesk"); r.StatusCode != http.StatusOK {
		t.Fatalf("harry, helpdesk through a group, on /helpdesk: %d", r.StatusCode)
	}
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("ticket", "INC-11")
	for u, why := range map[string]string{"harry": "portal staff get their own certificates", "vera": "holds Vault policies beyond the portal's",
		"fay": "holds Vault policies beyond the portal's", "sam": "identity entity disabled"} {
		if page := helen.get("/helpdesk/users/" + u); strings.Contains(string(page.Body), `action="/helpdesk/users/`+u+`/certificates"`) {
			t.Errorf("%s's helpdesk page offers the on-behalf form", u)
		}
		r := helen.post("/helpdesk/users/"+u+"/certificates", form)
		if r.StatusCode != http.StatusForbidden || r.Header.Get("Content-Type") == "application/x-pkcs12" {
			t.Errorf("on-behalf issue for %s: status %d (%s), want 403", u, r.StatusCode, r.Header.Get("Content-Type"))
		}
		if page := string(helen.get("/helpdesk/users/" + u).Body); u == "sam" && !strings.Contains(page, "suspended") {
			t.Errorf("sam's helpdesk page does not say the account is suspended")
		}
		if ev := sessionEvents(t, db, "certificate.issue_on_behalf", u); len(ev) != 1 || ev[0].Outcome != "denied" || ev[0].Details["reason"] != why {
			t.Errorf("trail for %s: %+v, want one denied event, reason %q", u, ev, why)
		}
	}
	if r := helen.post("/helpdesk/users/erin/certificates", form); r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Errorf("on-behalf issue for erin (a group granting the user policy only): %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
}

// TestPolicyNameCase: Vault grants token_policies "Certportal-User" as
// certportal-user; the offboarding sweep reads it the same way and leaves
// the employee's certificate alone.
func TestPolicyNameCase(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_OFFBOARD_INTERVAL": "200ms", "CERTPORTAL_OFFBOARD_MAX_SHARE": "100%"})
	db := openSQLite(t, p.DB)
	const pw = "some-password-12"
	v.CreateUser(t, "casey", pw, nil, "Certportal-User")
	b := newBrowser(t, p.URL)
	b.mustLogin("casey", pw)
	serial := b.issue("modern")
	// Sweeps that saw casey's certificate: wait for a few to finish.
	start := storeInt(t, p.DB, `SELECT count(*) FROM audit_events`)
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		if revocationTime(t, v, serial) != 0 {
			t.Fatalf("casey's certificate %s was revoked by the offboarding sweep", serial)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if ev := sessionEvents(t, db, "certificate.revoke", "casey"); len(ev) != 0 {
		t.Errorf("revocations of casey recorded: %+v (trail had %d events before the wait)", ev, start)
	}
}

// TestMFAHelpdeskNotOwnOrStaff: an agent cannot enrol or reset their own
// second factor (one stolen session and the password would otherwise buy
// a phone of the attacker's as the agent's factor for good), nor another
// staff member's, whether the staff role is in token_policies or comes
// from an identity group. Refused before Vault is touched, recorded.
func TestMFAHelpdeskNotOwnOrStaff(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	d := setup.Defaults()
	secrets := map[string]string{}
	for _, u := range []string{"helen", "audrey"} {
		secrets[u] = adminEnrol(t, v, u, method)
	}
	const pw = "some-password-12"
	v.CreateUser(t, "harry", pw, nil, d.UserPolicy)
	secrets["harry"] = adminEnrol(t, v, "harry", method)
	ent, err := v.Admin.Logical().Read("identity/entity/name/user-harry")
	if err != nil || ent == nil {
		t.Fatalf("harry's entity: %v", err)
	}
	identityGroup(t, v, "helpdesk-staff", []string{d.HelpdeskPolicy}, ent.Data["id"].(string))
	p := startPortal(t, v, map[string]string{"CERTPORTAL_PUBLIC_URL": "https://certs.example.com"})
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	// The next step's code: vaultMFALogin below uses the current one.
	mustLanded(t, helen.codeStep(code(t, secrets["helen"], time.Now().Add(30*time.Second))), "helen's login")
	for u, want := range map[string]string{"helen": "your own second factor", "audrey": "second factor is not the helpdesk", "harry": "second factor is not the helpdesk"} {
		// The page says so up front instead of a form bound to be refused.
		if page := string(helen.get("/helpdesk/users/" + u).Body); strings.Contains(page, `id="mfa-enrol"`) || !strings.Contains(page, `id="mfa-no"`) {
			t.Errorf("%s's helpdesk page: want no enrolment form and an explanation (id mfa-no)", u)
		}
		for _, reset := range []bool{true, false} {
			form := url.Values{"ticket": {"INC-12"}}
			if reset {
				form.Set("reset", "1")
			}
			r := helen.post("/helpdesk/users/"+u+"/mfa", form)
			if r.StatusCode != http.StatusForbidden || enrolLinkRe.Match(r.Body) || !strings.Contains(string(r.Body), want) {
				t.Errorf("helpdesk enrolment for %s (reset %t): status %d, want 403 saying %q and no link\n%s", u, reset, r.StatusCode, want, r.Body)
			}
		}
		pwd := pw
		if u != "harry" {
			pwd = v.Password(t, u)
		}
		if err := vaultMFALogin(t, v, u, pwd, method, secrets[u]); err != nil {
			t.Errorf("%s's second factor after the refused resets: %v", u, err)
		}
		if ev := sessionEvents(t, db, "mfa.reset", u); len(ev) != 1 || ev[0].Outcome != "denied" || ev[0].Details["reason"] == "" {
			t.Errorf("mfa.reset events for %s: %+v, want one denied with a reason", u, ev)
		}
	}
	if page := string(helen.get("/helpdesk/users/alice").Body); !strings.Contains(page, `id="mfa-enrol"`) || strings.Contains(page, `id="mfa-no"`) {
		t.Error("an employee's helpdesk page lacks the enrolment form")
	}
}

// TestMFAResetRecordedFirst: a reset is recorded before Vault destroys the
// secret; when the trail refuses the record, the user's factor stays.
func TestMFAResetRecordedFirst(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	helenSecret := adminEnrol(t, v, "helen", method)
	aliceSecret := adminEnrol(t, v, "alice", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_PUBLIC_URL": "https://certs.example.com"})
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	mustLanded(t, helen.codeStep(code(t, helenSecret, time.Now())), "helen's login")
	if _, err := db.Exec(`CREATE TRIGGER refuse_reset BEFORE INSERT ON audit_events WHEN NEW.action = 'mfa.reset' BEGIN SELECT RAISE(ABORT, 'trail refuses'); END`); err != nil {
		t.Fatal(err)
	}
	if r := helen.post("/helpdesk/users/alice/mfa", url.Values{"ticket": {"INC-13"}, "reset": {"1"}}); r.StatusCode != http.StatusServiceUnavailable || enrolLinkRe.Match(r.Body) {
		t.Errorf("reset with the trail refusing: status %d, want 503 and no link", r.StatusCode)
	}
	if err := vaultMFALogin(t, v, "alice", v.Password(t, "alice"), method, aliceSecret); err != nil {
		t.Errorf("alice's second factor was destroyed though the reset could not be recorded: %v", err)
	}
}
