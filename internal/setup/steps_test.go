package setup_test

import (
	"context"
	"testing"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

// TestStepsReadBack: every step a real setup run reports — a first run on
// an empty Vault with MFA, demo users, issuing on behalf and the server
// role (the defaults), and a second run that finds everything in place — is a catalog
// message the audit page can show in Korean (i18n.ReadBack): the trail's
// "changed" list holds these texts.
func TestStepsReadBack(t *testing.T) {
	v := testenv.StartVault(t)
	o := setup.Defaults()
	o.DemoUsers = true
	o.NewServiceSecret = true
	o.HelpdeskOnBehalf = true
	o.MFA = setup.MFATOTP
	seen := map[string]bool{}
	for run := 1; run <= 2; run++ {
		res, err := setup.Run(context.Background(), v.Admin, o)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for _, s := range res.Steps {
			seen[s.What] = true
		}
	}
	o.HelpdeskOnBehalf = false // the on-behalf role's removal
	res, err := setup.Run(context.Background(), v.Admin, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range res.Steps {
		seen[s.What] = true
	}
	if len(seen) < 20 {
		t.Fatalf("only %d distinct steps: %v", len(seen), seen)
	}
	for what := range seen {
		ko, ok := i18n.ReadBack(i18n.Korean, "setupstep.", what, nil)
		if !ok || ko == what {
			t.Errorf("step %q does not read back in Korean (%q)", what, ko)
		}
	}
}
