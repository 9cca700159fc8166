package storetest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/store"
)

// testExpiryStats: the certificate metrics' counts — every row in exactly
// one of active, expired and revoked; cumulative expiring windows that
// leave out renewed certificates (a newer unrevoked one of the same user
// still valid) and count a not_after exactly on a window's edge; the next
// expiry among active certificates, renewed or not.
func testExpiryStats(t *testing.T, s store.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	at := t0.Add(100 * day)
	windows := []time.Duration{day, 3 * day, 7 * day, 30 * day}
	mustStats := func(want store.ExpiryStats) {
		t.Helper()
		got, err := s.ExpiryStats(ctx, at, windows)
		if err != nil {
			t.Fatal(err)
		}
		if got.Active != want.Active || got.Expired != want.Expired || got.Revoked != want.Revoked ||
			!slices.Equal(got.Expiring, want.Expiring) || !got.NextExpiry.Equal(want.NextExpiry) {
			t.Fatalf("expiry stats at %s:\n got %+v\nwant %+v", at, got, want)
		}
	}
	mustStats(store.ExpiryStats{Expiring: []int{0, 0, 0, 0}})

	in := func(d time.Duration) time.Time { return at.Add(d) }
	row := func(serial, user string, issued, notAfter time.Time) *store.Certificate {
		return cert(serial, user, issued, notAfter.Sub(issued))
	}
	rows := []*store.Certificate{
		row("1a:01", "alice", in(-30*day), in(12*time.Hour)), // within 1d, but renewed by 1a:02
		row("1a:02", "alice", in(-day), in(89*day)),          // active, beyond every window
		row("1b:01", "bob", in(-88*day), in(2*day)),          // within 3d
		row("1b:02", "bob", in(-time.Hour), in(90*day)),      // revoked below: renews nothing
		row("1c:01", "carol", in(-85*day), in(5*day)),        // within 7d
		row("1d:00", "dave", in(-100*day), in(-10*day)),      // expired: no renewal of anything
		row("1d:01", "dave", in(-70*day), in(20*day)),        // within 30d
		row("1e:01", "erin", in(-day), in(200*day)),          // active, beyond every window
		row("1f:01", "frank", in(-90*day), at),               // expired exactly now
		row("1g:01", "grace", in(-87*day), in(3*day)),        // exactly on the 3d edge: within 3d
	}
	for _, c := range rows {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRevoked(ctx, "1b:02", store.Revocation{At: in(-time.Minute), Reason: "lost", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	mustStats(store.ExpiryStats{Active: 7, Expired: 2, Revoked: 1, Expiring: []int{0, 2, 3, 4}, NextExpiry: in(12 * time.Hour)})

	// Revoking alice's newer certificate leaves the old one unrenewed.
	if err := s.MarkRevoked(ctx, "1a:02", store.Revocation{At: in(-time.Minute), Reason: "lost", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	mustStats(store.ExpiryStats{Active: 6, Expired: 2, Revoked: 2, Expiring: []int{1, 3, 4, 5}, NextExpiry: in(12 * time.Hour)})

	// No windows: the counts alone; windows out of order are refused.
	if got, err := s.ExpiryStats(ctx, at, nil); err != nil || got.Active != 6 || len(got.Expiring) != 0 {
		t.Fatalf("no windows: %v %+v", err, got)
	}
	if _, err := s.ExpiryStats(ctx, at, []time.Duration{7 * day, day}); err == nil {
		t.Fatal("descending windows accepted")
	}
}
