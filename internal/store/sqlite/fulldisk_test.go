package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/store"
)

// TestFullDisk: on a filesystem with no room left, audited writes fail
// whole (no certificate row without its event), Ping says so although
// reads still work, and once space is freed the same DB takes writes
// again and the chain verifies. The test mounts a small tmpfs (root).
func TestFullDisk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s (this test needs root or CAP_SYS_ADMIN to make a full filesystem): %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(dir, "certportal.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	n := 0
	issue := func() (string, error) {
		n++
		serial := fmt.Sprintf("0a:%02x:%02x", n/256, n%256)
		c := &store.Certificate{Serial: serial, Username: "alice", Subject: "alice@example.com", KeyType: "ec-256",
			Encryption: "modern", IssuedBy: "alice", IssuedAt: time.Now(), NotAfter: time.Now().Add(time.Hour)}
		e := &audit.Event{Time: time.Now(), Actor: "alice", Subject: "alice", Action: audit.ActionIssue, Outcome: audit.OutcomeSuccess,
			Serial: serial, Details: `{"pad":"` + strings.Repeat("x", 400) + `"}`}
		return serial, db.RecordIssuance(ctx, "", c, e)
	}
	for range 20 {
		if _, err := issue(); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for _, chunk := range []int{64 << 10, 512} {
		for buf := make([]byte, chunk); ; {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	f.Close()

	// WAL space SQLite already holds may take a few more commits.
	var failed []string
	for i := 0; len(failed) < 3; i++ {
		if i == 200 {
			t.Fatal("200 issuances recorded on a full filesystem")
		}
		if serial, err := issue(); err != nil {
			failed = append(failed, serial)
		}
	}
	if err := db.Ping(ctx); err == nil {
		t.Fatal("Ping succeeded on a full filesystem")
	} else {
		t.Logf("ping on a full disk: %v", err)
	}
	for _, s := range failed {
		if _, err := db.GetCertificate(ctx, s); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("failed issuance %s left a row: %v", s, err)
		}
	}

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	if err := db.Ping(ctx); err != nil {
		t.Fatalf("Ping after space was freed: %v", err)
	}
	serial, err := issue()
	if err != nil {
		t.Fatalf("issuance after space was freed: %v", err)
	}
	if _, err := db.GetCertificate(ctx, serial); err != nil {
		t.Fatal(err)
	}
	var v audit.Verifier
	if err := db.StreamAudit(ctx, store.AuditFilter{}, v.Check); err != nil {
		t.Fatalf("chain after recovery: %v", err)
	}
	for _, s := range failed {
		var events int
		if err := db.db.QueryRow(`SELECT count(*) FROM audit_events WHERE serial = ?`, s).Scan(&events); err != nil || events != 0 {
			t.Fatalf("failed issuance %s left %d events (%v)", s, events, err)
		}
	}
	t.Logf("%d events, chain verified; %d issuances failed while full", v.Count, len(failed))
}
