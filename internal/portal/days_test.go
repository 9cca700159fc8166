package portal

import (
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// TestDaysLeftAllowsClockSkew: days left round up, but a portal a minute
// behind Vault does not show a new 30-day certificate with 31 days left
// (it did before ClockAllowance), and a valid one never shows 0.
func TestDaysLeftAllowsClockSkew(t *testing.T) {
	s := &Service{opts: Options{ExpiringSoon: 14 * 24 * time.Hour}}
	notAfter := time.Date(2030, 1, 31, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	for _, tc := range []struct {
		name   string
		left   time.Duration // not_after minus the portal's now
		days   int
		status Status
	}{
		{"new 30-day, portal a minute behind", 30*day + time.Minute, 30, StatusActive},
		{"new 30-day, clocks agree", 30*day - time.Second, 30, StatusActive},
		{"new 30-day, portal a minute ahead", 30*day - time.Minute, 30, StatusActive},
		{"new 1-day", day - time.Second, 1, StatusExpiring},
		{"a day and an hour", day + time.Hour, 2, StatusExpiring},
		{"two minutes", 2 * time.Minute, 1, StatusExpiring},
		{"expired", -time.Second, 0, StatusExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := s.viewAt(&store.Certificate{NotAfter: notAfter}, notAfter.Add(-tc.left))
			if v.DaysLeft != tc.days || v.Status != tc.status {
				t.Fatalf("%s left: %d days, %s; want %d, %s", tc.left, v.DaysLeft, v.Status, tc.days, tc.status)
			}
		})
	}
}
