package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/certportal/certportal/internal/i18n"
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
			assertEventWordsWhole(t, ctx, "audit", lang)
			assertChartScaleInView(t, ctx, lang)
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
			assertEventWordsWhole(t, ctx, "audit-older", lang)
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
			// No reconciliation has run here: the page says so, without result tables.
			visitAndCheck(t, ctx, p.URL, "/audit/reconcile", `#reconcile-last`, "reconcile", lang)
			visitAndCheck(t, ctx, p.URL, "/helpdesk", `#error-message`, "error-403", lang)
		})
	}
}

// eventWordsBrokenJS lists the event table's short one-word cells (number,
// actor, subject) that the table broke over two lines or more.
const eventWordsBrokenJS = `(() => {
  const out = [];
  for (const td of document.querySelectorAll('#events tbody td:nth-child(1), #events tbody td:nth-child(3), #events tbody td:nth-child(4)')) {
    const text = td.textContent.trim();
    if (!text || /\s/.test(text) || text.length > 24) continue;
    const range = document.createRange();
    range.selectNodeContents(td);
    const tops = new Set([...range.getClientRects()].filter(r => r.width > 0).map(r => Math.round(r.top)));
    if (tops.size > 1) out.push(text);
  }
  return out;
})()`

// assertEventWordsWhole fails when the event table, at the width the browser
// has now (a desktop window, after checkAtWidths), breaks a number or a
// username inside itself ("5" / "8", "audr" / "ey") to give another column
// room.
func assertEventWordsWhole(t *testing.T, ctx context.Context, name, lang string) {
	t.Helper()
	var broken []string
	if err := chromedp.Run(ctx, chromedp.Evaluate(eventWordsBrokenJS, &broken)); err != nil {
		t.Fatalf("%s [%s]: measure event cells: %v", name, lang, err)
	}
	if len(broken) > 0 {
		t.Errorf("%s [%s]: event table breaks these inside a word: %v", name, lang, broken)
	}
}

// chartScaleJS finds the element whose text is the chart's "highest" line
// (the pattern %s, SVG text included) and says why it cannot be read at the
// width given (%d): missing, not shown, past the window's edges, or covered
// (clipped by the chart's scroll box). "" when it reads. It checks twice:
// as the page opens (the chart box scrolled to today's end) and with the
// box scrolled to its other end.
const chartScaleJS = `(() => {
  const re = new RegExp(%q), w = %d;
  const el = [...document.querySelectorAll('main *')].find(e => re.test(e.textContent.trim()) && e.children.length === 0);
  if (!el) return 'no element reads ' + re;
  const box = el.closest('figure') && el.closest('figure').querySelector('.chart-box, .chart');
  const check = when => {
    // Down to it, never sideways (scrollIntoView would scroll the
    // chart's own box too).
    window.scrollTo(0, el.getBoundingClientRect().top + window.scrollY - 200);
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) return when + ': not shown';
    if (r.left < 0 || r.right > w) return when + ': at ' + Math.round(r.left) + '..' + Math.round(r.right) + ' px of a ' + w + ' px window';
    const hit = document.elementFromPoint((r.left + r.right) / 2, (r.top + r.bottom) / 2);
    if (!hit || !(hit === el || el.contains(hit))) return when + ': covered by ' + (hit ? hit.tagName : 'nothing');
    const size = parseFloat(getComputedStyle(el).fontSize) * (el instanceof SVGElement ? r.height / el.getBBox().height : 1);
    if (size < 11) return when + ': ' + size.toFixed(1) + ' px text';
    return '';
  };
  const first = check('as opened');
  if (first || !box) return first;
  box.scrollLeft = -box.scrollWidth; // rtl: to the first day's end
  const second = check('scrolled to the first day');
  box.scrollLeft = 0;
  return second;
})()`

// assertChartScaleInView: on a phone (390 px) the audit chart's "highest"
// line reads without scrolling sideways, whichever end of the chart the
// reader scrolled to; the chart is screenshotted at both ends.
func assertChartScaleInView(t *testing.T, ctx context.Context, lang string) {
	t.Helper()
	const width = 390
	if err := chromedp.Run(ctx, setViewport(width)); err != nil {
		t.Fatal(err)
	}
	const n = 987654
	pattern := "^" + strings.ReplaceAll(regexp.QuoteMeta(i18n.T(i18n.Lang(lang), "audit.chart_max", n)), strconv.Itoa(n), `\d+`) + "$"
	var why string
	if err := chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(chartScaleJS, pattern, width), &why)); err != nil {
		t.Fatalf("chart scale: %v", err)
	}
	if why != "" {
		t.Errorf("audit chart [%s, %d px]: the \"highest\" line does not read: %s", lang, width, why)
	}
	var shot []byte
	if err := chromedp.Run(ctx, chromedp.Screenshot(`figure.chart`, &shot, chromedp.ByQuery)); err != nil {
		t.Errorf("chart screenshot: %v", err)
		return
	}
	dir := screenshotDir()
	if err := os.MkdirAll(dir, 0o755); err == nil {
		_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("audit-chart-%s-%d.png", lang, width)), shot, 0o644)
	}
}
