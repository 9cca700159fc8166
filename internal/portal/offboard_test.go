package portal

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/metrics"
	"github.com/certportal/certportal/internal/store"
	"github.com/certportal/certportal/internal/store/sqlite"
	"github.com/certportal/certportal/internal/vault"
)

// userList is the part of Vault the offboarding sweep reads: a userpass
// mount whose users all still hold the employee policy, and the portal's
// revocation, which can be made to fail.
type userList struct {
	mu         sync.Mutex
	users      []string
	revokeFail bool
	// listed, when set, is what LIST answers instead of users: a list read
	// before users were created (the sweep reads it before the inventory).
	listed []string
}

func (u *userList) set(names ...string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users = slices.Clone(names)
}

func (u *userList) failRevocations(fail bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.revokeFail = fail
}

func (u *userList) Revoke(context.Context, string, string) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.revokeFail {
		return errors.New("vault: connection refused")
	}
	return nil
}

func (u *userList) ListUsers(context.Context, string) ([]string, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.listed != nil {
		return slices.Clone(u.listed), nil
	}
	return slices.Clone(u.users), nil
}

func (u *userList) ReadUser(_ context.Context, _, name string) (*vault.UserpassUser, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !slices.Contains(u.users, name) {
		return nil, nil
	}
	return &vault.UserpassUser{Policies: []string{"certportal-user"}}, nil
}

func (u *userList) MountAccessor(context.Context, string) (string, error) { return "", nil }
func (u *userList) LookupEntityByAlias(context.Context, string, string) (*vault.Entity, error) {
	return nil, nil
}

// gauge reads one unlabelled sample from m's /metrics.
func gauge(t *testing.T, m *metrics.Metrics, name string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	s := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(rec.Body.String())
	if s == nil {
		t.Fatalf("no %s in /metrics", name)
	}
	return s[1]
}

// TestOffboardNewUserAfterTheList: the sweep reads Vault's user list and
// then the inventory, so a user created in between who got a certificate
// in between is in the inventory and not in the list. Vault has them:
// their certificate stays. A user Vault does not have goes as before.
// (The fake answers LIST from before the user existed: the timing a real
// Vault gives only by chance; seen once in CI as
// TestOffboardOneRunnerPostgres revoking a new user's certificate.)
func TestOffboardNewUserAfterTheList(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir()+"/p.db")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	vlt := &userList{}
	vlt.set("alice", "bob", "newbie", "zed")
	vlt.listed = []string{"alice", "bob", "gone", "zed"}
	s := NewService(nil, vlt, st, Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user", Metrics: metrics.New(),
		Offboard: OffboardOptions{MaxShare: 1}}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	now := time.Now()
	for _, u := range []string{"alice", "bob", "newbie", "gone"} {
		if err := st.InsertCertificate(ctx, &store.Certificate{Serial: "ab:" + u, Username: u, Subject: u + "@example.com", KeyType: "ec-256",
			Encryption: "modern", IssuedBy: u, IssuedAt: now.Add(-time.Minute), NotAfter: now.Add(30 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := s.Offboard(ctx, OffboardGuarded, "")
	if err != nil || res.Held {
		t.Fatalf("sweep: %+v %v", res, err)
	}
	var names []string
	for _, u := range res.Users {
		names = append(names, u.Username)
	}
	// "gone" was listed but Vault no longer has it: deleted since the list.
	if !slices.Equal(names, []string{"gone"}) {
		t.Fatalf("offboarded %v, want only gone", names)
	}
	for _, u := range []string{"alice", "bob", "newbie"} {
		c, err := st.GetCertificate(ctx, "ab:"+u)
		if err != nil || !c.RevokedAt.IsZero() {
			t.Errorf("%s's certificate: %+v %v, want active", u, c, err)
		}
	}
}

// TestOffboardHeldGaugeAcrossReplicas: two replicas on one store (the
// SQLite locks are per file, as PostgreSQL's advisory lock is per
// database). Whichever replica swept, each one's certportal_offboard_held
// says whether a hold is in force — the trail's, shared by all — also the
// replica whose sweeps lose the lock to the other, and one whose sweep
// ended a hold but then failed to revoke. A replica reporting a hold that
// is over keeps the critical alert firing (max by job).
func TestOffboardHeldGaugeAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() store.Store {
		st, err := sqlite.Open(ctx, dir+"/p.db")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
	vlt := &userList{}
	vlt.set("alice", "bob", "carol", "erin")
	replica := func() (*Service, *metrics.Metrics) {
		m := metrics.New()
		s := NewService(nil, vlt, open(), Options{UserpassMount: "userpass", PKIMount: "pki", UserPolicy: "certportal-user", Metrics: m},
			slog.New(slog.NewTextHandler(io.Discard, nil)))
		return s, m
	}
	a, am := replica()
	b, bm := replica()
	now := time.Now()
	for _, u := range []string{"alice", "bob", "carol", "erin"} {
		if err := a.store.InsertCertificate(ctx, &store.Certificate{Serial: "ab:" + u, Username: u, Subject: u + "@example.com", KeyType: "ec-256",
			Encryption: "modern", IssuedBy: u, IssuedAt: now.Add(-time.Hour), NotAfter: now.Add(30 * 24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	sweep := func(s *Service, wantSkipped bool) {
		t.Helper()
		res, err := s.Offboard(ctx, OffboardGuarded, "")
		if err != nil && !wantSkipped {
			t.Logf("sweep: %v", err)
		}
		if res == nil || res.Skipped != wantSkipped {
			t.Fatalf("sweep: %+v %v, want skipped %v", res, err, wantSkipped)
		}
	}
	// while the other replica sweeps: the store's lock is taken.
	whileBusy := func(f func()) {
		t.Helper()
		unlock, ok, err := b.store.TryLock(ctx, offboardLock)
		if err != nil || !ok {
			t.Fatalf("take the sweep's lock: %v %v", ok, err)
		}
		defer unlock()
		f()
	}
	held := func(what string, m *metrics.Metrics, want string) {
		t.Helper()
		if got := gauge(t, m, "certportal_offboard_held"); got != want {
			t.Errorf("%s: certportal_offboard_held %s, want %s", what, got, want)
		}
	}

	// Two of four leave: a hold, on the replica that swept.
	vlt.set("alice", "bob")
	sweep(a, false)
	held("a held", am, "1")
	// b loses the lock to a: it reports the hold in force all the same.
	whileBusy(func() { sweep(b, true) })
	held("b skipped during the hold", bm, "1")

	// They are back: b's sweep ends the hold (offboard.resumed) while a's
	// sweeps keep losing the lock to b's.
	vlt.set("alice", "bob", "carol", "erin")
	sweep(b, false)
	held("b after its unheld sweep", bm, "0")
	whileBusy(func() { sweep(a, true) })
	held("a skipped after b ended the hold", am, "0")

	// A hold again, then one leaver alone (not mass: revoked), whose
	// revocation fails: the hold is over all the same.
	vlt.set("alice", "bob")
	sweep(a, false)
	held("a held again", am, "1")
	vlt.set("alice", "bob", "carol")
	vlt.failRevocations(true)
	if _, err := a.Offboard(ctx, OffboardGuarded, ""); err == nil {
		t.Fatal("a sweep whose revocation failed reported no error")
	}
	held("a after the hold ended and the revocation failed", am, "0")
}
