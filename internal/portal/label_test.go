package portal

import (
	"mime"
	"strings"
	"testing"
	"time"
)

func TestNormalizeSerialForms(t *testing.T) {
	const vault = "3a:0f:9c:01"
	for _, tt := range []struct{ name, in, want string }{
		{"vault form", "3a:0f:9c:01", vault},
		{"upper case", "3A:0F:9C:01", vault},
		{"nginx $ssl_client_serial", "3A0F9C01", vault},
		{"dashes", "3a-0f-9c-01", vault},
		{"spaces", " 3a 0f 9c 01 ", vault},
		{"0x prefix", "0x3a0f9c01", vault},
		{"one byte", "0A", "0a"},
		{"twenty bytes", strings.Repeat("AB", 20), strings.TrimSuffix(strings.Repeat("ab:", 20), ":")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeSerial(tt.in)
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeSerial(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "3", "3a0", "xyz", "3a:0g", strings.Repeat("ab", 21), "3a;0f", "'; drop table", "3a\n0f"} {
		if got, err := NormalizeSerial(bad); err == nil {
			t.Errorf("NormalizeSerial(%q) = %q, want an error", bad, got)
		}
	}
}

func TestValidLabel(t *testing.T) {
	for _, ok := range []string{"", "work laptop", "  phone  ", "업무용 노트북", "Büro-PC (2)", strings.Repeat("가", MaxLabelLen)} {
		if _, err := ValidLabel(ok); err != nil {
			t.Errorf("ValidLabel(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"a\nb", "tab\there", "\u202eevil", "x\u2066y", "zero\u200bwidth", "\xff\xfe", strings.Repeat("a", MaxLabelLen+1), "nul\x00"} {
		if _, err := ValidLabel(bad); err == nil {
			t.Errorf("ValidLabel(%q) accepted", bad)
		} else if e, _ := err.(*Error); e == nil || e.Field != "label" {
			t.Errorf("ValidLabel(%q): %v, want a label field error", bad, err)
		}
	}
}

// TestValidLabelInvisibleAndStacked: a label may not hide (fillers and
// format characters render as nothing) nor stack combining marks over the
// rows around it; Korean and accented labels are kept, and a decomposed é
// is the same label as a precomposed one (NFC).
func TestValidLabelInvisibleAndStacked(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"김철수 노트북", "김철수 노트북"},
		{"Caf\u00e9 \u00e9", "Caf\u00e9 \u00e9"},       // NFC
		{"Cafe\u0301 e\u0301", "Caf\u00e9 \u00e9"},     // NFD: composed
		{"\u1100\u1175\u11ab", "\uae34"},               // 긴 as conjoining jamo: composed
		{"x\u0336\u030d", "x\u0336\u030d"},             // two marks on a letter without a composed form
		{"Vie\u0323\u0302t", "Vi\u1ec7t"},              // Vietnamese ệ, two marks, composed
		{"\u2764\ufe0f laptop", "\u2764\ufe0f laptop"}, // an emoji's variation selector
		{"1\ufe0f\u20e3 desk", "1\ufe0f\u20e3 desk"},   // a keycap: digit, VS16, enclosing keycap
	} {
		got, err := ValidLabel(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ValidLabel(%+q) = %+q, %v; want %+q", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ in, msg string }{
		{"x" + strings.Repeat("\u0336\u030d", 30), "error.label_marks"},
		{"x\u0336\u030d\u0336", "error.label_marks"},
		{"a\u20dd\u20dd\u20dd", "error.label_marks"}, // enclosing marks (Me)
		{"\u3164", "error.label_invisible"},
		{"work\u3164laptop", "error.label_invisible"},
		{"work\u2800laptop", "error.label_invisible"}, // blank braille pattern
		{"a\u115fb", "error.label_invisible"},
		{"a\u1160b", "error.label_invisible"},
		{"a\uffa0b", "error.label_invisible"},
		{"soft\u00adhyphen", "error.label_invisible"},
		{"word\u2060joiner", "error.label_invisible"},
		{"a\u200db", "error.label_invisible"},
		{"a\u034fb", "error.label_invisible"}, // combining grapheme joiner
		{"tag\U000E0041", "error.label_invisible"},
		// A variation selector on a letter changes nothing visible: two
		// labels that look the same would differ.
		{"laptop\ufe0f", "error.label_invisible"},
		{"la\ufe00ptop", "error.label_invisible"},
		{"a\U000E0100b", "error.label_invisible"},
		{"a\u180bb", "error.label_invisible"}, // Mongolian free variation selector
		{"\ufe0flaptop", "error.label_invisible"},
	} {
		_, err := ValidLabel(tt.in)
		if e, _ := err.(*Error); e == nil || e.Field != "label" || e.Message != tt.msg {
			t.Errorf("ValidLabel(%+q): %v, want a label field error %s", tt.in, err, tt.msg)
		}
	}
	// NFC is applied before the length bound: 64 decomposed é fit.
	if got, err := ValidLabel(strings.Repeat("e\u0301", MaxLabelLen)); err != nil || got != strings.Repeat("\u00e9", MaxLabelLen) {
		t.Errorf("64 decomposed é: %+q, %v", got, err)
	}
	name, _ := DownloadName("alice@example.com", mustLabel(t, "Cafe\u0301"), time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC))
	if name != "alice@example.com-caf\u00e9-2026-12-01.p12" {
		t.Errorf("file name of a decomposed label: %q", name)
	}
}

func mustLabel(t *testing.T, s string) string {
	t.Helper()
	l, err := ValidLabel(s)
	if err != nil {
		t.Fatalf("ValidLabel(%+q): %v", s, err)
	}
	return l
}

func TestDownloadName(t *testing.T) {
	day := time.Date(2026, 12, 1, 23, 30, 0, 0, time.FixedZone("KST", 9*3600)) // 14:30 UTC
	for _, tt := range []struct{ label, name, ascii string }{
		{"", "alice@example.com-2026-12-01.p12", "alice@example.com-2026-12-01.p12"},
		{"Work laptop", "alice@example.com-work-laptop-2026-12-01.p12", "alice@example.com-work-laptop-2026-12-01.p12"},
		{"  work / laptop (2) ", "alice@example.com-work-laptop-2-2026-12-01.p12", "alice@example.com-work-laptop-2-2026-12-01.p12"},
		{"업무용 노트북", "alice@example.com-업무용-노트북-2026-12-01.p12", "alice@example.com-2026-12-01.p12"},
		{"iPhone 업무", "alice@example.com-iphone-업무-2026-12-01.p12", "alice@example.com-iphone-2026-12-01.p12"},
		{"../../etc", "alice@example.com-etc-2026-12-01.p12", "alice@example.com-etc-2026-12-01.p12"},
	} {
		name, ascii := DownloadName("alice@example.com", tt.label, day)
		if name != tt.name || ascii != tt.ascii {
			t.Errorf("DownloadName(%q) = %q, %q; want %q, %q", tt.label, name, ascii, tt.name, tt.ascii)
		}
		// Browsers read filename* first; Go's parser does as well.
		_, params, err := mime.ParseMediaType(ContentDisposition(name, ascii))
		if err != nil || params["filename"] != tt.name {
			t.Errorf("Content-Disposition for %q: %v %q, want %q", tt.label, err, params["filename"], tt.name)
		}
		if h := ContentDisposition(name, ascii); !strings.Contains(h, `filename="`+ascii+`"`) && !strings.Contains(h, "filename="+ascii) {
			t.Errorf("Content-Disposition %q lacks the ASCII filename %q", h, ascii)
		}
	}
}
