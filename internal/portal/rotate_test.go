package portal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/vault"
)

// fakeRotator stands for the portal's identity where Vault cannot be made
// to answer on cue (an unknown secret id while the token still works, a
// refused write); the real one is tested against devvault in
// cmd/certportal (TestSecretIDRotation and its siblings).
type fakeRotator struct {
	cur     *vault.SecretID
	rotErr  error
	rotated int
	now     func() time.Time
}

func (f *fakeRotator) Revoke(context.Context, string, string) error        { return nil }
func (f *fakeRotator) ListUsers(context.Context, string) ([]string, error) { return nil, nil }
func (f *fakeRotator) LookupSecretID(context.Context) (*vault.SecretID, error) {
	c := *f.cur
	return &c, nil
}

func (f *fakeRotator) RotateSecretID(context.Context, string) (*vault.SecretID, error) {
	if f.rotErr != nil {
		return nil, f.rotErr
	}
	f.rotated++
	now := f.now()
	f.cur = &vault.SecretID{Known: true, Accessor: fmt.Sprintf("acc-%d", f.rotated+1), Created: now, Expires: now.Add(30 * 24 * time.Hour), Path: f.cur.Path}
	return f.cur, nil
}

func rotateService(t *testing.T, f *fakeRotator, now *time.Time) (*Service, store.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s := NewService(nil, f, st, Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	s.now = func() time.Time { return *now }
	f.now = s.now
	return s, st
}

func rotationEventsOf(t *testing.T, st store.Store) []*audit.Event {
	t.Helper()
	evs, err := st.QueryAudit(context.Background(), store.AuditFilter{Action: audit.ActionSecretIDRotate, Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestCheckSecretIDSchedule: before two thirds of the lifetime nothing
// happens and the next look is at the due time; at it the secret id is
// rotated once and recorded; while another replica holds the lock for it
// nothing is rotated; a secret id Vault no longer accepts is not replaced;
// a failure is recorded once per reason, however often it repeats.
func TestCheckSecretIDSchedule(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	created := now.Add(-10 * 24 * time.Hour)
	f := &fakeRotator{cur: &vault.SecretID{Known: true, Accessor: "acc-1", Created: created, Expires: created.Add(30 * 24 * time.Hour), Path: "/run/secret-id"}}
	s, st := rotateService(t, f, &now)
	ctx := context.Background()

	// Day 10 of 30: not due; looked at again within the hour cap.
	if wait := s.CheckSecretID(ctx); wait != secretCheckMax || f.rotated != 0 {
		t.Fatalf("day 10: wait %s, rotated %d", wait, f.rotated)
	}
	// Day 20 less a minute: the wait is that minute.
	now = created.Add(20*24*time.Hour - time.Minute)
	if wait := s.CheckSecretID(ctx); wait != time.Minute || f.rotated != 0 {
		t.Fatalf("a minute before day 20: wait %s, rotated %d", wait, f.rotated)
	}

	// Due, but another replica holds this secret id's lock.
	now = created.Add(20 * 24 * time.Hour)
	unlock, ok, err := st.TryLock(ctx, secretIDLock+"acc-1")
	if err != nil || !ok {
		t.Fatal(err)
	}
	if wait := s.CheckSecretID(ctx); f.rotated != 0 || wait > secretRetryMax {
		t.Fatalf("lock held elsewhere: rotated %d, wait %s", f.rotated, wait)
	}
	unlock()

	// Due and free: rotated once, recorded with both accessors.
	if wait := s.CheckSecretID(ctx); f.rotated != 1 || wait != secretCheckMax {
		t.Fatalf("due: rotated %d, wait %s", f.rotated, wait)
	}
	s.CheckSecretID(ctx)
	if f.rotated != 1 {
		t.Fatalf("the new secret id was rotated again at once (%d)", f.rotated)
	}
	evs := rotationEventsOf(t, st)
	if len(evs) != 1 || evs[0].Outcome != audit.OutcomeSuccess || evs[0].Actor != systemActor {
		t.Fatalf("events %+v", evs)
	}
	for _, want := range []string{`"old_accessor":"acc-1"`, `"new_accessor":"acc-2"`, `"file":"/run/secret-id"`} {
		if !strings.Contains(evs[0].Details, want) {
			t.Errorf("rotation event lacks %s: %s", want, evs[0].Details)
		}
	}

	// Not writable, twice: refused each time, recorded once.
	now = f.cur.RotateAt()
	f.rotErr = fmt.Errorf("rotate secret id: %w: read-only file system", vault.ErrSecretIDNotWritable)
	s.CheckSecretID(ctx)
	s.CheckSecretID(ctx)
	evs = rotationEventsOf(t, st)
	if len(evs) != 2 || evs[0].Outcome != audit.OutcomeFailure || !strings.Contains(evs[0].Details, "not writable") {
		t.Fatalf("after two refused rotations: %+v", evs)
	}

	// Expired (or destroyed): Vault no longer accepts it, and the portal's
	// token (still alive) is not used to mint a replacement.
	f.rotErr = nil
	f.cur = &vault.SecretID{Known: false, Accessor: "acc-2", Created: f.cur.Created, Expires: f.cur.Expires}
	before := f.rotated
	s.CheckSecretID(ctx)
	if f.rotated != before {
		t.Fatal("a secret id Vault no longer accepts was replaced by the portal")
	}
	if evs := rotationEventsOf(t, st); len(evs) != 3 || !strings.Contains(evs[0].Details, "unknown to Vault") {
		t.Fatalf("unknown secret id not recorded: %+v", evs)
	}
}

// TestCheckSecretIDNeverExpires: a secret id without expiry is never
// rotated, looked at hourly.
func TestCheckSecretIDNeverExpires(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := &fakeRotator{cur: &vault.SecretID{Known: true, Accessor: "acc-1", Created: now.Add(-1000 * 24 * time.Hour)}}
	s, _ := rotateService(t, f, &now)
	if wait := s.CheckSecretID(context.Background()); wait != secretCheckMax || f.rotated != 0 {
		t.Fatalf("wait %s, rotated %d", wait, f.rotated)
	}
}
