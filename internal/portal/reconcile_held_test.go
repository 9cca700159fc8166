package portal

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/vault"
)

// issuedAround is the part of Vault a background reconciliation reads:
// certificates the users' role issued that the inventory does not know,
// which the test revokes as the helpdesk would.
type issuedAround struct {
	userList
	mu    sync.Mutex
	certs map[string]*vault.StoredCertificate
}

func (v *issuedAround) ListCertificates(context.Context, string) ([]string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for s := range v.certs {
		out = append(out, s)
	}
	return out, nil
}

func (v *issuedAround) ListRevokedCertificates(context.Context, string) ([]string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []string
	for s, c := range v.certs {
		if !c.RevokedAt.IsZero() {
			out = append(out, s)
		}
	}
	return out, nil
}

func (v *issuedAround) ReadCertificate(_ context.Context, _, serial string) (*vault.StoredCertificate, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	c, ok := v.certs[serial]
	if !ok {
		return nil, vault.ErrNotFound
	}
	cp := *c
	return &cp, nil
}

func (v *issuedAround) revokeAll(at time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for _, c := range v.certs {
		c.RevokedAt = at
	}
}

// TestReconcileHeldGaugeAcrossReplicas: two replicas on one store. Each
// one's certportal_reconcile_held says whether a hold is in force — the
// trail's state, shared by all — also on the replica whose runs lose the
// lock to the other; the hold is recorded once, not once per replica, and
// its end is recorded (reconcile.resumed).
func TestReconcileHeldGaugeAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	now := time.Now()
	vlt := &issuedAround{certs: map[string]*vault.StoredCertificate{}}
	for i, u := range []string{"alice", "bob", "carol"} {
		cn := u + "@example.com"
		vlt.certs[vaultSerial("1a-0"+string(rune('0'+i)))] = &vault.StoredCertificate{Certificate: &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{cn},
			NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		}}
	}
	replica := func() (*Service, *metrics.Metrics) {
		st, err := sqlite.Open(ctx, dir+"/p.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		m := metrics.New()
		s := NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user",
			EmailDomain: "example.com", Metrics: m,
			Reconcile: ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 1, AutoRevokeMax: 2}},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		return s, m
	}
	a, am := replica()
	b, bm := replica()
	run := func(s *Service, wantSkipped bool) {
		t.Helper()
		res, err := s.ReconcileJob(ctx)
		if err != nil {
			t.Fatalf("reconcile job: %v", err)
		}
		if res.Skipped != wantSkipped {
			t.Fatalf("reconcile job: %+v, want skipped %v", res, wantSkipped)
		}
	}
	whileBusy := func(f func()) {
		t.Helper()
		unlock, ok, err := b.store.TryLock(ctx, reconcileLock)
		if err != nil || !ok {
			t.Fatalf("take the reconciliation's lock: %v %v", ok, err)
		}
		defer unlock()
		f()
	}
	held := func(what string, m *metrics.Metrics, want string) {
		t.Helper()
		if got := gauge(t, m, "certportal_reconcile_held"); got != want {
			t.Errorf("%s: certportal_reconcile_held %s, want %s", what, got, want)
		}
	}
	events := func(action string) int {
		t.Helper()
		evs, err := a.store.QueryAudit(ctx, store.AuditFilter{Action: action, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return len(evs)
	}

	// Three issued around the portal, more than the limit of two: a hold.
	run(a, false)
	held("a held", am, "1")
	whileBusy(func() { run(b, true) })
	held("b skipped during the hold", bm, "1")
	// Its scope too, from the trail: three employees' certificates, more
	// than the run's limit of two: all.
	if got := heldScope(t, bm, HoldScopeAll); got != "1" {
		t.Errorf("b skipped during the hold: certportal_reconcile_held_scope{scope=\"all\"} %s, want 1", got)
	}
	if got := heldScope(t, bm, HoldScopeEmployees); got != "0" {
		t.Errorf("b skipped during the hold: certportal_reconcile_held_scope{scope=\"employees\"} %s, want 0", got)
	}
	// b runs too and finds the same hold: recorded once, not per replica.
	run(b, false)
	held("b held", bm, "1")
	if n := events(audit.ActionReconcileHeld); n != 1 {
		t.Errorf("%d reconcile.held events for one hold seen by two replicas, want 1", n)
	}

	// The helpdesk revokes them: b's run ends the hold, a's runs lose the
	// lock to b's.
	vlt.revokeAll(now)
	run(b, false)
	held("b after the hold ended", bm, "0")
	if n := events(audit.ActionReconcileResumed); n != 1 {
		t.Errorf("%d reconcile.resumed events after the hold ended, want 1", n)
	}
	whileBusy(func() { run(a, true) })
	held("a skipped after b ended the hold", am, "0")
	run(a, false)
	if n := events(audit.ActionReconcileResumed); n != 1 {
		t.Errorf("%d reconcile.resumed events after a second unheld run, want still 1", n)
	}
}

// newReconcileService is a Service over vlt and a fresh SQLite store, with
// the users' domain example.com and the reconciliation options ro, its
// metrics, and a reader of its trail by action and outcome.
func newReconcileService(t *testing.T, vlt ServiceVault, ro ReconcileOptions) (*Service, *sqlite.DB, *metrics.Metrics, func(action, outcome string) []*audit.Event) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := metrics.New()
	s := NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user",
		EmailDomain: "example.com", Metrics: m, Reconcile: ro}, slog.New(slog.DiscardHandler))
	events := func(action, outcome string) []*audit.Event {
		t.Helper()
		evs, err := st.QueryAudit(ctx, store.AuditFilter{Action: action, Outcome: outcome, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	return s, st, m, events
}

// TestReconcileHoldForThePage: the hold the reconciliation page shows is
// the one the job recorded, read from the trail as the gauges read it
// (scope, held employees, its event and time), to auditors only, and none
// once the job records reconcile.resumed.
func TestReconcileHoldForThePage(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	vlt := &issuedAround{certs: map[string]*vault.StoredCertificate{}}
	for i := range 2 {
		cn := "alice@example.com"
		vlt.certs[vaultSerial("2b-0"+string(rune('0'+i)))] = &vault.StoredCertificate{Certificate: &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 1)), Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{cn},
			NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		}}
	}
	s, _, _, events := newReconcileService(t, vlt, ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 1, AutoRevokeMax: 5})
	audrey := &Identity{Username: "audrey", Roles: []Role{RoleAuditor}}
	if h, err := s.ReconcileHold(ctx, audrey); err != nil || h != nil {
		t.Fatalf("before any run: hold %+v, %v; want none", h, err)
	}
	if _, err := s.ReconcileJob(ctx); err != nil {
		t.Fatal(err)
	}
	held := events(audit.ActionReconcileHeld, audit.OutcomeDenied)
	if len(held) != 1 {
		t.Fatalf("%d reconcile.held events, want 1", len(held))
	}
	h, err := s.ReconcileHold(ctx, audrey)
	if err != nil || h == nil {
		t.Fatalf("hold %+v, %v", h, err)
	}
	if h.EventID != held[0].ID || !h.Since.Equal(held[0].Time) || h.Scope != HoldScopeEmployees || !h.Employees() || h.HoldsUnattributed() || h.All() ||
		h.HeldEmployees != "alice (2)" || h.Unattributed != 0 {
		t.Errorf("hold %+v, want event %d at %s, scope employees, alice (2)", h, held[0].ID, held[0].Time)
	}
	if _, err := s.ReconcileHold(ctx, &Identity{Username: "helen", Roles: []Role{RoleHelpdesk}}); ErrorCode(err) != EForbidden {
		t.Errorf("helpdesk reads the hold: %v, want forbidden", err)
	}
	vlt.revokeAll(now)
	if _, err := s.ReconcileJob(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err := s.ReconcileHold(ctx, audrey); err != nil || h != nil {
		t.Errorf("after reconcile.resumed: hold %+v, %v; want none", h, err)
	}
}

func TestTrailHoldScope(t *testing.T) {
	for in, want := range map[string]string{"employees": "employees", "unattributed": "unattributed", "employees+unattributed": "employees+unattributed",
		"all": "all", "": "all", "everything": "all", "employees+all": "all"} {
		if got := trailHoldScope(in); got != want {
			t.Errorf("trailHoldScope(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestParseHeldList: the JSON form's employees are the trail's
// held_employees read back: every list heldList writes (20 named at most,
// "(and N more)" after) reads as the users it was written from.
func TestParseHeldList(t *testing.T) {
	many := make([]HeldUser, 23)
	for i := range many {
		many[i] = HeldUser{Username: fmt.Sprintf("user%02d", i), Certificates: 6 + i}
	}
	for _, tc := range []struct {
		name    string
		users   []HeldUser
		named   int
		unnamed int
	}{
		{"none", nil, 0, 0},
		{"one", []HeldUser{{"alice", 25}}, 1, 0},
		{"two", []HeldUser{{"alice", 25}, {"bob.smith-2", 22}}, 2, 0},
		{"twenty", many[:20], 20, 0},
		{"more than twenty", many, 20, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list := heldList(tc.users)
			users, unnamed := parseHeldList(list)
			if !slices.Equal(users, tc.users[:tc.named]) || unnamed != tc.unnamed {
				t.Errorf("parseHeldList(%q) = %v, %d; want %v, %d", list, users, unnamed, tc.users[:tc.named], tc.unnamed)
			}
		})
	}
	// Written by hand (or by an older version): a name without a count
	// counts 0 rather than swallowing the next name.
	if users, unnamed := parseHeldList("alice bob (3)"); !slices.Equal(users, []HeldUser{{"alice", 0}, {"bob", 3}}) || unnamed != 0 {
		t.Errorf("parseHeldList without a count: %v, %d", users, unnamed)
	}
}
