package i18n

import (
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// FuzzFromRequest: whatever a client sends as ?lang=, cookie or
// Accept-Language, the page is in a supported language, and an explicit
// choice wins only when it names one.
func FuzzFromRequest(f *testing.F) {
	for _, s := range [][3]string{{"", "", "ko-KR,ko;q=0.9,en;q=0.8"}, {"ko", "", ""}, {"xx", "ko", "en"}, {"", "", "*"},
		{"", "", "en;q=abc, ko;q=0.1"}, {"", "", ";;;,,,q=1"}, {"", "ko\x00", "zz-ZZ"}, {"EN", "", "ja"}} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, lang, cookie, accept string) {
		r := &http.Request{URL: &url.URL{RawQuery: url.Values{"lang": {lang}}.Encode()}, Header: http.Header{}}
		r.Header.Set("Accept-Language", accept)
		if cookie != "" {
			r.Header.Set("Cookie", CookieName+"="+cookie)
		}
		got := FromRequest(r)
		if !slices.Contains(Supported, got) {
			t.Fatalf("FromRequest = %q, not supported", got)
		}
		if l, ok := Parse(lang); ok && got != l {
			t.Fatalf("?lang=%s ignored: %s", lang, got)
		}
		if _, ok := Parse(lang); !ok && lang != "" && got != English {
			// An unknown ?lang= falls through to cookie and header, never
			// to a language of its own.
			if _, cok := Parse(cookie); !cok && accept == "" {
				t.Fatalf("?lang=%q gave %s", lang, got)
			}
		}
	})
}
