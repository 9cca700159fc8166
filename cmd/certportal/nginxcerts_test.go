package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
	"github.com/certportal/certportal/internal/testenv/syncbuf"
)

func TestNginxCertsBadInput(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		args      []string // after --out-dir <empty dir> --server-name localhost
		env       map[string]string
		wantUsage bool   // errUsage, with the complaint on stderr
		wantErr   string // substring of the error (or of stderr for usage errors)
	}{
		{"unknown flag", []string{"--bogus"}, nil, true, "flag provided but not defined: -bogus"},
		{"bad duration", []string{"--crl-interval", "soon"}, nil, true, `invalid value "soon"`},
		{"extra argument", []string{"now"}, nil, true, `unexpected argument "now"`},
		{"server name with spaces", []string{"--server-name", "app.test other.test"}, nil, false, `server name "app.test other.test": must be one DNS name`},
		{"server name with quotes", []string{"--server-name", `"app.test"`}, nil, false, "must be one DNS name"},
		{"server name with semicolon", []string{"--server-name", "app.test;"}, nil, false, "must be one DNS name"},
		{"no server name", []string{"--server-name", ""}, nil, false, "server name is required"},
		{"bad IP SAN", []string{"--ip-sans", "127.0.0.1,localhost"}, nil, false, `IP SAN "localhost": not an IP address`},
		{"no out dir", []string{"--out-dir", ""}, nil, false, "out dir is required"},
		{"missing out dir", []string{"--out-dir", filepath.Join(file+"-dir", "x")}, nil, false, "no such file or directory"},
		{"out dir is a file", []string{"--out-dir", file}, nil, false, "not a directory"},
		{"unwritable out dir", []string{"--out-dir", "/proc"}, nil, false, "not writable"},
		{"ttl too short", []string{"--ttl", "5m"}, nil, false, "ttl 5m0s"},
		{"watch interval too short", []string{"--watch", "--crl-interval", "10ms"}, nil, false, "crl interval 10ms: want at least 1s"},
		{"metrics without watch", []string{"--metrics-listen", "127.0.0.1:0"}, nil, false, "metrics listen: only with --watch"},
		{"bad metrics address", []string{"--watch", "--metrics-listen", "no-port"}, nil, false, "metrics listen: listen tcp: address no-port"},
		{"no token", nil, map[string]string{"VAULT_TOKEN": ""}, false, "VAULT_ADDR and VAULT_TOKEN"},
		{"no Vault address", nil, map[string]string{"VAULT_ADDR": ""}, false, "VAULT_ADDR and VAULT_TOKEN"},
		{"Vault unreachable", nil, nil, false, "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			env := map[string]string{"VAULT_ADDR": "http://127.0.0.1:1", "VAULT_TOKEN": "not-a-real-token"}
			for k, v := range tt.env {
				env[k] = v
			}
			args := append([]string{"nginx-certs", "--out-dir", dir, "--server-name", "localhost"}, tt.args...)
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
			switch {
			case err == nil:
				t.Fatalf("nginx-certs %v succeeded", tt.args)
			case tt.wantUsage:
				if !errors.Is(err, errUsage) || !strings.Contains(stderr.String(), tt.wantErr) {
					t.Fatalf("err %v, stderr %q; want usage error mentioning %q", err, stderr.String(), tt.wantErr)
				}
			case !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout %q, want nothing on error", stdout.String())
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("wrote %d files on error", len(entries))
			}
			if strings.Contains(stderr.String()+err.Error(), env["VAULT_TOKEN"]) && env["VAULT_TOKEN"] != "" {
				t.Errorf("token printed: %v %s", err, stderr.String())
			}
		})
	}
}

// TestNginxCertsCommand runs the subcommand through run(), as the binary
// does, against a real Vault with a token holding only certportal-nginx.
func TestNginxCertsCommand(t *testing.T) {
	v := testenv.StartConfiguredVault(t)
	o := setup.Defaults()
	o.ServerIPSANs = []string{"127.0.0.1"} // the loopback test server's address
	if _, err := setup.EnsureServerRole(context.Background(), v.Admin, o, setup.DefaultServerRole, []string{setup.DefaultServerNames}); err != nil {
		t.Fatal(err)
	}
	tok, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: []string{setup.NginxPolicyName}, TTL: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	token := tok.Auth.ClientToken
	env := map[string]string{"VAULT_ADDR": v.Addr, "VAULT_TOKEN": token}
	// In the process environment too, as in production, so that the check
	// that the reload command does not inherit it means something.
	t.Setenv("VAULT_TOKEN", token)
	dir := t.TempDir()
	reloadEnv := filepath.Join(t.TempDir(), "reload.env")

	nginxCerts := func(t *testing.T, extra ...string) (string, error) {
		t.Helper()
		args := append([]string{"nginx-certs", "--out-dir", dir, "--server-name", "localhost", "--ip-sans", "127.0.0.1",
			"--reload-cmd", "env > " + reloadEnv}, extra...)
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), args, func(k string) string { return env[k] }, &stdout, &stderr)
		out := stdout.String() + stderr.String()
		for _, secret := range []string{token, "PRIVATE KEY"} {
			if strings.Contains(out, secret) {
				t.Fatalf("output shows secret material:\n%s", out)
			}
		}
		return stdout.String(), err
	}
	reloaded := func(t *testing.T) bool {
		t.Helper()
		b, err := os.ReadFile(reloadEnv)
		if errors.Is(err, os.ErrNotExist) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "VAULT_TOKEN") {
			t.Error("the reload command got the Vault token in its environment")
		}
		os.Remove(reloadEnv)
		return true
	}

	t.Run("first run writes the files and reloads", func(t *testing.T) {
		out, err := nginxCerts(t)
		if err != nil {
			t.Fatalf("nginx-certs: %v\n%s", err, out)
		}
		for _, f := range []string{nginxcerts.ServerCertFile, nginxcerts.ServerKeyFile, nginxcerts.ClientCAFile, nginxcerts.CRLFile} {
			if !strings.Contains(out, "changed  "+filepath.Join(dir, f)+"\n") {
				t.Errorf("output lacks the change of %s:\n%s", f, out)
			}
		}
		if !strings.Contains(out, "issued server certificate") || !strings.Contains(out, "reloaded Nginx") {
			t.Errorf("output:\n%s", out)
		}
		if !reloaded(t) {
			t.Error("reload command did not run")
		}
	})
	t.Run("rerun changes nothing and does not reload", func(t *testing.T) {
		out, err := nginxCerts(t)
		if err != nil {
			t.Fatalf("nginx-certs: %v\n%s", err, out)
		}
		if strings.Contains(out, "changed") || strings.Contains(out, "issued") || reloaded(t) {
			t.Errorf("unchanged run changed, issued or reloaded:\n%s", out)
		}
	})
	t.Run("revocation reloads", func(t *testing.T) {
		serial := nginxCertsUserSerial(t, v, "bob")
		if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": serial}); err != nil {
			t.Fatal(err)
		}
		out, err := nginxCerts(t)
		if err != nil {
			t.Fatalf("nginx-certs: %v\n%s", err, out)
		}
		if !strings.Contains(out, "changed  "+filepath.Join(dir, nginxcerts.CRLFile)) || strings.Count(out, "changed") != 1 || !reloaded(t) {
			t.Errorf("want only the CRL changed and a reload:\n%s", out)
		}
	})
	t.Run("failed reload is an error", func(t *testing.T) {
		serial := nginxCertsUserSerial(t, v, "alice")
		if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": serial}); err != nil {
			t.Fatal(err)
		}
		_, err := nginxCerts(t, "--reload-cmd", "exit 3")
		if err == nil || !strings.Contains(err.Error(), `files written, but reload command "exit 3"`) {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("nginx-config accepts the files", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"nginx-config", "--server-name", "localhost",
			"--server-cert", filepath.Join(dir, nginxcerts.ServerCertFile), "--server-key", filepath.Join(dir, nginxcerts.ServerKeyFile),
			"--client-ca", filepath.Join(dir, nginxcerts.ClientCAFile), "--crl", filepath.Join(dir, nginxcerts.CRLFile),
		}, func(string) string { return "" }, &stdout, &stderr)
		if err != nil || !strings.Contains(stdout.String(), "ssl_crl "+filepath.Join(dir, nginxcerts.CRLFile)+";") {
			t.Fatalf("nginx-config: %v %s\n%s", err, stderr.String(), stdout.String())
		}
	})
	t.Run("watch runs until cancelled", func(t *testing.T) {
		wdir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var stdout, stderr syncbuf.Buffer
		go func() {
			done <- run(ctx, []string{"nginx-certs", "--out-dir", wdir, "--server-name", "localhost", "--watch", "--crl-interval", "1s"},
				func(k string) string { return env[k] }, &stdout, &stderr)
		}()
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := os.Stat(filepath.Join(wdir, nginxcerts.CRLFile)); err == nil {
				break
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("no files after 60s:\n%s", stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("watch returned %v on cancel", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch did not stop when cancelled")
		}
		if !strings.Contains(stderr.String(), "issued server certificate") || strings.Contains(stderr.String(), token) {
			t.Errorf("log:\n%s", stderr.String())
		}
	})
	t.Run("watch serves expiry metrics", func(t *testing.T) {
		wdir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		var stdout, stderr syncbuf.Buffer
		go func() {
			done <- run(ctx, []string{"nginx-certs", "--out-dir", wdir, "--server-name", "localhost", "--watch", "--crl-interval", "1s"},
				func(k string) string {
					if k == "CERTPORTAL_NGINX_METRICS_LISTEN" {
						return "127.0.0.1:0"
					}
					return env[k]
				}, &stdout, &stderr)
		}()
		defer func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("watch returned %v on cancel", err)
				}
			case <-time.After(10 * time.Second):
				t.Error("watch did not stop when cancelled")
			}
		}()
		addrRe := regexp.MustCompile(`msg="metrics listening" addr=(\S+)`)
		var metricsText string
		deadline := time.Now().Add(30 * time.Second)
		for {
			if m := addrRe.FindStringSubmatch(stderr.String()); m != nil {
				if resp, err := http.Get("http://" + m[1] + "/metrics"); err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					metricsText = string(b)
					// The certificate and the CRL are set one after the other
					// in a sync: wait for both.
					if strings.Contains(metricsText, "certportal_nginx_cert_expiry_timestamp_seconds ") &&
						strings.Contains(metricsText, "certportal_nginx_crl_next_update_timestamp_seconds ") {
						break
					}
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("no expiry metrics after 30s:\n%s\nlog:\n%s", metricsText, stderr.String())
			}
			time.Sleep(50 * time.Millisecond)
		}
		cert, err := tls.LoadX509KeyPair(filepath.Join(wdir, nginxcerts.ServerCertFile), filepath.Join(wdir, nginxcerts.ServerKeyFile))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		crlPEM, err := os.ReadFile(filepath.Join(wdir, nginxcerts.CRLFile))
		if err != nil {
			t.Fatal(err)
		}
		var next time.Time
		for rest := crlPEM; ; {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			crl, err := x509.ParseRevocationList(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if next.IsZero() || crl.NextUpdate.Before(next) {
				next = crl.NextUpdate
			}
		}
		for name, want := range map[string]time.Time{
			"certportal_nginx_cert_expiry_timestamp_seconds":     leaf.NotAfter,
			"certportal_nginx_crl_next_update_timestamp_seconds": next,
		} {
			got := promValue(t, metricsText, name)
			if got != float64(want.Unix()) {
				t.Errorf("%s = %v, want %d (%s, from the files)", name, got, want.Unix(), want.UTC())
			}
		}
		if promValue(t, metricsText, "certportal_nginx_last_sync_success_timestamp_seconds") <= 0 {
			t.Error("no last sync time")
		}
	})
}

// promValue reads the value of an unlabelled series from Prometheus text.
func promValue(t *testing.T, text, name string) float64 {
	t.Helper()
	for _, l := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in\n%s", name, text)
	return 0
}

// nginxCertsUserSerial issues a certificate for user with the user's own
// token and returns its serial.
func nginxCertsUserSerial(t *testing.T, v *testenv.Vault, user string) string {
	t.Helper()
	c, err := v.Admin.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": v.Password(t, user)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(s.Auth.ClientToken)
	s, err = c.Logical().Write("pki/issue/user-auth", map[string]any{"common_name": user + "@example.com", "ttl": "86400s"})
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := s.Data["serial_number"].(string)
	return serial
}

// TestNginxCertsDeployExample keeps deploy/nginx/certportal.conf what
// nginx-config renders for the files nginx-certs writes, so the worked
// example cannot drift from the template.
func TestNginxCertsDeployExample(t *testing.T) {
	want, err := os.ReadFile("../../deploy/nginx/certportal.conf")
	if err != nil {
		t.Fatal(err)
	}
	dir := "/etc/nginx/certportal"
	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"nginx-config", "--server-name", "app.example.com", "--listen", "443",
		"--server-cert", dir + "/" + nginxcerts.ServerCertFile, "--server-key", dir + "/" + nginxcerts.ServerKeyFile,
		"--client-ca", dir + "/" + nginxcerts.ClientCAFile, "--crl", dir + "/" + nginxcerts.CRLFile,
		"--upstream", "http://127.0.0.1:9000", "--check-files=false",
	}, func(string) string { return "" }, &stdout, &stderr)
	if err != nil {
		t.Fatalf("nginx-config: %v\n%s", err, stderr.String())
	}
	if !bytes.Equal(stdout.Bytes(), want) {
		t.Fatalf("deploy/nginx/certportal.conf is stale; regenerate it with the command in deploy/nginx/README.md")
	}
}
