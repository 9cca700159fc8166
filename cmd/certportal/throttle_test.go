package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// TestLoginThrottle: after too many failed logins from one address, that
// address waits — even with the right password, which Vault is not asked to
// check — while other addresses log in as usual. The refusal is recorded.
func TestLoginThrottle(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_LOGIN_MAX_FAILURES": "3", "CERTPORTAL_LOGIN_FAILURE_WINDOW": "10m"})
	var lastBody string
	login := func(c *http.Client, user, password string) *http.Response {
		t.Helper()
		resp, err := c.PostForm(p.URL+"/login", url.Values{"username": {user}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		lastBody = string(body)
		return resp
	}
	attacker := clientFrom("127.0.0.3")
	// One password tried on several accounts: each account alone stays far
	// below Vault's own lockout.
	for _, user := range []string{"alice", "bob", "helen"} {
		if r := login(attacker, user, "Summer2026!"); r.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failed login %s: %d", user, r.StatusCode)
		}
	}
	tokens := len(accessors(t, v))
	r := login(attacker, "alice", v.Password(t, "alice"))
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fourth attempt: %d, want 429", r.StatusCode)
	}
	if s, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || s < 1 || s > 600 {
		t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
	} else if want := fmt.Sprintf("Try again in %d min.", (s+59)/60); !strings.Contains(lastBody, want) {
		// The page says the wait the header gives, in minutes rounded up.
		t.Errorf("lockout page does not say %q:\n%s", want, lastBody)
	}
	if len(accessors(t, v)) != tokens {
		t.Error("a throttled login reached Vault and got a token")
	}
	// Further refusals in the window are not recorded again: one address
	// must not be able to fill the trail.
	if r := login(attacker, "bob", "Summer2026!"); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("fifth attempt: %d", r.StatusCode)
	}
	if r := login(clientFrom("127.0.0.4"), "alice", v.Password(t, "alice")); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("login from another address: %d", r.StatusCode)
	}
	db := openSQLite(t, p.DB)
	var ip, details string
	if err := db.QueryRow(`SELECT client_ip, details FROM audit_events WHERE action = 'login' AND outcome = 'denied' AND subject = 'alice'`).Scan(&ip, &details); err != nil {
		t.Fatalf("throttled login not recorded: %v", err)
	}
	if ip != "127.0.0.3" || !strings.Contains(details, "too many failed logins") {
		t.Errorf("recorded as %s %s", ip, details)
	}
	var denied int
	if err := db.QueryRow(`SELECT count(*) FROM audit_events WHERE action = 'login' AND outcome = 'denied'`).Scan(&denied); err != nil || denied != 1 {
		t.Errorf("%d denied logins recorded, want 1 (%v)", denied, err)
	}
}
