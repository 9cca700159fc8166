package portal

import (
	"fmt"
	"mime"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/certportal/certportal/internal/audit"
)

// MaxLabelLen bounds a certificate label, in characters: enough for
// "work laptop (2nd floor)", short enough for a list cell and a file name.
const MaxLabelLen = 64

// MaxLabelMarks bounds the combining marks (accents, Unicode Mn and Me) on
// one character of a label: enough for any accented letter of a living
// language (Vietnamese "ệ" written decomposed is e and two marks), too few to
// stack marks above and below the row, as "x" and sixty U+0336 would.
const MaxLabelMarks = 2

// ValidLabel checks a user's name for a certificate: optional, at most
// MaxLabelLen characters of printable text. Control characters would break
// lines in the audit trail and exports; bidirectional overrides could make a
// label read differently from what it is (U+202E turns "work" into "krow").
//
// The label is normalised to NFC first and returned so: "Café" typed with a
// precomposed é (U+00E9) and with e + U+0301 is the same label, one
// character shorter, in the same file name. Then every invisible character
// is refused — format characters (audit.Hidden: Unicode Cf, bidi controls,
// zero-width characters, the BOM, line separators) and the fillers that
// render as nothing (U+115F, U+1160, U+3164, U+FFA0 and the rest of
// Unicode's Other_Default_Ignorable_Code_Point) — and so is a character
// carrying more than MaxLabelMarks combining marks, which would spill over
// the neighbouring rows of every page that lists labels, and a variation
// selector anywhere but after a symbol or a digit (an emoji's or a keycap's).
func ValidLabel(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if !utf8.ValidString(s) {
		return "", Invalid("label", "error.label_invalid")
	}
	// Bound the input before normalising it: NFC never lengthens a label
	// by more than a few characters, so anything four times longer is
	// refused without the work.
	if utf8.RuneCountInString(s) > 4*MaxLabelLen {
		return "", Invalid("label", "error.label_invalid")
	}
	s = norm.NFC.String(s)
	if utf8.RuneCountInString(s) > MaxLabelLen {
		return "", Invalid("label", "error.label_invalid")
	}
	switch textFaultOf(s) {
	case faultControl:
		return "", Invalid("label", "error.label_invalid")
	case faultInvisible:
		return "", Invalid("label", "error.label_invisible")
	case faultMarks:
		return "", Invalid("label", "error.label_marks")
	}
	return s, nil
}

// A textFault is what makes a short text people read and compare (a
// label, a ticket reference) unfit.
type textFault int

const (
	faultNone      textFault = iota
	faultControl             // a control character
	faultInvisible           // a character that renders as nothing
	faultMarks               // more than MaxLabelMarks combining marks on one character
)

// textFault checks s, already NFC, as ValidLabel describes: control
// characters, invisible characters (audit.Hidden, Unicode's
// Other_Default_Ignorable_Code_Point fillers, a variation selector anywhere
// but after a symbol or a digit) and stacked combining marks.
func textFaultOf(s string) textFault {
	marks := 0
	prev := rune(-1)
	for _, r := range s {
		// A variation selector picks the look of a symbol (an emoji, a
		// keycap digit); on a letter, or first, it is invisible and makes
		// two texts that look the same differ.
		if unicode.Is(unicode.Variation_Selector, r) {
			if prev < 0 || !(unicode.In(prev, unicode.So, unicode.Sm, unicode.Nd) || prev == '#' || prev == '*') {
				return faultInvisible
			}
			prev = r
			continue
		}
		prev = r
		if unicode.Is(unicode.Cc, r) {
			return faultControl
		}
		// U+2800, the blank braille pattern, is a symbol that renders as
		// empty space: as invisible as a filler.
		if audit.Hidden(r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) || r == '\u2800' {
			return faultInvisible
		}
		if unicode.In(r, unicode.Mn, unicode.Me) {
			if marks++; marks > MaxLabelMarks {
				return faultMarks
			}
			continue
		}
		marks = 0
	}
	return faultNone
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
