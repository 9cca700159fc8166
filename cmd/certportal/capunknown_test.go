package main

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// lostAnswerVault is the real Vault behind a proxy that, while lose is set,
// passes pki/issue requests on — Vault signs — and keeps the answer back
// until the portal gives up: an issuance whose outcome the portal cannot
// know.
type lostAnswerVault struct {
	URL    string
	lose   atomic.Bool
	signed atomic.Int64 // certificates Vault signed whose answer was lost
}

func newLostAnswerVault(t *testing.T, v *testenv.Vault) *lostAnswerVault {
	t.Helper()
	target, err := url.Parse(v.Addr)
	if err != nil {
		t.Fatal(err)
	}
	lv := &lostAnswerVault{}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !lv.lose.Load() || (r.Method != http.MethodPut && r.Method != http.MethodPost) || !strings.HasPrefix(r.URL.Path, "/v1/pki/issue/") {
			rp.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		rp.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			lv.signed.Add(1)
		}
		_, _ = io.Copy(io.Discard, r.Body) // read to the end, so that the server sees the portal hang up
		<-r.Context().Done()               // the portal's Vault timeout
	}))
	t.Cleanup(srv.Close)
	lv.URL = srv.URL
	return lv
}

// reservationTTL is the portal's (internal/portal): how long a place under
// the cap taken by an issuance that never finished stays taken.
const reservationTTL = 2 * time.Minute

// TestCapPlaceHeldWhenVaultMayHaveIssued: with a cap of two, an issuance
// whose Vault call timed out after Vault signed keeps its place, so the next
// request is refused with the cap message until the reservation expires on
// the portal's clock; the page does not claim that nothing was issued. A
// definite refusal by Vault (permission denied, a refused request) gives the
// place back at once.
func TestCapPlaceHeldWhenVaultMayHaveIssued(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	lv := newLostAnswerVault(t, v)
	var ahead atomic.Int64 // the portal's clock minus the real one
	now := func() time.Time { return time.Now().Add(time.Duration(ahead.Load())) }
	p := startPortalWith(t, v, map[string]string{
		"VAULT_ADDR":                 lv.URL,
		"CERTPORTAL_MAX_ACTIVE":      "2",
		"CERTPORTAL_VAULT_TIMEOUT":   "1s",
		"CERTPORTAL_SESSION_RECHECK": "1h",
	}, app.Options{Now: now})
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	issueOnce := func() *response {
		t.Helper()
		return b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	}
	capped := func(what string, r *response) {
		t.Helper()
		if r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), capMessage) {
			t.Fatalf("%s: %d, want 403 with the cap message\n%s", what, r.StatusCode, r.Body)
		}
	}
	first := b.issue("modern") // one of two places

	// Vault signs, its answer never comes: 503, the place stays taken.
	lv.lose.Store(true)
	r := b.post("/certificates?lang="+string(i18n.English), issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	lv.lose.Store(false)
	want := html.EscapeString(i18n.T(i18n.English, "error.vault_no_answer_issue"))
	if r.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(r.Body), want) {
		t.Fatalf("issue with the answer lost: %d, want 503 with %q\n%s", r.StatusCode, want, r.Body)
	}
	if strings.Contains(string(r.Body), html.EscapeString("nothing was issued")) {
		t.Errorf("the page says nothing was issued, though Vault signed a certificate")
	}
	if n := lv.signed.Load(); n != 1 {
		t.Fatalf("Vault signed %d certificates whose answer was lost, want 1", n)
	}
	capped("next issuance while the lost one's place is taken", issueOnce())
	ahead.Store(int64(reservationTTL - 10*time.Second))
	capped("next issuance just before the reservation expires", issueOnce())
	ahead.Store(int64(reservationTTL + time.Second))
	b.issue("modern") // the place is free again: two of two
	capped("third certificate with a cap of two", issueOnce())

	// Definite refusals: the place comes back at once.
	if r := b.post("/certificates/"+first+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("revoke %s: %d\n%s", first, r.StatusCode, r.Body)
	}
	policy, err := v.Admin.Sys().GetPolicy("certportal-user")
	if err != nil || policy == "" {
		t.Fatalf("read certportal-user: %q %v", policy, err)
	}
	for _, tc := range []struct {
		name          string
		refuse, allow func()
		message       string
	}{
		{"permission denied",
			func() { putPolicy(t, v, policy+"\npath \"pki/issue/user-auth\" {\n  capabilities = [\"deny\"]\n}\n") },
			func() { putPolicy(t, v, policy) },
			"error.vault_denied"},
		{"refused",
			func() { patchRole(t, v, map[string]any{"allow_bare_domains": false}) },
			func() { patchRole(t, v, map[string]any{"allow_bare_domains": true}) },
			"error.vault_refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.refuse()
			r := issueOnce()
			tc.allow()
			want := html.EscapeString(i18n.T(i18n.English, tc.message))
			if r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), want) {
				t.Fatalf("issue refused by Vault: %d, want 403 with %q\n%s", r.StatusCode, want, r.Body)
			}
			serial := b.issue("modern") // the refused one's place is free
			capped("third certificate with a cap of two", issueOnce())
			if r := b.post("/certificates/"+serial+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
				t.Fatalf("revoke %s: %d", serial, r.StatusCode)
			}
		})
	}
}

func putPolicy(t *testing.T, v *testenv.Vault, rules string) {
	t.Helper()
	if err := v.Admin.Sys().PutPolicy("certportal-user", rules); err != nil {
		t.Fatalf("write certportal-user: %v", err)
	}
}

func patchRole(t *testing.T, v *testenv.Vault, data map[string]any) {
	t.Helper()
	if _, err := v.Admin.Logical().JSONMergePatch(t.Context(), "pki/roles/user-auth", data); err != nil {
		t.Fatalf("patch pki/roles/user-auth: %v", err)
	}
}
