package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

func band(th time.Duration, now time.Time, lower time.Duration, channels ...string) store.Band {
	return store.Band{Threshold: th, From: now.Add(lower), To: now.Add(th), At: now, Channels: channels, MinValid: th}
}

func testNotifications(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := t0.Add(100 * 24 * time.Hour)
	// a: 90-day certificate 5 days from expiry -> in the 168h band.
	// b: revoked, same window -> never. c: renewed by c2 -> never.
	// d: valid 110h in all, shorter than the 168h threshold -> never.
	// e: 30 days left -> not in the band.
	mk := func(serial, user string, left, valid time.Duration) *store.Certificate {
		exp := now.Add(left)
		return cert(serial, user, exp.Add(-valid), valid)
	}
	for _, c := range []*store.Certificate{
		mk("0a", "alice", 5*24*time.Hour, 90*24*time.Hour),
		mk("0b", "bob", 5*24*time.Hour, 90*24*time.Hour),
		mk("0c", "carol", 4*24*time.Hour, 90*24*time.Hour),
		mk("0c2", "carol", 80*24*time.Hour, 90*24*time.Hour),
		mk("0d", "dave", 100*time.Hour, 110*time.Hour),
		mk("0e", "erin", 30*24*time.Hour, 90*24*time.Hour),
	} {
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkRevoked(ctx, "0b", store.Revocation{At: now.Add(-time.Hour), Reason: "keyCompromise", By: "bob"}); err != nil {
		t.Fatal(err)
	}
	b := band(168*time.Hour, now, 72*time.Hour, "email", "webhook")
	n, err := s.EnqueueReminders(ctx, b, now)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("enqueued %d rows, want 2 (alice's certificate, two channels)", n)
	}
	// Once per certificate, threshold and channel, however often it runs.
	if n, err := s.EnqueueReminders(ctx, b, now.Add(time.Minute)); err != nil || n != 0 {
		t.Fatalf("second enqueue: %d, %v; want 0", n, err)
	}
	list, err := s.ListNotifications(ctx, "alice", 10)
	if err != nil || len(list) != 2 {
		t.Fatalf("alice's notifications: %v, %v", list, err)
	}
	for _, x := range list {
		if x.State != store.NotifyPending || x.Serial != "0a" || x.Threshold != 168*time.Hour || !x.NotAfter.Equal(now.Add(5*24*time.Hour)) {
			t.Fatalf("row %+v", x)
		}
	}

	// Claiming: one runner per row, due rows only.
	lease := now.Add(5 * time.Minute)
	got, err := s.ClaimNotification(ctx, now, lease, "runner-1")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != store.NotifySending || got.Attempts != 1 || got.Lease != "runner-1" || got.Username != "alice" {
		t.Fatalf("claimed %+v", got)
	}
	second, err := s.ClaimNotification(ctx, now, lease, "runner-2")
	if err != nil || second.ID == got.ID {
		t.Fatalf("second claim: %+v, %v", second, err)
	}
	if _, err := s.ClaimNotification(ctx, now, lease, "runner-3"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("third claim: %v, want ErrNotFound", err)
	}
	// A runner whose lease is not the row's cannot finish it.
	stolen := *got
	stolen.Lease = "runner-x"
	stolen.State = store.NotifySent
	if err := s.FinishNotification(ctx, &stolen, event("certportal", audit.ActionNotify, audit.OutcomeSuccess, now)); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("finish under a foreign lease: %v, want ErrConflict", err)
	}
	before := verifyAll(t, s)
	got.State, got.SentAt = store.NotifySent, now
	if err := s.FinishNotification(ctx, got, event("certportal", audit.ActionNotify, audit.OutcomeSuccess, now)); err != nil {
		t.Fatal(err)
	}
	if after := verifyAll(t, s); after != before+1 {
		t.Fatalf("finish appended %d events, want 1", after-before)
	}
	// Retry later: back to pending, not claimable before next_attempt.
	second.State, second.NextAttempt, second.LastError = store.NotifyPending, now.Add(time.Minute), "connection refused"
	if err := s.FinishNotification(ctx, second, event("certportal", audit.ActionNotify, audit.OutcomeFailure, now)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimNotification(ctx, now.Add(30*time.Second), lease, "r"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim before next_attempt: %v", err)
	}
	again, err := s.ClaimNotification(ctx, now.Add(time.Minute), lease, "r")
	if err != nil || again.ID != second.ID || again.Attempts != 2 || again.LastError != "connection refused" {
		t.Fatalf("retry claim: %+v, %v", again, err)
	}
	// Leases that ran out are found; live ones are not.
	if l, err := s.ExpiredLeases(ctx, lease, 10); err != nil || len(l) != 0 {
		t.Fatalf("expired leases at the lease's end: %v, %v", l, err)
	}
	if l, err := s.ExpiredLeases(ctx, lease.Add(time.Second), 10); err != nil || len(l) != 1 || l[0].ID != again.ID {
		t.Fatalf("expired leases: %v, %v", l, err)
	}

	// A more urgent threshold makes the pending less urgent one skipped.
	later := now.Add(3 * 24 * time.Hour)                                                                                  // 2 days left
	if n, err := s.EnqueueReminders(ctx, band(72*time.Hour, later, 0, "email", "webhook"), later); err != nil || n != 4 { // alice and dave (110h of validity exceeds 72h)
		t.Fatalf("72h enqueue: %d, %v", n, err)
	}
	again.State, again.NextAttempt = store.NotifyPending, later
	if err := s.FinishNotification(ctx, again, event("certportal", audit.ActionNotify, audit.OutcomeFailure, now)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SkipSuperseded(ctx); err != nil || n != 1 {
		t.Fatalf("skip superseded: %d, %v; want 1", n, err)
	}
	states := map[string]int{}
	list, _ = s.ListNotifications(ctx, "alice", 10)
	for _, x := range list {
		states[x.Channel+"/"+x.Threshold.String()+"/"+x.State]++
	}
	want := map[string]int{"email/168h0m0s/sent": 1, "webhook/168h0m0s/skipped": 1, "email/72h0m0s/pending": 1, "webhook/72h0m0s/pending": 1}
	if len(states) != len(want) {
		t.Fatalf("states %v, want %v", states, want)
	}
	for k, v := range want {
		if states[k] != v {
			t.Fatalf("states %v, want %v", states, want)
		}
	}
	verifyAll(t, s)

	// Languages.
	if l, err := s.UserLanguage(ctx, "alice"); err != nil || l != "" {
		t.Fatalf("no language yet: %q, %v", l, err)
	}
	if err := s.SetUserLanguage(ctx, "alice", "ko", now); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUserLanguage(ctx, "alice", "en", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if l, err := s.UserLanguage(ctx, "alice"); err != nil || l != "en" {
		t.Fatalf("language: %q, %v", l, err)
	}
}

// testConcurrentClaims: runners racing for the same rows each get
// distinct ones, and together get every row exactly once.
func testConcurrentClaims(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := t0.Add(100 * 24 * time.Hour)
	for i := 0; i < 20; i++ {
		c := cert(string(rune('a'+i))+"0", "u"+string(rune('a'+i)), now.Add(-80*24*time.Hour), 85*24*time.Hour)
		if err := s.InsertCertificate(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.EnqueueReminders(ctx, band(168*time.Hour, now, 0, "email"), now); err != nil || n != 20 {
		t.Fatalf("enqueue: %d, %v", n, err)
	}
	var mu sync.Mutex
	seen := map[int64]int{}
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n, err := s.ClaimNotification(ctx, now, now.Add(time.Minute), "r")
				if errors.Is(err, store.ErrNotFound) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[n.ID]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(seen) != 20 {
		t.Fatalf("claimed %d distinct rows, want 20", len(seen))
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("row %d claimed %d times", id, k)
		}
	}
}

// testNotificationHoldsAndNotices: quiet hours move due rows of the held
// channels to the window's end without counting an attempt; a claimed row
// put back keeps the attempts the runner says; a notice about an audit
// event is written with its event, once per event and channel.
func testNotificationHoldsAndNotices(t *testing.T, s store.Store) {
	ctx := context.Background()
	now := t0.Add(100 * 24 * time.Hour)
	if err := s.InsertCertificate(ctx, cert("1a", "alice", now.Add(-85*24*time.Hour), 90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, err := s.EnqueueReminders(ctx, band(168*time.Hour, now, 0, "email", "helpdesk"), now); err != nil || n != 2 {
		t.Fatalf("enqueue: %d, %v", n, err)
	}
	until := now.Add(8 * time.Hour)
	if n, err := s.DeferNotifications(ctx, []string{"email"}, until); err != nil || n != 1 {
		t.Fatalf("defer: %d, %v; want 1 (the email row)", n, err)
	}
	if n, err := s.DeferNotifications(ctx, []string{"email"}, until); err != nil || n != 0 {
		t.Fatalf("second defer to the same end: %d, %v; want 0", n, err)
	}
	got, err := s.ClaimNotification(ctx, now, now.Add(time.Minute), "r")
	if err != nil || got.Channel != "helpdesk" {
		t.Fatalf("claim in the window: %+v, %v; want the helpdesk row", got, err)
	}
	if _, err := s.ClaimNotification(ctx, until.Add(-time.Millisecond), until, "r"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("claim before the window ends: %v, want ErrNotFound", err)
	}
	held, err := s.ClaimNotification(ctx, until, until.Add(time.Minute), "r2")
	if err != nil || held.Channel != "email" || held.Attempts != 1 {
		t.Fatalf("claim at the window's end: %+v, %v; want the email row, first attempt", held, err)
	}
	// Put back untried: the attempt is given back.
	held.State, held.NextAttempt, held.Attempts = store.NotifyPending, until.Add(time.Hour), 0
	if err := s.FinishNotification(ctx, held, nil); err != nil {
		t.Fatal(err)
	}
	again, err := s.ClaimNotification(ctx, until.Add(time.Hour), until.Add(2*time.Hour), "r3")
	if err != nil || again.ID != held.ID || again.Attempts != 1 {
		t.Fatalf("claim after the put-back: %+v, %v; want attempts 1", again, err)
	}

	// A notice: event and rows together.
	before := verifyAll(t, s)
	e := event("certportal", audit.ActionOffboardHeld, audit.OutcomeDenied, now)
	if err := s.RecordNotice(ctx, e, store.ThresholdOffboardHeld, []string{"helpdesk"}, now); err != nil {
		t.Fatal(err)
	}
	if after := verifyAll(t, s); after != before+1 || e.ID == 0 {
		t.Fatalf("notice appended %d events (id %d), want 1", after-before, e.ID)
	}
	n, err := s.ClaimNotification(ctx, now, now.Add(time.Minute), "r4")
	if err != nil {
		t.Fatal(err)
	}
	id, ok := store.NoticeEvent(n.Serial)
	if !ok || id != e.ID || n.Threshold != store.ThresholdOffboardHeld || n.Channel != "helpdesk" || n.Username != "" {
		t.Fatalf("notice row %+v (event %d)", n, e.ID)
	}
	if _, ok := store.NoticeEvent("1a:2b"); ok {
		t.Fatal("a certificate serial read as a notice")
	}
	if list, err := s.ListNotifications(ctx, "", 10); err != nil || len(list) != 1 || !list[0].NotAfter.IsZero() {
		t.Fatalf("notices listed: %v, %v", list, err)
	}
}
