package bench

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/app"
	"github.com/certportal/certportal/internal/config"
	"github.com/certportal/certportal/internal/portal"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// directory answers the sweep's Vault questions from memory, instantly: the
// benchmark measures the sweep's own work (the inventory walk in SQL, the
// judgement, the revocations' records), not Vault's round trips, which
// docs/benchmarks.md counts separately (two reads per user with active
// certificates).
type directory struct {
	users   []string
	leavers map[string]bool
	revoked atomic.Int64
	reads   atomic.Int64
}

func (d *directory) Revoke(context.Context, string, string) error { d.revoked.Add(1); return nil }
func (d *directory) ListUsers(context.Context, string) ([]string, error) {
	return d.users, nil
}
func (d *directory) ReadUser(_ context.Context, _, name string) (*vault.UserpassUser, error) {
	d.reads.Add(1)
	return &vault.UserpassUser{Name: name, Policies: []string{"default", "certportal-user"}}, nil
}
func (d *directory) MountAccessor(context.Context, string) (string, error) {
	return "auth_userpass_1", nil
}
func (d *directory) LookupEntityByAlias(_ context.Context, _, name string) (*vault.Entity, error) {
	d.reads.Add(1)
	return &vault.Entity{ID: "e-" + name, Name: name}, nil
}

// BenchmarkOffboardSweep: the offboarding sweep over 1,000,000 inventory
// rows (the reminder benchmark's fill: 333,333 users, about 205,000 of
// them with active certificates), with 40 of the users gone from Vault
// (under the default limit of 50): a dry run, the guarded sweep that
// revokes their certificates, and the steady sweep after it that finds
// nothing. Bar: under 5 s each, memory flat (the inventory is paged in
// SQL, 500 users at a time; the process holds Vault's user list and the
// leavers only).
func BenchmarkOffboardSweep(b *testing.B) {
	path := filepath.Join(b.TempDir(), "certportal.db")
	now := time.Now()
	began := time.Now()
	fillCertificates(b, path, reminderCerts, now)
	b.Logf("filled %d certificates in %s", reminderCerts, time.Since(began).Round(time.Millisecond))
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	d := &directory{leavers: map[string]bool{}}
	for i := 0; i < reminderCerts/3; i++ {
		u := fmt.Sprintf("user%06d", i)
		// Leavers among the users with active certificates (indexes
		// 105,000-333,332 hold the newest rows).
		if i >= 200_000 && i%2_000 == 0 && len(d.leavers) < 40 {
			d.leavers[u] = true
			continue
		}
		d.users = append(d.users, u)
	}
	svc := portal.NewService(nil, d, st, portal.Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user",
		Offboard: portal.OffboardOptions{MaxShare: 0.10, MaxCount: 50}}, slog.New(slog.DiscardHandler))
	runtime.GC()
	resetPeakRSS()
	before := peakRSS()
	b.ResetTimer()
	for _, pass := range []struct {
		name string
		mode portal.OffboardMode
	}{{"dry_run", portal.OffboardDryRun}, {"first", portal.OffboardGuarded}, {"steady", portal.OffboardGuarded}} {
		d.reads.Store(0)
		t := time.Now()
		res, err := svc.Offboard(context.Background(), pass.mode, "")
		if err != nil {
			b.Fatal(err)
		}
		dur := time.Since(t)
		b.ReportMetric(dur.Seconds(), pass.name+"_pass_s")
		b.Logf("%s sweep: %s; %d users listed, %d with active certificates, %d to offboard, %d revoked, held %v; %d Vault reads",
			pass.name, dur.Round(time.Millisecond), res.Listed, res.ActiveUsers, len(res.Users), res.Revoked, res.Held, d.reads.Load())
		want := map[string]int{"dry_run": 0, "first": len(d.leavers), "steady": 0}[pass.name]
		if res.Held || res.Revoked < want || (pass.name != "first" && res.Revoked != 0) ||
			(pass.name != "steady" && len(res.Users) != len(d.leavers)) {
			b.Fatalf("%s sweep: %+v", pass.name, res)
		}
		if dur > 5*time.Second {
			b.Errorf("%s sweep took %s, bar 5 s", pass.name, dur)
		}
	}
	b.ReportMetric(peakRSS(), "peak_rss_MiB")
	b.Logf("peak RSS %.1f MiB (before the sweeps: %.1f MiB)", peakRSS(), before)
}

// BenchmarkOffboardVaultReads: what BenchmarkOffboardSweep leaves out — the
// two Vault reads per user with active certificates, against a real Vault
// (devvault, loopback) with the portal's own identity, 8 in flight as the
// sweep keeps them. 200 users who each logged in once (so each has an
// entity) hold one certificate; a dry run judges them all. The figure is
// users judged per second; a sweep over N such users takes about N / it.
func BenchmarkOffboardVaultReads(b *testing.B) {
	const users = 200
	v := testenv.StartConfiguredVault(b)
	st, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "certportal.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now()
	for i := 0; i < users; i++ {
		u := fmt.Sprintf("leaver%03d", i)
		v.CreateUser(b, u, u+"-password", nil, "certportal-user")
		if _, err := v.Admin.Logical().Write("auth/userpass/login/"+u, map[string]any{"password": u + "-password"}); err != nil {
			b.Fatal(err)
		}
		if err := st.InsertCertificate(context.Background(), &store.Certificate{Serial: fmt.Sprintf("ee:%04x", i), Username: u, Subject: u + "@example.com",
			KeyType: "ec-256", Encryption: "modern", IssuedBy: u, IssuedAt: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	cfg := config.Default()
	cfg.VaultAddr, cfg.AppRoleRoleID, cfg.AppRoleSecretID = v.Addr, v.Setup.ServiceRoleID, v.Setup.ServiceSecretID
	_, ident, err := app.ServiceIdentity(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	svc := portal.NewService(nil, ident, st, app.PortalOptions(cfg), slog.New(slog.DiscardHandler))
	if _, err := svc.Offboard(context.Background(), portal.OffboardDryRun, ""); err != nil { // log in, warm up
		b.Fatal(err)
	}
	b.ResetTimer()
	t := time.Now()
	res, err := svc.Offboard(context.Background(), portal.OffboardDryRun, "")
	d := time.Since(t)
	if err != nil || res.ActiveUsers != users || len(res.Users) != 0 || res.CheckErrors != 0 {
		b.Fatalf("dry run: %+v, %v", res, err)
	}
	rate := float64(users) / d.Seconds()
	b.ReportMetric(rate, "users/s")
	b.Logf("%d users judged in %s against Vault: %.0f users/s (%.2f ms per user, two reads); 205,063 users would take about %s",
		users, d.Round(time.Millisecond), rate, d.Seconds()*1000/users, (time.Duration(205_063/rate) * time.Second).Round(time.Second))
}
