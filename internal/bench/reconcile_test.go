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
	"runtime/pprof"
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
	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

// BenchmarkReconcile: reconciliation against a real Vault (devvault) that
// holds CERTPORTAL_BENCH_RECONCILE_CERTS certificates (default 100,000),
// 99% of them also in the inventory (what the portal issued) and 1% issued
// around it, with CERTPORTAL_BENCH_RECONCILE_INVENTORY inventory rows in
// all (default 1,000,000: the rest expired and gone from Vault, so
// counted as expired_tidied, not listed): the first run (only the serials the inventory does not
// know read from Vault, 8 in flight), a repeat run with nothing changed (no
// certificate read, the last results kept), a run after one inventory row
// was added (the groups computed again, no certificate read), and a run
// after 100 new certificates and 100 revocations in Vault. Reported: time,
// Vault reads and peak RSS of each run, where its time went (the service's
// "reconciliation phases" log line), and how long it took to fill Vault
// (pki/sign of one EC P-256 CSR with the root token, 16 in flight).
// CERTPORTAL_BENCH_RECONCILE_PROFILE=dir writes a CPU profile of each run
// there.
func BenchmarkReconcile(b *testing.B) {
	n := 100_000
	if s := os.Getenv("CERTPORTAL_BENCH_RECONCILE_CERTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 1000 {
			b.Fatalf("CERTPORTAL_BENCH_RECONCILE_CERTS=%q: want a number, 1000 or more", s)
		}
	}
	inventory := 1_000_000
	if s := os.Getenv("CERTPORTAL_BENCH_RECONCILE_INVENTORY"); s != "" {
		var err error
		if inventory, err = strconv.Atoi(s); err != nil || inventory < 0 {
			b.Fatalf("CERTPORTAL_BENCH_RECONCILE_INVENTORY=%q: want a number", s)
		}
	}
	expired := max(0, inventory-(n-n/100))
	profiles := os.Getenv("CERTPORTAL_BENCH_RECONCILE_PROFILE")
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
	fillInventory(b, path, serials[:n-n/100], expired)

	cfg := config.Default()
	cfg.VaultAddr, cfg.AppRoleRoleID, cfg.AppRoleSecretID = v.Addr, v.Setup.ServiceRoleID, v.Setup.ServiceSecretID
	// LIST pki/certs of 100,000 serials took over the default 10 s on this
	// shared box (load 30): the longest timeout the portal allows.
	cfg.VaultTimeout = 50 * time.Second
	_, ident, err := app.ServiceIdentity(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	// The service's debug log, for its "reconciliation phases" lines.
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := portal.NewService(nil, ident, st, app.PortalOptions(cfg), log)
	b.ResetTimer()
	measure := func(what string) *store.ReconcileRun {
		runtime.GC()
		resetPeakRSS()
		before := peakRSS()
		logged := len(logs.String())
		stop := func() {}
		if profiles != "" {
			f, err := os.Create(filepath.Join(profiles, strings.ReplaceAll(what, " ", "_")+".pprof"))
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				b.Fatal(err)
			}
			stop = func() { pprof.StopCPUProfile(); f.Close() }
		}
		// CPU time, portal (this process) and Vault: on a shared box the
		// wall time is mostly waiting for a core.
		ownCPU, vaultCPU := processCPU(b, os.Getpid()), processCPU(b, v.Pid)
		t := time.Now()
		run, err := svc.ReconcileNow(ctx, "bench")
		d := time.Since(t)
		ownCPU, vaultCPU = processCPU(b, os.Getpid())-ownCPU, processCPU(b, v.Pid)-vaultCPU
		stop()
		if err != nil {
			b.Fatalf("%s: %v", what, err)
		}
		b.Logf("%s: %s (CPU: portal %s, Vault %s), %d Vault reads (%d new serials), peak RSS %.1f MiB (%.1f before); vault_total %d, inventory %d, vault_only %d, inventory_only %d, expired_tidied %d, state_mismatch %d, known %d, kept results of run %d; load %s",
			what, d.Round(time.Millisecond), ownCPU, vaultCPU, run.VaultReads, run.ToRead, peakRSS(), before, run.VaultTotal, run.InventoryTotal,
			run.VaultOnly, run.InventoryOnly, run.ExpiredTidied, run.StateMismatch, run.Known, run.ResultsRun, loadAvg())
		for _, l := range strings.Split(logs.String()[logged:], "\n") {
			if strings.Contains(l, "reconciliation phases") {
				b.Logf("  %s", l[strings.Index(l, "run="):])
			}
		}
		b.ReportMetric(d.Seconds(), strings.ReplaceAll(what, " ", "_")+"_s")
		return run
	}
	first := measure("first run")
	if first.VaultOnly != n/100 || first.InventoryOnly != 0 || first.ExpiredTidied != expired || first.VaultReads > n/100+10 {
		b.Fatalf("first run: vault_only %d, want %d; inventory_only %d, want 0; expired_tidied %d, want %d; %d Vault reads", first.VaultOnly, n/100,
			first.InventoryOnly, first.ExpiredTidied, expired, first.VaultReads)
	}
	repeat := measure("repeat run")
	if repeat.VaultReads != 0 || repeat.ResultsRun != first.ID {
		b.Fatalf("repeat run with nothing changed read %d certificates, kept the results of run %d", repeat.VaultReads, repeat.ResultsRun)
	}
	if err := st.InsertCertificate(ctx, &store.Certificate{Serial: "ee:ff:ff:ff", Username: "late", Subject: "late@example.com",
		KeyType: "ec-256", Encryption: "modern", IssuedBy: "late", IssuedAt: time.Now(), NotAfter: time.Now().Add(time.Hour)}); err != nil {
		b.Fatal(err)
	}
	recomputed := measure("after one inventory row added")
	if recomputed.VaultReads != 0 || recomputed.ResultsRun != 0 || recomputed.InventoryOnly != 1 || recomputed.ExpiredTidied != expired {
		b.Fatalf("after an inventory change: %d reads, kept results of %d, inventory_only %d (want 1), expired_tidied %d", recomputed.VaultReads,
			recomputed.ResultsRun, recomputed.InventoryOnly, recomputed.ExpiredTidied)
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

// loadAvg is the machine's 1-minute load average, for the log.
func loadAvg() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(raw)); len(f) > 0 {
		return f[0]
	}
	return "?"
}

// fillInventory writes one inventory row per serial straight into the
// migrated SQLite file, as if the portal had issued them, and expired more
// rows for certificates issued a year ago that Vault no longer holds.
func fillInventory(b *testing.B, path string, serials []string, expired int) {
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
	if expired > 0 {
		year := now.Add(-365 * 24 * time.Hour)
		if _, err := tx.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
			INSERT INTO certificates(serial, username, subject, key_type, encryption, issued_by, issued_at, not_after)
			SELECT printf('ee:%02x:%02x:%02x', i >> 16, (i >> 8) & 255, i & 255), printf('old%07d', i), printf('old%07d@example.com', i),
				'ec-256', 'modern', 'old', ?2, ?3 FROM n`, expired, year.UnixMilli(), year.Add(90*24*time.Hour).UnixMilli()); err != nil {
			b.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
}
