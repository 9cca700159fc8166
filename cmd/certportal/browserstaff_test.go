package main

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/certportal/certportal/internal/testenv"
)

// currentPath is the path (and query) the browser shows.
func currentPath(t *testing.T, ctx context.Context) string {
	t.Helper()
	var loc string
	if err := chromedp.Run(ctx, chromedp.Location(&loc)); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	return u.RequestURI()
}

// waitForQuery waits (30 s at most) until the browser's address contains
// part: a click or submit may leave the old page visible for a moment. It
// reads the address every 50 ms; a read that races the navigation is retried.
func waitForQuery(t *testing.T, ctx context.Context, part string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	loc := ""
	for time.Now().Before(deadline) {
		if err := chromedp.Run(ctx, chromedp.Location(&loc)); err == nil && strings.Contains(loc, part) {
			return
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("address never contained %q: %v", part, ctx.Err())
		}
	}
	t.Fatalf("address never contained %q (now %q)", part, loc)
}

// clickAndWait clicks sel and waits until wait is visible on the next page,
// for at most 30 seconds (a missing element should fail the walk quickly).
func clickAndWait(t *testing.T, ctx context.Context, sel, wait string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Run(cctx, chromedp.Click(sel, chromedp.ByQuery), chromedp.WaitVisible(wait, chromedp.ByQuery)); err != nil {
		t.Fatalf("click %s, wait for %s: %v", sel, wait, err)
	}
}

// TestBrowserHelpdeskWalk walks the helpdesk's journey in Chromium, in
// English and Korean, at 390 and 1280 px: land on the helpdesk after login,
// search, open a user, revoke through the confirmation page, revoke so the
// user enrols again, and the error and logout pages. No page is wider than
// its window, no English is left on the Korean pages, and every page is
// screenshotted (screenshotDir).
func TestBrowserHelpdeskWalk(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			s1, s2 := alice.issue("modern"), alice.issue("compat")
			ctx := newChromeWithin(t, 4*time.Minute)
			browserLogin(t, ctx, p.URL, lang, "helen", v.Password(t, "helen"))
			if got := currentPath(t, ctx); got != "/helpdesk" {
				t.Errorf("helpdesk staff landed on %q", got)
				_ = chromedp.Run(ctx, chromedp.Navigate(p.URL+"/helpdesk"))
			}
			checkAtWidths(t, ctx, "helpdesk-search", lang)

			if err := chromedp.Run(ctx, chromedp.SendKeys(`#q`, "ali", chromedp.ByID), chromedp.Submit(`#q`, chromedp.ByID),
				chromedp.WaitVisible(`#users`, chromedp.ByID)); err != nil {
				t.Fatalf("search: %v", err)
			}
			checkAtWidths(t, ctx, "helpdesk-results", lang)

			clickAndWait(t, ctx, `#users a[href="/helpdesk/users/alice"]`, `#certificates`)
			checkAtWidths(t, ctx, "helpdesk-user", lang)

			clickAndWait(t, ctx, `a[href="/helpdesk/certificates/`+s1+`/revoke"]`, `#hd-revoke-form`)
			checkAtWidths(t, ctx, "helpdesk-revoke-confirm", lang)
			if err := chromedp.Run(ctx,
				chromedp.SetValue(`#reason`, "lost", chromedp.ByID),
				chromedp.SendKeys(`#ticket`, "INC-100", chromedp.ByID),
				chromedp.Click(`#hd-revoke-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#notice`, chromedp.ByID)); err != nil {
				t.Fatalf("confirm revoke: %v", err)
			}
			checkAtWidths(t, ctx, "helpdesk-revoked", lang)

			clickAndWait(t, ctx, `a[href="/helpdesk/certificates/`+s2+`/reissue"]`, `#hd-reenrol-form`)
			checkAtWidths(t, ctx, "helpdesk-reenrol-confirm", lang)
			var notice string
			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#ticket`, "INC-101", chromedp.ByID),
				chromedp.Click(`#hd-reenrol-submit`, chromedp.ByID),
				chromedp.WaitVisible(`#notice`, chromedp.ByID),
				chromedp.Text(`#notice`, &notice, chromedp.ByID)); err != nil {
				t.Fatalf("re-enrol: %v", err)
			}
			if !strings.Contains(notice, "alice") {
				t.Errorf("re-enrol notice does not tell the agent what alice must do: %q", notice)
			}
			checkAtWidths(t, ctx, "helpdesk-reenrolled", lang)

			visitAndCheck(t, ctx, p.URL, "/helpdesk/users/nosuchuser", `#error-message`, "helpdesk-unknown-user", lang)
			visitAndCheck(t, ctx, p.URL, "/no-such-page", `#error-message`, "error-404", lang)
			visitAndCheck(t, ctx, p.URL, "/logout", `#logout-form`, "logout", lang)
		})
	}
}

// TestBrowserAuditorWalk walks the auditor's pages the same way: land on
// the audit trail, filter, page to older and back to newer events, the
// inventory report and a drill-down, reconciliation.
func TestBrowserAuditorWalk(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	alice := newBrowser(t, p.URL)
	alice.mustLogin("alice", v.Password(t, "alice"))
	alice.issue("modern")
	alice.issue("compat")
	audrey := newBrowser(t, p.URL)
	audrey.mustLogin("audrey", v.Password(t, "audrey"))
	for range 55 {
		// Each export is an audit.export event: more than a page. (Repeated
		// refusals would not do: they are counted into one event.)
		if r := audrey.get("/audit/export?format=jsonl&actor=nobody"); r.StatusCode != http.StatusOK {
			t.Fatalf("export: %d", r.StatusCode)
		}
	}
	for _, lang := range []string{"en", "ko"} {
		t.Run(lang, func(t *testing.T) {
			ctx := newChromeWithin(t, 4*time.Minute)
			browserLogin(t, ctx, p.URL, lang, "audrey", v.Password(t, "audrey"))
			if got := currentPath(t, ctx); got != "/audit" {
				t.Errorf("auditor landed on %q", got)
				_ = chromedp.Run(ctx, chromedp.Navigate(p.URL+"/audit"))
			}
			checkAtWidths(t, ctx, "audit", lang)
			// The page script shows times in the reader's zone, still to the second.
			var shown string
			if err := chromedp.Run(ctx, chromedp.Text(`#events time`, &shown, chromedp.ByQuery)); err != nil {
				t.Fatal(err)
			}
			if !regexp.MustCompile(`\d\d:\d\d:\d\d`).MatchString(shown) {
				t.Errorf("audit time shown without seconds: %q", shown)
			}

			clickAndWait(t, ctx, `a.older`, `a.newer`)
			waitForQuery(t, ctx, "before=")
			checkAtWidths(t, ctx, "audit-older", lang)
			clickAndWait(t, ctx, `a.newer`, `#events`)
			waitForQuery(t, ctx, "after=")

			if err := chromedp.Run(ctx,
				chromedp.SendKeys(`#audit-filter input[name="actor"]`, "alice", chromedp.ByQuery),
				chromedp.SetValue(`#audit-filter select[name="action"]`, "certificate.issue", chromedp.ByQuery),
				chromedp.Submit(`#audit-filter`, chromedp.ByQuery),
				chromedp.WaitVisible(`#events`, chromedp.ByID)); err != nil {
				t.Fatalf("filter: %v", err)
			}
			waitForQuery(t, ctx, "actor=alice")
			if err := chromedp.Run(ctx, chromedp.WaitVisible(`#events`, chromedp.ByID)); err != nil {
				t.Fatal(err)
			}
			checkAtWidths(t, ctx, "audit-filtered", lang)

			visitAndCheck(t, ctx, p.URL, "/audit?from=2026-12-02&to=2026-12-01", `#form-error`, "audit-bad-filter", lang)
			visitAndCheck(t, ctx, p.URL, "/audit/inventory", `#inventory-summary`, "inventory", lang)
			clickAndWait(t, ctx, `#count-active`, `#inventory-certs`)
			checkAtWidths(t, ctx, "inventory-active", lang)
			visitAndCheck(t, ctx, p.URL, "/audit/reconcile", `#vault-only`, "reconcile", lang)
			visitAndCheck(t, ctx, p.URL, "/helpdesk", `#error-message`, "error-403", lang)
		})
	}
}
