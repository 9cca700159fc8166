package i18n

import (
	"regexp"
	"testing"
)

// TestNumberCompoundsDoNotBreak: "6-digit code" with an ASCII hyphen lets
// the browser break the line after "6-", so a phone at 390 px showed
// "Enter the 6-" on one line and "digit code" on the next. A compound that
// starts with a number is written with a non-breaking hyphen (U+2011),
// which looks the same and never breaks.
func TestNumberCompoundsDoNotBreak(t *testing.T) {
	breakable := regexp.MustCompile(`\d-\pL`)
	for _, lang := range Supported {
		for k, text := range catalog[lang] {
			if m := breakable.FindString(text); m != "" {
				t.Errorf("%s %s: %q breaks after the hyphen; write it with U+2011", lang, k, m)
			}
		}
	}
}
