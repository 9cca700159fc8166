package audit

import (
	"strings"
	"testing"
)

func TestClean(t *testing.T) {
	tests := []struct {
		name, in, want string
		max            int
	}{
		{"plain", "alice@example.com", "alice@example.com", 512},
		{"korean", "사용자", "사용자", 512},
		{"bidi override", "INC-\u202e7", `INC-\u202e7`, 512},
		{"isolate", "a\u2066b", `a\u2066b`, 512},
		{"nul and escape", "a\x00b\x1b[2J", `a\u0000b\u001b[2J`, 512},
		{"newline", "a\nb", `a\u000ab`, 512},
		{"invalid utf-8", "a\xffb", `a\xffb`, 512},
		{"non-BMP format char", "a\U000E0001b", `a\udb40\udc01b`, 512},
		{"cut", strings.Repeat("x", 600), strings.Repeat("x", 512-len(CutMark)) + CutMark, 512},
		{"cut on a character", "ab사사사사", "ab" + CutMark, 2 + len(CutMark) + 2},
		{"cut after escaping", strings.Repeat("\u202e", 200), strings.Repeat(`\u202e`, (512-len(CutMark))/6) + CutMark, 512},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Clean(tt.in, tt.max)
			if got != tt.want {
				t.Fatalf("Clean(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if len(got) > tt.max {
				t.Fatalf("%d bytes, bound %d", len(got), tt.max)
			}
			if again := Clean(got, tt.max); again != got {
				t.Fatalf("Clean is not stable: %q then %q", got, again)
			}
		})
	}
	if got := CleanDisplay("<p>\n\tok\u202e</p>"); got != "<p>\n\tok\\u202e</p>" {
		t.Fatalf("CleanDisplay: %q", got)
	}
}
