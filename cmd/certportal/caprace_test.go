package main

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/pgtest"
)

// capMessage is the catalog's English error.cap_reached, as the page shows it.
const capMessage = "You already hold the maximum number of active certificates."

// raceIssue sends n POST /certificates at once, spread over the browsers
// (each logged in as the same user, possibly on different replicas), and
// returns how many handed out a .p12 and how many were refused with the cap
// message. Any other answer fails the test.
func raceIssue(t *testing.T, browsers []*client, n int) (issued, capped int) {
	t.Helper()
	type result struct {
		status int
		ctype  string
		body   string
		err    error
	}
	results := make([]result, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		b := browsers[i%len(browsers)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			// client.post calls t.Fatalf, which must not run off the test's
			// goroutine: this is the same request, reporting instead.
			req, _ := http.NewRequest(http.MethodPost, b.base+"/certificates",
				strings.NewReader(issueForm(p12Password, p12Password, "720h0m0s", "modern").Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			<-start
			resp, err := b.c.Do(req)
			if err != nil {
				results[i].err = err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			results[i] = result{status: resp.StatusCode, ctype: resp.Header.Get("Content-Type"), body: string(body), err: err}
		}()
	}
	close(start)
	wg.Wait()
	for i, r := range results {
		switch {
		case r.err != nil:
			t.Fatalf("request %d: %v", i, r.err)
		case r.status == http.StatusOK && r.ctype == "application/x-pkcs12":
			issued++
		case r.status == http.StatusForbidden && strings.Contains(r.body, capMessage):
			capped++
		default:
			t.Fatalf("request %d: %d %s\n%s", i, r.status, r.ctype, r.body)
		}
	}
	return issued, capped
}

// TestCapRace: twelve simultaneous issuances for one user with the default
// cap of three hand out exactly three certificates; the other nine get the
// cap message, and Vault was asked for exactly three (a refused request
// never reaches Vault).
func TestCapRace(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	before := certCount(t, v)
	issued, capped := raceIssue(t, []*client{b}, 12)
	if issued != 3 || capped != 9 {
		t.Fatalf("12 concurrent issuances with a cap of 3: %d issued, %d refused", issued, capped)
	}
	if n := certCount(t, v) - before; n != 3 {
		t.Fatalf("Vault issued %d certificates, want 3", n)
	}
	if r := b.get("/"); strings.Count(string(r.Body), `class="badge active"`) != 3 {
		t.Fatalf("dashboard does not show exactly 3 active certificates")
	}
}

// TestPostgresCapRace: the cap holds across two replicas sharing one
// PostgreSQL database — twelve simultaneous issuances, six through each,
// hand out exactly three between them.
func TestPostgresCapRace(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dsn := pgtest.NewDatabase(t, pgtest.StartServer(t).DSN())
	env := map[string]string{"CERTPORTAL_DB": dsn}
	first, second := startPortal(t, v, env), startPortal(t, v, env)
	b1, b2 := newBrowser(t, first.URL), newBrowser(t, second.URL)
	b1.mustLogin("alice", v.Password(t, "alice"))
	b2.mustLogin("alice", v.Password(t, "alice"))
	before := certCount(t, v)
	issued, capped := raceIssue(t, []*client{b1, b2}, 12)
	if issued != 3 || capped != 9 {
		t.Fatalf("12 concurrent issuances over two replicas with a cap of 3: %d issued, %d refused", issued, capped)
	}
	if n := certCount(t, v) - before; n != 3 {
		t.Fatalf("Vault issued %d certificates, want 3", n)
	}
}

// TestCapPlaceReleased: an issuance that fails after its place was reserved
// (Vault sealed: nothing issued) gives the place back at once, so with a cap
// of one the next request succeeds instead of waiting for the reservation to
// expire.
func TestCapPlaceReleased(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_MAX_ACTIVE": "1"})
	b := newBrowser(t, p.URL)
	b.mustLogin("alice", v.Password(t, "alice"))
	v.Seal(t)
	r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern"))
	v.Unseal(t)
	if r.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("issue while sealed: %d", r.StatusCode)
	}
	b.issue("modern") // the place the failed request held is free
	if r := b.post("/certificates", issueForm(p12Password, p12Password, "720h0m0s", "modern")); r.StatusCode != http.StatusForbidden || !strings.Contains(string(r.Body), capMessage) {
		t.Fatalf("second certificate with a cap of 1: %d", r.StatusCode)
	}
}
