package main

import (
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/certportal/certportal/internal/testenv"
)

// TestBrowserSkipLink: on a page without an autofocused field (here the
// not-found page, which has the full header), the first Tab focuses the
// "skip to main content" link, which is then on screen (off screen until
// focused), and Enter moves the focus into <main>, past the header. In
// English and Korean, at phone and desktop width. (The login page puts the
// focus in the username field instead, so there the link is a Shift+Tab
// away.)
func TestBrowserSkipLink(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	ctx := newChrome(t)
	type state struct {
		Class, Text, Active, Hash string
		Left, Width               float64
	}
	read := func(s *state) chromedp.Action {
		return chromedp.Evaluate(`(() => { const a = document.activeElement; const r = a.getBoundingClientRect();
			return {Class: a.className, Text: a.textContent.trim(), Active: a.id, Hash: location.hash, Left: r.left, Width: r.width}; })()`, s)
	}
	want := map[string]string{"en": "Skip to main content", "ko": "본문으로 건너뛰기"}
	for _, lang := range []string{"en", "ko"} {
		for _, width := range []int64{390, 1280} {
			var focused, after state
			if err := chromedp.Run(ctx,
				chromedp.EmulateViewport(width, 900),
				chromedp.Navigate(p.URL+"/no-such-page?lang="+lang),
				chromedp.WaitVisible(`#main`, chromedp.ByQuery),
				chromedp.KeyEvent(kb.Tab),
				read(&focused),
				chromedp.KeyEvent(kb.Enter),
				read(&after),
			); err != nil {
				t.Fatalf("%s %d px: %v", lang, width, err)
			}
			if focused.Class != "skip" || focused.Text == "" {
				t.Errorf("%s %d px: first Tab focuses %+v, want the skip link", lang, width, focused)
			}
			if w := want[lang]; w != "" && focused.Text != w {
				t.Errorf("%s %d px: skip link says %q, want %q", lang, width, focused.Text, w)
			}
			if focused.Left < 0 || focused.Width <= 0 || focused.Left+focused.Width > float64(width) {
				t.Errorf("%s %d px: focused skip link at x=%.0f width %.0f: not on screen", lang, width, focused.Left, focused.Width)
			}
			if after.Active != "main" || after.Hash != "#main" {
				t.Errorf("%s %d px: after Enter the focus is on %+v, want <main id=main>", lang, width, after)
			}
		}
	}
	// Unfocused, it is off screen.
	var left float64
	if err := chromedp.Run(ctx, chromedp.Navigate(p.URL+"/no-such-page"), chromedp.WaitVisible(`#main`, chromedp.ByQuery),
		chromedp.Evaluate(`document.querySelector('a.skip').getBoundingClientRect().left`, &left)); err != nil {
		t.Fatal(err)
	}
	if left >= 0 {
		t.Errorf("unfocused skip link at x=%.0f: on screen", left)
	}
}
