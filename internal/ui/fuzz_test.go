package ui

import (
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/i18n"
)

// Fuzz targets for what a client writes into headers and paths (see
// internal/portal/fuzz_test.go for the form fields).

func FuzzClientIP(f *testing.F) {
	trusted, err := config.ParsePrefixes("10.0.0.0/8, 2001:db8::/32")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range [][2]string{
		{"203.0.113.5:4000", "198.51.100.1"}, {"10.0.0.2:4000", "6.6.6.6, 198.51.100.1"}, {"10.0.0.2:4000", "10.5.5.5, 10.3.3.3"},
		{"10.0.0.2:4000", "198.51.100.1, not-an-ip"}, {"10.0.0.2:4000", "[2a00::9]:443"}, {"[::ffff:10.0.0.2]:4000", "::ffff:198.51.100.1"},
		{"[2001:db8::1]:443", "198.51.100.1,,"}, {"garbage", "1.2.3.4"}, {"10.0.0.2:4000", "fe80::1%eth0"},
	} {
		f.Add(s[0], s[1], "6.6.6.6")
	}
	f.Fuzz(func(t *testing.T, peer, xff, injected string) {
		req := func(xff string) *http.Request {
			r := &http.Request{RemoteAddr: peer, Header: http.Header{}}
			r.Header.Set("X-Forwarded-For", xff)
			return r
		}
		got := clientIP(req(xff), trusted)
		peerAddr, perr := netip.ParseAddr(peerHost(req(xff)))
		if perr != nil {
			return // not an address: recorded as it is (the TCP stack never gives one)
		}
		peerAddr = peerAddr.Unmap()
		if !isTrusted(peerAddr, trusted) {
			// A peer that is not a proxy cannot choose its address.
			if got != peerAddr.String() {
				t.Fatalf("untrusted peer %s with X-Forwarded-For %q recorded as %q", peer, xff, got)
			}
			return
		}
		a, err := netip.ParseAddr(got)
		if err != nil {
			t.Fatalf("clientIP = %q, not an address", got)
		}
		// Once an untrusted hop is found, whatever the client wrote to its
		// left does not change the answer.
		if !isTrusted(a, trusted) && !strings.ContainsAny(injected, "\r\n") {
			if again := clientIP(req(injected+", "+xff), trusted); again != got {
				t.Fatalf("prepending %q to %q changed the client from %s to %s", injected, xff, got, again)
			}
		}
	})
}

func FuzzParseHop(f *testing.F) {
	for _, s := range []string{"192.0.2.1", "192.0.2.1:4711", "[2001:db8::1]:443", "2001:db8::1", "::ffff:1.2.3.4", "1.2.3.4:99999", "[1.2.3.4]:1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := parseHop(s)
		if err != nil {
			return
		}
		if !a.IsValid() {
			t.Fatalf("parseHop(%q) = invalid address without an error", s)
		}
		// The address is the entry, or the entry's host part.
		if a.String() != s && !strings.Contains(s, a.WithZone("").String()) && !strings.Contains(strings.ToLower(s), a.String()) {
			if _, perr := netip.ParseAddr(s); perr != nil {
				if ap, aerr := netip.ParseAddrPort(s); aerr != nil || ap.Addr() != a {
					t.Fatalf("parseHop(%q) = %s, not read from the entry", s, a)
				}
			}
		}
	})
}

// isLocalLink reports whether a browser would stay on this site following href.
func isLocalLink(href string) bool {
	if !strings.HasPrefix(href, "/") || strings.HasPrefix(href, "//") || strings.HasPrefix(href, "/\\") {
		return false
	}
	u, err := url.Parse(href)
	return err == nil && u.Scheme == "" && u.Host == ""
}

// FuzzSelfPage: the language switch's links are made from the request's
// path and query; they always lead to a page on this site.
func FuzzSelfPage(f *testing.F) {
	for _, s := range [][3]string{{"GET", "/", ""}, {"GET", "//evil.example/", ""}, {"GET", "/\\evil.example", ""},
		{"GET", "/certificates", "a=1&lang=ko"}, {"POST", "//evil.example", ""}, {"GET", "/\t/evil.example", ""}, {"GET", "", ""}} {
		f.Add(s[0], s[1], s[2])
	}
	s := &Server{}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		r := &http.Request{Method: method, URL: &url.URL{Path: path, RawQuery: query}, Header: http.Header{}}
		p := &page{Self: s.selfPage(r)}
		for _, l := range i18n.Supported {
			if href := p.LangHref(l); !isLocalLink(href) {
				t.Fatalf("%s %q?%s: language link %q leaves the site", method, path, query, href)
			}
		}
	})
}

// FuzzSlashRedirect: the trailing-slash redirect of a 404 never points
// elsewhere, even if every path were a page.
func FuzzSlashRedirect(f *testing.F) {
	for _, s := range []string{"/helpdesk/", "//evil.example/", "///evil.example//", "/\\evil.example/", "/a/?x=1", "/", "/\t/evil/"} {
		f.Add(s, "q=1")
	}
	f.Fuzz(func(t *testing.T, path, query string) {
		target, ok := slashRedirect(path, "", query, func(string) bool { return true })
		if !ok {
			return
		}
		if !isLocalLink(target) {
			t.Fatalf("%q redirects to %q, off the site", path, target)
		}
	})
}
