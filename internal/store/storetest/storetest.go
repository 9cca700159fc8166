// Package storetest is the behaviour every store.Store implementation must
// show; sqlite and postgres run it against a real database.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// Open returns an empty, migrated store for one test.
type Open func(t *testing.T) store.Store

// Run runs the whole suite.
func Run(t *testing.T, open Open) {
	t.Run("sessions", func(t *testing.T) { testSessions(t, open(t)) })
	t.Run("certificates", func(t *testing.T) { testCertificates(t, open(t)) })
	t.Run("user search by prefix", func(t *testing.T) { testSearchUsersPrefix(t, open(t)) })
	t.Run("concurrent inserts", func(t *testing.T) { testConcurrentInserts(t, open(t)) })
	t.Run("inventory report", func(t *testing.T) { testInventory(t, open(t)) })
	t.Run("inventory counts equal a direct count", func(t *testing.T) { testInventoryCountsExact(t, open(t)) })
	t.Run("inventory counts with concurrent writers", func(t *testing.T) { testInventoryCountsConcurrent(t, open(t)) })
	t.Run("certificates by serial, keyset", func(t *testing.T) { testCertificateScan(t, open(t)) })
	t.Run("issuance reservations", func(t *testing.T) { testReservations(t, open(t)) })
	t.Run("concurrent reservations", func(t *testing.T) { testConcurrentReservations(t, open(t)) })
	t.Run("audit chain", func(t *testing.T) { testAudit(t, open(t)) })
	t.Run("audit text a database cannot hold", func(t *testing.T) { testAuditUnstorableText(t, open(t)) })
	t.Run("audit atomic with inventory", func(t *testing.T) { testAuditAtomic(t, open(t)) })
	t.Run("concurrent audit appends", func(t *testing.T) { testConcurrentAudit(t, open(t)) })
	t.Run("login attempts", func(t *testing.T) { testLoginAttempts(t, open(t)) })
	t.Run("concurrent login attempts", func(t *testing.T) { testConcurrentLoginAttempts(t, open(t)) })
	t.Run("login attempts with two limits", func(t *testing.T) { testLoginAttemptsTwoLimits(t, open(t)) })
	t.Run("notifications", func(t *testing.T) { testNotifications(t, open(t)) })
	t.Run("concurrent notification claims", func(t *testing.T) { testConcurrentClaims(t, open(t)) })
	t.Run("notification holds and notices", func(t *testing.T) { testNotificationHoldsAndNotices(t, open(t)) })
	t.Run("certificate labels", func(t *testing.T) { testCertificateLabels(t, open(t)) })
	t.Run("certificate key origin", func(t *testing.T) { testCertificateKeyOrigin(t, open(t)) })
	t.Run("mfa enrolments", func(t *testing.T) { testEnrolments(t, open(t)) })
	t.Run("offboarding scan and lock", func(t *testing.T) { testOffboardScan(t, open(t)) })
	t.Run("expiry stats", func(t *testing.T) { testExpiryStats(t, open(t)) })
	t.Run("ping writes", func(t *testing.T) { testPing(t, open(t)) })
	t.Run("reconciliation cache and runs", func(t *testing.T) { testReconcile(t, open(t)) })
	t.Run("reconciliation counts expired inventory rows, lists live ones", func(t *testing.T) { testReconcileExpired(t, open(t)) })
	t.Run("reconciliation mismatch candidates, both ways", func(t *testing.T) { testMismatchCandidates(t, open(t)) })
}

// testPing: Ping commits its probe again and again (the readiness check
// runs every few seconds) and leaves the trail alone; with its context
// already ended it fails rather than waiting.
func testPing(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.AppendAudit(ctx, event("alice", audit.ActionLogin, audit.OutcomeSuccess, time.Now())); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := s.Ping(ctx); err != nil {
			t.Fatalf("ping #%d: %v", i+1, err)
		}
	}
	if n := verifyAll(t, s); n != 1 {
		t.Fatalf("%d events after pings, want 1", n)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Ping(done); err == nil {
		t.Fatal("ping with an ended context succeeded")
	}
}

// testCertificateLabels: the user's name for a certificate round-trips
// exactly (any script), through the issuance transaction too, and a row
// without one reads back empty.
func testCertificateLabels(t *testing.T, s store.Store) {
	ctx := context.Background()
	labelled := cert("1a:01", "alice", t0, 30*24*time.Hour)
	labelled.Label = "업무 노트북 — work laptop"
	if err := s.InsertCertificate(ctx, labelled); err != nil {
		t.Fatal(err)
	}
	if err := s.InsertCertificate(ctx, cert("1a:02", "alice", t0.Add(time.Minute), 30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	viaIssuance := cert("1a:03", "alice", t0.Add(2*time.Minute), 30*24*time.Hour)
	viaIssuance.Label = "phone"
	if err := s.RecordIssuance(ctx, "", viaIssuance, event("alice", audit.ActionIssue, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCertificate(ctx, "1a:01")
	if err != nil || got.Label != labelled.Label {
		t.Fatalf("get labelled: %v %+v", err, got)
	}
	list, err := s.ListCertificates(ctx, store.CertificateFilter{Username: "alice"})
	if err != nil || len(list) != 3 {
		t.Fatalf("list: %v %v", err, serials(list))
	}
	want := map[string]string{"1a:01": labelled.Label, "1a:02": "", "1a:03": "phone"}
	for _, c := range list {
		if c.Label != want[c.Serial] {
			t.Errorf("%s: label %q, want %q", c.Serial, c.Label, want[c.Serial])
		}
	}
}

// testCertificateKeyOrigin: where the key was made is kept beside the
// file's encryption; a row that does not say is the server path's.
func testCertificateKeyOrigin(t *testing.T, s store.Store) {
	ctx := context.Background()
	if err := s.InsertCertificate(ctx, cert("1b:01", "alice", t0, 30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	device := cert("1b:02", "alice", t0.Add(time.Minute), 30*24*time.Hour)
	device.KeyOrigin, device.Encryption = store.KeyOriginDevice, "compat"
	if err := s.RecordIssuance(ctx, "", device, event("alice", audit.ActionIssue, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetCertificate(ctx, "1b:02")
	if err != nil || got.KeyOrigin != store.KeyOriginDevice || got.Encryption != "compat" {
		t.Fatalf("get device-key row: %v %+v", err, got)
	}
	list, err := s.ListCertificates(ctx, store.CertificateFilter{Username: "alice"})
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v %v", err, serials(list))
	}
	want := map[string]string{"1b:01": store.KeyOriginVault, "1b:02": store.KeyOriginDevice}
	for _, c := range list {
		if c.KeyOrigin != want[c.Serial] {
			t.Errorf("%s: key origin %q, want %q", c.Serial, c.KeyOrigin, want[c.Serial])
		}
	}
}

// testAuditUnstorableText: text PostgreSQL refuses (NUL, invalid UTF-8),
// which any client can put in a User-Agent or a login name, is replaced
// with U+FFFD before sealing, in every store: the event is kept, the chain
// verifies, and both stores keep the same trail.
func testAuditUnstorableText(t *testing.T, s store.Store) {
	e := &audit.Event{Time: time.Now(), Subject: "al\x00ice", Action: audit.ActionLogin, Outcome: audit.OutcomeFailure,
		UserAgent: "curl\xff", Details: "{}"}
	if err := s.AppendAudit(context.Background(), e); err != nil {
		t.Fatal(err)
	}
	if n := verifyAll(t, s); n != 1 {
		t.Fatalf("chain: %d events", n)
	}
	got, err := s.QueryAudit(context.Background(), store.AuditFilter{})
	if err != nil || len(got) != 1 || got[0].Subject != "al\uFFFDice" || got[0].UserAgent != "curl\uFFFD" {
		t.Fatalf("stored: %v %+v", err, got)
	}
}

func event(actor, action, outcome string, at time.Time) *audit.Event {
	return &audit.Event{Time: at, Actor: actor, Subject: actor, Action: action, Outcome: outcome,
		ClientIP: "127.0.0.1", UserAgent: "test", RequestID: "r", Details: "{}"}
}

// verifyAll walks the whole chain and returns how many events it holds.
func verifyAll(t *testing.T, s store.Store) int64 {
	t.Helper()
	var v audit.Verifier
	if err := s.StreamAudit(context.Background(), store.AuditFilter{}, v.Check); err != nil {
		t.Fatalf("chain does not verify: %v", err)
	}
	return v.Count
}

func testAudit(t *testing.T, s store.Store) {
	ctx := context.Background()
	if n := verifyAll(t, s); n != 0 {
		t.Fatalf("empty store has %d events", n)
	}
	for i := 0; i < 30; i++ {
		actor := []string{"alice", "bob", "helen"}[i%3]
		e := event(actor, audit.ActionIssue, audit.OutcomeSuccess, t0.Add(time.Duration(i)*time.Hour))
		if i%5 == 0 {
			e.Action, e.Outcome = audit.ActionLogin, audit.OutcomeFailure
		}
		e.Serial = fmt.Sprintf("aa:%02x", i)
		if err := s.AppendAudit(ctx, e); err != nil {
			t.Fatal(err)
		}
		if e.ID != int64(i+1) || e.Hash == "" {
			t.Fatalf("event %d: id %d hash %q", i, e.ID, e.Hash)
		}
	}
	if n := verifyAll(t, s); n != 30 {
		t.Fatalf("chain holds %d events, want 30", n)
	}
	page, err := s.QueryAudit(ctx, store.AuditFilter{Actor: "alice", Limit: 4})
	if err != nil || len(page) != 4 || page[0].ID != 28 || page[3].ID != 19 {
		t.Fatalf("first page: %v %v", err, ids(page))
	}
	next, err := s.QueryAudit(ctx, store.AuditFilter{Actor: "alice", Limit: 4, BeforeID: page[3].ID})
	if err != nil || len(next) != 4 || next[0].ID != 16 {
		t.Fatalf("second page: %v %v", err, ids(next))
	}
	// Paging back towards newer events: the page just above AfterID,
	// still newest first.
	newer, err := s.QueryAudit(ctx, store.AuditFilter{Actor: "alice", Limit: 4, AfterID: next[3].ID})
	if err != nil || len(newer) != 4 || newer[0].ID != 19 || newer[3].ID != 10 {
		t.Fatalf("newer page: %v %v", err, ids(newer))
	}
	if top, err := s.QueryAudit(ctx, store.AuditFilter{Actor: "alice", Limit: 4, AfterID: 19}); err != nil || len(top) != 3 || top[0].ID != 28 || top[2].ID != 22 {
		t.Fatalf("newest page from AfterID: %v %v", err, ids(top))
	}
	fails, _ := s.QueryAudit(ctx, store.AuditFilter{Action: audit.ActionLogin, Outcome: audit.OutcomeFailure, Limit: 100})
	if len(fails) != 6 {
		t.Fatalf("failed logins: %v", ids(fails))
	}
	ranged, _ := s.QueryAudit(ctx, store.AuditFilter{From: t0.Add(10 * time.Hour), To: t0.Add(12 * time.Hour), Limit: 100})
	if len(ranged) != 2 || ranged[0].ID != 12 {
		t.Fatalf("time range: %v", ids(ranged))
	}
	if bySerial, _ := s.QueryAudit(ctx, store.AuditFilter{Serial: "aa:07"}); len(bySerial) != 1 || bySerial[0].ID != 8 {
		t.Fatalf("by serial: %v", ids(bySerial))
	}
	got := bySerialEvent(t, s, "aa:07")
	if !got.Time.Equal(t0.Add(7*time.Hour)) || got.UserAgent != "test" || got.Details != "{}" {
		t.Fatalf("round trip: %+v", got)
	}
	days, err := s.AuditDaily(ctx, t0, t0.Add(48*time.Hour))
	if err != nil || len(days) != 2 {
		t.Fatalf("daily: %v %+v", err, days)
	}
	if days[0].Issued+days[1].Issued != 24 || days[0].FailedLogins+days[1].FailedLogins != 6 {
		t.Fatalf("daily counts: %+v", days)
	}
	// Issuing on behalf counts as issued; a helpdesk reissue revokes.
	for _, a := range []string{audit.ActionIssueOnBehalf, audit.ActionRevoke, audit.ActionReissue, audit.ActionDownload} {
		if err := s.AppendAudit(ctx, event("helen", a, audit.OutcomeSuccess, t0.Add(40*time.Hour))); err != nil {
			t.Fatal(err)
		}
	}
	days, err = s.AuditDaily(ctx, t0, t0.Add(48*time.Hour))
	var sum store.DayCount
	for _, d := range days {
		sum.Issued, sum.Revoked = sum.Issued+d.Issued, sum.Revoked+d.Revoked
	}
	if err != nil || sum.Issued != 25 || sum.Revoked != 2 {
		t.Fatalf("daily counts with on-behalf and reissue: %v %+v", err, days)
	}
}

func bySerialEvent(t *testing.T, s store.Store, serial string) *audit.Event {
	t.Helper()
	es, err := s.QueryAudit(context.Background(), store.AuditFilter{Serial: serial})
	if err != nil || len(es) != 1 {
		t.Fatalf("event for %s: %v", serial, err)
	}
	return es[0]
}

func ids(es []*audit.Event) []int64 {
	var out []int64
	for _, e := range es {
		out = append(out, e.ID)
	}
	return out
}

// testAuditAtomic: the inventory row and its audit event are written together
// or not at all.
func testAuditAtomic(t *testing.T, s store.Store) {
	ctx := context.Background()
	c := cert("0e:01", "alice", t0, time.Hour)
	if err := s.RecordIssuance(ctx, "", c, event("alice", audit.ActionIssue, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	// A duplicate serial fails, and leaves no audit event behind.
	if err := s.RecordIssuance(ctx, "", c, event("alice", audit.ActionIssue, audit.OutcomeSuccess, t0)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate issuance: %v", err)
	}
	if n := verifyAll(t, s); n != 1 {
		t.Fatalf("%d events after a failed issuance, want 1", n)
	}
	r := store.Revocation{At: t0.Add(time.Minute), Reason: "lost", By: "alice"}
	if err := s.RecordRevocation(ctx, "ff:01", r, event("alice", audit.ActionRevoke, audit.OutcomeSuccess, t0)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoking unknown: %v", err)
	}
	if err := s.RecordRevocation(ctx, "0e:01", r, event("alice", audit.ActionRevoke, audit.OutcomeSuccess, t0)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetCertificate(ctx, "0e:01"); !got.Revoked() {
		t.Fatal("not revoked")
	}
	if n := verifyAll(t, s); n != 2 {
		t.Fatalf("%d events, want 2", n)
	}
}

func testConcurrentAudit(t *testing.T, s store.Store) {
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- s.AppendAudit(context.Background(), event(fmt.Sprint("u", i%5), audit.ActionLogin, audit.OutcomeSuccess, t0))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := verifyAll(t, s); n != 100 {
		t.Fatalf("chain holds %d events, want 100", n)
	}
}

// Times are compared at millisecond precision, what every backend keeps.
var t0 = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

func testSessions(t *testing.T, s store.Store) {
	ctx := context.Background()
	if _, err := s.GetSession(ctx, "missing"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	x := &store.Session{IDHash: "h1", Data: []byte("d1"), CreatedAt: t0, LastSeen: t0, ExpiresAt: t0.Add(time.Hour)}
	if err := s.SaveSession(ctx, x); err != nil {
		t.Fatal(err)
	}
	// Saving again updates data and last-seen, never the creation or expiry.
	y := &store.Session{IDHash: "h1", Data: []byte("d2"), CreatedAt: t0.Add(time.Minute), LastSeen: t0.Add(time.Minute), ExpiresAt: t0.Add(5 * time.Hour)}
	if err := s.SaveSession(ctx, y); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSession(ctx, "h1")
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Data) != "d2" || !got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(t0.Add(time.Hour)) || !got.LastSeen.Equal(t0.Add(time.Minute)) {
		t.Fatalf("after update: %+v", got)
	}
	if err := s.TouchSession(ctx, "h1", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, "h1"); !got.LastSeen.Equal(t0.Add(2 * time.Minute)) {
		t.Fatalf("touch: last seen %v", got.LastSeen)
	}
	for i, tc := range []struct {
		created, seen, expires time.Time
	}{
		{t0, t0, t0.Add(time.Minute)},                         // past absolute expiry at t0+1h
		{t0, t0.Add(-time.Hour), t0.Add(5 * time.Hour)},       // idle too long
		{t0, t0.Add(50 * time.Minute), t0.Add(2 * time.Hour)}, // alive
	} {
		if err := s.SaveSession(ctx, &store.Session{IDHash: fmt.Sprint("e", i), Data: []byte("x"), CreatedAt: tc.created, LastSeen: tc.seen, ExpiresAt: tc.expires}); err != nil {
			t.Fatal(err)
		}
	}
	now, idleBefore := t0.Add(time.Hour), t0.Add(time.Hour-30*time.Minute)
	// e0 (expired), e1 (idle) and h1 (idle: last seen t0+2m) are expired;
	// e2 is not. They come in id-hash order, in pages after a cursor.
	var listed []string
	for after := ""; ; {
		page, err := s.ExpiredSessions(ctx, now, idleBefore, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 2 {
			t.Fatalf("page of %d, limit 2", len(page))
		}
		for _, x := range page {
			listed = append(listed, x.IDHash+"="+string(x.Data))
			after = x.IDHash
		}
		if len(page) < 2 {
			break
		}
	}
	if fmt.Sprint(listed) != "[e0=x e1=x h1=d2]" {
		t.Fatalf("expired sessions %v, want [e0=x e1=x h1=d2]", listed)
	}
	// Listing deletes nothing; the sweep deletes each once its token is revoked.
	if _, err := s.GetSession(ctx, "e0"); err != nil {
		t.Fatalf("listing an expired session deleted it: %v", err)
	}
	// Far in the future every session is expired: what a shutdown that
	// takes its session key with it lists.
	all, err := s.ExpiredSessions(ctx, t0.Add(100*365*24*time.Hour), t0, "", 10)
	if err != nil || len(all) != 4 {
		t.Fatalf("every session: %d, %v; want 4", len(all), err)
	}
	for _, id := range []string{"e0", "e1", "h1"} {
		if err := s.DeleteSession(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if page, err := s.ExpiredSessions(ctx, now, idleBefore, "", 10); err != nil || len(page) != 0 {
		t.Fatalf("after deleting them: %d expired, %v", len(page), err)
	}
	// Updating data never re-creates a deleted session.
	if err := s.UpdateSessionData(ctx, "e2", []byte("d3"), t0.Add(55*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.GetSession(ctx, "e2"); string(got.Data) != "d3" || !got.LastSeen.Equal(t0.Add(55*time.Minute)) ||
		!got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(t0.Add(2*time.Hour)) {
		t.Fatalf("after data update: %+v", got)
	}
	if err := s.UpdateSessionData(ctx, "e0", []byte("back"), t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a deleted session: %v, want ErrNotFound", err)
	}
	if _, err := s.GetSession(ctx, "e0"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update re-created a deleted session: %v", err)
	}
	if _, err := s.GetSession(ctx, "e2"); err != nil {
		t.Fatalf("live session deleted: %v", err)
	}
	// A rename (a new session id on a step-up) moves the row: new data and
	// last seen, the same lifetime, and the old id holds only a forwarding
	// row (where it went, until the grace ends) that no write revives.
	grace := t0.Add(56*time.Minute + 10*time.Second)
	if err := s.RenameSession(ctx, "e2", "r2", []byte("d4"), t0.Add(56*time.Minute), []byte("to-r2"), grace); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(ctx, "e2"); err != nil || string(got.MovedTo) != "to-r2" || len(got.Data) != 0 || !got.ExpiresAt.Equal(grace) {
		t.Fatalf("old id after a rename: %+v, %v, want a forwarding row", got, err)
	}
	if got, err := s.GetSession(ctx, "r2"); err != nil || string(got.Data) != "d4" || !got.LastSeen.Equal(t0.Add(56*time.Minute)) ||
		!got.CreatedAt.Equal(t0) || !got.ExpiresAt.Equal(t0.Add(2*time.Hour)) || got.MovedTo != nil {
		t.Fatalf("after rename: %+v, %v", got, err)
	}
	if err := s.RenameSession(ctx, "e2", "r3", []byte("back"), t0, []byte("to-r3"), grace); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rename of a renamed-away id: %v, want ErrNotFound", err)
	}
	if _, err := s.GetSession(ctx, "r3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("rename re-created a session: %v", err)
	}
	if err := s.UpdateSessionData(ctx, "e2", []byte("back"), t0); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("update of a forwarding row: %v, want ErrNotFound", err)
	}
	if err := s.TouchSession(ctx, "e2", t0.Add(57*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveSession(ctx, &store.Session{IDHash: "e2", Data: []byte("back"), CreatedAt: t0, LastSeen: t0, ExpiresAt: t0.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(ctx, "e2"); err != nil || string(got.MovedTo) != "to-r2" || len(got.Data) != 0 || !got.LastSeen.Equal(t0.Add(56*time.Minute)) {
		t.Fatalf("forwarding row after writes to it: %+v, %v", got, err)
	}
	// The sweep finds it once the grace is over.
	if page, err := s.ExpiredSessions(ctx, grace, t0, "", 10); err != nil || len(page) != 1 || page[0].IDHash != "e2" {
		t.Fatalf("expired at the grace's end: %+v, %v", page, err)
	}
	if err := s.DeleteSession(ctx, "e2"); err != nil {
		t.Fatal(err)
	}
	if err := s.RenameSession(ctx, "r2", "e2", []byte("d3"), t0.Add(55*time.Minute), []byte("to-e2"), grace); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(ctx, "e2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSession(ctx, "e2"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
}

func cert(serial, user string, issued time.Time, ttl time.Duration) *store.Certificate {
	return &store.Certificate{Serial: serial, Username: user, Subject: user + "@example.com", KeyType: "ec-256",
		Encryption: "modern", IssuedBy: user, IssuedAt: issued, NotAfter: issued.Add(ttl)}
}

func testCertificates(t *testing.T, s store.Store) {
	ctx := context.Background()
	rows := []*store.Certificate{
		cert("0a:01", "alice", t0, 30*24*time.Hour),
		cert("0a:02", "alice", t0.Add(time.Minute), 30*24*time.Hour),
		cert("0a:03", "alice", t0.Add(2*time.Minute), time.Hour), // expires soon
		cert("0b:01", "bob", t0, 30*24*time.Hour),
		cert("0c:01", "alicia", t0, 30*24*time.Hour),
		cert("0d:01", "al_ex", t0, 30*24*time.Hour),
	}
	for _, c := range rows {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.InsertCertificate(ctx, cert("0a:01", "mallory", t0, time.Hour)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("duplicate serial: %v", err)
	}
	got, err := s.GetCertificate(ctx, "0a:02")
	if err != nil {
		t.Fatal(err)
	}
	if got.Username != "alice" || !got.IssuedAt.Equal(t0.Add(time.Minute)) || got.Revoked() || got.KeyType != "ec-256" {
		t.Fatalf("get: %+v", got)
	}
	if _, err := s.GetCertificate(ctx, "ff:ff"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("get unknown: %v", err)
	}
	list, err := s.ListCertificates(ctx, store.CertificateFilter{Username: "alice"})
	if err != nil || len(list) != 3 || list[0].Serial != "0a:03" {
		t.Fatalf("list alice: %v %v", err, serials(list))
	}
	at := t0.Add(2 * time.Hour)
	if n, err := s.CountActive(ctx, "alice", at); err != nil || n != 2 {
		t.Fatalf("active alice at +2h: %d %v", n, err)
	}
	r := store.Revocation{At: t0.Add(3 * time.Hour), Reason: "lost", By: "helen", Ticket: "INC-1"}
	if err := s.MarkRevoked(ctx, "0a:01", r); err != nil {
		t.Fatal(err)
	}
	// A second revocation keeps the first record.
	if err := s.MarkRevoked(ctx, "0a:01", store.Revocation{At: t0.Add(4 * time.Hour), Reason: "superseded", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetCertificate(ctx, "0a:01")
	if !got.RevokedAt.Equal(r.At) || got.RevokeReason != "lost" || got.RevokedBy != "helen" || got.Ticket != "INC-1" {
		t.Fatalf("revoked: %+v", got)
	}
	if err := s.MarkRevoked(ctx, "ff:ff", r); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("revoke unknown: %v", err)
	}
	if n, _ := s.CountActive(ctx, "alice", at); n != 1 {
		t.Fatalf("active alice after revoke: %d", n)
	}
	active, err := s.ListCertificates(ctx, store.CertificateFilter{Username: "alice", ActiveAt: at})
	if err != nil || len(active) != 1 || active[0].Serial != "0a:02" {
		t.Fatalf("active list: %v %v", err, serials(active))
	}
	users, err := s.SearchUsers(ctx, "ali", at, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(users) != 2 || users[0].Username != "alice" || users[0].Active != 1 || users[0].Total != 3 || users[1].Username != "alicia" {
		t.Fatalf("search ali: %+v", users)
	}
	// Wildcards are literal: "al_" must not match "ali...".
	if users, _ := s.SearchUsers(ctx, "al_", at, 10); len(users) != 1 || users[0].Username != "al_ex" {
		t.Fatalf("search al_: %+v", users)
	}
	if users, _ := s.SearchUsers(ctx, "%", at, 10); len(users) != 0 {
		t.Fatalf("search %%: %+v", users)
	}
	if all, _ := s.SearchUsers(ctx, "", at, 10); len(all) != 4 {
		t.Fatalf("search all: %+v", all)
	}
}

// testSearchUsersPrefix: a prefix selects exactly the names that start
// with it, bytewise, at the edges of the range a store may scan: the name
// equal to the prefix, the next name up, a multi-byte last character
// (é, whose successor ê must not match) and the largest code point.
func testSearchUsersPrefix(t *testing.T, s store.Store) {
	ctx := context.Background()
	names := []string{"bo", "bo.b", "boa", "bp", "b", "zé", "zé1", "zê", "z\U0010FFFF", "z\U0010FFFFa", "{"}
	for i, n := range names {
		if err := s.InsertCertificate(ctx, cert(fmt.Sprintf("5e:%02x", i), n, t0, 30*24*time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"bo", []string{"bo", "bo.b", "boa"}},
		{"b", []string{"b", "bo", "bo.b", "boa", "bp"}},
		{"bp", []string{"bp"}},
		{"bq", nil},
		{"zé", []string{"zé", "zé1"}},
		{"z\U0010FFFF", []string{"z\U0010FFFF", "z\U0010FFFFa"}},
		{"z", []string{"zé", "zé1", "zê", "z\U0010FFFF", "z\U0010FFFFa"}},
	} {
		users, err := s.SearchUsers(ctx, tc.prefix, t0, 50)
		if err != nil {
			t.Fatalf("search %q: %v", tc.prefix, err)
		}
		var got []string
		for _, u := range users {
			got = append(got, u.Username)
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("search %q: %q, want %q", tc.prefix, got, tc.want)
		}
	}
}

func serials(cs []*store.Certificate) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Serial)
	}
	return out
}

// testConcurrentInserts: 200 concurrent issuances leave 200 rows with 200 serials.
func testConcurrentInserts(t *testing.T, s store.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := 0; i < 200; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			errs <- s.InsertCertificate(ctx, cert(fmt.Sprintf("%02x:%02x", i/256, i%256), fmt.Sprintf("user%d", i%7), t0, time.Hour))
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	for u := 0; u < 7; u++ {
		list, err := s.ListCertificates(ctx, store.CertificateFilter{Username: fmt.Sprintf("user%d", u)})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range list {
			seen[c.Serial] = true
		}
	}
	if len(seen) != 200 {
		t.Fatalf("%d distinct serials stored, want 200", len(seen))
	}
}

// testInventory: the report's counts, its users and the certificates behind
// each count, paged by serial, agree with what was inserted.
func testInventory(t *testing.T, s store.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	at := t0.Add(10 * day)
	rows := []*store.Certificate{
		cert("0a:01", "alice", t0, 100*day),            // active, beyond 30 days
		cert("0a:02", "alice", t0, 15*day),             // active, expiring within 7
		cert("0a:03", "alice", t0, 30*day),             // active, expiring within 30
		cert("0b:01", "bob", t0, 5*day),                // expired
		cert("0b:02", "bob", t0, 100*day),              // revoked below
		cert("0c:01", "carol", t0, 10*day),             // expired exactly at at
		cert("0c:02", "carol", t0, 40*day+time.Minute), // active, a minute past 30 days left
	}
	for _, c := range rows {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRevoked(ctx, "0b:02", store.Revocation{At: t0.Add(day), Reason: "lost", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.InventoryCounts(ctx, at)
	want := store.InventoryCounts{Active: 4, Expiring7: 1, Expiring30: 2, Expired: 2, Revoked: 1}
	if err != nil || got != want {
		t.Fatalf("counts: %v %+v, want %+v", err, got, want)
	}
	users, err := s.InventoryByUser(ctx, at, "", 2)
	if err != nil || len(users) != 2 || users[0] != (store.UserSummary{Username: "alice", Active: 3, Total: 3}) || users[1].Username != "bob" || users[1].Active != 0 || users[1].Total != 2 {
		t.Fatalf("by user: %v %+v", err, users)
	}
	if more, err := s.InventoryByUser(ctx, at, "bob", 2); err != nil || len(more) != 1 || more[0].Username != "carol" || more[0].Active != 1 {
		t.Fatalf("by user after bob: %v %+v", err, more)
	}
	for _, tc := range []struct {
		state, user string
		want        []string
	}{
		{store.StateActive, "", []string{"0a:01", "0a:02", "0a:03", "0c:02"}},
		{store.StateExpiring7, "", []string{"0a:02"}},
		{store.StateExpiring30, "", []string{"0a:02", "0a:03"}},
		{store.StateExpired, "", []string{"0b:01", "0c:01"}},
		{store.StateRevoked, "", []string{"0b:02"}},
		{"", "bob", []string{"0b:01", "0b:02"}},
		{store.StateActive, "alice", []string{"0a:01", "0a:02", "0a:03"}},
	} {
		// Pages of two, by serial: the keyset walk sees every row once.
		var walked []string
		after := ""
		for {
			page, err := s.ListInventory(ctx, store.InventoryFilter{State: tc.state, Username: tc.user, At: at, AfterSerial: after, Limit: 2})
			if err != nil {
				t.Fatalf("%s/%s: %v", tc.state, tc.user, err)
			}
			walked = append(walked, serials(page)...)
			if len(page) < 2 {
				break
			}
			after = page[len(page)-1].Serial
		}
		var streamed []string
		if err := s.StreamInventory(ctx, store.InventoryFilter{State: tc.state, Username: tc.user, At: at}, func(c *store.Certificate) error {
			streamed = append(streamed, c.Serial)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if strings.Join(walked, " ") != strings.Join(tc.want, " ") || strings.Join(streamed, " ") != strings.Join(tc.want, " ") {
			t.Errorf("%s/%s: pages %v, stream %v, want %v", tc.state, tc.user, walked, streamed, tc.want)
		}
	}
	if _, err := s.ListInventory(ctx, store.InventoryFilter{State: "bogus", At: at}); err == nil {
		t.Error("unknown state accepted")
	}
}

// testReservations: a reservation takes one of a user's places until it is
// released, consumed by RecordIssuance (the certificate then holds the place)
// or expires; a replaced active certificate of the user's does not count.
func testReservations(t *testing.T, s store.Store) {
	ctx := context.Background()
	at := t0.Add(time.Minute)
	res := func(user, replaces string) store.Reservation {
		return store.Reservation{Username: user, Max: 3, At: at, Expires: at.Add(2 * time.Minute), Replaces: replaces}
	}
	mustReserve := func(r store.Reservation) string {
		t.Helper()
		id, err := s.ReserveIssuance(ctx, r)
		if err != nil || id == "" {
			t.Fatalf("reserve %+v: %q %v", r, id, err)
		}
		return id
	}
	full := func(r store.Reservation) {
		t.Helper()
		if id, err := s.ReserveIssuance(ctx, r); !errors.Is(err, store.ErrCapReached) {
			t.Fatalf("reserve %+v at the cap: %q %v", r, id, err)
		}
	}
	// Two active certificates, one expired and one revoked (neither counts).
	for _, c := range []*store.Certificate{
		cert("0b:01", "alice", t0, time.Hour), cert("0b:02", "alice", t0, time.Hour),
		cert("0b:03", "alice", t0.Add(-2*time.Hour), time.Hour), cert("0b:04", "alice", t0, time.Hour),
	} {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRevoked(ctx, "0b:04", store.Revocation{At: t0, Reason: "lost", By: "alice"}); err != nil {
		t.Fatal(err)
	}
	first := mustReserve(res("alice", ""))
	full(res("alice", ""))
	mustReserve(res("bob", "")) // another user's places are their own

	// Released: the place is free again; releasing twice is no error.
	if err := s.ReleaseReservation(ctx, first); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseReservation(ctx, first); err != nil {
		t.Fatalf("releasing twice: %v", err)
	}
	second := mustReserve(res("alice", ""))
	full(res("alice", ""))

	// Consumed: the certificate holds the place, so the cap stays full, and
	// the reservation is gone (releasing it frees nothing).
	if err := s.RecordIssuance(ctx, second, cert("0b:05", "alice", t0, time.Hour), event("alice", audit.ActionIssue, audit.OutcomeSuccess, at)); err != nil {
		t.Fatal(err)
	}
	if err := s.ReleaseReservation(ctx, second); err != nil {
		t.Fatal(err)
	}
	full(res("alice", ""))

	// Renewal: replacing an active certificate of alice's fits at the cap,
	// once per certificate; a revoked, expired or someone else's serial
	// frees nothing.
	renew := mustReserve(res("alice", "0b:01"))
	full(res("alice", "0b:01"))
	for _, serial := range []string{"0b:03", "0b:04", "0c:01", "ff:ff"} {
		full(res("alice", serial))
	}
	if err := s.InsertCertificate(ctx, cert("0c:01", "bob", t0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	full(res("alice", "0c:01"))
	mustReserve(res("alice", "0b:02")) // a second, different renewal
	full(res("alice", ""))             // two renewals under way: still 3 places taken
	if err := s.ReleaseReservation(ctx, renew); err != nil {
		t.Fatal(err)
	}
	mustReserve(res("alice", "0b:01"))

	// Expired: a reservation left by a crash stops counting at its expiry.
	carol := store.Reservation{Username: "carol", Max: 1, At: at, Expires: at.Add(2 * time.Minute)}
	mustReserve(carol)
	full(carol)
	carol.At = at.Add(2*time.Minute - time.Millisecond)
	full(carol)
	carol.At, carol.Expires = at.Add(2*time.Minute), at.Add(4*time.Minute)
	mustReserve(carol)
}

// testConcurrentReservations: simultaneous reservations for one user take
// exactly the cap's places, whatever the interleaving; the others get
// ErrCapReached and nothing else.
func testConcurrentReservations(t *testing.T, s store.Store) {
	ctx := context.Background()
	const tries, max = 24, 3
	var wg sync.WaitGroup
	errs := make(chan error, 2*tries)
	for i := 0; i < 2*tries; i++ {
		user := []string{"alice", "bob"}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.ReserveIssuance(ctx, store.Reservation{Username: user, Max: max, At: t0, Expires: t0.Add(2 * time.Minute)})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	ok, capped := 0, 0
	for err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrCapReached):
			capped++
		default:
			t.Fatal(err)
		}
	}
	if ok != 2*max || capped != 2*tries-2*max {
		t.Fatalf("%d reservations taken, %d refused; want %d and %d", ok, capped, 2*max, 2*tries-2*max)
	}
}

// testLoginAttempts: a key's attempts are counted in runs, as Vault's lockout
// counts failures: a run ends `reset` after its last counted attempt; while
// a run is at the limit, attempts are refused (the first refusal says so)
// and do not extend it.
func testLoginAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	const reset = time.Minute
	take := func(key string, at time.Time) store.LoginAttemptVerdict {
		t.Helper()
		v, err := s.TakeLoginAttempt(ctx, key, 3, reset, at)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i := 0; i < 3; i++ {
		if v := take("k1", t0.Add(time.Duration(i)*10*time.Second)); !v.Allowed {
			t.Fatalf("attempt %d refused: %+v", i+1, v)
		}
	}
	v := take("k1", t0.Add(30*time.Second))
	if v.Allowed || !v.FirstRefusal || !v.RetryAt.Equal(t0.Add(20*time.Second+reset)) {
		t.Fatalf("over the limit: %+v", v)
	}
	if v := take("k1", t0.Add(40*time.Second)); v.Allowed || v.FirstRefusal || !v.RetryAt.Equal(t0.Add(20*time.Second+reset)) {
		t.Fatalf("second refusal (must not extend the run): %+v", v)
	}
	if v := take("k2", t0.Add(40*time.Second)); !v.Allowed {
		t.Fatalf("another key refused: %+v", v)
	}
	// A refund gives one attempt back.
	if err := s.RefundLoginAttempt(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	if v := take("k1", t0.Add(50*time.Second)); !v.Allowed {
		t.Fatalf("refunded attempt still counted: %+v", v)
	}
	if v := take("k1", t0.Add(51*time.Second)); v.Allowed || !v.FirstRefusal || !v.RetryAt.Equal(t0.Add(50*time.Second+reset)) {
		t.Fatalf("refused again after the refund: %+v", v)
	}
	// The run ends reset after its last counted attempt.
	if v := take("k1", t0.Add(50*time.Second+reset)); !v.Allowed {
		t.Fatalf("refused after the run ended: %+v", v)
	}
	// Clearing (a successful login) ends the run at once.
	take("k1", t0.Add(51*time.Second+reset))
	take("k1", t0.Add(52*time.Second+reset))
	if err := s.ClearLoginAttempts(ctx, "k1"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if v := take("k1", t0.Add(53*time.Second+reset)); !v.Allowed {
			t.Fatalf("attempt %d after clearing refused: %+v", i+1, v)
		}
	}
	// Refunding or clearing an unknown key is not an error.
	if err := s.RefundLoginAttempt(ctx, "nobody"); err != nil {
		t.Fatal(err)
	}
	if err := s.ClearLoginAttempts(ctx, "nobody"); err != nil {
		t.Fatal(err)
	}
	// Stale runs are deleted; live ones stay.
	n, err := s.DeleteStaleLoginAttempts(ctx, t0.Add(41*time.Second))
	if err != nil || n != 1 {
		t.Fatalf("deleted %d stale runs (%v), want 1 (k2)", n, err)
	}
	if v := take("k1", t0.Add(53*time.Second+reset)); v.Allowed {
		t.Fatalf("a live run was deleted: %+v", v)
	}
}

// testLoginAttemptsTwoLimits: one key taken with different limits, as the
// portal takes a name's run with the limit raised for a browser holding a
// device cookie: a take with the higher limit counts where the lower one is
// refused, extends the run as any counted attempt does, and the lower limit
// then still refuses (and says so again: a new first refusal).
func testLoginAttemptsTwoLimits(t *testing.T, s store.Store) {
	ctx := context.Background()
	take := func(limit int, at time.Time) store.LoginAttemptVerdict {
		t.Helper()
		v, err := s.TakeLoginAttempt(ctx, "name", limit, time.Minute, at)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i := 0; i < 2; i++ {
		take(2, t0)
	}
	if v := take(2, t0.Add(time.Second)); v.Allowed || !v.FirstRefusal {
		t.Fatalf("lower limit at the limit: %+v", v)
	}
	for i := 0; i < 2; i++ {
		if v := take(4, t0.Add(10*time.Second)); !v.Allowed {
			t.Fatalf("higher limit, attempt %d: %+v", 3+i, v)
		}
	}
	if v := take(4, t0.Add(11*time.Second)); v.Allowed || !v.RetryAt.Equal(t0.Add(10*time.Second+time.Minute)) {
		t.Fatalf("higher limit reached (the run extended to its last counted attempt): %+v", v)
	}
	if v := take(2, t0.Add(12*time.Second)); v.Allowed || !v.RetryAt.Equal(t0.Add(10*time.Second+time.Minute)) {
		t.Fatalf("lower limit after the higher one counted: %+v", v)
	}
	if v := take(2, t0.Add(10*time.Second+time.Minute)); !v.Allowed {
		t.Fatalf("refused after the run ended: %+v", v)
	}
}

// testConcurrentLoginAttempts: concurrent attempts on one key (as from
// several replicas) cannot get more than the limit through.
func testConcurrentLoginAttempts(t *testing.T, s store.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed, firsts := 0, 0
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := s.TakeLoginAttempt(ctx, "shared", 5, time.Minute, t0)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if v.Allowed {
				allowed++
			}
			if v.FirstRefusal {
				firsts++
			}
		}()
	}
	wg.Wait()
	if allowed != 5 || firsts != 1 {
		t.Fatalf("%d of 40 concurrent attempts let through (want 5), %d first refusals (want 1)", allowed, firsts)
	}
}

// testCertificateScan: reconciliation's two reads. Serials looked up in
// batches larger than one SQL statement takes, and keyset pages over the
// whole inventory in bytewise serial order, each row exactly once.
func testCertificateScan(t *testing.T, s store.Store) {
	ctx := context.Background()
	const n = 1234
	want := make([]string, 0, n)
	for i := 0; i < n; i++ {
		serial := fmt.Sprintf("%02x:%02x", i/256, i%256)
		want = append(want, serial)
		c := cert(serial, fmt.Sprintf("user%d", i%7), t0, time.Hour)
		if i%10 == 0 {
			c.RevokedAt, c.RevokeReason, c.RevokedBy = t0.Add(time.Minute), "lost", "helen"
		}
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.CertificatesBySerials(ctx, nil); err != nil || len(got) != 0 {
		t.Fatalf("no serials: %v %v", err, serials(got))
	}
	// Every other known serial plus as many unknown ones, 1,234 in all: more
	// than one SQLite batch.
	var ask []string
	for i, serial := range want {
		if i%2 == 0 {
			ask = append(ask, serial)
		} else {
			ask = append(ask, "ff:"+serial)
		}
	}
	got, err := s.CertificatesBySerials(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]*store.Certificate{}
	for _, c := range got {
		found[c.Serial] = c
	}
	if len(got) != n/2 || len(found) != n/2 {
		t.Fatalf("by serials: %d rows (%d distinct), want %d", len(got), len(found), n/2)
	}
	for i := 0; i < n; i += 2 {
		c := found[want[i]]
		if c == nil || c.Revoked() != (i%10 == 0) || c.Username != fmt.Sprintf("user%d", i%7) {
			t.Fatalf("by serials: %s: %+v", want[i], c)
		}
	}

	// Reconciliation walks the whole inventory with ListInventory pages.
	var walked []string
	after := ""
	for pages := 0; ; pages++ {
		if pages > n {
			t.Fatal("keyset walk does not end")
		}
		page, err := s.ListInventory(ctx, store.InventoryFilter{At: t0, AfterSerial: after, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 100 {
			t.Fatalf("page of %d rows, limit 100", len(page))
		}
		if len(page) == 0 {
			break
		}
		for _, c := range page {
			walked = append(walked, c.Serial)
		}
		after = page[len(page)-1].Serial
	}
	if strings.Join(walked, ",") != strings.Join(want, ",") {
		t.Fatalf("keyset walk: %d rows, first %v", len(walked), walked[:min(5, len(walked))])
	}
}

// testEnrolments: a link is used once, by its user, before it expires; a
// new link for a user replaces the old one.
func testEnrolments(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := time.Now().Truncate(time.Millisecond)
	mk := func(hash, user string) *store.Enrolment {
		return &store.Enrolment{TokenHash: hash, Username: user, CreatedBy: "helen", Ticket: "T-1", CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	}
	for _, e := range []*store.Enrolment{mk("h1", "alice"), mk("h2", "bob")} {
		if err := s.CreateEnrolment(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.UseEnrolment(ctx, "h1", "bob", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("alice's link used by bob: %v, want ErrNotFound", err)
	}
	if _, err := s.UseEnrolment(ctx, "h2", "bob", now.Add(24*time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("expired link: %v, want ErrNotFound", err)
	}
	e, err := s.UseEnrolment(ctx, "h1", "alice", now.Add(time.Hour))
	if err != nil || e.Username != "alice" || e.CreatedBy != "helen" || e.Ticket != "T-1" || !e.ExpiresAt.Equal(now.Add(24*time.Hour)) {
		t.Fatalf("use alice's link: %+v, %v", e, err)
	}
	if _, err := s.UseEnrolment(ctx, "h1", "alice", now.Add(time.Hour)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("second use: %v, want ErrNotFound", err)
	}
	if err := s.CreateEnrolment(ctx, mk("h3", "bob")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UseEnrolment(ctx, "h2", "bob", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("replaced link: %v, want ErrNotFound", err)
	}
	// Concurrent uses of one link: exactly one wins.
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UseEnrolment(ctx, "h3", "bob", now); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d concurrent uses of one link succeeded, want 1", n)
	}
}

// testOffboardScan: the users the offboarding sweep checks are those with an
// active certificate — not a user whose certificates are all revoked or
// expired — paged in name order; the sweep's lock admits one holder.
func testOffboardScan(t *testing.T, s store.Store) {
	ctx := context.Background()
	day := 24 * time.Hour
	at := t0.Add(10 * day)
	for _, c := range []*store.Certificate{
		cert("1a:01", "alice", t0, 100*day), // active
		cert("1a:02", "alice", t0, 100*day), // active: alice is listed once
		cert("1b:01", "bob", t0, 5*day),     // expired
		cert("1b:02", "bob", t0, 100*day),   // revoked below
		cert("1c:01", "carol", t0, 40*day),  // active
		cert("1d:01", "dave", t0, 20*day),   // active
	} {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRevoked(ctx, "1b:02", store.Revocation{At: t0.Add(day), Reason: "lost", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.CountActiveUsers(ctx, at); err != nil || n != 3 {
		t.Fatalf("count active users: %d %v, want 3", n, err)
	}
	page, err := s.ActiveUsers(ctx, at, "", 2)
	if err != nil || strings.Join(page, ",") != "alice,carol" {
		t.Fatalf("active users: %v %v, want alice,carol", page, err)
	}
	page, err = s.ActiveUsers(ctx, at, "carol", 2)
	if err != nil || strings.Join(page, ",") != "dave" {
		t.Fatalf("active users after carol: %v %v, want dave", page, err)
	}

	unlock, ok, err := s.TryLock(ctx, "offboard")
	if err != nil || !ok {
		t.Fatalf("first lock: %v %v", ok, err)
	}
	if _, ok, err := s.TryLock(ctx, "offboard"); err != nil || ok {
		t.Fatalf("second lock while held: ok=%v err=%v, want refused", ok, err)
	}
	other, ok, err := s.TryLock(ctx, "another")
	if err != nil || !ok {
		t.Fatalf("a lock of another name: %v %v", ok, err)
	}
	// LockHeld looks without taking: while it says held the lock stays
	// the holder's, and it never makes a TryLock fail.
	if held, err := s.LockHeld(ctx, "another"); err != nil || !held {
		t.Fatalf("lock held while held: %v %v, want held", held, err)
	}
	other()
	if held, err := s.LockHeld(ctx, "another"); err != nil || held {
		t.Fatalf("lock held after unlock: %v %v, want free", held, err)
	}
	if held, err := s.LockHeld(ctx, "offboard"); err != nil || !held {
		t.Fatalf("the other name's lock held: %v %v, want held", held, err)
	}
	unlock()
	if held, err := s.LockHeld(ctx, "offboard"); err != nil || held {
		t.Fatalf("lock held after unlock: %v %v, want free", held, err)
	}
	again, ok, err := s.TryLock(ctx, "offboard")
	if err != nil || !ok {
		t.Fatalf("lock after unlock: %v %v", ok, err)
	}
	again()
}
