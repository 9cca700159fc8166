package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlstore"
	"github.com/certportal/certportal/internal/store/storetest"
)

func TestStoreSuite(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test.db")
	for i := 0; i < 2; i++ {
		db, err := Open(context.Background(), path)
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		db.Close()
	}
}

// TestMigrateKeyOrigin: a device-key row written before key_origin (its
// encryption recorded as "device") comes out of the migration as a
// device-key row, and a server-path row as a Vault one.
func TestMigrateKeyOrigin(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "test.db")
	old, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	before := migrationIndex(t, "ALTER TABLE certificates ADD COLUMN key_origin") // the two key_origin steps, and any after them
	for _, m := range migrations[:before] {
		if _, err := old.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	for serial, enc := range map[string]string{"aa:01": "device", "aa:02": "compat"} {
		if _, err := old.Exec(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
			VALUES(?, 'alice', 'alice@example.com', 'ec-256', ?, 'alice', 0, 0)`, serial, enc); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := old.Exec(fmt.Sprintf(`PRAGMA user_version = %d`, before)); err != nil {
		t.Fatal(err)
	}
	old.Close()
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for serial, want := range map[string]string{"aa:01": store.KeyOriginDevice, "aa:02": store.KeyOriginVault} {
		c, err := db.GetCertificate(ctx, serial)
		if err != nil || c.KeyOrigin != want {
			t.Errorf("%s after migration: %v %+v, want key origin %s", serial, err, c, want)
		}
	}
}

// TestGroupCommitIsolatesFailures: in one group, a failing request is rolled
// back alone and the others commit, and the chain stays whole.
func TestGroupCommitIsolatesFailures(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	c := &store.Certificate{Serial: "01:01", Username: "alice", Subject: "alice@example.com", KeyType: "ec-256",
		Encryption: "modern", IssuedBy: "alice", IssuedAt: time.Now(), NotAfter: time.Now().Add(time.Hour)}
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e := &audit.Event{Time: time.Now(), Actor: "alice", Action: audit.ActionIssue, Outcome: audit.OutcomeSuccess, Details: "{}"}
			cc := *c
			if i%2 == 1 {
				cc.Serial = fmt.Sprintf("02:%02x", i) // distinct: succeeds
			} // even: all share 01:01, only one may win
			errs[i] = db.RecordIssuance(ctx, "", &cc, e)
		}(i)
	}
	wg.Wait()
	ok, conflicts := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrConflict):
			conflicts++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	if ok != 21 || conflicts != 19 {
		t.Fatalf("%d ok, %d conflicts; want 21 and 19", ok, conflicts)
	}
	var v audit.Verifier
	if err := db.StreamAudit(ctx, store.AuditFilter{}, v.Check); err != nil || v.Count != 21 {
		t.Fatalf("chain: %v, %d events", err, v.Count)
	}
}

// TestDeferredWrites: a deferred event waits at most deferWindow for company,
// rides along with an urgent write when one comes, and is never dropped when
// the store closes while it waits.
func TestDeferredWrites(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ev := func() *audit.Event {
		return &audit.Event{Time: time.Now(), Actor: "alice", Action: audit.ActionDownload, Outcome: audit.OutcomeSuccess, Details: "{}"}
	}
	count := func() int64 {
		var v audit.Verifier
		if err := db.StreamAudit(ctx, store.AuditFilter{}, v.Check); err != nil {
			t.Fatal(err)
		}
		return v.Count
	}

	// Alone: committed after the window, not before and not much later.
	start := time.Now()
	if err := db.AppendAuditDeferred(ctx, ev()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < deferWindow || d > deferWindow+2*time.Second {
		t.Errorf("lone deferred write took %v; want about %v", d, deferWindow)
	}

	// With an urgent write: one commit carries both, without the wait.
	commits := db.w.commits.Load()
	done := make(chan error, 1)
	go func() { done <- db.AppendAuditDeferred(ctx, ev()) }()
	time.Sleep(deferWindow / 4) // let the deferred one reach the writer first
	start = time.Now()
	if err := db.AppendAudit(ctx, ev()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := db.w.commits.Load() - commits; n != 1 {
		t.Errorf("deferred and urgent write took %d commits; want 1", n)
	}
	if d := time.Since(start); d >= deferWindow {
		t.Errorf("urgent write waited %v behind a deferred one", d)
	}

	// Close while one waits: it is written, and Close does not sit out the window.
	go func() { done <- db.AppendAuditDeferred(ctx, ev()) }()
	time.Sleep(deferWindow / 4)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("deferred write during close: %v", err)
	}
	db, err = Open(ctx, db.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if n := count(); n != 4 {
		t.Fatalf("%d events after close; want 4", n)
	}
}

// TestOverlappedWrites: an overlapped write (an issuance's record, whose
// caller derives the .p12's keys meanwhile) holds its group for later
// writes to share the commit, up to overlapHold; a plain urgent write ends
// the hold at once and is never held itself.
func TestOverlappedWrites(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer func(d time.Duration) { overlapHold = d }(overlapHold)
	// Sent on the writer's channel directly: each send returns once the
	// writer has taken the request, so the order is known without sleeps.
	send := func(r writeReq) chan error {
		r.res = make(chan error, 1)
		r.fn = func(*wtx) error { return nil }
		db.w.reqs <- r
		return r.res
	}

	// A held group takes every write that comes while it waits (the hour
	// is never reached: the plain write ends it).
	overlapHold = time.Hour
	commits := db.w.commits.Load()
	a := send(writeReq{overlapped: true})
	b := send(writeReq{overlapped: true})
	d := send(writeReq{deferred: true})
	c := send(writeReq{})
	for _, res := range []chan error{a, b, d, c} {
		if err := <-res; err != nil {
			t.Fatal(err)
		}
	}
	if n := db.w.commits.Load() - commits; n != 1 {
		t.Errorf("two overlapped, one deferred and one plain write took %d commits; want 1", n)
	}

	// Alone, an overlapped write commits once overlapHold has passed.
	overlapHold = 20 * time.Millisecond
	start := time.Now()
	if err := <-send(writeReq{overlapped: true}); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el < overlapHold {
		t.Errorf("lone overlapped write committed after %v; want at least overlapHold (%v)", el, overlapHold)
	}

	// A plain write is never held, whatever overlapHold says.
	overlapHold = time.Hour
	if err := <-send(writeReq{}); err != nil {
		t.Fatal(err)
	}
}

// TestRebuildDailyAgrees: the counters kept with each append and the ones
// rebuilt from the trail (after a bulk load) count the same actions.
func TestRebuildDailyAgrees(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	at := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	for i, a := range []string{audit.ActionIssue, audit.ActionIssueOnBehalf, audit.ActionRevoke, audit.ActionReissue,
		audit.ActionLogin, audit.ActionDownload, audit.ActionIssue} {
		outcome := audit.OutcomeSuccess
		if a == audit.ActionLogin || i == 6 {
			outcome = audit.OutcomeFailure
		}
		if err := db.AppendAudit(ctx, &audit.Event{Time: at, Actor: "helen", Action: a, Outcome: outcome, Details: "{}"}); err != nil {
			t.Fatal(err)
		}
	}
	kept, err := db.AuditDaily(ctx, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.RebuildAuditDaily(ctx); err != nil {
		t.Fatal(err)
	}
	rebuilt, err := db.AuditDaily(ctx, at.Add(-time.Hour), at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	want := store.DayCount{Issued: 2, Revoked: 2, FailedLogins: 1}
	for _, got := range [][]store.DayCount{kept, rebuilt} {
		if len(got) != 1 || got[0].Issued != want.Issued || got[0].Revoked != want.Revoked || got[0].FailedLogins != want.FailedLogins {
			t.Fatalf("kept %+v, rebuilt %+v; want %+v", kept, rebuilt, want)
		}
	}
}

// TestUnsyncedWrites: a place under the cap (reservation, release) commits
// at synchronous=NORMAL on the writer's connection, without an fsync of its
// own; every other write, and any group that holds one, commits at FULL.
// An unsynced reservation counts at once for the next one.
func TestUnsyncedWrites(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	level := func(dst *int) func(tx *wtx) error {
		return func(tx *wtx) error { return tx.QueryRowContext(ctx, `PRAGMA synchronous`).Scan(dst) }
	}
	const normal, full = 1, 2
	for i, c := range []struct {
		write func(func(*wtx) error) error
		want  int
	}{{db.writeUnsynced, normal}, {db.write, full}, {db.writeUnsynced, normal}, {db.writeDeferred, full}, {db.write, full}} {
		var got int
		if err := c.write(level(&got)); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("write %d ran at synchronous %d; want %d", i, got, c.want)
		}
	}

	// A group with an unsynced and a synced request commits at FULL. The
	// writer is idle (every request above was answered), so the group
	// runs here as the writer would run it.
	var a, b int
	ra, rb := make(chan error, 1), make(chan error, 1)
	db.commitGroup([]writeReq{{fn: level(&a), res: ra, unsynced: true}, {fn: level(&b), res: rb}})
	if err := errors.Join(<-ra, <-rb); err != nil {
		t.Fatal(err)
	}
	if a != full || b != full {
		t.Errorf("mixed group ran at synchronous %d/%d; want %d", a, b, full)
	}

	now := time.Now()
	r := store.Reservation{Username: "alice", Max: 1, At: now, Expires: now.Add(time.Minute)}
	commits, unsynced := db.w.commits.Load(), db.w.unsynced.Load()
	id, err := db.ReserveIssuance(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ReserveIssuance(ctx, r); !errors.Is(err, store.ErrCapReached) {
		t.Fatalf("second reservation with one place: %v; want ErrCapReached", err)
	}
	c := &store.Certificate{Serial: "03:01", Username: "alice", Subject: "alice@example.com", KeyType: "ec-256",
		Encryption: "modern", IssuedBy: "alice", IssuedAt: now, NotAfter: now.Add(time.Hour)}
	e := &audit.Event{Time: now, Actor: "alice", Action: audit.ActionIssue, Outcome: audit.OutcomeSuccess, Serial: c.Serial, Details: "{}"}
	if err := db.RecordIssuance(ctx, id, c, e); err != nil {
		t.Fatal(err)
	}
	if err := db.ReleaseReservation(ctx, id); err != nil {
		t.Fatal(err)
	}
	// The refused reservation, alone in its group, is rolled back, not
	// committed.
	if n, u := db.w.commits.Load()-commits, db.w.unsynced.Load()-unsynced; n != 3 || u != 2 {
		t.Errorf("reserve, refused reserve, record, release: %d commits, %d unsynced; want 3 and 2 (the record synced)", n, u)
	}
}

// TestReservationCountPlan: the reservation's count looks the certificates
// it replaces up by serial. Left to SQLite's planner, it walked every active
// certificate of the user and read each row for its serial, the writer's
// costliest statement per issuance once a user holds a few hundred.
func TestReservationCountPlan(t *testing.T) {
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "test.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.db.Query(`EXPLAIN QUERY PLAN `+sqlstore.PlacesTaken(&dialect), "alice", 1, "")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	var covering, bySerial int
	for _, d := range plan {
		switch {
		case strings.Contains(d, "certificates USING COVERING INDEX certificates_active"):
			covering++
		case strings.Contains(d, "certificates USING INDEX sqlite_autoindex_certificates_1 (serial=?)"):
			bySerial++
		case strings.Contains(d, "SEARCH certificates") || strings.Contains(d, "SCAN certificates"):
			t.Errorf("certificates read neither from the covering index nor by serial: %q", d)
		}
	}
	if covering != 1 || bySerial != 1 {
		t.Errorf("plan:\n%s\nwant the active count from the covering index and the replaced ones by serial", strings.Join(plan, "\n"))
	}
}
