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
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/vault"
)

// TestReconcileCaseVariantsAndUnattributed: certificates issued straight
// from Vault under case variants of an employee's address ("ALICE@…",
// "alice@EXAMPLE.com", KELVIN SIGN for kate) count as that employee's:
// revoked within the per-employee bound, held and named over it. One for
// an address in the users' domain that names no portal user is held and
// reported (scope "unattributed"), never skipped and never revoked; the
// hold ends once it is revoked by hand.
func TestReconcileCaseVariantsAndUnattributed(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	vlt := &revokingVault{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{}}}
	n := 0
	mint := func(cn string) string {
		n++
		serial := vaultSerial(fmt.Sprintf("3c-%02x", n))
		vlt.mu.Lock()
		vlt.certs[serial] = &vault.StoredCertificate{Certificate: &x509.Certificate{
			SerialNumber: big.NewInt(int64(n)), Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{cn},
			NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		}}
		vlt.mu.Unlock()
		return serial
	}
	alice := mint("ALICE@example.com")
	kate := mint("\u212Aate@Example.com")
	stranger := mint("ops+alerts@example.com")

	s, st, m, events := newReconcileService(t, vlt, ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 2})
	run := func(what string) *ReconcileJobResult {
		t.Helper()
		res, err := s.ReconcileJob(ctx)
		if err != nil {
			t.Fatalf("%s: reconcile job: %v", what, err)
		}
		return res
	}

	res := run("case variants and a stranger")
	if res.Revoked != 2 || !res.Held || res.HeldAll || res.Unattributed != 1 || len(res.HeldUsers) != 0 {
		t.Fatalf("%+v: want alice's and kate's revoked, the stranger's held", res)
	}
	if got := vlt.revokedSerials(); !slices.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values([]string{alice, kate}))) {
		t.Fatalf("revoked %v, want alice's %s and kate's %s", got, alice, kate)
	}
	subjects := map[string]string{}
	for _, e := range events(audit.ActionRevoke, audit.OutcomeSuccess) {
		subjects[e.Serial] = e.Subject
	}
	if subjects[alice] != "alice" || subjects[kate] != "kate" || len(subjects) != 2 {
		t.Errorf("revocations name %v, want alice and kate", subjects)
	}
	held := events(audit.ActionReconcileHeld, audit.OutcomeDenied)
	if len(held) != 1 {
		t.Fatalf("%d reconcile.held events, want 1", len(held))
	}
	d := decodeDetails(held[0].Details)
	if d["scope"] != "unattributed" || d["serials"] != stranger || d["unattributed"] != "1" || d["held_employees"] != "" ||
		!strings.Contains(d["why"], "name no portal user") {
		t.Errorf("reconcile.held details %v: want the stranger's %s, scope unattributed", d, stranger)
	}
	if got := gauge(t, m, "certportal_reconcile_held"); got != "1" {
		t.Errorf("certportal_reconcile_held %s, want 1", got)
	}
	scopes := func(what string, want map[string]string) {
		t.Helper()
		for scope, v := range want {
			if got := heldScope(t, m, scope); got != v {
				t.Errorf("%s: certportal_reconcile_held_scope{scope=%q} %s, want %s", what, scope, got, v)
			}
		}
	}
	scopes("the stranger held", map[string]string{"unattributed": "1", "employees": "0", "all": "0"})

	// Unchanged: nothing revoked, the hold not recorded twice.
	if res := run("the same hold"); res.Revoked != 0 || !res.Held {
		t.Fatalf("%+v: want the hold, nothing revoked", res)
	}
	if n := len(events(audit.ActionReconcileHeld, "")); n != 1 {
		t.Errorf("%d reconcile.held events for one unchanged hold, want 1", n)
	}

	// alice mints three more under other cases: over the bound of 2,
	// hers are held and named beside the stranger's.
	a2, a3, a4 := mint("Alice@example.com"), mint("alice@EXAMPLE.COM"), mint("alice@example.com")
	if res := run("alice over the bound"); res.Revoked != 0 || !res.Held || !slices.Equal(res.HeldUsers, []HeldUser{{"alice", 3}}) {
		t.Fatalf("%+v: want alice (3) held and the stranger's", res)
	}
	held = events(audit.ActionReconcileHeld, audit.OutcomeDenied)
	d = decodeDetails(held[0].Details)
	if len(held) != 2 || d["scope"] != "employees+unattributed" || d["held_employees"] != "alice (3)" {
		t.Fatalf("reconcile.held %v: want scope employees+unattributed naming alice (3)", d)
	}
	for _, serial := range []string{a2, a3, a4, stranger} {
		if !strings.Contains(d["serials"], serial) {
			t.Errorf("reconcile.held serials %q lack %s", d["serials"], serial)
		}
	}
	scopes("alice and the stranger held", map[string]string{"unattributed": "1", "employees": "1", "all": "0"})
	// A replica that lost the lock reads both from the trail.
	other := metrics.New()
	s2 := NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", EmailDomain: "example.com", Metrics: other},
		slog.New(slog.DiscardHandler))
	s2.reconcileHeldFromTrail(ctx)
	for scope, want := range map[string]string{"unattributed": "1", "employees": "1", "all": "0"} {
		if got := heldScope(t, other, scope); got != want {
			t.Errorf("from the trail: certportal_reconcile_held_scope{scope=%q} %s, want %s", scope, got, want)
		}
	}

	// The helpdesk revokes them by hand: the hold ends.
	vlt.revokeAll(now)
	if res := run("after the helpdesk revoked them"); res.Held || res.Revoked != 0 {
		t.Fatalf("%+v: want no hold", res)
	}
	if got := gauge(t, m, "certportal_reconcile_held"); got != "0" {
		t.Errorf("certportal_reconcile_held %s after the hold ended, want 0", got)
	}
	scopes("after the hold", map[string]string{"unattributed": "0", "employees": "0", "all": "0"})
	if n := len(events(audit.ActionReconcileResumed, "")); n != 1 {
		t.Errorf("%d reconcile.resumed events, want 1", n)
	}
}
