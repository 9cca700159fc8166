package main

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	pkcs12 "software.sslmate.com/src/go-pkcs12"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// TestBrowserOnBehalf: helpdesk staff issue a certificate on a user's
// behalf in Chromium with the page script, in English and Korean. The
// .p12 is saved, and the user's page then names the new certificate in a
// notice (it used to come back unchanged: no word that anything was
// issued), lists it, and has an empty form. Screenshots at 390 and 1280 px.
func TestBrowserOnBehalf(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	setupVault(t, v, "--helpdesk-issue-on-behalf")
	p := startPortal(t, v, map[string]string{"CERTPORTAL_HELPDESK_ISSUE_ON_BEHALF": "true", "CERTPORTAL_MAX_ACTIVE": "10"})
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			ctx := newChromeWithin(t, 3*time.Minute)
			dir := t.TempDir()
			done := downloadsTo(t, ctx, dir)
			browserLogin(t, ctx, p.URL, lang, "helen", v.Password(t, "helen"))
			if err := chromedp.Run(ctx, chromedp.Navigate(p.URL+"/helpdesk/users/bob"),
				chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
				chromedp.SendKeys(`#ticket`, "INC-9", chromedp.ByID)); err != nil {
				t.Fatal(err)
			}
			data := browserDownload(t, ctx, dir, done)
			_, cert, _, err := pkcs12.DecodeChain(data, p12Password)
			if err != nil || cert.Subject.CommonName != "bob@example.com" {
				t.Fatalf("saved file: %v", err)
			}
			serial := vault.FormatSerial(cert.SerialNumber.Bytes())
			var notice, ticket string
			if err := chromedp.Run(ctx,
				chromedp.WaitVisible(`#notice`, chromedp.ByID),
				chromedp.Text(`#notice`, &notice, chromedp.ByID),
				chromedp.WaitVisible(`#cert-`+strings.ReplaceAll(serial, ":", `\:`), chromedp.ByQuery),
				chromedp.Value(`#ticket`, &ticket, chromedp.ByID)); err != nil {
				t.Fatalf("bob's page after the download: %v", err)
			}
			if !strings.Contains(notice, serial) || !strings.Contains(notice, "bob") || strings.Contains(notice, "%") {
				t.Errorf("notice %q does not name %s and bob", notice, serial)
			}
			if ticket != "" {
				t.Errorf("the form still holds the ticket %q", ticket)
			}
			waitForQuery(t, ctx, "notice=onbehalf&serial=")
			checkAtWidths(t, ctx, "helpdesk-onbehalf-issued", lang)
		})
	}
}
