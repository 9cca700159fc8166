// Package testenv starts the real components certportal's integration tests
// run against — the embedded Vault core (bin/devvault) — and fails with a
// clear message, never a skip, when one is missing.
package testenv

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/setup"
)

// RepoRoot finds the repository root from the test's working directory.
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "deploy", "devvault")); err == nil {
				return dir
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("testenv: repository root not found")
		}
		dir = parent
	}
}

// Vault is a running devvault process.
type Vault struct {
	Addr      string
	RootToken string
	UnsealKey string
	Admin     *vaultapi.Client
	// Pid is the devvault process's id (taskset execs into it), for
	// benchmarks that read its CPU time.
	Pid int
	// Setup is the result of setup.Run, with the demo users' passwords.
	Setup *setup.Result
}

// StartVault starts bin/devvault on a free loopback port and stops it when
// the test ends. CERTPORTAL_DEVVAULT overrides the binary's path.
func StartVault(tb testing.TB) *Vault {
	tb.Helper()
	bin := os.Getenv("CERTPORTAL_DEVVAULT")
	if bin == "" {
		bin = filepath.Join(RepoRoot(tb), "bin", "devvault")
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("testenv: devvault binary missing at %s: run `make build` (make test builds it first)", bin)
	}
	dir := tb.TempDir()
	envFile := filepath.Join(dir, "vault.env")
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"-listen", "127.0.0.1:0", "-env-file", envFile}
	// Benchmarks pin Vault to its own CPUs (CERTPORTAL_DEVVAULT_CPUS=0) and
	// the portal to others, as on separate hosts in production; otherwise
	// the two share every core.
	if cpus := os.Getenv("CERTPORTAL_DEVVAULT_CPUS"); cpus != "" {
		args = append([]string{"-c", cpus, bin}, args...)
		bin = "taskset"
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		tb.Fatalf("testenv: start devvault: %v", err)
	}
	tb.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	env := waitEnvFile(tb, envFile, 60*time.Second)
	v := &Vault{Addr: env["VAULT_ADDR"], RootToken: env["VAULT_TOKEN"], UnsealKey: env["VAULT_UNSEAL_KEY"], Pid: cmd.Process.Pid}
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	cfg.MaxRetries = 0
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(v.RootToken)
	v.Admin = c
	return v
}

func waitEnvFile(tb testing.TB, path string, timeout time.Duration) map[string]string {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			env := map[string]string{}
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if k, v, ok := strings.Cut(sc.Text(), "="); ok {
					env[k] = v
				}
			}
			f.Close()
			if env["VAULT_ADDR"] != "" && env["VAULT_TOKEN"] != "" {
				return env
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatalf("testenv: devvault did not write %s within %s", path, timeout)
	return nil
}

// StartConfiguredVault starts a Vault and runs certportal setup on it with
// demo users.
func StartConfiguredVault(tb testing.TB) *Vault {
	tb.Helper()
	v := StartVault(tb)
	o := setup.Defaults()
	o.DemoUsers = true
	o.NewServiceSecret = true
	res, err := setup.Run(context.Background(), v.Admin, o)
	if err != nil {
		tb.Fatalf("testenv: setup: %v", err)
	}
	v.Setup = res
	return v
}

// Password returns the demo password setup generated for user.
func (v *Vault) Password(tb testing.TB, user string) string {
	tb.Helper()
	for _, u := range v.Setup.DemoUsers {
		if u.Username == user {
			return u.Password
		}
	}
	tb.Fatalf("testenv: no demo user %q", user)
	return ""
}

// CreateUser writes a userpass user with the given policies.
func (v *Vault) CreateUser(tb testing.TB, name, password string, extra map[string]any, policies ...string) {
	tb.Helper()
	data := map[string]any{"password": password, "token_policies": policies}
	for k, x := range extra {
		data[k] = x
	}
	if _, err := v.Admin.Logical().Write("auth/userpass/users/"+name, data); err != nil {
		tb.Fatalf("testenv: create user %s: %v", name, err)
	}
}

// Seal seals Vault; Unseal opens it again.
func (v *Vault) Seal(tb testing.TB) {
	tb.Helper()
	if err := v.Admin.Sys().Seal(); err != nil {
		tb.Fatalf("testenv: seal: %v", err)
	}
}

// Unseal unseals Vault with the dev unseal key.
func (v *Vault) Unseal(tb testing.TB) {
	tb.Helper()
	st, err := v.Admin.Sys().Unseal(v.UnsealKey)
	if err != nil || st.Sealed {
		tb.Fatalf("testenv: unseal: %v", err)
	}
}

// PortalEnv returns the environment a `certportal serve` needs for this Vault.
func (v *Vault) PortalEnv() map[string]string {
	env := map[string]string{"VAULT_ADDR": v.Addr}
	if v.Setup != nil {
		env["CERTPORTAL_APPROLE_ROLE_ID"] = v.Setup.ServiceRoleID
		env["CERTPORTAL_APPROLE_SECRET_ID"] = v.Setup.ServiceSecretID
	}
	return env
}

// ClientFrom returns a Vault client that connects from the loopback address
// local (e.g. 127.0.0.2), so that Vault sees that address as the client's:
// for tests of CIDR bindings. An empty token means none.
func (v *Vault) ClientFrom(tb testing.TB, local, token string) *vaultapi.Client {
	tb.Helper()
	cfg := vaultapi.DefaultConfig()
	cfg.Address = v.Addr
	cfg.MaxRetries = 0
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}, Timeout: 5 * time.Second}
	tr, ok := cfg.HttpClient.Transport.(*http.Transport)
	if !ok {
		tb.Fatal("testenv: vault client transport is not *http.Transport")
	}
	tr.DialContext = d.DialContext
	c, err := vaultapi.NewClient(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	c.ClearToken()
	if token != "" {
		c.SetToken(token)
	}
	return c
}
