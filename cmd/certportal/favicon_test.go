package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/testenv"
)

// TestFavicon: every page links its icon, and a browser's own request for
// /favicon.ico (made whatever the page links) gets the same icon, not a
// 404 in the log. Both answer with the headers the stylesheet gets: the
// same Content-Security-Policy, nosniff, the same caching.
func TestFavicon(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	p := startPortal(t, v, nil)
	b := newBrowser(t, p.URL)
	const link = `<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">`
	for _, path := range []string{"/login", "/no-such-page"} {
		if r := b.get(path); !strings.Contains(string(r.Body), link) {
			t.Errorf("GET %s: %d, no %s in the page", path, r.StatusCode, link)
		}
	}
	css := b.get("/static/style.css")
	icon := b.get("/static/favicon.svg")
	for _, path := range []string{"/static/favicon.svg", "/favicon.ico"} {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			req, _ := http.NewRequest(method, p.URL+path, nil)
			r := b.do(req)
			if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "image/svg+xml" {
				t.Errorf("%s %s: %d %q, want 200 image/svg+xml", method, path, r.StatusCode, r.Header.Get("Content-Type"))
				continue
			}
			if method == http.MethodGet && (string(r.Body) != string(icon.Body) || !strings.Contains(string(r.Body), "<svg")) {
				t.Errorf("GET %s: %d bytes, not the icon (%d bytes)", path, len(r.Body), len(icon.Body))
			}
			for _, h := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Cache-Control", "Referrer-Policy"} {
				if got, want := r.Header.Get(h), css.Header.Get(h); got != want {
					t.Errorf("%s %s: %s %q, the stylesheet has %q", method, path, h, got, want)
				}
			}
		}
	}
	// The log line of every one of those requests says 200.
	seen := 0
	for _, line := range strings.Split(p.Logs.String(), "\n") {
		if !strings.Contains(line, "msg=http") || !strings.Contains(line, "favicon") {
			continue
		}
		seen++
		if !strings.Contains(line, "status=200") {
			t.Errorf("favicon request logged as: %s", line)
		}
	}
	if seen != 5 {
		t.Errorf("%d favicon requests logged, want 5", seen)
	}
}
