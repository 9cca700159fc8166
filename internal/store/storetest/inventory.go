package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// DirectCounts counts the inventory at at row by row, from each state's
// own condition on certificates (StreamInventory), which reads no day
// counts: what InventoryCounts must equal.
func DirectCounts(t testing.TB, s store.Store, at time.Time) store.InventoryCounts {
	t.Helper()
	var c store.InventoryCounts
	for state, n := range map[string]*int{store.StateActive: &c.Active, store.StateExpiring7: &c.Expiring7,
		store.StateExpiring30: &c.Expiring30, store.StateExpired: &c.Expired, store.StateRevoked: &c.Revoked} {
		if err := s.StreamInventory(context.Background(), store.InventoryFilter{State: state, At: at}, func(*store.Certificate) error {
			*n++
			return nil
		}); err != nil {
			t.Fatalf("direct count %s: %v", state, err)
		}
	}
	return c
}

// CheckCounts compares InventoryCounts, and ExpiryStats' active, expired
// and revoked, with DirectCounts at every moment an edge could be off by
// one: each row's not_after and a millisecond either side, the same 7 and
// 30 days earlier (where it enters the expiring windows), and the UTC
// midnights around them (where the day counts split). what names the step.
func CheckCounts(t testing.TB, s store.Store, what string) {
	t.Helper()
	ctx := context.Background()
	var rows []*store.Certificate
	if err := s.StreamInventory(ctx, store.InventoryFilter{At: t0}, func(c *store.Certificate) error {
		rows = append(rows, c)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	moments := []time.Time{t0, time.UnixMilli(0)}
	for _, c := range rows {
		for _, back := range []time.Duration{0, 7 * 24 * time.Hour, 30 * 24 * time.Hour} {
			m := c.NotAfter.Add(-back)
			midnight := m.UTC().Truncate(24 * time.Hour)
			moments = append(moments, m.Add(-time.Millisecond), m, m.Add(time.Millisecond),
				midnight.Add(-time.Millisecond), midnight, midnight.Add(24*time.Hour-time.Millisecond), midnight.Add(24*time.Hour))
		}
	}
	if len(moments) > 400 { // a large inventory: every 7th moment still crosses each kind of edge
		var some []time.Time
		for i := 0; i < len(moments); i += 7 {
			some = append(some, moments[i])
		}
		moments = some
	}
	for _, at := range moments {
		want := DirectCounts(t, s, at)
		got, err := s.InventoryCounts(ctx, at)
		if err != nil {
			t.Fatalf("%s: counts at %s: %v", what, at.UTC().Format(time.RFC3339Nano), err)
		}
		if got != want {
			t.Fatalf("%s: counts at %s: %+v, a direct count %+v", what, at.UTC().Format(time.RFC3339Nano), got, want)
		}
		st, err := s.ExpiryStats(ctx, at, nil)
		if err != nil || st.Active != want.Active || st.Expired != want.Expired || st.Revoked != want.Revoked {
			t.Fatalf("%s: expiry stats at %s: %v %+v, a direct count %+v", what, at.UTC().Format(time.RFC3339Nano), err, st, want)
		}
	}
}

// testInventoryCountsExact: the report's counts (day counts kept by the
// database beside certificates) equal a direct count after every way the
// inventory changes: plain inserts, rows inserted already revoked, the
// issuance and revocation transactions, a second revocation (which keeps
// the first), a renewal that revokes the certificate it replaces, writes
// that fail, and expiries on and around UTC midnight.
func testInventoryCountsExact(t *testing.T, s store.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	midnight := t0.Truncate(day).Add(day)
	CheckCounts(t, s, "empty")
	for i, c := range []*store.Certificate{
		cert("1d:01", "alice", midnight.Add(-30*day), 30*day),                     // expires at midnight exactly
		cert("1d:02", "alice", midnight.Add(-30*day-time.Millisecond), 30*day),    // a millisecond before
		cert("1d:03", "bob", midnight.Add(-30*day+time.Millisecond), 30*day),      // a millisecond after
		cert("1d:04", "bob", t0.Add(-90*day), 30*day),                             // long expired
		cert("1d:05", "carol", t0, 400*day),                                       // far ahead
		cert("1d:06", "carol", t0.Add(-time.Hour), 7*day),                         // crosses the 7-day edge
		cert("1d:07", "dave", time.Date(1969, 12, 1, 10, 0, 0, 0, time.UTC), day), // before 1970: days round down
	} {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	CheckCounts(t, s, "inserts")
	pre := cert("1d:08", "dave", t0, 20*day)
	pre.RevokedAt, pre.RevokeReason, pre.RevokedBy = t0.Add(time.Hour), "lost", "dave"
	if err := s.InsertCertificate(ctx, pre); err != nil {
		t.Fatal(err)
	}
	CheckCounts(t, s, "a row inserted revoked")
	if err := s.InsertCertificate(ctx, cert("1d:05", "carol", t0, day)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate insert: %v", err)
	}
	if err := s.RecordIssuance(ctx, "", cert("1d:02", "alice", t0, day), event("alice", audit.ActionIssue, audit.OutcomeSuccess, t0)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate issuance: %v", err)
	}
	CheckCounts(t, s, "failed inserts")
	if err := s.RecordIssuance(ctx, "", cert("1d:09", "erin", t0, 30*day), event("erin", audit.ActionIssue, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	CheckCounts(t, s, "issuance")
	r := store.Revocation{At: t0.Add(time.Minute), Reason: "lost", By: "alice"}
	if err := s.RecordRevocation(ctx, "1d:01", r, event("alice", audit.ActionRevoke, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkRevoked(ctx, "1d:04", r); err != nil { // an expired one
		t.Fatal(err)
	}
	CheckCounts(t, s, "revocations")
	// Revoking again (another replica, a retry) keeps the first record and
	// must not count the certificate twice.
	if err := s.MarkRevoked(ctx, "1d:01", store.Revocation{At: t0.Add(time.Hour), Reason: "again", By: "helpdesk"}); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRevocation(ctx, "1d:08", r, event("dave", audit.ActionRevoke, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRevocation(ctx, "ff:ff", r, event("dave", audit.ActionRevoke, audit.OutcomeSuccess, t0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking unknown: %v", err)
	}
	CheckCounts(t, s, "revocations repeated")
	// Renewal with "revoke the old one": reserve replacing it, issue, revoke.
	id, err := s.ReserveIssuance(ctx, store.Reservation{Username: "bob", Max: 1, At: t0, Expires: t0.Add(time.Minute), Replaces: "1d:03"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordIssuance(ctx, id, cert("1d:0a", "bob", t0, 90*day), event("bob", audit.ActionIssue, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRevocation(ctx, "1d:03", store.Revocation{At: t0, Reason: "superseded", By: "bob"}, event("bob", audit.ActionRevoke, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	CheckCounts(t, s, "renewal")
}

// testInventoryCountsConcurrent: issuances and revocations from many
// writers at once (on PostgreSQL each its own transaction, all on the same
// few days' rows) leave the day counts equal to a direct count, and none
// fails.
func testInventoryCountsConcurrent(t *testing.T, s store.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each*2)
	for w := range writers {
		wg.Go(func() {
			user := fmt.Sprintf("user%d", w)
			for i := range each {
				serial := fmt.Sprintf("2c:%02x:%02x", w, i)
				// Three expiry days shared by every writer.
				c := cert(serial, user, t0, time.Duration(30+i%3)*day)
				if err := s.RecordIssuance(ctx, "", c, event(user, audit.ActionIssue, audit.OutcomeSuccess, t0)); err != nil {
					errs <- fmt.Errorf("issue %s: %w", serial, err)
					continue
				}
				if i%2 == 1 { // revoke the previous one, on another day's row
					prev := fmt.Sprintf("2c:%02x:%02x", w, i-1)
					if err := s.RecordRevocation(ctx, prev, store.Revocation{At: t0, Reason: "superseded", By: user},
						event(user, audit.ActionRevoke, audit.OutcomeSuccess, t0)); err != nil {
						errs <- fmt.Errorf("revoke %s: %w", prev, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := s.InventoryCounts(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	revoked := writers * (each / 2)
	// The 30-day ones (i%3 == 0) expire exactly 30 days on; of them 3, 9,
	// 15, 21 and 24 are not revoked.
	if want := (store.InventoryCounts{Active: writers*each - revoked, Expiring30: writers * 5, Revoked: revoked}); got != want {
		t.Errorf("counts %+v, want %+v", got, want)
	}
	CheckCounts(t, s, "concurrent writers")
}
