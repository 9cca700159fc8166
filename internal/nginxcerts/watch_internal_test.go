package nginxcerts

import (
	"crypto/x509"
	"testing"
	"time"
)

func TestNextWake(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	tests := []struct {
		name string
		res  Result
		want time.Duration
	}{
		{"interval when nothing is due sooner", Result{RenewAt: in(20 * 24 * time.Hour), CRLRefreshBy: in(48 * time.Hour)}, 5 * time.Minute},
		{"CRL refresh before the interval", Result{RenewAt: in(20 * 24 * time.Hour), CRLRefreshBy: in(time.Minute)}, time.Minute},
		{"renewal before the interval", Result{RenewAt: in(2 * time.Minute), CRLRefreshBy: in(48 * time.Hour)}, 2 * time.Minute},
		{"overdue renewal of an old certificate runs soon", Result{RenewAt: in(-time.Hour), CRLRefreshBy: in(48 * time.Hour)}, time.Second},
		{"a certificate due when issued waits the interval", Result{Issued: true, RenewAt: in(-time.Hour), CRLRefreshBy: in(48 * time.Hour)}, 5 * time.Minute},
		{"a CRL due when rebuilt waits the interval", Result{Rotated: []string{"pki"}, RenewAt: in(20 * 24 * time.Hour), CRLRefreshBy: in(-time.Hour)}, 5 * time.Minute},
		{"no dates", Result{}, 5 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextWake(&tt.res, now, 5*time.Minute); got != tt.want {
				t.Fatalf("nextWake = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRefreshDue(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		this, next time.Duration // relative to now
		want       bool
	}{
		{"fresh", -time.Hour, 71 * time.Hour, false},
		{"just over a third left", -47 * time.Hour, 25 * time.Hour, false},
		{"under a third left", -49 * time.Hour, 23 * time.Hour, true},
		{"expired", -73 * time.Hour, -time.Hour, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := crlAt(now.Add(tt.this), now.Add(tt.next))
			if got := refreshDue(c, now); got != tt.want {
				t.Fatalf("refreshDue = %v, want %v", got, tt.want)
			}
		})
	}
}

func crlAt(this, next time.Time) *x509.RevocationList {
	return &x509.RevocationList{ThisUpdate: this, NextUpdate: next}
}
