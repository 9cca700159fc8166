package main

import (
	"html"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// TestNoticeLinks: a page shows a ?notice= only when it is one of that
// page's own, whole: a helpdesk notice on the dashboard or on the search
// page once read "Tell %s to log in", with nobody to fill it in. A name
// no page knows shows nothing, in either language.
func TestNoticeLinks(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true"})
	helen := newBrowser(t, p.URL)
	helen.mustLogin("helen", v.Password(t, "helen"))
	own := map[string][]string{
		"/":                   {"revoked"},
		"/helpdesk":           nil,
		"/helpdesk/users/bob": {"reissued", "hdrevoked", "onbehalf"},
	}
	for page, mine := range own {
		for _, notice := range []string{"revoked", "reissued", "hdrevoked", "onbehalf", "form_sent", "<b>x</b>"} {
			for _, lang := range []string{"en", "ko"} {
				sep := "?"
				if strings.Contains(page, "?") {
					sep = "&"
				}
				r := helen.get(page + sep + "notice=" + strings.ReplaceAll(notice, "<", "%3C") + "&serial=zz&lang=" + lang)
				shown := html.UnescapeString(extract(r.Body, `id="notice">`, "</p>"))
				want := false
				for _, m := range mine {
					want = want || m == notice
				}
				switch {
				case r.StatusCode != 200:
					t.Errorf("%s ?notice=%s (%s): %d", page, notice, lang, r.StatusCode)
				case !want && shown != "":
					t.Errorf("%s ?notice=%s (%s) shows %q, a notice not of this page", page, notice, lang, shown)
				case want && (shown == "" || strings.Contains(shown, "%")):
					t.Errorf("%s ?notice=%s (%s) shows %q, want its whole notice", page, notice, lang, shown)
				}
			}
		}
	}
}
