package portal

import (
	"strings"
	"testing"
)

// TestValidTicketVisible: a ticket reference names a request auditors look
// up by what they read, so it follows the label's rules: NFC, and no
// filler, format character or stacked marks that make "INC-7" and
// something that only looks like it two different tickets.
func TestValidTicketVisible(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"INC-7", "INC-7"},
		{"  REQ 2026/123 ", "REQ 2026/123"},
		{"요청-15", "요청-15"},
		{"Cafe\u0301-1", "Caf\u00e9-1"}, // NFD: composed
		{strings.Repeat("x", MaxTicketLen), strings.Repeat("x", MaxTicketLen)},
	} {
		got, err := validTicket(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("validTicket(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, tt := range []struct{ in, key string }{
		{"", "error.ticket_invalid"},
		{"INC-7\u3164", "error.ticket_invisible"}, // Hangul filler
		{"\u115fINC-7", "error.ticket_invisible"}, // Hangul choseong filler
		{"INC-7\u2800", "error.ticket_invisible"}, // blank braille pattern
		{"INC\u200b-7", "error.ticket_invisible"}, // zero width space
		{"INC\ufe0f-7", "error.ticket_invisible"}, // a variation selector on a letter
		{"INC-\u202e7", "error.ticket_invisible"}, // bidi override
		{"I\u0336\u0336\u0336NC-7", "error.ticket_marks"},
		{"INC-7\n8", "error.ticket_invalid"},
		{"INC-7\x00", "error.ticket_invalid"},
		{"\xffINC", "error.ticket_invalid"},
		{"<b>INC</b>", "error.ticket_invalid"},
		{strings.Repeat("x", MaxTicketLen+1), "error.ticket_invalid"},
	} {
		got, err := validTicket(tt.in)
		e, _ := err.(*Error)
		if e == nil || e.Field != "ticket" || e.Message != tt.key {
			t.Errorf("validTicket(%q) = %q, %v; want a ticket field error %s", tt.in, got, err, tt.key)
		}
	}
}
