package main

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
)

// TestRenewLinkFromMail: the renew link a reminder carries works the way a
// user follows it — from webmail (a cross-site navigation) and logged out.
// The cross-site click gets one same-origin link and nothing runs; the
// logged-out one goes through the login page and lands on the renew page,
// and an after-login target that leaves the site is ignored.
func TestRenewLinkFromMail(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	serial := alice.issue("modern")
	renew := "/certificates/" + serial + "/renew"

	// From webmail: a page with a link to the same address, no work done.
	events := func() int64 { return storeInt(t, p.DB, `SELECT count(*) FROM audit_events`) }
	// The download's event may share a later commit (AppendAuditDeferred):
	// count from after it, or it lands inside the window measured below.
	waitUntil(t, "the download's audit event", 30*time.Second, func() bool {
		return storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'certificate.download' AND serial = '`+serial+`'`) == 1
	})
	// Same-site is the same as cross-site (SameSite=Lax sends the cookie
	// on a sibling subdomain's links and images), and an <img> on the
	// portal itself is not the user's navigation either.
	for _, h := range foreignRequests {
		before := events()
		r := getWithFetch(alice, renew, h)
		if r.StatusCode != http.StatusOK {
			t.Fatalf("%s to the renew link: status %d, want 200 with a continue link", h.name, r.StatusCode)
		}
		if link := continueLink(r.Body); link != renew {
			t.Fatalf("%s to the renew link: continue link %q, want %s\n%s", h.name, link, renew, r.Body)
		}
		if strings.Contains(string(r.Body), `name="renew_serial"`) {
			t.Fatalf("%s to the renew link rendered the renew form itself", h.name)
		}
		if after := events(); after != before {
			t.Fatalf("%s to the renew link wrote %d audit events", h.name, after-before)
		}
	}
	// The page script fetches the renew page again when a step-up falls
	// due while it is open (stepUpAgain in portal.js): cors mode.
	for _, h := range append([]fetchHeaders{{"page script fetch", "same-origin", "cors", "empty"}}, ownNavigations...) {
		if r := getWithFetch(alice, renew, h); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `name="renew_serial"`) {
			t.Fatalf("%s to the renew page: status %d, renew form shown %v", h.name, r.StatusCode, strings.Contains(string(r.Body), `name="renew_serial"`))
		}
	}

	// Logged out: login, then the renew page.
	fresh := newBrowser(t, p.URL)
	r := fresh.get(renew)
	want := "/login?next=" + url.QueryEscape(renew)
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != want {
		t.Fatalf("logged-out renew link: %d to %q, want 303 to %q", r.StatusCode, r.Header.Get("Location"), want)
	}
	r = fresh.get(want)
	if !strings.Contains(string(r.Body), `name="next" value="`+renew+`"`) {
		t.Fatalf("login page does not carry the destination\n%s", r.Body)
	}
	// A wrong password keeps it.
	r = fresh.post("/login", url.Values{"username": {"alice"}, "password": {"wrong-password-1"}, "next": {renew}})
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(string(r.Body), `name="next" value="`+renew+`"`) {
		t.Fatalf("failed login: status %d, destination kept: %v", r.StatusCode, strings.Contains(string(r.Body), renew))
	}
	r = fresh.post("/login", url.Values{"username": {"alice"}, "password": {v.Password(t, "alice")}, "next": {renew}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != renew {
		t.Fatalf("login with next: %d to %q, want 303 to %s", r.StatusCode, r.Header.Get("Location"), renew)
	}

	// Off-site destinations are ignored: the user's own start page instead.
	for _, next := range []string{"//evil.example/", "https://evil.example/", "/\\evil.example", "/login"} {
		b := newBrowser(t, p.URL)
		r := b.post("/login", url.Values{"username": {"bob"}, "password": {v.Password(t, "bob")}, "next": {next}})
		if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/" {
			t.Errorf("login with next=%q: %d to %q, want 303 to /", next, r.StatusCode, r.Header.Get("Location"))
		}
	}
}

// TestLoginNextToWorkGET: another site can link to the login form with a
// destination that does work (an export, which writes an event); after the
// login the browser's redirect would count as the portal's own navigation
// and run it. So the login answers with a page holding one link there: the
// export runs only when the user clicks it. A destination that only reads
// is still a redirect.
func TestLoginNextToWorkGET(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	exports := func() int64 {
		return storeInt(t, p.DB, `SELECT count(*) FROM audit_events WHERE action = 'audit.export'`)
	}
	export := "/audit/export?format=csv"
	b := newBrowser(t, p.URL)
	r := b.post("/login", url.Values{"username": {"audrey"}, "password": {v.Password(t, "audrey")}, "next": {export}})
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="continue"`) ||
		!strings.Contains(string(r.Body), `href="/audit/export?format=csv"`) {
		t.Fatalf("login with next=%s: %d (Location %q), want 200 with a link there\n%s", export, r.StatusCode, r.Header.Get("Location"), r.Body)
	}
	if n := exports(); n != 0 {
		t.Fatalf("%d exports recorded before the click", n)
	}
	if r := b.get(export); r.StatusCode != http.StatusOK || exports() != 1 {
		t.Errorf("the click: %d, %d exports recorded; want 200 and 1", r.StatusCode, exports())
	}
	// The same export spelt so that the check and the browser's request
	// differ (review 78 F5): no export however the answer is followed.
	for _, next := range []string{"/audit/./export?format=csv", "/audit/x/../export?format=csv", "/audit/export/?format=csv",
		"/audit//export?format=csv", "/audit/%65xport?format=csv", "/audit/%2e/export?format=csv"} {
		b := newBrowser(t, p.URL)
		before := exports()
		r := b.post("/login", url.Values{"username": {"audrey"}, "password": {v.Password(t, "audrey")}, "next": {next}})
		for i := 0; i < 5 && r.StatusCode >= 300 && r.StatusCode < 400; i++ {
			base, _ := url.Parse(p.URL + "/login")
			loc, err := base.Parse(r.Header.Get("Location"))
			if err != nil {
				t.Fatalf("next=%s: Location %q: %v", next, r.Header.Get("Location"), err)
			}
			r = b.get(loc.RequestURI())
		}
		if n := exports(); n != before {
			t.Errorf("login with next=%s ran %d export(s) without a click", next, n-before)
		}
	}
	b2 := newBrowser(t, p.URL)
	r = b2.post("/login", url.Values{"username": {"audrey"}, "password": {v.Password(t, "audrey")}, "next": {"/audit/inventory"}})
	if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/audit/inventory" {
		t.Errorf("login with next=/audit/inventory: %d to %q, want 303 there", r.StatusCode, r.Header.Get("Location"))
	}
}
