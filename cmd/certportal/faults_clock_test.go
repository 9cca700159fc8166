package main

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/notify"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
)

// TestClockSkew runs the portal with its clock a minute ahead of Vault's
// and a minute behind it (Vault is the real devvault on the real clock):
// a session whose Vault token has 45 s left lives those 45 s and no more
// or less; the validity shown is the certificate's; reminders come at the
// certificate's thresholds and not right after issuance; and the skew is
// measured from Vault's Date header, logged once and shown on /readyz and
// /metrics.
func TestClockSkew(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	const shortPW = "skewy-password-1"
	// A token that outlives the skew by less than the skew: a portal that
	// compared Vault's absolute expiry with its own clock would end this
	// session at once when ahead, or keep it past its token when behind.
	v.CreateUser(t, "skewy", shortPW, map[string]any{"token_ttl": "45s", "token_max_ttl": "45s"}, "certportal-user")
	for _, tc := range []struct {
		name   string
		offset time.Duration // the portal's clock minus Vault's
		side   string        // what /readyz says of Vault's clock
	}{
		{"portal ahead 60s", 60 * time.Second, "behind"},
		{"portal behind 60s", -60 * time.Second, "ahead of"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := func() time.Time { return time.Now().Add(tc.offset) }
			cv := newCountingVault(t, v)
			p := startPortalWith(t, v, map[string]string{"VAULT_ADDR": cv.URL, "CERTPORTAL_SESSION_RECHECK": "1s"}, app.Options{Now: now})

			// Skew: measured, on /readyz (still ready) and /metrics.
			b := newBrowser(t, p.URL)
			r := b.get("/readyz")
			want := regexp.MustCompile(`warning: vault clock (59s|1m0s|1m1s) ` + tc.side + ` the portal's \(over 30s\)`)
			if r.StatusCode != http.StatusOK || !strings.HasPrefix(string(r.Body), "ready\n") || !want.Match(r.Body) {
				t.Fatalf("readyz with the portal %s off Vault: %d %q", tc.offset, r.StatusCode, r.Body)
			}
			skew, err := strconv.ParseFloat(metricValue(t, p, "certportal_vault_clock_skew_seconds"), 64)
			if err != nil {
				t.Fatalf("certportal_vault_clock_skew_seconds: %v", err)
			}
			if got := -skew; got < tc.offset.Seconds()-1 || got > tc.offset.Seconds()+1 {
				t.Fatalf("certportal_vault_clock_skew_seconds = %v, want about %v", skew, -tc.offset.Seconds())
			}

			// Token expiry: the session lasts as long as Vault's token.
			s := newBrowser(t, p.URL)
			r = s.post("/login", map[string][]string{"username": {"skewy"}, "password": {shortPW}})
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
				t.Fatalf("login: %d %s", r.StatusCode, r.Header.Get("Location"))
			}
			maxAge := cookieMaxAge(t, r)
			if maxAge < 30 || maxAge > 45 {
				t.Fatalf("session cookie Max-Age %d, want the token's 45s (less the login's time)", maxAge)
			}
			t.Logf("portal %s off Vault: skew measured %vs; a 45s token's session cookie Max-Age %ds", tc.offset, skew, maxAge)
			if r := s.get("/"); r.StatusCode != http.StatusOK {
				t.Fatalf("dashboard right after login: %d (Location %q): the session ended early", r.StatusCode, r.Header.Get("Location"))
			}
			issuedBy(t, s)

			// The session asks Vault about its token every second, as set:
			// a check's time and the interval are on the same clock.
			before, began := cv.lookups.Load(), time.Now()
			for cv.lookups.Load() < before+2 {
				if time.Since(began) > 15*time.Second {
					t.Fatalf("%d token lookups in 15s of requests with a 1s session recheck", cv.lookups.Load()-before)
				}
				if r := s.get("/"); r.StatusCode != http.StatusOK {
					t.Fatalf("dashboard: %d", r.StatusCode)
				}
			}

			// Validity shown: the certificate's own expiry, 30 days left.
			a := newBrowser(t, p.URL)
			a.mustLogin("alice", v.Password(t, "alice"))
			r = a.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
			if r.StatusCode != http.StatusOK {
				t.Fatalf("issue: %d", r.StatusCode)
			}
			_, cert, _, err := pkcs12.DecodeChain(r.Body, p12Password)
			if err != nil {
				t.Fatal(err)
			}
			dash := string(a.get("/").Body)
			if !strings.Contains(dash, `datetime="`+cert.NotAfter.UTC().Format(time.RFC3339)+`"`) {
				t.Fatalf("dashboard does not show the certificate's not-after %s", cert.NotAfter.UTC().Format(time.RFC3339))
			}
			if !strings.Contains(dash, "30 days left") || strings.Contains(dash, "31 days left") || strings.Contains(dash, "29 days left") {
				i := strings.Index(dash, "days left")
				t.Fatalf("a new 30-day certificate does not show 30 days left: %q", dash[max(0, i-20):min(len(dash), i+12)])
			}

			// Reminders, on the portal's clock: none in the minutes after
			// issuance (the 30-day certificate has not been valid longer
			// than 720h), the 168h one when 167h are left.
			db, err := sqlite.Open(context.Background(), p.DB)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			remindAt := func(at time.Time) int {
				t.Helper()
				r, err := notify.New(db, notify.Options{Thresholds: []time.Duration{720 * time.Hour, 168 * time.Hour, 72 * time.Hour},
					EmailDomain: "example.com", PublicURL: "https://portal.example.com", Email: discardSender{},
					Now: func() time.Time { return at }})
				if err != nil {
					t.Fatal(err)
				}
				res, err := r.Enqueue(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				return res.Enqueued
			}
			if n := remindAt(now().Add(3 * time.Minute)); n != 0 {
				t.Fatalf("%d reminders due 3 minutes after a 30-day certificate was issued", n)
			}
			// Two certificates are due: skewy's and alice's, both 30-day.
			if n := remindAt(cert.NotAfter.Add(-167 * time.Hour)); n != 2 {
				t.Fatalf("%d reminders due 167h before expiry, want the 168h one of each of the 2 certificates", n)
			}

			// The log warned once, however many Vault answers showed it.
			for range 3 {
				b.get("/readyz")
			}
			if n := strings.Count(p.Logs.String(), "the portal's clock and Vault's disagree"); n != 1 {
				t.Fatalf("%d skew warnings in the log, want 1 (rate-limited)", n)
			}
		})
	}
}

// issuedBy issues a certificate with b's session: the session works for
// what it is for, not only for reading the dashboard.
func issuedBy(t *testing.T, b *client) {
	t.Helper()
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/x-pkcs12" {
		t.Fatalf("issue with a fresh 45s-token session: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
}

func cookieMaxAge(t *testing.T, r *response) int {
	t.Helper()
	for _, c := range r.Cookies() {
		if c.MaxAge > 0 {
			return c.MaxAge
		}
	}
	t.Fatalf("no session cookie with a Max-Age: %v", r.Header.Values("Set-Cookie"))
	return 0
}

type discardSender struct{}

func (discardSender) Send(context.Context, *notify.Message) error { return nil }
