package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

// TestIssueOnBehalfOnlyEmployees: the helpdesk issues on behalf of
// employees only — a user whose own token_policies hold the portal's user
// policy and nothing beyond Vault's default. A certificate in a Vault
// operator's, a staff member's or a service account's name would let a
// helpdesk agent hold an identity that is not theirs to hand out (and for
// an account without the user policy, the next offboarding sweep revokes
// it anyway). Refused before Vault is asked, with 403, and recorded.
func TestIssueOnBehalfOnlyEmployees(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	setupVault(t, v, "--helpdesk-issue-on-behalf")
	user := setup.Defaults().UserPolicy
	const pw = "some-password-12"
	v.CreateUser(t, "vera", pw, nil, "vault-admin")                          // a Vault operator
	v.CreateUser(t, "dave", pw, nil, user, "vault-admin")                    // an operator who also has a certificate
	v.CreateUser(t, "svcacct", pw, nil, "default")                           // no portal access at all
	v.CreateUser(t, "harry", pw, nil, user, setup.Defaults().HelpdeskPolicy) // a helpdesk colleague
	v.CreateUser(t, "kiosk", pw, nil, user, "default")                       // an employee account
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true"})
	db := openSQLite(t, p.DB)
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("ticket", "INC-9")

	// Each refusal says what helps: staff sign in themselves, an account
	// without portal access needs a Vault operator first.
	// Operators and accounts without portal access get one message: the
	// page must not list who holds Vault power (review 80 F3).
	says := map[string]string{"vera": "A Vault operator decides", "dave": "A Vault operator decides", "svcacct": "A Vault operator decides",
		"harry": "is portal staff", "audrey": "is portal staff"}
	for _, u := range []string{"vera", "dave", "svcacct", "harry", "audrey"} {
		t.Run(u, func(t *testing.T) {
			before := certSet(t, v)
			r := helen.post("/helpdesk/users/"+u+"/certificates", form)
			if r.StatusCode != http.StatusForbidden || r.Header.Get("Content-Type") == "application/x-pkcs12" {
				t.Fatalf("on-behalf issue for %s: status %d (%s), want 403\n%s", u, r.StatusCode, r.Header.Get("Content-Type"), r.Body)
			}
			if !strings.Contains(string(r.Body), "only for employees") || !strings.Contains(string(r.Body), says[u]) {
				t.Errorf("refusal for %s does not say why (%q):\n%s", u, says[u], r.Body)
			}
			if len(certSet(t, v)) != len(before) {
				t.Fatal("Vault issued a certificate for a refused request")
			}
			ev := sessionEvents(t, db, "certificate.issue_on_behalf", u)
			if len(ev) != 1 || ev[0].Outcome != "denied" || ev[0].Actor != "helen" || ev[0].Details["ticket"] != "INC-9" || ev[0].Details["reason"] == "" {
				t.Errorf("trail for %s: %+v, want one denied event by helen with the ticket and a reason", u, ev)
			}
			// Their own page offers no form that is bound to fail, and says why.
			if page := string(helen.get("/helpdesk/users/" + u).Body); strings.Contains(page, `action="/helpdesk/users/`+u+`/certificates"`) ||
				!strings.Contains(page, `id="onbehalf-no"`) || !strings.Contains(page, says[u]) {
				t.Errorf("%s's helpdesk page: want no on-behalf form and %q", u, says[u])
			}
		})
	}
	// The agent's own page points to their dashboard.
	if page := string(helen.get("/helpdesk/users/helen").Body); !strings.Contains(page, "Use your own dashboard") {
		t.Error("helen's own helpdesk page does not send her to her dashboard")
	}
	// An employee: as before.
	r := helen.post("/helpdesk/users/kiosk/certificates", form)
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("on-behalf issue for an employee: %d\n%s", r.StatusCode, r.Body)
	}
	if page := helen.get("/helpdesk/users/bob"); !strings.Contains(string(page.Body), `action="/helpdesk/users/bob/certificates"`) {
		t.Error("an employee's helpdesk page lacks the on-behalf form")
	}
}
