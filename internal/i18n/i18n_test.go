package i18n

import (
	"net/http/httptest"
	"strings"
	"testing"
)

func TestCatalogComplete(t *testing.T) {
	for _, l := range Supported {
		for _, k := range Keys() {
			if !Has(l, k) {
				t.Errorf("%s lacks %q", l, k)
			}
		}
		for k := range catalog[l] {
			if !Has(English, k) {
				t.Errorf("%s has %q, which English lacks", l, k)
			}
			if strings.Count(catalog[l][k], "%") != strings.Count(catalog[English][k], "%") {
				t.Errorf("%s %q: format verbs differ from English", l, k)
			}
		}
	}
}

func TestFromRequest(t *testing.T) {
	tests := []struct {
		name, query, cookie, accept string
		want                        Lang
	}{
		{"nothing", "", "", "", English},
		{"korean browser", "", "", "ko-KR,ko;q=0.9,en;q=0.8", Korean},
		{"english browser", "", "", "en-US,en;q=0.9", English},
		{"unsupported falls back", "", "", "fr-FR", English},
		{"cookie beats header", "", "en", "ko-KR", English},
		{"query beats cookie", "ko", "en", "", Korean},
		{"bad query ignored", "xx", "", "ko", Korean},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/?lang="+tt.query, nil)
			if tt.cookie != "" {
				r.Header.Set("Cookie", CookieName+"="+tt.cookie)
			}
			if tt.accept != "" {
				r.Header.Set("Accept-Language", tt.accept)
			}
			if got := FromRequest(r); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}
