package setup

import (
	"strings"
	"testing"
)

// TestCheckMFAVersion: Login MFA only on a Vault where padded codes cannot
// slip past the rate limit and reuse checks (CVE-2025-6015), unless the
// operator accepts the older one.
func TestCheckMFAVersion(t *testing.T) {
	for _, tc := range []struct {
		name, version string
		allowOld      bool
		wantErr       string // "" for no error
	}{
		{"the minimum", "1.20.1", false, ""},
		{"devvault's", "1.21.2", false, ""},
		{"enterprise build", "1.20.3+ent", false, ""},
		{"with a v", "v1.22.0", false, ""},
		{"next major", "2.0.0", false, ""},
		{"one patch before", "1.20.0", false, "older than 1.20.1"},
		{"older minor, higher patch", "1.19.11", false, "older than 1.20.1"},
		{"enterprise before", "1.19.5+ent", false, "CVE-2025-6015"},
		{"a release candidate of the minimum", "1.20.1-rc1", false, "older than 1.20.1"},
		{"old but accepted", "1.15.0", true, ""},
		{"unreadable", "", false, "cannot tell Vault's version"},
		{"garbage", "1.x.0", false, "cannot tell Vault's version"},
		{"unreadable but accepted", "dev", true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkMFAVersion(tc.version, tc.allowOld)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("checkMFAVersion(%q, %v) = %v, want nil", tc.version, tc.allowOld, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("checkMFAVersion(%q, %v) = %v, want an error with %q", tc.version, tc.allowOld, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "--mfa-allow-old-vault") {
				t.Errorf("the refusal does not say how to override it: %v", err)
			}
		})
	}
}
