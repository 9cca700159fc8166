package portal

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/vault"
)

// revokingVault is issuedAround whose revocations take effect, as Vault's
// do, and are counted per serial.
type revokingVault struct {
	*issuedAround
	rmu     sync.Mutex
	revoked []string
}

func (v *revokingVault) Revoke(_ context.Context, _, serial string) error {
	v.mu.Lock()
	if c, ok := v.certs[serial]; ok {
		c.RevokedAt = time.Now()
	}
	v.mu.Unlock()
	v.rmu.Lock()
	defer v.rmu.Unlock()
	v.revoked = append(v.revoked, serial)
	return nil
}

func (v *revokingVault) revokedSerials() []string {
	v.rmu.Lock()
	defer v.rmu.Unlock()
	return slices.Clone(v.revoked)
}

// TestReconcileHoldsOnlyTheEmployeeOverTheLimit: with
// CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX at 2, alice has 3 certificates
// issued straight from Vault and bob 1, all past the grace. bob's is
// revoked; alice's are held, named in the trail (reconcile.held with the
// employee and her serials) and alerted (certportal_reconcile_held). The
// global bound still holds everything when more than 2 employees have
// certificates to revoke, and the hold ends (reconcile.resumed) once
// alice's are revoked by hand.
func TestReconcileHoldsOnlyTheEmployeeOverTheLimit(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	vlt := &revokingVault{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{}}}
	n := 0
	mint := func(user string) string {
		n++
		serial := vaultSerial(fmt.Sprintf("2b-%02x", n))
		cn := user + "@example.com"
		vlt.mu.Lock()
		vlt.certs[serial] = &vault.StoredCertificate{Certificate: &x509.Certificate{
			SerialNumber: big.NewInt(int64(n)), Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{cn},
			NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		}}
		vlt.mu.Unlock()
		return serial
	}
	var alices []string
	for range 3 {
		alices = append(alices, mint("alice"))
	}
	bobs := mint("bob")

	st, err := sqlite.Open(ctx, t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	m := metrics.New()
	s := NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user",
		EmailDomain: "example.com", Metrics: m,
		Reconcile: ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokeMax: 2}},
		slog.New(slog.DiscardHandler))
	events := func(action, outcome string) []*audit.Event {
		t.Helper()
		evs, err := st.QueryAudit(ctx, store.AuditFilter{Action: action, Outcome: outcome, Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	run := func(what string, wantRevoked int) *ReconcileJobResult {
		t.Helper()
		res, err := s.ReconcileJob(ctx)
		if err != nil {
			t.Fatalf("%s: reconcile job: %v", what, err)
		}
		if res.Revoked != wantRevoked || !res.Held {
			t.Fatalf("%s: %+v, want %d revoked and a hold", what, res, wantRevoked)
		}
		if got := gauge(t, m, "certportal_reconcile_held"); got != "1" {
			t.Errorf("%s: certportal_reconcile_held %s, want 1", what, got)
		}
		return res
	}

	// bob's is revoked, alice's are held.
	if res := run("alice over the limit, bob within it", 1); res.HeldAll || !slices.Equal(res.HeldUsers, []HeldUser{{"alice", 3}}) {
		t.Errorf("held %+v (all %v), want alice's 3 only", res.HeldUsers, res.HeldAll)
	}
	if got := vlt.revokedSerials(); !slices.Equal(got, []string{bobs}) {
		t.Fatalf("revoked %v, want only bob's %s", got, bobs)
	}
	if evs := events(audit.ActionRevoke, audit.OutcomeSuccess); len(evs) != 1 || evs[0].Serial != bobs || evs[0].Subject != "bob" {
		t.Fatalf("revocation events %+v, want one for bob's %s", evs, bobs)
	}
	held := events(audit.ActionReconcileHeld, audit.OutcomeDenied)
	if len(held) != 1 {
		t.Fatalf("%d reconcile.held events, want 1", len(held))
	}
	d := decodeDetails(held[0].Details)
	if d["held_employees"] != "alice (3)" || d["scope"] != "employees" {
		t.Errorf("reconcile.held details %v: want alice (3) held, scope employees", d)
	}
	for _, serial := range alices {
		if !strings.Contains(d["serials"], serial) {
			t.Errorf("reconcile.held serials %q lack alice's %s", d["serials"], serial)
		}
	}
	if strings.Contains(d["serials"], bobs) || strings.Contains(d["held_employees"], "bob") {
		t.Errorf("reconcile.held names bob: %v", d)
	}
	if evs := events(audit.ActionReconcile, ""); len(evs) != 1 || decodeDetails(evs[0].Details)["held_employees"] != "alice (3)" {
		t.Errorf("audit.reconcile events %+v: want one naming the held employee", evs)
	}

	// The same again: nothing more revoked, the hold not recorded twice.
	run("the same hold", 0)
	if n := len(events(audit.ActionReconcileHeld, "")); n != 1 {
		t.Errorf("%d reconcile.held events for one unchanged hold, want 1", n)
	}

	// A mass event: three more employees with one each, more employees
	// than the limit: nothing is revoked, whoever they are.
	mint("carol")
	mint("dave")
	mint("erin")
	run("three more employees", 0)
	if got := vlt.revokedSerials(); len(got) != 1 {
		t.Fatalf("revoked %v during a hold of everything", got)
	}
	held = events(audit.ActionReconcileHeld, audit.OutcomeDenied)
	if len(held) != 2 || decodeDetails(held[0].Details)["scope"] != "all" {
		t.Fatalf("reconcile.held events %+v: want a second one, scope all", held)
	}

	// The helpdesk revokes the others and alice's: the hold ends.
	vlt.revokeAll(now)
	res, err := s.ReconcileJob(ctx)
	if err != nil || res.Held || res.Revoked != 0 {
		t.Fatalf("after the helpdesk revoked them: %+v %v", res, err)
	}
	if got := gauge(t, m, "certportal_reconcile_held"); got != "0" {
		t.Errorf("certportal_reconcile_held %s after the hold ended, want 0", got)
	}
	if n := len(events(audit.ActionReconcileResumed, "")); n != 1 {
		t.Errorf("%d reconcile.resumed events, want 1", n)
	}
}
