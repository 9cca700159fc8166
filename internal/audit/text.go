package audit

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxField bounds every text value the trail records (a path, a user
// agent, one detail): whoever sends the request chooses these, and must not
// be able to grow the trail or the log by more than this per event.
const MaxField = 512

// CutMark ends a value that was longer than its bound.
const CutMark = "…(cut)"

// Clean is how a value chosen by a client is recorded: invalid UTF-8 bytes
// become \xNN, and control characters, bidi controls and other invisible
// formatting characters become \uXXXX, so that none of them can hide or
// reorder text on a page, in a CSV file or in a terminal; then it is cut to
// max bytes, marked with CutMark. Plain text passes unchanged, and Clean of a
// Clean value is the same value.
func Clean(s string, max int) string {
	return escape(s, max, false)
}

// CleanDisplay is Clean for a whole rendered page: tabs and line breaks are
// layout there and stay; nothing is cut.
func CleanDisplay(s string) string {
	return escape(s, -1, true)
}

// Cut shortens s to at most max bytes, CutMark included, on a character
// boundary; it does not escape.
func Cut(s string, max int) string {
	if max < 0 || len(s) <= max {
		return s
	}
	i := max - len(CutMark)
	if i < 0 {
		i = 0
	}
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + CutMark
}

// Hidden reports whether r is a character Clean escapes: a control
// character, a format character (bidi overrides and isolates, zero-width
// characters, the BOM) or a line or paragraph separator.
func Hidden(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029'
}

func escape(s string, max int, keepSpace bool) string {
	if clean(s, keepSpace) {
		return Cut(s, max)
	}
	// Escaping at most sextuples a character; an input far past max is
	// cut first so a 30,000-byte path costs no more than a short one.
	if max >= 0 && len(s) > 2*max {
		s = s[:2*max]
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case keepSpace && (r == '\n' || r == '\r' || r == '\t'):
			b.WriteString(s[i : i+n])
		case Hidden(r):
			b.WriteString(escapeRune(r))
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
		if max >= 0 && b.Len() > max {
			break
		}
	}
	return Cut(b.String(), max)
}

// escapeRune writes r as JSON does (a surrogate pair past the BMP), so that
// inside a JSON string the escape decodes back to r.
func escapeRune(r rune) string {
	if r > 0xffff {
		r -= 0x10000
		return fmt.Sprintf(`\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
	}
	return fmt.Sprintf(`\u%04x`, r)
}

// clean is the fast path: plain ASCII or text without anything to escape.
func clean(s string, keepSpace bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= utf8.RuneSelf {
			return cleanUnicode(s[i:], keepSpace)
		}
		if c < 0x20 || c == 0x7f {
			if !keepSpace || (c != '\n' && c != '\r' && c != '\t') {
				return false
			}
		}
	}
	return true
}

func cleanUnicode(s string, keepSpace bool) bool {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				return false
			}
		}
		if keepSpace && (r == '\n' || r == '\r' || r == '\t') {
			continue
		}
		if Hidden(r) {
			return false
		}
	}
	return true
}

// EncodeDetails is how an event's details are recorded: each key and each
// value is escaped and cut at max bytes with Clean (MaxField for anything a
// client or another server chose; -1 leaves values whole) first, and only then
// encoded as one JSON object, keys sorted, so the same details always hash
// the same; "{}" when there are none. Cleaning before encoding is what
// matters: JSON would write a raw U+202E or line break as \u202e or \n,
// which every JSON reader (the JSON Lines export, jq -r, a SIEM) turns back
// into the raw character. A Clean value holds none, so the decoded details
// hold no control, bidi or other invisible character; what they hold is the
// visible escape, e.g. the six characters \u202e.
func EncodeDetails(details map[string]string, max int) string {
	if len(details) == 0 {
		return "{}"
	}
	clean := make(map[string]string, len(details))
	for k, v := range details {
		clean[Clean(k, max)] = Clean(v, max)
	}
	b, err := json.Marshal(clean)
	if err != nil {
		return "{}" // a map of strings always encodes
	}
	return string(b)
}
