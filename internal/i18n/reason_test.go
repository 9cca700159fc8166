package i18n

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestReasonLabelsSentenceCase: a revocation reason is shown on its own —
// an option of the reason select, a table cell, the line under a revoked
// certificate's badge — so its English text is a label in sentence case
// ("Key compromised"), like the catalog's other labels. The code behind it
// ("compromised", stored and exported) stays as it is.
func TestReasonLabelsSentenceCase(t *testing.T) {
	n := 0
	for _, k := range Keys() {
		if !strings.HasPrefix(k, "reason.") {
			continue
		}
		n++
		text := T(English, k)
		if r, _ := utf8.DecodeRuneInString(text); !unicode.IsUpper(r) {
			t.Errorf("%s: %q starts in lower case", k, text)
		}
	}
	if n == 0 {
		t.Fatal("no reason.* keys in the catalog")
	}
}
