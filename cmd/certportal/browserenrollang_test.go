package main

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/certportal/certportal/internal/testenv"
)

// TestBrowserMFAEnrolLanguageSwitch: an employee who opens their enrolment
// link in English and switches to Korean can still enrol, with the page
// script (it took the token out of the fragment and the address bar) and
// without it (the token pasted into the form's field). The token never
// appears in a URL the browser requests, nor in the portal's log; the
// switch neither spends the link nor echoes a password typed before it.
// Before, the switch was a link to /enrol?lang=ko, which lost the token: the
// Korean page asked for a code the user no longer had in the address bar.
func TestBrowserMFAEnrolLanguageSwitch(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	method := enableMFA(t, v)
	helenSecret := adminEnrol(t, v, "helen", method)
	p := startPortal(t, v, nil)
	helen := newBrowser(t, p.URL)
	helen.passwordStep("helen", v.Password(t, "helen"))
	clock := &totpClock{}
	mustLanded(t, helen.codeStep(clock.next(t, helenSecret)), "helen's login")

	for _, tc := range []struct {
		name, user string
		script     bool
	}{{"script", "alice", true}, {"no script", "bob", false}} {
		t.Run(tc.name, func(t *testing.T) {
			link := makeEnrolLink(t, helen, tc.user, false)
			tok := enrolToken(link)
			password := v.Password(t, tc.user)
			ctx := newChromeWithin(t, 3*time.Minute)
			var mu sync.Mutex
			var requested []string
			var refused []string // what the page's CSP blocked
			chromedp.ListenTarget(ctx, func(ev any) {
				mu.Lock()
				defer mu.Unlock()
				switch e := ev.(type) {
				case *network.EventRequestWillBeSent:
					requested = append(requested, e.Request.URL)
				case *cdplog.EventEntryAdded:
					if strings.Contains(e.Entry.Text, "Content Security Policy") {
						refused = append(refused, e.Entry.URL+": "+e.Entry.Text)
					}
				}
			})
			setup := []chromedp.Action{network.Enable(), cdplog.Enable()}
			if !tc.script {
				setup = append(setup, emulation.SetScriptExecutionDisabled(true))
			}
			setup = append(setup,
				chromedp.Navigate(p.URL+"/login?lang=en"),
				chromedp.WaitVisible(`#username`, chromedp.ByID),
				chromedp.Navigate(p.URL+link),
				chromedp.WaitVisible(`#enrol-submit`, chromedp.ByID))
			if err := chromedp.Run(ctx, setup...); err != nil {
				t.Fatalf("open the link: %v", err)
			}
			if !tc.script {
				// Without script the fragment stays in the address bar and
				// the user pastes it into the field, as the hint says.
				if err := chromedp.Run(ctx, chromedp.SendKeys(`#enrol-token`, tok, chromedp.ByID)); err != nil {
					t.Fatalf("paste the code from the link: %v", err)
				}
			}
			// The user starts filling in the form, then switches language.
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#username`, tc.user, chromedp.ByID),
				chromedp.SendKeys(`#password`, password, chromedp.ByID),
				chromedp.Click(`header .langs [lang="ko"]`, chromedp.ByQuery),
				chromedp.WaitReady(`html[lang="ko"]`, chromedp.ByQuery),
				chromedp.WaitVisible(`#enrol-submit`, chromedp.ByID),
			); err != nil {
				t.Fatalf("switch to Korean: %v", err)
			}
			var state struct {
				Token, Username, Password string
				CodeShown                 bool
			}
			if err := chromedp.Run(ctx, chromedp.Evaluate(`(function () {
				var f = document.querySelector('form[action="/enrol"]');
				var code = document.getElementById('enrol-token');
				return {Token: f.elements.token ? f.elements.token.value : '',
					Username: f.elements.username.value, Password: f.elements.password.value,
					CodeShown: !!code && code.offsetParent !== null};
			})()`, &state)); err != nil {
				t.Fatal(err)
			}
			if state.Token != tok || state.CodeShown {
				t.Fatalf("after the language switch the form holds token %q (want the link's), asks for the code: %v", state.Token, state.CodeShown)
			}
			if state.Username != tc.user || state.Password != "" {
				t.Errorf("after the language switch: username %q (want %q kept), password echoed: %v", state.Username, tc.user, state.Password != "")
			}
			if tc.script {
				// The walk's checks wait for animation frames, which
				// never come without script.
				checkAtWidths(t, ctx, "mfa-enrol-relang", "ko")
			}

			// The switch spent nothing: the Korean page enrols.
			var secret string
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#password`, password, chromedp.ByID),
				chromedp.Click(`#enrol-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#totp-secret`, chromedp.ByID),
				chromedp.Text(`#totp-secret`, &secret, chromedp.ByID),
			); err != nil {
				t.Fatalf("enrol after the language switch: %v\n%s", err, p.Logs.String())
			}
			secret = strings.ReplaceAll(strings.TrimSpace(secret), " ", "")
			var lang string
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#code`, clock.next(t, secret), chromedp.ByID),
				chromedp.Click(`#mfa-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#issue-form`, chromedp.ByID),
				chromedp.AttributeValue(`html`, "lang", &lang, nil, chromedp.ByQuery),
			); err != nil {
				t.Fatalf("confirm the enrolment: %v", err)
			}
			if lang != "ko" {
				t.Errorf("dashboard after enrolling in Korean is in %q", lang)
			}
			mu.Lock()
			defer mu.Unlock()
			// The scan page loads the page script as the others do.
			for _, x := range refused {
				t.Errorf("the browser refused by CSP: %s", x)
			}
			for _, u := range requested {
				if strings.Contains(u, tok) {
					t.Errorf("the browser requested a URL with the token in it: %s", u)
				}
			}
			if strings.Contains(p.Logs.String(), tok) {
				t.Error("the portal's log holds the enrolment token")
			}
		})
	}
}
