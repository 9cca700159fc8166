package portal

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
)

// rawHidden is the first character in s that must never reach a reader of
// the trail raw: a control character (line breaks and tabs included), a
// bidi control, a zero-width or other format character.
func rawHidden(s string) (rune, bool) {
	for _, r := range s {
		if audit.Hidden(r) {
			return r, true
		}
	}
	return 0, false
}

// TestEventDetailsDecodeClean: a detail value holding U+202E, a line break,
// a carriage return, a tab or U+200B is recorded so that the details, once
// decoded as JSON (what the JSON Lines export, jq -r or a SIEM does), hold
// none of them raw, only their visible escapes; plain values decode as
// they were given, and long ones are cut.
func TestEventDetailsDecodeClean(t *testing.T) {
	s := &Service{now: time.Now}
	forged := "GET /helpdesk/users/bob\u202e\n -- HELPDESK helen revoked\r\tall\u200b"
	e := s.newEvent(context.Background(), "alice", "alice", audit.ActionAccessDenied, audit.OutcomeDenied, "",
		map[string]string{"path": forged, "count": "3", "long": strings.Repeat("\u202e", 1000), "ticket": "INC-7 <a>&"})
	var d map[string]string
	if err := json.Unmarshal([]byte(e.Details), &d); err != nil {
		t.Fatalf("details %q: %v", e.Details, err)
	}
	for k, v := range d {
		if r, ok := rawHidden(v); ok {
			t.Errorf("details[%q] = %q decodes to a raw %U", k, v, r)
		}
	}
	if want := `GET /helpdesk/users/bob\u202e\u000a -- HELPDESK helen revoked\u000d\u0009all\u200b`; d["path"] != want {
		t.Errorf("path decodes to %q, want %q", d["path"], want)
	}
	if d["count"] != "3" || d["ticket"] != "INC-7 <a>&" {
		t.Errorf("plain values changed: %q", d)
	}
	if len(d["long"]) > audit.MaxField || !strings.HasSuffix(d["long"], audit.CutMark) {
		t.Errorf("long value: %d bytes, want at most %d, marked cut", len(d["long"]), audit.MaxField)
	}
	// Recording the same details again gives the same bytes (the hash chain
	// and the hold comparisons depend on it).
	if again := s.newEvent(context.Background(), "alice", "alice", audit.ActionAccessDenied, audit.OutcomeDenied, "",
		map[string]string{"path": forged, "count": "3", "long": strings.Repeat("\u202e", 1000), "ticket": "INC-7 <a>&"}); again.Details != e.Details {
		t.Errorf("details not canonical:\n%s\n%s", e.Details, again.Details)
	}
}
