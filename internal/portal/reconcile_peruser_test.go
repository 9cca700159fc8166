package portal

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/audit"
	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/vault"
)

// revokingVault is issuedAround whose revocations take effect, as Vault's
// do, and are counted per serial; a serial in fail is refused, as Vault
// refuses when it is down.
type revokingVault struct {
	*issuedAround
	rmu     sync.Mutex
	revoked []string
	fail    map[string]bool
}

func (v *revokingVault) Revoke(_ context.Context, _, serial string) error {
	v.rmu.Lock()
	refuse := v.fail[serial]
	v.rmu.Unlock()
	if refuse {
		return errors.New("vault: 503 Service Unavailable")
	}
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

// heldScope reads certportal_reconcile_held_scope{scope} from m's /metrics.
func heldScope(t *testing.T, m *metrics.Metrics, scope string) string {
	t.Helper()
	return gauge(t, m, `certportal_reconcile_held_scope{scope="`+scope+`"}`)
}

// mintAround puts a client certificate for user@example.com, issued
// straight from Vault three hours ago, into v; it returns the serial.
func mintAround(v *revokingVault, user string, n int, now time.Time) string {
	serial := vaultSerial(fmt.Sprintf("2b-%02x", n))
	cn := user + "@example.com"
	v.mu.Lock()
	defer v.mu.Unlock()
	v.certs[serial] = &vault.StoredCertificate{Certificate: &x509.Certificate{
		SerialNumber: big.NewInt(int64(n)), Subject: pkix.Name{CommonName: cn}, EmailAddresses: []string{cn},
		NotBefore: now.Add(-3 * time.Hour), NotAfter: now.Add(24 * time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}}
	return serial
}

// TestReconcileHoldsOnlyTheEmployeeOverTheLimit: with
// CERTPORTAL_RECONCILE_AUTO_REVOKE_PER_USER_MAX at 2 (and
// CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX at 3), alice has 3 certificates
// issued straight from Vault and bob 1, all past the grace. bob's is
// revoked; alice's are held, named in the trail (reconcile.held with the
// employee and her serials) and alerted (certportal_reconcile_held, scope
// employees). The run's bound still holds everything when the others'
// certificates come to more than 3, and the hold ends
// (reconcile.resumed) once they and alice's are revoked by hand.
func TestReconcileHoldsOnlyTheEmployeeOverTheLimit(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	vlt := &revokingVault{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{}}}
	n := 0
	mint := func(user string) string {
		n++
		return mintAround(vlt, user, n, now)
	}
	var alices []string
	for range 3 {
		alices = append(alices, mint("alice"))
	}
	bobs := mint("bob")

	s, _, m, events := newReconcileService(t, vlt, ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 2, AutoRevokeMax: 3})
	run := func(what string, wantRevoked int, scope string) *ReconcileJobResult {
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
		for _, sc := range []string{HoldScopeEmployees, HoldScopeAll} {
			want := "0"
			if sc == scope {
				want = "1"
			}
			if got := heldScope(t, m, sc); got != want {
				t.Errorf("%s: certportal_reconcile_held_scope{scope=%q} %s, want %s", what, sc, got, want)
			}
		}
		return res
	}

	// bob's is revoked, alice's are held.
	if res := run("alice over the limit, bob within it", 1, HoldScopeEmployees); res.HeldAll || !slices.Equal(res.HeldUsers, []HeldUser{{"alice", 3}}) {
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
	run("the same hold", 0, HoldScopeEmployees)
	if n := len(events(audit.ActionReconcileHeld, "")); n != 1 {
		t.Errorf("%d reconcile.held events for one unchanged hold, want 1", n)
	}

	// A mass event: four more employees with one each, more certificates
	// than the run's limit: nothing is revoked, whoever they are.
	mint("carol")
	mint("dave")
	mint("erin")
	mint("frank")
	run("four more employees", 0, HoldScopeAll)
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
	for _, sc := range []string{HoldScopeEmployees, HoldScopeAll} {
		if got := heldScope(t, m, sc); got != "0" {
			t.Errorf("certportal_reconcile_held_scope{scope=%q} %s after the hold ended, want 0", sc, got)
		}
	}
	if n := len(events(audit.ActionReconcileResumed, "")); n != 1 {
		t.Errorf("%d reconcile.resumed events, want 1", n)
	}
}

// TestReconcileFailedWhileAnEmployeeIsHeld: alice is held (3 certificates,
// per-employee limit 2) and Vault refuses to revoke bob's. The run counts
// as failed (certportal_reconcile_runs_total{result="failed"}), not held:
// a hold in force must not hide that other employees' certificates stay
// valid. The hold is still alerted, with its scope: employees.
func TestReconcileFailedWhileAnEmployeeIsHeld(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	vlt := &revokingVault{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{}}, fail: map[string]bool{}}
	for i := range 3 {
		mintAround(vlt, "alice", i+1, now)
	}
	bobs := mintAround(vlt, "bob", 4, now)
	vlt.fail[bobs] = true
	s, _, m, _ := newReconcileService(t, vlt, ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 2, AutoRevokeMax: 3})
	res, err := s.ReconcileJob(ctx)
	if err == nil || res == nil || res.Failed != 1 || !res.Held || res.HeldAll {
		t.Fatalf("reconcile job: %+v %v, want bob's revocation failed and alice held", res, err)
	}
	for result, want := range map[string]string{"failed": "1", "held": "0", "ok": "0"} {
		if got := gauge(t, m, `certportal_reconcile_runs_total{result="`+result+`"}`); got != want {
			t.Errorf("certportal_reconcile_runs_total{result=%q} %s, want %s", result, got, want)
		}
	}
	if got := gauge(t, m, "certportal_reconcile_held"); got != "1" {
		t.Errorf("certportal_reconcile_held %s, want 1", got)
	}
	if got := heldScope(t, m, HoldScopeEmployees); got != "1" {
		t.Errorf("certportal_reconcile_held_scope{scope=\"employees\"} %s, want 1", got)
	}
	if got := heldScope(t, m, HoldScopeAll); got != "0" {
		t.Errorf("certportal_reconcile_held_scope{scope=\"all\"} %s, want 0", got)
	}
}

// TestReconcileStrangersFromTheUserList: with CERTPORTAL_RECONCILE_AUTO_REVOKE_MAX
// at 3, bob (a Vault user) and four names Vault's userpass mount does not
// list each have one certificate issued around the portal. Counted as
// employees the five would hold everything; as strangers they are revoked
// within the bound, bob's first, the reason in their evidence, no hold.
// A mount that lists nobody makes nobody a stranger (the wrong mount, not
// a company of leavers): then the old hold of everything stands.
func TestReconcileStrangersFromTheUserList(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	vlt := &revokingVault{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{}}}
	vlt.set("alice", "bob")
	n := 0
	bobs := mintAround(vlt, "bob", n, now)
	for _, g := range []string{"ghost1", "ghost2", "ghost3", "ghost4"} {
		n++
		mintAround(vlt, g, n, now)
	}
	s, _, _, events := newReconcileService(t, vlt, ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 2, AutoRevokeMax: 3})
	res, err := s.ReconcileJob(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Held || res.Revoked != 3 || res.Strangers != 4 {
		t.Fatalf("first run %+v: want 3 revoked (bob's and two strangers'), 4 strangers, no hold", res)
	}
	if got := vlt.revokedSerials(); !slices.Contains(got, bobs) {
		t.Errorf("revoked %v, want bob's %s among them", got, bobs)
	}
	for _, e := range events(audit.ActionRevoke, audit.OutcomeSuccess) {
		stranger := strings.Contains(decodeDetails(e.Details)["evidence"], "is not a user of Vault's userpass mount")
		if stranger != (e.Subject != "bob") {
			t.Errorf("revocation of %s (%s): evidence %q", e.Serial, e.Subject, decodeDetails(e.Details)["evidence"])
		}
	}
	if res, err := s.ReconcileJob(ctx); err != nil || res.Revoked != 2 || res.Held {
		t.Fatalf("second run %+v %v: want the last two strangers revoked", res, err)
	}

	// Nobody listed: every name counts as an employee's again.
	vlt2 := &revokingVault{issuedAround: &issuedAround{certs: map[string]*vault.StoredCertificate{}}}
	for i, g := range []string{"bob", "ghost1", "ghost2", "ghost3", "ghost4"} {
		mintAround(vlt2, g, i, now)
	}
	s2, _, _, _ := newReconcileService(t, vlt2, ReconcileOptions{AutoRevokeAfter: time.Hour, AutoRevokePerUserMax: 2, AutoRevokeMax: 3})
	if res, err := s2.ReconcileJob(ctx); err != nil || !res.HeldAll || res.Revoked != 0 || res.Strangers != 0 {
		t.Fatalf("with an empty user list %+v %v: want the hold of everything, nothing revoked", res, err)
	}
}
