package main

import (
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestStepUpCodeReplay: the code a login was completed with is spent: a
// cookie thief who watched it typed cannot use it again for a step-up
// (Vault's reuse check covers sys/mfa/validate whichever portal path asks).
func TestStepUpCodeReplay(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	secret := adminEnrol(t, v, "alice", method)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MFA_STEP_UP": testStepUp})
	alice := newBrowser(t, p.URL)
	alice.passwordStep("alice", v.Password(t, "alice"))
	used := code(t, secret, time.Now())
	mustLanded(t, alice.codeStep(used), "alice's login")
	deadline := time.Now().Add(60 * time.Second)
	for !stepUpDue(alice.get("/")) {
		if time.Now().After(deadline) {
			t.Fatal("the step-up never fell due")
		}
		time.Sleep(200 * time.Millisecond)
	}
	form := issueForm(mfaPassword, mfaPassword, "720h0m0s", "modern")
	mustStepUpRefused(t, alice.post("/certificates", withStepUp(form, v.Password(t, "alice"), used)), "/certificates", true, "step-up with the login's code")
}
