package main

import (
	"bytes"
	"context"
	"encoding/json"
	"html"
	"net/http"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// TestIssueOnBehalf: issuing on behalf of a user is off until both setup and
// serve switch it on; then helpdesk staff get the user's .p12 with a ticket,
// on the record under their own name, and Vault still refuses every name that
// is not <user>@<domain> and every token that is not helpdesk's. Switching it
// off in setup takes the capability away in Vault.
func TestIssueOnBehalf(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	helenPW := v.Password(t, "helen")
	form := func(ticket string) map[string][]string {
		f := issueForm(p12Password, p12Password, "720h0m0s", "modern")
		f.Set("ticket", ticket)
		return f
	}

	// Off by default: no form, 403, and no role in Vault.
	off := startPortal(t, v, nil)
	helen := newBrowser(t, off.URL)
	helen.mustLogin("helen", helenPW)
	if r := helen.get("/helpdesk/users/bob"); strings.Contains(string(r.Body), `action="/helpdesk/users/bob/certificates"`) {
		t.Error("on-behalf form shown while switched off")
	}
	if r := helen.post("/helpdesk/users/bob/certificates", form("INC-1")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("on-behalf issue while off: %d", r.StatusCode)
	}
	if _, err := userToken(t, v, "helen", helenPW).Logical().Write("pki/issue/user-auth-onbehalf", map[string]any{"common_name": "bob@example.com"}); err == nil {
		t.Fatal("helen's token issued from the on-behalf role before setup switched it on")
	}

	setupVault(t, v, "--helpdesk-issue-on-behalf")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true"})
	helen = newBrowser(t, p.URL)
	helen.mustLogin("helen", helenPW)
	if r := helen.get("/helpdesk/users/bob"); !strings.Contains(string(r.Body), `action="/helpdesk/users/bob/certificates"`) {
		t.Fatalf("no on-behalf form on bob's page:\n%s", r.Body)
	} else if body := string(r.Body); !strings.Contains(body, "The user needs this password once") || !strings.Contains(body, "Helps the user tell") ||
		strings.Contains(body, "You need this password once") || strings.Contains(body, "Helps you tell") {
		// The agent fills the form for someone else: the hints speak of
		// the user, not of "you".
		t.Errorf("the on-behalf form's hints speak to the agent as the certificate's owner:\n%s", r.Body)
	}
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	for _, tc := range []struct {
		name   string
		who    *client
		user   string
		form   map[string][]string
		status int
	}{
		{"employee", alice, "bob", form("INC-2"), 403},
		{"missing ticket", helen, "bob", form(""), 400},
		{"short password", helen, "bob", map[string][]string{"password": {"short"}, "password_confirm": {"short"}, "ticket": {"INC-2"}}, 400},
		{"unknown user", helen, "nosuchuser", form("INC-2"), 404},
		{"bad username", helen, "Bob%20Smith", form("INC-2"), 404},
		{"for oneself", helen, "helen", form("INC-2"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := certSet(t, v)
			r := tc.who.post("/helpdesk/users/"+tc.user+"/certificates", tc.form)
			if r.StatusCode != tc.status || r.Header.Get("Content-Type") == "application/x-pkcs12" {
				t.Fatalf("status %d (%s), want %d", r.StatusCode, r.Header.Get("Content-Type"), tc.status)
			}
			if len(certSet(t, v)) != len(before) {
				t.Fatal("Vault issued a certificate for a refused request")
			}
		})
	}

	r := helen.post("/helpdesk/users/bob/certificates", form("INC-3"))
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("on-behalf issue: %d\n%s", r.StatusCode, r.Body)
	}
	_, cert, _, err := pkcs12.DecodeChain(r.Body, p12Password)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != "bob@example.com" || len(cert.EmailAddresses) != 1 || cert.EmailAddresses[0] != "bob@example.com" {
		t.Fatalf("certificate names %s %v", cert.Subject.CommonName, cert.EmailAddresses)
	}
	serial := vault.FormatSerial(cert.SerialNumber.Bytes())
	// Re-enrolling bob now says the helpdesk may issue his new one.
	if page, want := string(helen.get("/helpdesk/certificates/"+serial+"/reissue").Body),
		html.EscapeString(i18n.T(i18n.English, "helpdesk.reenrol_explain_onbehalf", "bob")); !strings.Contains(page, want) {
		t.Errorf("re-enrol page with on-behalf issuance lacks %q\n%s", want, page)
	}
	bob := newBrowser(t, p.URL)
	bob.mustLogin("bob", v.Password(t, "bob"))
	if page := string(bob.get("/").Body); !strings.Contains(page, serial) {
		t.Fatal("bob's certificate list lacks the one issued on his behalf")
	}
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	var ev struct {
		Actor, Subject, Action, Outcome, Serial string
		Details                                 map[string]string
	}
	trail := bytes.TrimSpace(audrey.get("/audit/export?format=jsonl&action=certificate.issue_on_behalf").Body)
	if err := json.Unmarshal(trail, &ev); err != nil {
		t.Fatalf("on-behalf event: %v\n%s", err, trail)
	}
	if ev.Actor != "helen" || ev.Subject != "bob" || ev.Outcome != "success" || ev.Serial != serial || ev.Details["ticket"] != "INC-3" {
		t.Fatalf("on-behalf event: %+v", ev)
	}
	assertNoSecrets(t, string(trail)+p.Logs.String(), helenPW, p12Password)

	// Vault, not the portal, holds the line on names and tokens.
	helenVault := userToken(t, v, "helen", helenPW)
	for _, cn := range []string{"example.com", "bob@sub.example.com", "bob@example.com.evil.test", "localhost", "bob@evil.test"} {
		if _, err := helenVault.Logical().Write("pki/issue/user-auth-onbehalf", map[string]any{"common_name": cn}); err == nil {
			t.Errorf("on-behalf role issued %q", cn)
		}
	}
	if _, err := helenVault.Logical().Write("pki/issue/user-auth-onbehalf", map[string]any{"common_name": "bob@example.com", "ip_sans": "127.0.0.1"}); err == nil {
		t.Error("on-behalf role issued an IP SAN")
	}
	if _, err := userToken(t, v, "alice", v.Password(t, "alice")).Logical().Write("pki/issue/user-auth-onbehalf", map[string]any{"common_name": "bob@example.com"}); err == nil {
		t.Error("an employee's token issued from the on-behalf role")
	}

	// Switched off in setup: gone from Vault, so the portal cannot either.
	setupVault(t, v)
	if _, err := helenVault.Logical().Write("pki/issue/user-auth-onbehalf", map[string]any{"common_name": "bob@example.com"}); err == nil {
		t.Fatal("on-behalf role still issues after setup switched it off")
	}
	helen = newBrowser(t, p.URL)
	helen.mustLogin("helen", helenPW) // a token with the new policy
	if r := helen.post("/helpdesk/users/bob/certificates", form("INC-4")); r.StatusCode != http.StatusForbidden {
		t.Fatalf("on-behalf issue after setup switched it off: %d", r.StatusCode)
	}
}

// userToken logs user in to Vault directly and returns a client holding
// their token.
func userToken(t *testing.T, v *testenv.Vault, user, password string) *vaultapi.Client {
	t.Helper()
	c, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	sec, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": password})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(sec.Auth.ClientToken)
	return c
}

// setupVault runs `certportal setup` against v with an admin token.
func setupVault(t *testing.T, v *testenv.Vault, args ...string) {
	t.Helper()
	if out, err := runSetupCmd(v, args...); err != nil {
		t.Fatalf("setup %v: %v\n%s", args, err, out)
	}
}

// runSetupCmd runs `certportal setup args...` against v with an admin token
// and returns everything it printed.
func runSetupCmd(v *testenv.Vault, args ...string) (string, error) {
	return runSetupCmdEnv(v, nil, args...)
}

// runSetupCmdEnv is runSetupCmd with more environment variables.
func runSetupCmdEnv(v *testenv.Vault, extra map[string]string, args ...string) (string, error) {
	env := map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": v.Admin.Token()}
	for k, x := range extra {
		env[k] = x
	}
	var out, errb bytes.Buffer
	err := run(context.Background(), append([]string{"setup"}, args...), func(k string) string { return env[k] }, &out, &errb)
	return out.String() + errb.String(), err
}
