package ui

import "testing"

func TestSafeNext(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"renew page", "/certificates/aa:bb/renew", "/certificates/aa:bb/renew"},
		{"with query", "/helpdesk?q=ali", "/helpdesk?q=ali"},
		{"escaped", "/helpdesk?q=%ED%95%9C", "/helpdesk?q=%ED%95%9C"},
		{"root", "/", "/"},
		{"empty", "", ""},
		{"relative", "certificates", ""},
		{"scheme", "https://evil.example/", ""},
		{"scheme-relative", "//evil.example/", ""},
		{"backslash host", "/\\evil.example", ""},
		{"backslash later", "/a\\b", ""},
		{"javascript", "javascript:alert(1)", ""},
		{"space", "/a b", ""},
		{"newline", "/a\r\nSet-Cookie: x=1", ""},
		{"tab", "/\t/evil.example", ""},
		{"non-ascii", "/\u202e", ""},
		{"login loop", "/login", ""},
		{"login mfa", "/login/mfa?x=1", ""},
		{"logout", "/logout", ""},
		{"too long", "/" + string(make([]byte, 1100)), ""},
		// A path the browser would ask for in another form than the one
		// checked: the redirect cleans dot segments, the router reads
		// escapes and slashes as they come.
		{"dot segment", "/audit/./export?format=csv", ""},
		{"dot-dot segment", "/audit/x/../export?format=csv", ""},
		{"escaped dot", "/audit/%2e/export", ""},
		{"double slash", "/audit//export", ""},
		{"trailing slash", "/audit/export/?format=csv", ""},
		{"escaped letter", "/audit/%65xport?format=csv", ""},
		{"fragment", "/audit/export#x", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := safeNext(tc.in); got != tc.want {
				t.Errorf("safeNext(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestLoginURL(t *testing.T) {
	for in, want := range map[string]string{
		"/":                         "/login",
		"":                          "/login",
		"//evil.example":            "/login",
		"/certificates/aa:bb/renew": "/login?next=%2Fcertificates%2Faa%3Abb%2Frenew",
		"/helpdesk?q=al&lang=ko":    "/login?next=%2Fhelpdesk%3Fq%3Dal%26lang%3Dko",
	} {
		if got := loginURL(in); got != want {
			t.Errorf("loginURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSafeNext(f *testing.F) {
	for _, s := range []string{"/", "/certificates/aa/renew", "//x", "/\\x", "https://x", "/login", "/a?b=c#d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := safeNext(in)
		if out == "" {
			return
		}
		// Whatever passes is a local path: it stays on this site however a
		// browser reads it.
		if out[0] != '/' || (len(out) > 1 && (out[1] == '/' || out[1] == '\\')) {
			t.Fatalf("safeNext(%q) = %q leaves the site", in, out)
		}
		if safeNext(out) != out {
			t.Fatalf("safeNext not idempotent on %q", out)
		}
	})
}
