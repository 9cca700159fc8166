package main

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/i18n"
	"github.com/certportal/certportal/internal/testenv"
)

// langHref returns the href of the language switch's link to lang.
func langHref(t *testing.T, body []byte, lang string) string {
	t.Helper()
	m := regexp.MustCompile(`<a href="([^"]*)" hreflang="` + lang + `"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no language switch to %s on the page:\n%s", lang, body)
	}
	return strings.ReplaceAll(string(m[1]), "&amp;", "&")
}

// TestHelpdeskRevokeConfirm: revoking from the helpdesk goes through a
// confirmation page (no JavaScript needed) that looks unlike the re-enrol
// action; a missing ticket or reason shows that page again with the field
// named and a 400, and nothing is revoked.
func TestHelpdeskRevokeConfirm(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	s1 := alice.issue("modern")
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))

	user := string(helen.get("/helpdesk/users/alice").Body)
	// A serial breaks only at its colons: <wbr> after each, not break-all.
	if !strings.Contains(user, `">`+strings.ReplaceAll(s1, ":", ":<wbr>")+`</code>`) {
		t.Error("helpdesk user page's serial has no break points at its colons")
	}
	// The header skips to the content and marks the current section.
	if !strings.Contains(user, `<a class="skip" href="#main">`) || !strings.Contains(user, `<main id="main"`) || !strings.Contains(user, `id="nav-helpdesk" aria-current="page"`) {
		t.Error("helpdesk user page has no skip link or no aria-current on the helpdesk link")
	}
	// MFA is off on this Vault: no enrolment form that can only fail, a note instead.
	if strings.Contains(user, `id="mfa-enrol"`) || !strings.Contains(user, `id="mfa-off"`) {
		t.Error("helpdesk user page with MFA off offers enrolment instead of saying MFA is off")
	}
	confirmURL := "/helpdesk/certificates/" + s1 + "/revoke"
	if !strings.Contains(user, `href="`+confirmURL+`"`) || !strings.Contains(user, `class="button danger"`) {
		t.Fatalf("user page has no revoke link to the confirmation page:\n%s", user)
	}
	if strings.Contains(user, `method="post" action="`+confirmURL+`"`) {
		t.Error("user page revokes without a confirmation step")
	}
	if !strings.Contains(user, `href="/helpdesk/certificates/`+s1+`/reissue"`) {
		t.Error("user page has no re-enrol action")
	}
	r := helen.get(confirmURL)
	body := string(r.Body)
	if r.StatusCode != http.StatusOK || !strings.Contains(body, `id="hd-revoke-form"`) || !strings.Contains(body, "cannot be undone") ||
		!strings.Contains(body, s1) || !strings.Contains(body, `name="reason"`) {
		t.Fatalf("confirmation page: %d\n%s", r.StatusCode, body)
	}
	for _, tc := range []struct {
		name, reason, ticket, field string
	}{
		{"missing ticket", "lost", "", "Ticket reference"},
		{"missing reason", "", "INC-7", "Reason"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := helen.post(confirmURL, url.Values{"reason": {tc.reason}, "ticket": {tc.ticket}})
			body := string(r.Body)
			if r.StatusCode != http.StatusBadRequest || !strings.Contains(body, `id="hd-revoke-form"`) ||
				!strings.Contains(body, `Check the field &#34;`+tc.field+`&#34;`) || !strings.Contains(body, `aria-invalid="true"`) {
				t.Fatalf("status %d, want 400 with the form and %q named:\n%s", r.StatusCode, tc.field, body)
			}
			if strings.Contains(body, `<a href="/">Back</a>`) {
				t.Error("the error sends the agent back to the employee dashboard")
			}
			// The switch on a failed POST leads to a GET page, not a 405.
			if sw := helen.get(langHref(t, r.Body, "ko")); sw.StatusCode != http.StatusOK {
				t.Errorf("language switch after a failed POST: %d", sw.StatusCode)
			}
			helen.get("/helpdesk?lang=en")
		})
	}
	if slices.Contains(crl(t, v), s1) {
		t.Fatal("revoked despite missing input")
	}
	if r := helen.post(confirmURL, url.Values{"reason": {"lost"}, "ticket": {"INC-7"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("confirmed revoke: %d\n%s", r.StatusCode, r.Body)
	}
	if !slices.Contains(crl(t, v), s1) {
		t.Fatal("confirmed revoke is not in the CRL")
	}
}

// TestHelpdeskReenrol: the second helpdesk action says what it does — it
// revokes (as superseded) so the user enrols again — asks only for a
// ticket, and tells the agent what the user must do next.
func TestHelpdeskReenrol(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	s1 := alice.issue("modern")
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))

	form := helen.get("/helpdesk/certificates/" + s1 + "/reissue")
	body := string(form.Body)
	if form.StatusCode != http.StatusOK || !strings.Contains(body, "Revoke so the user enrols again") || strings.Contains(body, `name="reason"`) {
		t.Fatalf("re-enrol confirmation: %d\n%s", form.StatusCode, body)
	}
	// Without on-behalf issuance the user is the only way to a new one.
	if want := html.EscapeString(i18n.T(i18n.English, "helpdesk.reenrol_explain", "alice")); !strings.Contains(body, want) {
		t.Errorf("re-enrol page without on-behalf issuance lacks %q", want)
	}
	r := helen.post("/helpdesk/certificates/"+s1+"/reissue", url.Values{"ticket": {"INC-8"}})
	if r.StatusCode != http.StatusSeeOther {
		t.Fatalf("re-enrol: %d\n%s", r.StatusCode, r.Body)
	}
	page := string(helen.get(r.Header.Get("Location")).Body)
	if !strings.Contains(page, "Tell alice to log in to the portal and download a new certificate") {
		t.Fatalf("no next step for the agent:\n%s", page)
	}
	if !slices.Contains(crl(t, v), s1) {
		t.Fatal("not revoked")
	}
}

// TestHelpdeskSearchAndUsers: a user Vault does not know is said to be
// unknown (404), not shown as a user without certificates; search finds
// users by name prefix, by email and by serial.
func TestHelpdeskSearchAndUsers(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	s1 := alice.issue("modern")
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))

	r := helen.get("/helpdesk/users/nosuchuser")
	if r.StatusCode != http.StatusNotFound || !strings.Contains(string(r.Body), "Vault has no such user.") {
		t.Errorf("unknown user: %d\n%s", r.StatusCode, r.Body)
	}
	if r := helen.get("/helpdesk/users/bob"); r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), "No certificates yet.") {
		t.Errorf("known user without certificates: %d", r.StatusCode)
	}
	upper := strings.ToUpper(s1)
	bare := strings.ReplaceAll(upper, ":", "") // nginx's $ssl_client_serial
	dashed := strings.ReplaceAll(s1, ":", "-") // as some tools print it
	for _, q := range []string{"ali", "alice@example.com", "ALICE@EXAMPLE.COM", s1, upper, bare, dashed} {
		t.Run(q, func(t *testing.T) {
			r := helen.get("/helpdesk?q=" + url.QueryEscape(q))
			if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `href="/helpdesk/users/alice`) {
				t.Fatalf("search %q: %d\n%s", q, r.StatusCode, r.Body)
			}
			if len(q) > 20 && !strings.Contains(string(r.Body), `href="/helpdesk/users/alice#cert-`) {
				t.Errorf("a serial search does not point at the certificate")
			}
			// The language switch keeps the search.
			if href := langHref(t, r.Body, "ko"); !strings.Contains(href, "q="+url.QueryEscape(q)) {
				t.Errorf("language switch drops the search: %q", href)
			}
		})
	}
	if r := helen.get("/helpdesk?q=" + url.QueryEscape("bob@elsewhere.org")); strings.Contains(string(r.Body), `href="/helpdesk/users/bob"`) {
		t.Error("an email of another domain finds the user")
	}
}

// TestStaffLanding: after login each role lands on its own page; someone
// with both staff roles lands on the helpdesk.
func TestStaffLanding(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	v.CreateUser(t, "hana", "hana-password-1", nil, "certportal-helpdesk", "certportal-auditor")
	p := startPortal(t, v, nil)
	for _, tc := range []struct{ user, password, want string }{
		{"alice", v.Password(t, "alice"), "/"},
		{"helen", v.Password(t, "helen"), "/helpdesk"},
		{"audrey", v.Password(t, "audrey"), "/audit"},
		{"hana", "hana-password-1", "/helpdesk"},
	} {
		t.Run(tc.user, func(t *testing.T) {
			b := newBrowser(t, p.URL)
			r := b.post("/login", url.Values{"username": {tc.user}, "password": {tc.password}})
			if r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != tc.want {
				t.Fatalf("login: %d to %q, want %q", r.StatusCode, r.Header.Get("Location"), tc.want)
			}
			if r := b.get("/login"); r.Header.Get("Location") != tc.want {
				t.Errorf("GET /login when signed in: to %q, want %q", r.Header.Get("Location"), tc.want)
			}
		})
	}
}

// TestErrorPagesAndRedirects: 404, 405 and 403 pages keep the signed-in
// header; trailing-slash forms redirect to the canonical path (never off the
// site); GET /logout offers a logout button.
func TestErrorPagesAndRedirects(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	for _, tc := range []struct {
		name, method, path string
		status             int
		heading            string // what happened, not "Something went wrong" for all
	}{
		{"404", "GET", "/no-such-page", http.StatusNotFound, "<h1>Page not found</h1>"},
		{"405", "POST", "/helpdesk", http.StatusMethodNotAllowed, "<h1>Something went wrong</h1>"},
		{"403", "GET", "/audit", http.StatusForbidden, "<h1>Not allowed</h1>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *response
			if tc.method == "GET" {
				r = helen.get(tc.path)
			} else {
				r = helen.post(tc.path, url.Values{})
			}
			if r.StatusCode != tc.status || !strings.Contains(string(r.Body), "Signed in as helen") || !strings.Contains(string(r.Body), `id="nav-helpdesk"`) {
				t.Fatalf("status %d, want %d with the signed-in header:\n%s", r.StatusCode, tc.status, r.Body)
			}
			if !strings.Contains(string(r.Body), tc.heading) || !strings.Contains(string(r.Body), `id="back">Go to the start page<`) {
				t.Errorf("%s page: want %s and a link to the start page:\n%s", tc.name, tc.heading, r.Body)
			}
			if sw := helen.get(langHref(t, r.Body, "ko")); sw.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("language switch on the %s page: 405", tc.name)
			}
			helen.get("/helpdesk?lang=en")
		})
	}
	for _, tc := range []struct{ path, want string }{
		{"/helpdesk/", "/helpdesk"},
		{"/audit/", "/audit"},
		{"/helpdesk/users/alice/", "/helpdesk/users/alice"},
		{"/audit/?actor=alice", "/audit?actor=alice"},
		{"/login/", "/login"},
	} {
		r := helen.get(tc.path)
		if (r.StatusCode != http.StatusMovedPermanently && r.StatusCode != http.StatusPermanentRedirect) || r.Header.Get("Location") != tc.want {
			t.Errorf("GET %s: %d to %q, want a permanent redirect to %q", tc.path, r.StatusCode, r.Header.Get("Location"), tc.want)
		}
	}
	for _, path := range []string{"//evil.example/", "/%2F%2Fevil.example/", "/no-such-page/"} {
		if r := helen.get(path); r.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d to %q, want 404", path, r.StatusCode, r.Header.Get("Location"))
		}
	}
	r := helen.get("/logout")
	if r.StatusCode != http.StatusOK || !strings.Contains(string(r.Body), `id="logout-form"`) {
		t.Fatalf("GET /logout: %d\n%s", r.StatusCode, r.Body)
	}
	if r := helen.post("/logout", url.Values{}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("POST /logout: %d", r.StatusCode)
	}
	// The login page tells someone who cannot log in where to turn: the
	// portal resets no password.
	if r := helen.get("/login"); !strings.Contains(string(r.Body), `id="login-help"`) {
		t.Errorf("login page without help for a forgotten password:\n%s", r.Body)
	}
}

// TestStaffReachOwnCertificates: helpdesk staff and auditors who are
// employees too start on their own section, and the header links them to
// their own certificates ("My certificates", marked current on the
// dashboard); an employee, whose start page that is, gets no such link.
func TestStaffReachOwnCertificates(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	for _, tc := range []struct{ user, home string }{{"helen", "/helpdesk"}, {"audrey", "/audit"}} {
		b := newBrowser(t, p.URL)
		b.mustLogin(tc.user, v.Password(t, tc.user))
		home := string(b.get(tc.home).Body)
		if !strings.Contains(home, `<a href="/" id="nav-mine">My certificates</a>`) {
			t.Errorf("%s's %s: no header link to their own certificates", tc.user, tc.home)
		}
		dash := b.get("/?lang=ko")
		if dash.StatusCode != http.StatusOK || !strings.Contains(string(dash.Body), `id="nav-mine" aria-current="page">내 인증서</a>`) || !strings.Contains(string(dash.Body), `id="issue-form"`) {
			t.Errorf("%s's dashboard: %d, want the form and the current, translated link", tc.user, dash.StatusCode)
		}
	}
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	if strings.Contains(string(alice.get("/").Body), `id="nav-mine"`) {
		t.Error("an employee's own start page links to itself in the header")
	}
}
