package vault_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/vault"
)

// TestServiceIdentity: the portal's AppRole token is renewed across its TTL,
// obtained again past its max TTL, recovered after Vault revoked it behind the
// portal's back, and a rotated secret id file is picked up without a restart.
func TestServiceIdentity(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	// Short TTLs so that renewals and re-logins happen within the test.
	if _, err := v.Admin.Logical().Write("auth/approle/role/certportal", map[string]any{
		"token_ttl": "3s", "token_max_ttl": "5s"}); err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(t.TempDir(), "secret-id")
	if err := os.WriteFile(secretFile, []byte(v.Setup.ServiceSecretID+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := vault.New(vault.Config{Addr: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.NewService(vault.AppRole{RoleID: v.Setup.ServiceRoleID, SecretIDFile: secretFile},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tokens := map[string]bool{}
	deadline := time.Now().Add(9 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := svc.ListCertificates(ctx, "pki"); err != nil {
			t.Fatalf("service call failed at %s: %v", time.Until(deadline), err)
		}
		tok, err := svc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tokens[tok] = true
		time.Sleep(250 * time.Millisecond)
	}
	// 9s of use with a 5s max TTL needs at least one fresh login.
	if len(tokens) < 2 {
		t.Fatalf("one token for 9s with a 5s max TTL: never logged in again")
	}

	t.Run("revoked behind the portal's back", func(t *testing.T) {
		tok, _ := svc.Token(ctx)
		if _, err := v.Admin.Logical().Write("auth/token/revoke", map[string]any{"token": tok}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ListCertificates(ctx, "pki"); err != nil {
			t.Fatalf("not recovered: %v", err)
		}
		if now, _ := svc.Token(ctx); now == tok {
			t.Fatal("still using the revoked token")
		}
	})

	t.Run("secret id rotated", func(t *testing.T) {
		sec, err := v.Admin.Logical().Write("auth/approle/role/certportal/secret-id", nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(secretFile, []byte(sec.Data["secret_id"].(string)), 0o600); err != nil {
			t.Fatal(err)
		}
		// The old secret id dies; the next login must read the new file.
		if _, err := v.Admin.Logical().Write("auth/approle/role/certportal/secret-id/destroy",
			map[string]any{"secret_id": v.Setup.ServiceSecretID}); err != nil {
			t.Fatal(err)
		}
		tok, _ := svc.Token(ctx)
		if _, err := v.Admin.Logical().Write("auth/token/revoke", map[string]any{"token": tok}); err != nil {
			t.Fatal(err)
		}
		if _, err := svc.ListCertificates(ctx, "pki"); err != nil {
			t.Fatalf("rotated secret id not used: %v", err)
		}
	})

	t.Run("cannot issue", func(t *testing.T) {
		tok, _ := svc.Token(ctx)
		_, err := c.Issue(ctx, tok, vault.IssueRequest{Mount: "pki", Role: "user-auth", CommonName: "alice@example.com"})
		if err == nil {
			t.Fatal("the service identity could issue a user certificate")
		}
	})
}

// TestRemoveStaleSecretTemps: a temporary secret file older than a write
// can take is removed; a fresh one (a write under way, perhaps by another
// replica), other names, a symlink and a directory with the prefix stay,
// and so does a symlink's target.
func TestRemoveStaleSecretTemps(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	old := now.Add(-time.Hour)
	write := func(name string, at time.Time) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("s.secret\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, at, at); err != nil {
			t.Fatal(err)
		}
		return p
	}
	stale := write(".certportal-secret-id-111", old)
	staleSetup := write(".certportal-secret-222", old)
	fresh := write(".certportal-secret-id-333", now)
	other := write("approle-secret-id", old)
	lookalike := write(".certportal-secretary", old)
	target := write("elsewhere", old)
	link := filepath.Join(dir, ".certportal-secret-id-link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, ".certportal-secret-id-dir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(sub, old, old); err != nil {
		t.Fatal(err)
	}
	vault.RemoveStaleSecretTemps(dir, now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, p := range []string{stale, staleSetup} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s: still there (%v)", filepath.Base(p), err)
		}
	}
	for _, p := range []string{fresh, other, lookalike, target, link, sub} {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: removed (%v)", filepath.Base(p), err)
		}
	}
}

// TestServiceLists: the service's LIST calls (decoded from the body as it
// arrives, not through the API client's generic secret) return exactly the
// keys Vault's own client sees, an empty list for a path with none (Vault's
// 404), and a refusal for a path the portal's policy does not grant.
func TestServiceLists(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	ctx := context.Background()
	if _, err := v.Admin.Logical().Write("pki/roles/list-test", map[string]any{"allow_any_name": true, "key_type": "ec", "key_bits": 256}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := v.Admin.Logical().Write("pki/issue/list-test", map[string]any{"common_name": "list" + string(rune('a'+i)) + "@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	c, err := vault.New(vault.Config{Addr: v.Addr})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := c.NewService(vault.AppRole{RoleID: v.Setup.ServiceRoleID, SecretID: v.Setup.ServiceSecretID},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	want := func(path string) []string {
		sec, err := v.Admin.Logical().List(path)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		if sec != nil {
			for _, k := range sec.Data["keys"].([]any) {
				keys = append(keys, k.(string))
			}
		}
		return keys
	}
	got, err := svc.ListCertificates(ctx, "pki")
	if err != nil {
		t.Fatal(err)
	}
	if w := want("pki/certs"); len(got) < 3 || strings.Join(got, ",") != strings.Join(w, ",") {
		t.Errorf("ListCertificates = %v; want Vault's %v (at least the 3 issued)", got, w)
	}
	revoked, err := svc.ListRevokedCertificates(ctx, "pki")
	if err != nil || len(revoked) != 0 {
		t.Errorf("ListRevokedCertificates with none revoked = %v, %v; want none, no error", revoked, err)
	}
	if _, err := svc.ListCertificates(ctx, "sys/policies/acl"); !errors.Is(err, vault.ErrPermissionDenied) {
		t.Errorf("LIST of a path outside the portal's policy: %v; want ErrPermissionDenied", err)
	}
}
