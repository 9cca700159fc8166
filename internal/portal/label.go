package portal

import (
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxLabelLen bounds a certificate label, in characters: enough for
// "work laptop (2nd floor)", short enough for a list cell and a file name.
const MaxLabelLen = 64

// ValidLabel checks a user's name for a certificate: optional, at most
// MaxLabelLen characters of printable text. Control characters would break
// lines in the audit trail and exports; bidirectional overrides could make a
// label read differently from what it is (U+202E turns "work" into "krow").
func ValidLabel(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > MaxLabelLen {
		return "", Invalid("label", "error.label_invalid")
	}
	for _, r := range s {
		if unicode.Is(unicode.Cc, r) || isBidiControl(r) || r == '\uFEFF' || r == '\u200B' || r == '\u2028' || r == '\u2029' {
			return "", Invalid("label", "error.label_invalid")
		}
	}
	return s, nil
}

func isBidiControl(r rune) bool {
	switch {
	case r == '\u061C', r == '\u200E', r == '\u200F':
		return true
	case r >= '\u202A' && r <= '\u202E':
		return true
	case r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

// slug turns a label into a file-name part: letters and digits of any
// script, lowercased, everything else one '-'. "Work laptop (2)" becomes
// "work-laptop-2"; "업무 노트북" stays Korean.
func slug(label string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(label) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
			continue
		}
		dash = true
	}
	return b.String()
}

// DownloadName is the .p12's file name: the identity, the label (so three
// downloads are three different files) and the issue date in UTC, e.g.
// alice@example.com-work-laptop-2026-12-01.p12. ascii is the same without
// the label's non-ASCII letters, for clients that cannot read filename*.
func DownloadName(subject, label string, issued time.Time) (name, ascii string) {
	date := issued.UTC().Format("2006-01-02")
	name, ascii = subject, subject
	s := slug(label)
	if s != "" {
		name += "-" + s
	}
	if a := asciiSlug(s); a != "" {
		ascii += "-" + a
	}
	return name + "-" + date + ".p12", ascii + "-" + date + ".p12"
}

// asciiSlug keeps the ASCII words of a slug.
func asciiSlug(s string) string {
	var words []string
	for _, w := range strings.Split(s, "-") {
		var b strings.Builder
		for _, r := range w {
			if r < utf8.RuneSelf {
				b.WriteRune(r)
			}
		}
		if b.Len() > 0 {
			words = append(words, b.String())
		}
	}
	return strings.Join(words, "-")
}

// ContentDisposition is the attachment header: the ASCII name as filename=
// for every client and, when the real name differs, the exact name as
// RFC 6266/8187 filename* (UTF-8), which browsers prefer.
func ContentDisposition(name, ascii string) string {
	h := mime.FormatMediaType("attachment", map[string]string{"filename": ascii})
	if name == ascii {
		return h
	}
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < utf8.RuneSelf && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$&+-.^_`|~", c) >= 0) {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return h + "; filename*=UTF-8''" + b.String()
}
