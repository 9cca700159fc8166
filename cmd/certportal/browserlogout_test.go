package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/certportal/certportal/internal/testenv"
)

// p12Prefix starts the data: URL of the save link (internal/ui).
const p12Prefix = "data:application/x-pkcs12;base64,"

// TestSavePageGoneAfterLogout: the save page a browser without the page
// script gets holds the only copy of the .p12 in its save link. After the
// employee logs out, Back must not bring that page (and the file) back
// from the browser's back-forward cache or HTTP cache (the page is sent
// with no-store; made cacheable, this test fails).
func TestSavePageGoneAfterLogout(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, map[string]string{"CERTPORTAL_ACCOUNT_NAME": journeyAccount})
	tb := newTab(t, uaWindows, 1280, false, "logout")
	tb.login(p.URL, "alice", v.Password(t, "alice"))
	tb.issue("laptop")
	var html string
	tb.run(chromedp.WaitVisible(`#save-link`, chromedp.ByID), chromedp.OuterHTML("html", &html, chromedp.ByQuery))
	if !strings.Contains(html, p12Prefix) {
		t.Fatal("the save page carries no file: the check below would prove nothing")
	}
	tb.run(chromedp.Click(`header form[action="/logout"] button`, chromedp.ByQuery),
		chromedp.WaitVisible(`#username`, chromedp.ByID))
	// ERR_CACHE_MISS: Chromium has no copy left to show and would have to
	// post the form again (it asks first), which is what must happen.
	if err := chromedp.Run(tb.ctx, chromedp.NavigateBack()); err != nil && !strings.Contains(err.Error(), "ERR_CACHE_MISS") {
		t.Fatalf("Back: %v", err)
	}
	var url string
	tb.run(chromedp.Location(&url), chromedp.OuterHTML("html", &html, chromedp.ByQuery))
	if strings.Contains(html, p12Prefix) || strings.Contains(html, `id="save-link"`) {
		t.Errorf("Back after logout shows the save page again (%s), with the file in it", url)
	}
}
