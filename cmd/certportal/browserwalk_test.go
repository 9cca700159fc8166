package main

// Shared helpers for the browser walks (employee, helpdesk, auditor): each
// page of a walk is checked at a phone and a desktop width, in English and
// Korean, for horizontal overflow and for English left on a Korean page, and
// screenshotted for a reviewer.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/certportal/certportal/internal/i18n"
)

// walkWidths are the viewport widths every walk checks: a common phone
// (390 px CSS width) and a laptop window.
var walkWidths = []int{390, 1280}

// emulatedWidths remembers the width setViewport gave each browser tab:
// a phone-emulating Chromium zooms out to show a page wider than the screen,
// and then window.innerWidth grows with the page, so the check must compare
// against the width that was asked for.
var emulatedWidths sync.Map // *chromedp.Context → int

// setViewport emulates a device of the given CSS width; below 600 px it is a
// phone (mobile viewport rules, touch-sized layout).
func setViewport(width int) chromedp.Action {
	height := int64(900)
	if width < 600 {
		height = 844
	}
	return chromedp.ActionFunc(func(ctx context.Context) error {
		if err := emulation.SetDeviceMetricsOverride(int64(width), height, 1, width < 600).Do(ctx); err != nil {
			return err
		}
		emulatedWidths.Store(chromedp.FromContext(ctx), width)
		// The new size reaches the page's layout asynchronously: measuring at
		// once can see the old width. Two animation frames (or half a
		// second, if frames do not come) let it settle.
		var done bool
		return chromedp.Evaluate(settleJS, &done, func(p *cdpruntime.EvaluateParams) *cdpruntime.EvaluateParams {
			return p.WithAwaitPromise(true)
		}).Do(ctx)
	})
}

const settleJS = `new Promise(resolve => {
  setTimeout(() => resolve(true), 500);
  requestAnimationFrame(() => requestAnimationFrame(() => resolve(true)));
})`

// browserLogin logs user in through the login form, in lang (which the
// portal then remembers in its cookie), and waits for the landing page.
func browserLogin(t *testing.T, ctx context.Context, base, lang, user, password string) {
	t.Helper()
	err := chromedp.Run(ctx,
		chromedp.Navigate(base+"/login?lang="+lang),
		chromedp.WaitVisible(`#username`, chromedp.ByID),
		chromedp.SendKeys(`#username`, user, chromedp.ByID),
		chromedp.SendKeys(`#password`, password, chromedp.ByID),
		chromedp.Click(`#login-submit`, chromedp.ByID),
		chromedp.WaitNotPresent(`#login-submit`, chromedp.ByID),
	)
	if err != nil {
		t.Fatalf("browser login %s: %v", user, err)
	}
}

// screenshotDir is where walks write their screenshots: never committed,
// $CERTPORTAL_SCREENSHOTS or /tmp/certportal-screenshots.
func screenshotDir() string {
	if d := os.Getenv("CERTPORTAL_SCREENSHOTS"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "certportal-screenshots")
}

// checkPage checks the page the browser shows now, at the width it was set
// to: not wider than the viewport, no English words on a Korean page, and a
// full-page screenshot named <name>-<lang>-<width>.png. allow lists words
// that are data on this page (names the user typed, for instance) rather
// than catalog text.
func checkPage(t *testing.T, ctx context.Context, name, lang string, width int, allow ...string) {
	t.Helper()
	label := fmt.Sprintf("%s [%s, %d px]", name, lang, width)
	assertFitsViewport(t, ctx, label)
	if width >= 1280 {
		var broken []string
		if err := chromedp.Run(ctx, chromedp.Evaluate(overLinesJS, &broken)); err != nil {
			t.Fatalf("%s: measure lines: %v", label, err)
		}
		if len(broken) > 0 {
			t.Errorf("%s: broken over lines: %q", label, broken)
		}
	}
	if lang == string(i18n.Korean) {
		assertNoEnglish(t, ctx, label, allow...)
	}
	saveScreenshot(t, ctx, fmt.Sprintf("%s-%s-%d", name, lang, width))
}

// assertFitsViewport fails when the page scrolls sideways: the document is
// wider than the window (the emulated screen's width, when setViewport set
// one).
func assertFitsViewport(t *testing.T, ctx context.Context, label string) {
	t.Helper()
	var dims []int
	if err := chromedp.Run(ctx, chromedp.Evaluate(`[document.documentElement.scrollWidth, window.innerWidth]`, &dims)); err != nil {
		t.Fatalf("%s: measure width: %v", label, err)
	}
	if len(dims) != 2 {
		t.Fatalf("%s: measure width: %v", label, dims)
	}
	window := dims[1]
	if w, ok := emulatedWidths.Load(chromedp.FromContext(ctx)); ok && w.(int) < window {
		window = w.(int)
	}
	if dims[0] > window {
		var wide []string
		_ = chromedp.Run(ctx, chromedp.Evaluate(strings.ReplaceAll(widestElementsJS, "window.innerWidth", strconv.Itoa(window)), &wide))
		t.Errorf("%s: page is %d px wide in a %d px window; elements past the edge: %v", label, dims[0], window, wide)
	}
}

// widestElementsJS names the elements that stick out of the window, to make
// an overflow failure actionable.
const widestElementsJS = `(() => {
  const w = window.innerWidth, out = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    if (r.right > w + 1) {
      out.push(el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + (el.className && typeof el.className === 'string' ? '.' + el.className.split(' ').join('.') : '') + ' (' + Math.round(r.right) + ')');
    }
    if (out.length >= 8) break;
  }
  return out;
})()`

// visibleTextJS collects the text a user reads: visible text nodes,
// placeholders, labels of controls, option texts and the title. It leaves
// out what is data rather than interface — anything inside translate="no"
// or <code> (usernames, serials, subjects) — and text in another language on
// purpose (the language switch's "English" link carries lang="en").
const visibleTextJS = `(() => {
  const pageLang = document.documentElement.lang;
  const skip = el => {
    if (el.closest('[translate="no"], code, script, style, noscript')) return true;
    const l = el.closest('[lang]');
    return l && l !== document.documentElement && l.lang !== pageLang;
  };
  const out = [document.title];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!el || skip(el)) continue;
    if (el.tagName !== 'OPTION' && el.checkVisibility && !el.checkVisibility()) continue;
    out.push(n.textContent);
  }
  for (const el of document.querySelectorAll('[placeholder], [aria-label], input[type=submit][value]')) {
    if (skip(el)) continue;
    for (const a of ['placeholder', 'aria-label', 'value']) {
      if (el.hasAttribute(a) && (a !== 'value' || el.type === 'submit')) out.push(el.getAttribute(a));
    }
  }
  return out.join('\n');
})()`

var (
	englishOnce  sync.Once
	englishWords map[string]bool
	wordPattern  = regexp.MustCompile(`[A-Za-z]{3,}`)
)

// catalogEnglishWords is every word (three letters or more) of the English
// catalog, minus words the Korean catalog uses too: product names such as
// Vault, macOS or PEM are the same in both languages.
func catalogEnglishWords() map[string]bool {
	englishOnce.Do(func() {
		korean := map[string]bool{}
		for _, k := range i18n.Keys() {
			for _, w := range wordPattern.FindAllString(i18n.T(i18n.Korean, k), -1) {
				korean[strings.ToLower(w)] = true
			}
		}
		englishWords = map[string]bool{}
		for _, k := range i18n.Keys() {
			for _, w := range wordPattern.FindAllString(i18n.T(i18n.English, k), -1) {
				if lw := strings.ToLower(w); !korean[lw] {
					englishWords[lw] = true
				}
			}
		}
	})
	return englishWords
}

// englishLeft returns the English catalog words found in the page's visible
// text, sorted, without those in allow.
func englishLeft(t *testing.T, ctx context.Context, allow ...string) ([]string, string) {
	t.Helper()
	var text string
	if err := chromedp.Run(ctx, chromedp.Evaluate(visibleTextJS, &text)); err != nil {
		t.Fatalf("collect visible text: %v", err)
	}
	allowed := map[string]bool{}
	for _, a := range allow {
		for _, w := range wordPattern.FindAllString(a, -1) {
			allowed[strings.ToLower(w)] = true
		}
	}
	words := catalogEnglishWords()
	found := map[string]bool{}
	for _, w := range wordPattern.FindAllString(text, -1) {
		if lw := strings.ToLower(w); words[lw] && !allowed[lw] {
			found[lw] = true
		}
	}
	out := make([]string, 0, len(found))
	for w := range found {
		out = append(out, w)
	}
	sort.Strings(out)
	return out, text
}

// assertNoEnglish fails when a Korean page shows words from the English
// side of the catalog.
func assertNoEnglish(t *testing.T, ctx context.Context, label string, allow ...string) {
	t.Helper()
	if left, text := englishLeft(t, ctx, allow...); len(left) > 0 {
		t.Errorf("%s: English words on a Korean page: %v\npage text:\n%s", label, left, text)
	}
}

// saveScreenshot writes a full-page PNG to screenshotDir.
func saveScreenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	var buf []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&buf, 100)); err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	dir := screenshotDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("screenshot dir: %v", err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Errorf("write screenshot: %v", err)
	}
}

// visitAndCheck navigates to path and runs checkPage at every walk width,
// in lang. wait is a selector that must be visible before checking.
func visitAndCheck(t *testing.T, ctx context.Context, base, path, wait, name, lang string, allow ...string) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.Navigate(base+path), chromedp.WaitVisible(wait, chromedp.ByQuery)); err != nil {
		t.Fatalf("%s: open %s: %v", name, path, err)
	}
	checkAtWidths(t, ctx, name, lang, allow...)
}

// checkAtWidths runs checkPage on the page shown now at every walk width,
// leaving the browser at the last one.
func checkAtWidths(t *testing.T, ctx context.Context, name, lang string, allow ...string) {
	t.Helper()
	for _, w := range walkWidths {
		if err := chromedp.Run(ctx, setViewport(w)); err != nil {
			t.Fatalf("viewport %d: %v", w, err)
		}
		checkPage(t, ctx, name, lang, w, allow...)
	}
}
