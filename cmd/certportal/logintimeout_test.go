package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestLoginTimeoutStillCounts: a login Vault answers too late has still
// been checked by Vault, which counts a wrong password towards its lockout
// whether or not the portal hears back. Refunding such attempts (as for a
// Vault that was never reached) let a stranger who keeps Vault slow send
// wrong passwords for alice past the portal's per-name limit and lock her
// in Vault, which the limit exists to prevent. Each unanswered attempt
// counts in the name's run; Vault's count stays below its threshold.
func TestLoginTimeoutStillCounts(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	proxy := startSlowProxy(t, strings.TrimPrefix(v.Addr, "http://"))
	p := startPortal(t, v, map[string]string{
		"VAULT_ADDR":               "http://" + proxy.Addr,
		"CERTPORTAL_VAULT_TIMEOUT": "1s",
	})
	proxy.SetDelay(3 * time.Second)
	stranger := newBrowser(t, p.URL)
	statuses := map[int]int{}
	for i := 0; i < 12; i++ {
		r := stranger.post("/login", url.Values{"username": {"alice"}, "password": {"wrong-password-" + string(rune('a'+i))}})
		statuses[r.StatusCode]++
	}
	proxy.SetDelay(0)
	t.Logf("12 wrong passwords for alice while Vault answers late: %v", statuses)
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("no attempt refused by the per-name limit: %v (the unanswered ones were not counted)", statuses)
	}
	// Vault checked every attempt the portal let through; it must not
	// have locked alice.
	deadline := time.Now().Add(30 * time.Second)
	for !vaultLogin(t, v, "alice", v.Password(t, "alice")) {
		if time.Now().After(deadline) {
			t.Fatal("alice is locked out in Vault: the portal let more wrong passwords reach Vault than its lockout threshold")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
