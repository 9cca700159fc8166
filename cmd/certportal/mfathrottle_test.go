package main

import (
	"net/http"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// TestMFALoginsCostNoAttempts: with MFA on, a login with the right password
// and the right code leaves the address's failure count where it was, as a
// password-only login does. Otherwise everyone behind one office NAT who
// logs in uses up the address's budget, and after a handful of ordinary
// logins the next colleague is refused with 429 though nobody guessed
// anything. A wrong code still counts.
func TestMFALoginsCostNoAttempts(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	secrets := map[string]string{}
	users := []string{"alice", "bob", "audrey"}
	for _, u := range users {
		secrets[u] = adminEnrol(t, v, u, method)
	}
	p := startPortal(t, v, map[string]string{"CERTPORTAL_LOGIN_MAX_FAILURES": "3", "CERTPORTAL_LOGIN_USER_MAX_FAILURES": "100"})
	clock := &totpClock{}
	// Six complete logins from one address, twice the address's limit.
	for i := 0; i < 6; i++ {
		u := users[i%len(users)]
		b := newBrowser(t, p.URL)
		b.passwordStep(u, v.Password(t, u))
		mustLanded(t, b.codeStep(clock.next(t, secrets[u])), "login "+u)
	}
	// Wrong codes do count: the limit is still there.
	b := newBrowser(t, p.URL)
	b.passwordStep("alice", v.Password(t, "alice"))
	for i := 0; i < 3; i++ {
		mustCodeRefused(t, b.codeStep("000000"), "wrong code")
	}
	if r := b.codeStep(clock.next(t, secrets["alice"])); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a code after three wrong ones from one address: status %d, want 429", r.StatusCode)
	}
}
