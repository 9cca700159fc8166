package sqlite

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
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
			errs[i] = db.RecordIssuance(ctx, &cc, e)
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
