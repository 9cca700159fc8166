package portal

import (
	"errors"
	"mime"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/bundle"
	"github.com/certportal/certportal/internal/i18n"
)

// Fuzz targets for every parser of text a client chooses. The seeds in
// f.Add and in testdata/fuzz/<FuzzName>/ run with every `go test`; `make
// fuzz` runs each target for FUZZTIME. They assert properties, not only
// "no panic".

// invalidErr checks that a refusal is a form error whose message the
// catalog has, in both languages.
func invalidErr(t *testing.T, err error) {
	t.Helper()
	var pe *Error
	if !errors.As(err, &pe) || pe.Code != EInvalid || pe.Field == "" {
		t.Fatalf("refusal is not a form error: %#v", err)
	}
	for _, l := range i18n.Supported {
		if i18n.T(l, pe.Message) == pe.Message {
			t.Fatalf("message %q missing from the %s catalog", pe.Message, l)
		}
	}
}

func FuzzNormalizeSerial(f *testing.F) {
	for _, s := range []string{"3a:0f:11", "3A0F11", "3a-0f-11", " 3a 0f 11 ", "0x3a0f", "", ":", "3a:", "3a::0f",
		"zz:00", strings.Repeat("ab", 20), strings.Repeat("ab", 21), "3a:0f\x00", "٣a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeSerial(in)
		if err != nil {
			invalidErr(t, err)
			return
		}
		// Canonical: Vault's form, at most 20 bytes.
		if !serialPattern.MatchString(out) {
			t.Fatalf("NormalizeSerial(%q) = %q, not Vault's form", in, out)
		}
		// Idempotent.
		if again, err := NormalizeSerial(out); err != nil || again != out {
			t.Fatalf("NormalizeSerial(%q) = %q, again %q, %v", in, out, again, err)
		}
		// The same hex digits as the input, in order: nothing invented,
		// nothing dropped but separators, a 0x prefix and case.
		want := strings.TrimPrefix(strings.ToLower(strings.TrimSpace(in)), "0x")
		want = strings.NewReplacer(":", "", "-", "", " ", "").Replace(want)
		if got := strings.ReplaceAll(out, ":", ""); got != want {
			t.Fatalf("NormalizeSerial(%q) = %q: digits %q, want %q", in, out, got, want)
		}
	})
}

func FuzzCheckText(f *testing.F) {
	for _, s := range []string{"INC-1234", "", "a\x00b", "a\nb", "tab\there", "\u202ework", "\u2066x\u2069", "\xff\xfe",
		"업무 노트북", "\u200b", "\u0085", strings.Repeat("x", 65)} {
		f.Add(s, MaxTicketLen)
	}
	f.Fuzz(func(t *testing.T, v string, max int) {
		err := CheckText("ticket", v, max)
		if err != nil {
			invalidErr(t, err)
			return
		}
		if len(v) > max || !utf8.ValidString(v) {
			t.Fatalf("CheckText accepted %q (max %d)", v, max)
		}
		for _, r := range v {
			if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == 0x2028 || r == 0x2029 {
				t.Fatalf("CheckText accepted control or format character %U in %q", r, v)
			}
		}
		// Whatever passes is also safe where it is recorded or shown.
		for _, r := range audit.Clean(v, audit.MaxField) {
			if audit.Hidden(r) || isBidiControl(r) {
				t.Fatalf("audit.Clean(%q) keeps hidden character %U", v, r)
			}
		}
	})
}

func FuzzValidLabel(f *testing.F) {
	for _, s := range []string{"work laptop", " padded ", "", "\u202ekrow", "a\u200bb", "업무 노트북", "\x00", "\xff",
		strings.Repeat("é", 65), "a\u2028b", "x" + strings.Repeat("\u0336", 60), "a\u3164b", "Cafe\u0301", "e\u0323\u0302\u0301"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := ValidLabel(in)
		if err != nil {
			invalidErr(t, err)
			return
		}
		if out != strings.TrimSpace(out) || !utf8.ValidString(out) || utf8.RuneCountInString(out) > MaxLabelLen || !norm.NFC.IsNormalString(out) {
			t.Fatalf("ValidLabel(%q) = %q", in, out)
		}
		// What is accepted is stable: the same label checked again.
		if again, err := ValidLabel(out); err != nil || again != out {
			t.Fatalf("ValidLabel(%q) = %q, but ValidLabel(%q) = %q, %v", in, out, out, again, err)
		}
		marks := 0
		for _, r := range out {
			if unicode.Is(unicode.Cc, r) || isBidiControl(r) || audit.Hidden(r) || unicode.Is(unicode.Other_Default_Ignorable_Code_Point, r) {
				t.Fatalf("ValidLabel(%q) kept %U", in, r)
			}
			if !unicode.In(r, unicode.Mn, unicode.Me) {
				marks = 0
			} else if marks++; marks > MaxLabelMarks {
				t.Fatalf("ValidLabel(%q) = %q: more than %d combining marks on one character", in, out, MaxLabelMarks)
			}
		}
	})
}

func FuzzCheckPassword(f *testing.F) {
	for _, s := range []string{"correct horse battery staple", "비밀번호는길어야합니다", "emoji 😀 password", "nul\x00inside",
		"\xff\xfe", "tab\tinside", "\U0010ffff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if err := CheckPassword(p); err != nil {
			invalidErr(t, err)
			return
		}
		if !utf8.ValidString(p) {
			t.Fatalf("accepted invalid UTF-8")
		}
		for _, r := range p {
			// PKCS#12 carries the password as a BMPString.
			if unicode.IsControl(r) || r > 0xffff {
				t.Fatalf("accepted %U, which a .p12 cannot carry", r)
			}
		}
	})
}

func FuzzIssueRequestValidate(f *testing.F) {
	f.Add("correct horse battery staple", "correct horse battery staple", "720h0m0s", "modern")
	f.Add("correct horse battery staple", "correct horse battery stapl", "720h", "compat")
	f.Add("short", "short", "", "modern")
	f.Add("correct horse battery staple", "correct horse battery staple", "-720h", "modern")
	f.Add("correct horse battery staple", "correct horse battery staple", "1h", "legacy")
	f.Add("😀😀😀😀😀😀😀😀😀😀😀😀", "😀😀😀😀😀😀😀😀😀😀😀😀", "24h", "modern")
	o := Options{TTLs: []time.Duration{24 * time.Hour, 720 * time.Hour}, DefaultTTL: 720 * time.Hour}
	f.Fuzz(func(t *testing.T, pw, confirm, ttl, enc string) {
		r := IssueRequest{Password: pw, PasswordConfirm: confirm, TTL: ttl, Encryption: enc}
		d, e, err := r.Validate(o)
		if err != nil {
			invalidErr(t, err)
			return
		}
		if !slices.Contains(o.TTLs, d) {
			t.Fatalf("validity %s is not offered", d)
		}
		if _, perr := bundle.ParseEncryption(string(e)); perr != nil {
			t.Fatalf("encryption %q accepted", e)
		}
		if pw != confirm || utf8.RuneCountInString(pw) < bundle.MinPasswordLen || len(pw) > 1024 || CheckPassword(pw) != nil {
			t.Fatalf("password accepted that the rules refuse")
		}
	})
}

func FuzzDownloadName(f *testing.F) {
	for _, s := range []string{"work laptop", "업무 노트북", "", "../../etc/passwd", "a\"b", "a\r\nX-Evil: 1", "%00", "\u202e"} {
		f.Add(s)
	}
	issued := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, label string) {
		name, ascii := DownloadName("alice@example.com", label, issued)
		for _, n := range []string{name, ascii} {
			if !strings.HasPrefix(n, "alice@example.com") || !strings.HasSuffix(n, "-2026-12-01.p12") || strings.ContainsAny(n, "/\\\"\r\n") {
				t.Fatalf("DownloadName(%q) = %q", label, n)
			}
		}
		for i := 0; i < len(ascii); i++ {
			if ascii[i] < 0x21 || ascii[i] > 0x7e {
				t.Fatalf("ASCII name %q has byte %#x", ascii, ascii[i])
			}
		}
		h := ContentDisposition(name, ascii)
		if strings.ContainsAny(h, "\r\n\x00") {
			t.Fatalf("header %q breaks lines", h)
		}
		typ, params, err := mime.ParseMediaType(h)
		if err != nil || typ != "attachment" || params["filename"] != name {
			// Go's parser prefers filename* (decoded) over filename.
			t.Fatalf("ContentDisposition(%q) = %q: %s %v %v", name, h, typ, params, err)
		}
	})
}

// isBidiControl lists the bidirectional controls on its own, so the fuzz
// targets check the code's refusals (audit.Hidden) against an independent
// list rather than against themselves.
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
