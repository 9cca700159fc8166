// Package i18n is certportal's message catalog: every text a user reads comes
// from here, in English and Korean, chosen per request.
package i18n

import (
	"fmt"
	"net/http"

	"golang.org/x/text/language"
)

// Lang is a supported language tag.
type Lang string

const (
	English Lang = "en"
	Korean  Lang = "ko"
)

// Supported lists the languages in the switcher's order.
var Supported = []Lang{English, Korean}

var matcher = language.NewMatcher([]language.Tag{language.English, language.Korean})

// CookieName holds an explicit choice from the language switch.
const CookieName = "certportal_lang"

// FromRequest picks the language: an explicit ?lang= or cookie choice first,
// then Accept-Language, then English.
func FromRequest(r *http.Request) Lang {
	if l, ok := Parse(r.URL.Query().Get("lang")); ok {
		return l
	}
	if c, err := r.Cookie(CookieName); err == nil {
		if l, ok := Parse(c.Value); ok {
			return l
		}
	}
	tags, _, err := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	if err != nil || len(tags) == 0 {
		return English
	}
	_, idx, conf := matcher.Match(tags...)
	if conf == language.No {
		return English
	}
	return Supported[idx]
}

// Parse accepts a supported language code.
func Parse(s string) (Lang, bool) {
	for _, l := range Supported {
		if string(l) == s {
			return l, true
		}
	}
	return "", false
}

// T returns the message for key in lang, formatted with args. A key missing
// in Korean falls back to English; a key missing everywhere shows the key, and
// TestCatalogComplete keeps that from shipping.
func T(lang Lang, key string, args ...any) string {
	msg, ok := catalog[lang][key]
	if !ok {
		msg, ok = catalog[English][key]
	}
	if !ok {
		return key
	}
	if len(args) > 0 {
		return fmt.Sprintf(msg, args...)
	}
	return msg
}

// Keys returns every key of the English catalog (for tests).
func Keys() []string {
	keys := make([]string, 0, len(catalog[English]))
	for k := range catalog[English] {
		keys = append(keys, k)
	}
	return keys
}

// Has reports whether lang defines key itself.
func Has(lang Lang, key string) bool {
	_, ok := catalog[lang][key]
	return ok
}
