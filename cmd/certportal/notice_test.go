package main

import (
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// TestNoticeLinks: a page shows a ?notice= only when it is one of that
// page's own and it holds of the certificate the link names, as that
// page lists it. A link from anywhere can put on a page neither a notice
// with nobody to fill it in ("Tell %s to log in" on the dashboard) nor a
// false one: "was revoked" of a live certificate, "tell bob to download a
// new certificate" when nobody revoked his, "issued for bob" of a
// certificate bob issued himself, "revoked in Vault" of one Vault holds
// live. In both languages.
func TestNoticeLinks(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	setupVault(t, v, "--helpdesk-issue-on-behalf")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true", "CERTPORTAL_MAX_ACTIVE": "10"})
	bob, helen := newBrowser(t, p.URL), newBrowser(t, p.URL)
	bob.mustLogin("bob", v.Password(t, "bob"))
	helen.mustLogin("helen", v.Password(t, "helen"))

	live := bob.issueLabelled("live")
	lost := bob.issueLabelled("lost")
	if r := bob.post("/certificates/"+lost+"/revoke", url.Values{"reason": {"lost"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("bob revokes: %d", r.StatusCode)
	}
	superseded := bob.issueLabelled("superseded")
	if r := helen.post("/helpdesk/certificates/"+superseded+"/reissue", url.Values{"ticket": {"INC-8"}}); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("helpdesk reissue: %d\n%s", r.StatusCode, r.Body)
	}
	form := issueForm(p12Password, p12Password, "720h0m0s", "modern")
	form.Set("ticket", "INC-9")
	r := helen.post("/helpdesk/users/bob/certificates", form)
	onBehalf := r.Header.Get("X-Certificate-Serial")
	if r.StatusCode != http.StatusOK || onBehalf == "" {
		t.Fatalf("on-behalf issue: %d\n%s", r.StatusCode, r.Body)
	}
	aliceOwn := nginxCertsUserSerial(t, v, "alice") // alice's own token, straight to Vault
	aliceGone := nginxCertsUserSerial(t, v, "alice")
	if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": aliceGone}); err != nil {
		t.Fatal(err)
	}

	// Which serials each page's notice may be shown for; any other
	// serial, notice or page shows none.
	type want map[string][]string
	userSerials := []string{live, lost, superseded, onBehalf, "zz", ""}
	pages := []struct {
		who     *client
		path    func(serial string) string
		serials []string
		holds   want
	}{
		{bob, func(string) string { return "/" }, userSerials, want{"revoked": {lost, superseded}}},
		{helen, func(string) string { return "/helpdesk" }, userSerials, nil},
		{helen, func(string) string { return "/helpdesk/users/bob" }, userSerials, want{
			"hdrevoked": {lost, superseded},
			"reissued":  {superseded},
			"onbehalf":  {onBehalf},
		}},
		{helen, func(s string) string { return "/helpdesk/vault-certificates/" + s + "/revoke" }, []string{aliceOwn, aliceGone}, want{"revoked": {aliceGone}}},
	}
	for _, pg := range pages {
		for _, notice := range []string{"revoked", "reissued", "hdrevoked", "onbehalf", "form_sent", "<b>x</b>"} {
			for _, serial := range pg.serials {
				for _, lang := range []string{"en", "ko"} {
					path := pg.path(serial) + "?notice=" + url.QueryEscape(notice) + "&serial=" + url.QueryEscape(serial) + "&lang=" + lang
					r := pg.who.get(path)
					shown := html.UnescapeString(extract(r.Body, `id="notice">`, "</p>"))
					ok := slices.Contains(pg.holds[notice], serial)
					switch {
					case r.StatusCode != http.StatusOK:
						t.Errorf("%s: %d", path, r.StatusCode)
					case !ok && shown != "":
						t.Errorf("%s shows %q, a notice that does not hold", path, shown)
					case ok && (shown == "" || strings.Contains(shown, "%") || !strings.Contains(shown, serial[:8])):
						t.Errorf("%s shows %q, want its whole notice naming %s", path, shown, serial)
					}
				}
			}
		}
	}
}
