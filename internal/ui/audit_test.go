package ui

import (
	"testing"

	"github.com/certportal/certportal/internal/i18n"
)

// TestEventDetailsLabels: the counts a reconciliation records read as words
// in both languages on the audit page, not as the trail's raw keys
// (vault_reads, state_mismatch: seen in the walk's screenshots).
func TestEventDetailsLabels(t *testing.T) {
	raw := `{"vault_only":"0","inventory_only":"0","expired_tidied":"3","state_mismatch":"0","known":"1","vault_total":"2","inventory_total":"2","vault_reads":"0","key_origin":"device"}`
	for _, l := range i18n.Supported {
		for _, d := range eventDetails(l, raw) {
			if d.Label == "" {
				t.Errorf("%s: detail %q has no label", l, d.Key)
			}
		}
	}
}
