package main

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestUserTokenNoLongerThanSession: a user's Vault token never outlives the
// session's absolute timeout (issue 12: users' tokens stay short-lived), so
// a token left behind by a crash ends with the session it served.
func TestUserTokenNoLongerThanSession(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	setupVault(t, v, "--session-absolute", "1h")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_SESSION_ABSOLUTE": "1h"})
	b := newBrowser(t, p.URL)
	start := time.Now()
	acc := loginAccessor(t, v, b, "alice")
	s, err := v.Admin.Logical().Write("auth/token/lookup-accessor", map[string]any{"accessor": acc})
	if err != nil || s == nil {
		t.Fatalf("lookup of alice's token: %v", err)
	}
	ttl, err := s.Data["ttl"].(json.Number).Int64()
	if err != nil {
		t.Fatalf("token ttl %v: %v", s.Data["ttl"], err)
	}
	if max := time.Since(start) + time.Hour; time.Duration(ttl)*time.Second > max {
		t.Errorf("alice's token lives %ds, longer than the session's absolute timeout (1h)", ttl)
	}
	// Renewals are capped by the mount's max_lease_ttl, from the token's creation.
	tune, err := v.Admin.Logical().Read("sys/auth/userpass/tune")
	if err != nil || tune == nil {
		t.Fatalf("read userpass tune: %v", err)
	}
	if got := fmt.Sprint(tune.Data["max_lease_ttl"]); got != "3600" {
		t.Errorf("userpass max_lease_ttl %s, want 3600 (the session's absolute timeout)", got)
	}
}
