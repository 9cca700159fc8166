package nginxcerts_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(c *nginxcerts.Config)
		wantErr string // substring; empty means valid
	}{
		{"defaults", func(c *nginxcerts.Config) {}, ""},
		{"no IP SANs", func(c *nginxcerts.Config) { c.IPSANs = nil }, ""},
		{"ipv6 SAN", func(c *nginxcerts.Config) { c.IPSANs = []string{"::1"} }, ""},
		{"ttl", func(c *nginxcerts.Config) { c.TTL = 24 * time.Hour }, ""},
		{"nested mounts", func(c *nginxcerts.Config) { c.PKIMount, c.RootMount = "team/pki", "team/pki_root" }, ""},

		{"no dir", func(c *nginxcerts.Config) { c.Dir = "" }, "out dir is required"},
		{"no server name", func(c *nginxcerts.Config) { c.ServerName = "" }, "server name is required"},
		{"server name with space", func(c *nginxcerts.Config) { c.ServerName = "app.test other.test" }, `server name "app.test other.test": must be one DNS name`},
		{"server name with quote", func(c *nginxcerts.Config) { c.ServerName = `app.test"` }, "must be one DNS name"},
		{"server name with semicolon", func(c *nginxcerts.Config) { c.ServerName = "app.test;" }, "must be one DNS name"},
		{"wildcard server name", func(c *nginxcerts.Config) { c.ServerName = "*.app.test" }, "without spaces, quotes or wildcards"},
		{"empty label", func(c *nginxcerts.Config) { c.ServerName = "app..test" }, "must be one DNS name"},
		{"bad IP SAN", func(c *nginxcerts.Config) { c.IPSANs = []string{"127.0.0.300"} }, `IP SAN "127.0.0.300": not an IP address`},
		{"mount with dots", func(c *nginxcerts.Config) { c.PKIMount = "../sys" }, `PKI mount "../sys"`},
		{"empty root mount", func(c *nginxcerts.Config) { c.RootMount = "" }, `root mount ""`},
		{"role with slash", func(c *nginxcerts.Config) { c.Role = "a/b" }, `role "a/b"`},
		{"ttl too short", func(c *nginxcerts.Config) { c.TTL = time.Minute }, "ttl 1m0s: want 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testConfig(t.TempDir())
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("Validate accepted the config, want error %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("Validate: %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		dir     string
		wantErr string
	}{
		{"writable", dir, ""},
		{"missing", filepath.Join(dir, "missing"), "no such file or directory"},
		{"a file", file, "not a directory"},
		// /proc refuses new files even to root, which permission bits would not.
		{"unwritable", "/proc", "not writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := nginxcerts.CheckDir(tt.dir)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("CheckDir: %v", err)
				}
				if entries, _ := os.ReadDir(tt.dir); len(entries) != 1 {
					t.Fatalf("CheckDir left files behind: %v", entries)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CheckDir(%s) = %v, want error containing %q", tt.dir, err, tt.wantErr)
			}
		})
	}
}

// TestSync runs the whole life of the directory against one real Vault: the
// first run, a quiet rerun, a revocation, renewal, CRL rotation and repairs.
func TestSync(t *testing.T) {
	v := mustVault(t)
	dir := t.TempDir()
	cfg := testConfig(dir)
	path := func(name string) string { return filepath.Join(dir, name) }

	first := mustSync(t, v.nginx, cfg, time.Now())

	t.Run("first run writes all four files", func(t *testing.T) {
		want := []string{nginxcerts.ServerCertFile, nginxcerts.ServerKeyFile, nginxcerts.ClientCAFile, nginxcerts.CRLFile}
		if got := changedFiles(first); !reflect.DeepEqual(got, want) {
			t.Fatalf("changed %v, want %v", got, want)
		}
		if !first.Issued || first.ServerSerial == "" {
			t.Fatalf("no server certificate issued: %+v", first)
		}
		for name, mode := range map[string]os.FileMode{
			nginxcerts.ServerKeyFile: 0o600, nginxcerts.ServerCertFile: 0o644,
			nginxcerts.ClientCAFile: 0o644, nginxcerts.CRLFile: 0o644,
		} {
			fi, err := os.Stat(path(name))
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm() != mode {
				t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), mode)
			}
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 4 {
			t.Errorf("directory holds %d entries, want the 4 files and no temporary ones", len(entries))
		}
	})

	chain := mustCerts(t, mustRead(t, path(nginxcerts.ClientCAFile)))
	t.Run("client CA is exactly the portal's chain", func(t *testing.T) {
		s, err := v.Admin.Logical().Read("pki/cert/ca_chain")
		if err != nil {
			t.Fatal(err)
		}
		vaultChain, _ := s.Data["certificate"].(string)
		if want := mustCerts(t, []byte(vaultChain)); len(chain) != 2 || !chain[0].Equal(want[0]) || !chain[1].Equal(want[1]) {
			t.Fatalf("client CA holds %d certificates, want Vault's issuing CA then root", len(chain))
		}
		if chain[0].Subject.CommonName != "certportal Issuing CA" || chain[1].Subject.CommonName != "certportal Root CA" {
			t.Fatalf("client CA = %s, %s", chain[0].Subject, chain[1].Subject)
		}
	})

	t.Run("CRL file covers every CA in the chain", func(t *testing.T) {
		crls := mustCRLs(t, mustRead(t, path(nginxcerts.CRLFile)))
		if len(crls) != len(chain) {
			t.Fatalf("%d CRLs for %d CAs", len(crls), len(chain))
		}
		for i, ca := range chain {
			if err := crls[i].CheckSignatureFrom(ca); err != nil {
				t.Errorf("CRL %d is not signed by %s: %v", i, ca.Subject, err)
			}
		}
		if first.CRLNextUpdate.IsZero() || !first.CRLRefreshBy.Before(first.CRLNextUpdate) {
			t.Errorf("CRL next update %s, refresh by %s", first.CRLNextUpdate, first.CRLRefreshBy)
		}
	})

	server := mustCerts(t, mustRead(t, path(nginxcerts.ServerCertFile)))
	t.Run("server certificate is a server certificate for the name", func(t *testing.T) {
		// The server CA, not the users' issuing CA: Nginx's certificate lives
		// in a mount the portal's AppRole cannot revoke in.
		if len(server) != 2 || server[1].Subject.CommonName != "certportal Server CA" || server[1].CheckSignatureFrom(chain[1]) != nil {
			t.Fatalf("server.pem holds %d certificates, want the leaf and the server CA under the root", len(server))
		}
		leaf := server[0]
		roots, inter := x509.NewCertPool(), x509.NewCertPool()
		roots.AddCert(chain[1])
		inter.AddCert(server[1])
		for _, name := range []string{"localhost", "127.0.0.1"} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: inter}); err != nil {
				t.Errorf("verify as %s: %v", name, err)
			}
		}
		if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
			t.Errorf("ext key usage %v, want serverAuth only: a server key must not pass as a client certificate", leaf.ExtKeyUsage)
		}
		if !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("IP SANs %v", leaf.IPAddresses)
		}
		if got := strings.ReplaceAll(fmt.Sprintf("% x", leaf.SerialNumber.Bytes()), " ", ":"); got != first.ServerSerial {
			t.Errorf("serial %s, Vault said %s", got, first.ServerSerial)
		}
		if want := first.Server.NotAfter.Add(-first.Server.NotAfter.Sub(first.Server.NotBefore) / 3); !first.RenewAt.Equal(want) {
			t.Errorf("renew at %s, want %s", first.RenewAt, want)
		}
	})

	t.Run("rerun changes nothing", func(t *testing.T) {
		res := mustSync(t, v.nginx, cfg, time.Now())
		if res.Changed() || res.Issued {
			t.Fatalf("rerun changed %v, issued %v (%s)", changedFiles(res), res.Issued, res.IssueReason)
		}
		if !res.Server.Equal(server[0]) {
			t.Fatal("rerun reports another server certificate")
		}
	})

	t.Run("revocation changes only the CRL", func(t *testing.T) {
		bob := mustUserCert(t, v.Vault, "bob")
		mustRevoke(t, v.Vault, bob.serial)
		res := mustSync(t, v.nginx, cfg, time.Now())
		if got := changedFiles(res); !reflect.DeepEqual(got, []string{nginxcerts.CRLFile}) {
			t.Fatalf("changed %v, want only the CRL", got)
		}
		if !isRevoked(mustCRLs(t, mustRead(t, path(nginxcerts.CRLFile))), bob.leaf) {
			t.Fatal("bob's serial is not on the CRL")
		}
	})

	t.Run("rebuilds CRLs that are close to expiry", func(t *testing.T) {
		before := mustCRLs(t, mustRead(t, path(nginxcerts.CRLFile)))
		res := mustSync(t, v.nginx, cfg, first.CRLRefreshBy.Add(time.Minute))
		if !reflect.DeepEqual(res.Rotated, []string{"pki", "pki_root"}) {
			t.Fatalf("rotated %v, want both mounts", res.Rotated)
		}
		after := mustCRLs(t, mustRead(t, path(nginxcerts.CRLFile)))
		for i := range after {
			if after[i].Number.Cmp(before[i].Number) <= 0 {
				t.Errorf("CRL %d number %s, was %s: not rebuilt", i, after[i].Number, before[i].Number)
			}
		}
	})

	t.Run("renews when a third of the life is left", func(t *testing.T) {
		// Twenty days on, Vault's default 72h CRLs would have long expired;
		// give them a longer life so that this is about the certificate.
		for _, m := range []string{"pki", "pki_root"} {
			if _, err := v.Admin.Logical().Write(m+"/config/crl", map[string]any{"expiry": "2160h"}); err != nil {
				t.Fatal(err)
			}
			if _, err := v.Admin.Logical().Read(m + "/crl/rotate"); err != nil {
				t.Fatal(err)
			}
		}
		mustSync(t, v.nginx, cfg, time.Now())
		cur := mustCerts(t, mustRead(t, path(nginxcerts.ServerCertFile)))[0]
		oldKey := mustRead(t, path(nginxcerts.ServerKeyFile))
		just := first.RenewAt.Add(-time.Minute)
		if res := mustSync(t, v.nginx, cfg, just); res.Issued {
			t.Fatalf("renewed a minute early: %s", res.IssueReason)
		}
		res := mustSync(t, v.nginx, cfg, first.RenewAt.Add(time.Minute))
		if !res.Issued || !strings.Contains(res.IssueReason, "third") {
			t.Fatalf("not renewed: issued %v, reason %q", res.Issued, res.IssueReason)
		}
		if got := changedFiles(res); !reflect.DeepEqual(got, []string{nginxcerts.ServerCertFile, nginxcerts.ServerKeyFile}) {
			t.Fatalf("changed %v, want the certificate and key", got)
		}
		if mustCerts(t, mustRead(t, path(nginxcerts.ServerCertFile)))[0].Equal(cur) || bytes.Equal(oldKey, mustRead(t, path(nginxcerts.ServerKeyFile))) {
			t.Fatal("certificate or key unchanged after renewal")
		}
	})

	t.Run("replaces a key that does not match", func(t *testing.T) {
		other := t.TempDir()
		mustSync(t, v.nginx, testConfig(other), time.Now())
		if err := os.WriteFile(path(nginxcerts.ServerKeyFile), mustRead(t, filepath.Join(other, nginxcerts.ServerKeyFile)), 0o600); err != nil {
			t.Fatal(err)
		}
		res := mustSync(t, v.nginx, cfg, time.Now())
		if !res.Issued || res.IssueReason != "server certificate and key do not form a pair" {
			t.Fatalf("issued %v, reason %q", res.Issued, res.IssueReason)
		}
	})

	t.Run("reissues when the name changes", func(t *testing.T) {
		c := cfg
		c.ServerName, c.IPSANs = "app.test", nil
		res := mustSync(t, v.nginx, c, time.Now())
		if !res.Issued || !strings.Contains(res.IssueReason, "not valid for app.test") {
			t.Fatalf("issued %v, reason %q", res.Issued, res.IssueReason)
		}
		if res.Server.Subject.CommonName != "app.test" || len(res.Server.IPAddresses) != 0 {
			t.Fatalf("server certificate %s with IPs %v", res.Server.Subject, res.Server.IPAddresses)
		}
		if res = mustSync(t, v.nginx, c, time.Now()); res.Issued {
			t.Fatalf("issued again: %s", res.IssueReason)
		}
	})
}

// TestSyncFailsCleanly shows that every refusal leaves the directory exactly
// as it was: Nginx keeps working with the last good files.
func TestSyncFailsCleanly(t *testing.T) {
	v := mustVault(t)
	good := t.TempDir()
	first := mustSync(t, v.nginx, testConfig(good), time.Now())
	issueOnly := mustToken(t, v.Vault, "nginx-issue-only")
	if err := v.Admin.Sys().PutPolicy("nginx-issue-only", `path "pki_server/issue/nginx-server" { capabilities = ["update"] }`); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		edit    func(c *nginxcerts.Config)
		token   string // "nginx" (default), "user" or "issue-only"
		now     time.Time
		wantErr string
	}{
		{"name the role does not allow", func(c *nginxcerts.Config) { c.ServerName = "evil.example.com" }, "", time.Time{}, "evil.example.com"},
		{"role that does not exist", func(c *nginxcerts.Config) { c.Role = "missing"; c.ServerName = "app.test" }, "", time.Time{}, "pki_server/issue/missing"},
		{"user token", func(c *nginxcerts.Config) { c.ServerName = "app.test" }, "user", time.Time{}, "permission denied"},
		{"root CRL missing", func(c *nginxcerts.Config) { c.RootMount = c.PKIMount }, "", time.Time{}, "no CRL for CN=certportal Root CA,O=certportal"},
		{"CRL from outside the chain", func(c *nginxcerts.Config) { c.PKIMount, c.RootMount = "pki_root", "pki" }, "", time.Time{}, "is not from a CA in pki_root's chain"},
		{"no such mount", func(c *nginxcerts.Config) { c.PKIMount = "nope" }, "", time.Time{}, "nope/cert/ca_chain"},
		{"expired CRL that cannot be rebuilt", func(c *nginxcerts.Config) {}, "issue-only", first.CRLNextUpdate.Add(time.Minute), "expired"},
		{"bad server name", func(c *nginxcerts.Config) { c.ServerName = `app.test" ssl;` }, "", time.Time{}, "must be one DNS name"},
		{"unwritable dir", func(c *nginxcerts.Config) { c.Dir = "/proc" }, "", time.Time{}, "not writable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, dir := range []string{t.TempDir(), good} {
				cfg := testConfig(dir)
				tt.edit(&cfg)
				c := v.nginx
				switch tt.token {
				case "user":
					c = mustUserToken(t, v.Vault, "alice")
				case "issue-only":
					c = issueOnly
				}
				now := tt.now
				if now.IsZero() {
					now = time.Now()
				}
				before := snapshot(t, dir)
				_, err := nginxcerts.Sync(context.Background(), c, cfg, now)
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Sync = %v, want error containing %q", err, tt.wantErr)
				}
				if after := snapshot(t, dir); !reflect.DeepEqual(before, after) {
					t.Fatalf("failed sync changed %s", dir)
				}
			}
		})
	}

	t.Run("CRL close to expiry that cannot be rebuilt is written with a warning", func(t *testing.T) {
		res := mustSync(t, issueOnly, testConfig(good), first.CRLRefreshBy.Add(time.Minute))
		if len(res.Warnings) != 2 || !strings.Contains(res.Warnings[0], "could not be rebuilt") || len(res.Rotated) != 0 {
			t.Fatalf("warnings %q, rotated %v", res.Warnings, res.Rotated)
		}
	})
}

// TestKeyNeverPrinted makes sure key material cannot leak through fmt or slog.
func TestKeyNeverPrinted(t *testing.T) {
	v := mustVault(t)
	sc, err := nginxcerts.IssueServer(context.Background(), v.nginx, nginxcerts.ServerRequest{
		Mount: "pki_server", Role: "nginx-server", ServerName: "localhost",
	})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(sc.KeyPEM, []byte("PRIVATE KEY")) {
		t.Fatal("no key in the result; the test would prove nothing")
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	log.Info("issued", "cert", sc, "key", sc.KeyPEM)
	dir := t.TempDir()
	res := mustSync(t, v.nginx, testConfig(dir), time.Now())
	nginxcerts.LogResult(log, res)
	key := mustRead(t, filepath.Join(dir, nginxcerts.ServerKeyFile))
	for _, out := range []string{
		fmt.Sprintf("%v %+v %#v %s %x", sc, sc, sc, sc.KeyPEM, sc.KeyPEM),
		fmt.Sprint(res), logs.String(),
	} {
		if strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, strings.Split(string(key), "\n")[1]) {
			t.Fatalf("key material printed: %s", out)
		}
	}
}

func TestWatch(t *testing.T) {
	v := mustVault(t)
	dir := t.TempDir()
	cfg := testConfig(dir)

	var mu sync.Mutex
	reloads := 0
	failNext := true
	reloaded := make(chan struct{}, 10)
	reload := func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		reloads++
		if failNext {
			// The first reload fails, as when Nginx is not up yet: Watch must
			// try again even though no file changes in between.
			failNext = false
			return errors.New("nginx is not running")
		}
		reloaded <- struct{}{}
		return nil
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return reloads }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncbuf.Buffer
	go func() {
		done <- nginxcerts.Watch(ctx, v.nginx, cfg, nginxcerts.WatchOptions{
			CRLInterval: 200 * time.Millisecond, Reload: reload,
			Log: slog.New(slog.NewTextHandler(&logs, nil)),
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Watch returned %v after cancel, want nil", err)
		}
	})

	waitReload := func(t *testing.T, what string) {
		t.Helper()
		select {
		case <-reloaded:
		case <-time.After(20 * time.Second):
			t.Fatalf("no reload after %s; log:\n%s", what, logs.String())
		}
	}
	waitReload(t, "the first sync and a failed reload")
	if n := count(); n != 2 {
		t.Fatalf("%d reload attempts, want 2 (one failed, one retried)", n)
	}
	if _, err := os.Stat(filepath.Join(dir, nginxcerts.CRLFile)); err != nil {
		t.Fatal(err)
	}

	// Several quiet rounds: nothing changed, so nothing to reload.
	time.Sleep(time.Second)
	if n := count(); n != 2 {
		t.Fatalf("%d reloads without any change, want none after the first", n-2)
	}

	alice := mustUserCert(t, v.Vault, "alice")
	mustRevoke(t, v.Vault, alice.serial)
	waitReload(t, "a revocation")
	if !isRevoked(mustCRLs(t, mustRead(t, filepath.Join(dir, nginxcerts.CRLFile))), alice.leaf) {
		t.Fatal("reloaded, but alice's serial is not in the CRL file")
	}
	if !strings.Contains(logs.String(), "wrote file") || strings.Contains(logs.String(), "PRIVATE KEY") {
		t.Fatalf("unexpected log:\n%s", logs.String())
	}
}

func TestWatchRefusesBadConfig(t *testing.T) {
	cfg := testConfig(filepath.Join(t.TempDir(), "missing"))
	err := nginxcerts.Watch(context.Background(), nil, cfg, nginxcerts.WatchOptions{CRLInterval: time.Minute})
	if err == nil || !strings.Contains(err.Error(), "no such file or directory") {
		t.Fatalf("Watch = %v, want the missing directory reported at once", err)
	}
}

// TestWatchRenewsToken runs Watch with a periodic token much shorter than
// the test: without renewal it would expire and every sync would fail.
// periodicNginxClient is a client holding a fresh periodic token (3 s) of
// the nginx policy, as a long-running --watch holds.
func periodicNginxClient(t *testing.T) *vaultapi.Client {
	t.Helper()
	v := mustVault(t)
	s, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{setup.NginxPolicyName}, Period: "3s"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}

func TestWatchRenewsToken(t *testing.T) {
	c := periodicNginxClient(t)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var logs syncbuf.Buffer
	go func() {
		done <- nginxcerts.Watch(ctx, c, testConfig(t.TempDir()), nginxcerts.WatchOptions{
			CRLInterval: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		})
	}()
	time.Sleep(5 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := c.Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("token expired during the watch: %v\n%s", err, logs.String())
	}
	if !strings.Contains(logs.String(), "renewed Vault token") || strings.Contains(logs.String(), "level=ERROR") {
		t.Fatalf("log:\n%s", logs.String())
	}
}

// TestWatchStoppedLogsNoError: a watch stopped while it renews its token
// (here: before it starts) returns without an error line; the shutdown
// race made TestWatchRenewsToken fail now and then.
func TestWatchStoppedLogsNoError(t *testing.T) {
	c := periodicNginxClient(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var logs syncbuf.Buffer
	if err := nginxcerts.Watch(ctx, c, testConfig(t.TempDir()), nginxcerts.WatchOptions{
		CRLInterval: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(&logs, nil)),
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a stopped watch logged an error:\n%s", logs.String())
	}
}
