package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/testenv"
)

// demoPasswords reads the one-time demo logins setup printed.
func demoPasswords(t *testing.T, out string) map[string]string {
	t.Helper()
	pw := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^  (alice|bob|helen|audrey)\s+(\S+)\s+\w+$`).FindAllStringSubmatch(out, -1) {
		pw[m[1]] = m[2]
	}
	if len(pw) != 4 {
		t.Fatalf("demo passwords not found in:\n%s", out)
	}
	return pw
}

func isStatus(err error, codes ...int) bool {
	var re *vaultapi.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	for _, c := range codes {
		if re.StatusCode == c {
			return true
		}
	}
	return false
}

func readTrimmed(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func appRoleLogin(c *vaultapi.Client, roleID, secretID string) (string, error) {
	s, err := c.Logical().Write("auth/approle/login", map[string]any{"role_id": roleID, "secret_id": secretID})
	if err != nil {
		return "", err
	}
	return s.Auth.ClientToken, nil
}

// TestSetupBindsTokensToAddresses: with the CIDR options, users' tokens and
// the portal's AppRole secret id and tokens work from the portal's address
// (here 127.0.0.1) and nowhere else (127.0.0.2 stands for a workstation);
// the secret id expires by default.
func TestSetupBindsTokensToAddresses(t *testing.T) {
	v := testenv.StartVault(t)
	dir := t.TempDir()
	out, err := runSetupCmd(v, "--demo-users", "--approle-out", dir,
		"--user-token-bound-cidrs", "127.0.0.1/32",
		"--secret-id-bound-cidrs", "127.0.0.1/32", "--approle-token-bound-cidrs", "127.0.0.1/32")
	if err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	pw := demoPasswords(t, out)
	portal, elsewhere := v.ClientFrom(t, "127.0.0.1", ""), v.ClientFrom(t, "127.0.0.2", "")

	// alice through the portal's address: login and issue work.
	s, err := portal.Logical().Write("auth/userpass/login/alice", map[string]any{"password": pw["alice"]})
	if err != nil {
		t.Fatalf("login from the portal's address: %v", err)
	}
	tok := s.Auth.ClientToken
	if _, err := v.ClientFrom(t, "127.0.0.1", tok).Logical().Write("pki/issue/user-auth", map[string]any{"common_name": "alice@example.com"}); err != nil {
		t.Fatalf("issue from the portal's address: %v", err)
	}
	// The same token from elsewhere, and a login from elsewhere.
	if _, err := v.ClientFrom(t, "127.0.0.2", tok).Logical().Write("pki/issue/user-auth", map[string]any{"common_name": "alice@example.com"}); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("alice's token from another address: %v, want 403", err)
	}
	if s, err := elsewhere.Logical().Write("auth/userpass/login/alice", map[string]any{"password": pw["alice"]}); err == nil {
		if _, err := v.ClientFrom(t, "127.0.0.2", s.Auth.ClientToken).Auth().Token().LookupSelf(); !isStatus(err, http.StatusForbidden) {
			t.Fatalf("a token from a login elsewhere works elsewhere: %v", err)
		}
	}

	// The AppRole: secret id and tokens bound too.
	roleID, secretID := readTrimmed(t, filepath.Join(dir, "role-id")), readTrimmed(t, filepath.Join(dir, "secret-id"))
	if _, err := appRoleLogin(elsewhere, roleID, secretID); err == nil {
		t.Fatal("AppRole login from another address succeeded")
	}
	svc, err := appRoleLogin(portal, roleID, secretID)
	if err != nil {
		t.Fatalf("AppRole login from the portal's address: %v", err)
	}
	if _, err := v.ClientFrom(t, "127.0.0.2", svc).Auth().Token().LookupSelf(); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("AppRole token from another address: %v, want 403", err)
	}

	role, err := v.Admin.Logical().Read("auth/approle/role/certportal")
	if err != nil {
		t.Fatal(err)
	}
	if got := role.Data["secret_id_ttl"]; toString(got) != "2592000" {
		t.Fatalf("secret_id_ttl %v, want 720h by default", got)
	}
	look, err := v.Admin.Logical().Write("auth/approle/role/certportal/secret-id/lookup", map[string]any{"secret_id": secretID})
	if err != nil || look == nil || toString(look.Data["expiration_time"]) == "" || strings.HasPrefix(toString(look.Data["expiration_time"]), "0001") {
		t.Fatalf("secret id lookup: %v %+v, want an expiration time", err, look)
	}

	// A second run changes nothing; dropping an option unbinds again.
	out, err = runSetupCmd(v, "--user-token-bound-cidrs", "127.0.0.1/32",
		"--secret-id-bound-cidrs", "127.0.0.1/32", "--approle-token-bound-cidrs", "127.0.0.1/32", "--demo-users")
	if err != nil || !strings.Contains(out, "nothing to change") {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	for _, bad := range []string{"127.0.0.1", "10.0.0.0/33", "*"} {
		if out, err := runSetupCmd(v, "--user-token-bound-cidrs", bad); err == nil || !strings.Contains(err.Error(), "CIDR") {
			t.Errorf("--user-token-bound-cidrs %q: %v\n%s", bad, err, out)
		}
	}
}

func toString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// TestRotateSecretID: rotate-secret-id, run with the narrow rotation policy
// setup writes, puts a new secret id in the file (0600, atomically) and
// destroys the old one in Vault; it never prints either.
func TestRotateSecretID(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dir := t.TempDir()
	if out, err := runSetupCmd(v, "--approle-out", dir); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "secret-id")
	roleID, old := readTrimmed(t, filepath.Join(dir, "role-id")), readTrimmed(t, file)

	tok, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{"certportal-secret-id-rotation"}, TTL: "10m"})
	if err != nil {
		t.Fatal(err)
	}
	rotate := func(token string, args ...string) (string, error) {
		env := map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": token}
		var o, e bytes.Buffer
		err := run(context.Background(), append([]string{"rotate-secret-id"}, args...), func(k string) string { return env[k] }, &o, &e)
		return o.String() + e.String(), err
	}
	out, err := rotate(tok.Auth.ClientToken, "--secret-id-file", file)
	if err != nil {
		t.Fatalf("rotate: %v\n%s", err, out)
	}
	cur := readTrimmed(t, file)
	if cur == old || cur == "" {
		t.Fatal("secret id file unchanged")
	}
	if strings.Contains(out, cur) || strings.Contains(out, old) {
		t.Fatal("rotate-secret-id printed a secret id")
	}
	if st, err := os.Stat(file); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret id file mode: %v %v", st.Mode(), err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Fatalf("files left in %s: %v", dir, ents)
	}
	anon := v.ClientFrom(t, "127.0.0.1", "")
	if _, err := appRoleLogin(anon, roleID, cur); err != nil {
		t.Fatalf("login with the new secret id: %v", err)
	}
	if _, err := appRoleLogin(anon, roleID, old); err == nil {
		t.Fatal("the old secret id still logs in")
	}

	// The rotation token can do nothing else with the role.
	rc := v.ClientFrom(t, "127.0.0.1", tok.Auth.ClientToken)
	if _, err := rc.Logical().Write("auth/approle/role/certportal/secret-id", map[string]any{"ttl": "87600h"}); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("rotation token chose a secret id ttl: %v", err)
	}
	if _, err := rc.Logical().Write("auth/approle/role/certportal", map[string]any{"secret_id_ttl": 0}); !isStatus(err, http.StatusForbidden) {
		t.Fatalf("rotation token changed the role: %v", err)
	}

	// An old secret id Vault no longer knows (expired, destroyed): rotation
	// still writes a working one, which is how an operator recovers.
	if err := os.WriteFile(file, []byte(old+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := rotate(v.Admin.Token(), "--secret-id-file", file); err != nil || !strings.Contains(out, "not valid") {
		t.Fatalf("rotate over a dead secret id: %v\n%s", err, out)
	}
	if _, err := appRoleLogin(anon, roleID, readTrimmed(t, file)); err != nil {
		t.Fatalf("login after recovery: %v", err)
	}
	// No file: refuse, so a mistyped path cannot leave the real one valid.
	if out, err := rotate(v.Admin.Token(), "--secret-id-file", filepath.Join(dir, "missing")); err == nil {
		t.Fatalf("rotate with a missing file succeeded:\n%s", out)
	}
}

// TestSetupApproleOutReplacesSecret: `setup --approle-out DIR` over a DIR
// that already holds a secret id destroys that one once the new file is in
// place, so reruns do not leave valid secret ids behind.
func TestSetupApproleOutReplacesSecret(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	dir := t.TempDir()
	if out, err := runSetupCmd(v, "--approle-out", dir); err != nil {
		t.Fatalf("setup: %v\n%s", err, out)
	}
	roleID, first := readTrimmed(t, filepath.Join(dir, "role-id")), readTrimmed(t, filepath.Join(dir, "secret-id"))
	out, err := runSetupCmd(v, "--approle-out", dir)
	if err != nil {
		t.Fatalf("second setup: %v\n%s", err, out)
	}
	second := readTrimmed(t, filepath.Join(dir, "secret-id"))
	anon := v.ClientFrom(t, "127.0.0.1", "")
	if _, err := appRoleLogin(anon, roleID, second); err != nil {
		t.Fatalf("login with the new secret id: %v", err)
	}
	if _, err := appRoleLogin(anon, roleID, first); err == nil {
		t.Fatalf("the replaced secret id still logs in:\n%s", out)
	}
	if strings.Contains(out, first) || strings.Contains(out, second) {
		t.Fatal("setup printed a secret id")
	}
}
