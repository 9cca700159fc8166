package bench

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
)

// BenchmarkReconcile: reconciliation against a real Vault (devvault) that
// holds CERTPORTAL_BENCH_RECONCILE_CERTS certificates (default 100,000),
// 99% of them also in the inventory (what the portal issued) and 1% issued
// around it: the first run (every serial read from Vault once, 8 in
// flight), a repeat run with nothing changed (no certificate read), and a
// run after 100 new certificates and 100 revocations in Vault. Reported:
// time, Vault reads and peak RSS of each run, and how long it took to fill
// Vault (pki/sign of one EC P-256 CSR with the root token, 16 in flight).
func BenchmarkReconcile(b *testing.B) {
	n := 100_000
	if s := os.Getenv("CERTPORTAL_BENCH_RECONCILE_CERTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1000 {
			b.Fatalf("CERTPORTAL_BENCH_RECONCILE_CERTS=%q: want a number, 1000 or more", s)
		}
	}
	ctx := context.Background()
	v := testenv.StartConfiguredVault(b)
	began := time.Now()
	if _, err := v.Admin.Logical().Write("pki/roles/bench", map[string]any{
		"allow_any_name": true, "enforce_hostnames": false, "key_type": "ec", "key_bits": 256, "ttl": "720h", "max_ttl": "720h",
		"client_flag": true, "server_flag": false, "no_store": false, "use_csr_common_name": false, "generate_lease": false,
	}); err != nil {
		b.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "bench"}}, key)
	if err != nil {
		b.Fatal(err)
	}
	csr := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	issue := func(from, to int) []string {
		out := make([]string, to-from)
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		var failed atomic.Value
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= to || failed.Load() != nil {
						return
					}
					sec, err := v.Admin.Logical().Write("pki/sign/bench", map[string]any{"csr": csr, "common_name": fmt.Sprintf("user%06d@example.com", i), "ttl": "720h"})
					if err != nil {
						failed.Store(err)
						return
					}
					out[i-from] = sec.Data["serial_number"].(string)
				}
			}()
		}
		wg.Wait()
		if err, _ := failed.Load().(error); err != nil {
			b.Fatal(err)
		}
		return out
	}
	serials := issue(0, n)
	filled := time.Since(began)
	b.Logf("Vault filled with %d certificates in %s (%.0f/s)", n, filled.Round(time.Second), float64(n)/filled.Seconds())

	path := filepath.Join(b.TempDir(), "certportal.db")
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	fillInventory(b, path, serials[:n-n/100])

	cfg := config.Default()
	cfg.VaultAddr, cfg.AppRoleRoleID, cfg.AppRoleSecretID = v.Addr, v.Setup.ServiceRoleID, v.Setup.ServiceSecretID
	_, ident, err := app.ServiceIdentity(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	svc := portal.NewService(nil, ident, st, app.PortalOptions(cfg), slog.New(slog.DiscardHandler))
	b.ResetTimer()
	measure := func(what string) *store.ReconcileRun {
		runtime.GC()
		resetPeakRSS()
		before := peakRSS()
		t := time.Now()
		run, err := svc.ReconcileNow(ctx, "bench")
		d := time.Since(t)
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		b.Logf("%s: %s, %d Vault reads (%d new serials), peak RSS %.1f MiB (%.1f before); vault_total %d, inventory %d, vault_only %d, inventory_only %d, state_mismatch %d, known %d",
			what, d.Round(time.Millisecond), run.VaultReads, run.ToRead, peakRSS(), before, run.VaultTotal, run.InventoryTotal,
			run.VaultOnly, run.InventoryOnly, run.StateMismatch, run.Known)
		b.ReportMetric(d.Seconds(), strings.ReplaceAll(what, " ", "_")+"_s")
		return run
	}
	first := measure("first run")
	if first.VaultOnly != n/100 || first.InventoryOnly != 0 {
		b.Fatalf("first run: vault_only %d, want %d; inventory_only %d", first.VaultOnly, n/100, first.InventoryOnly)
	}
	repeat := measure("repeat run")
	if repeat.VaultReads != 0 {
		b.Fatalf("repeat run with nothing changed read %d certificates", repeat.VaultReads)
	}
	issue(n, n+100)
	for _, s := range serials[:100] {
		if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": s}); err != nil {
			b.Fatal(err)
		}
	}
	changed := measure("after 100 new and 100 revoked")
	// 100 new serials read; the 100 revoked are portal certificates now in
	// state_mismatch, each confirmed with one read.
	if changed.ToRead != 100 || changed.StateMismatch != 100 {
		b.Fatalf("after the changes: %d new, %d mismatches, want 100 and 100", changed.ToRead, changed.StateMismatch)
	}
}

// fillInventory writes one inventory row per serial straight into the
// migrated SQLite file, as if the portal had issued them.
func fillInventory(b *testing.B, path string, serials []string) {
	b.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	stmt, err := tx.Prepare(`INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
		VALUES(?,?,?,?,?,?,?,?)`)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	for i, s := range serials {
		user := fmt.Sprintf("user%06d", i)
		if _, err := stmt.Exec(strings.ToLower(strings.ReplaceAll(s, "-", ":")), user, user+"@example.com", "ec-256", "modern", user,
			now.UnixMilli(), now.Add(720*time.Hour).UnixMilli()); err != nil {
			b.Fatal(err)
		}
	}
	stmt.Close()
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
