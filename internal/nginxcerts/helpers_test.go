package nginxcerts_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"

	"github.com/certportal/certportal/internal/nginxcerts"
	"github.com/certportal/certportal/internal/setup"
	"github.com/certportal/certportal/internal/testenv"
)

// testVault is a configured Vault with the server role, and a client holding
// only the certportal-nginx policy, as an operator would hand to nginx-certs.
type testVault struct {
	*testenv.Vault
	nginx *vaultapi.Client
}

// mustVault starts a real Vault, runs setup and adds the server role.
func mustVault(tb testing.TB) *testVault {
	tb.Helper()
	v := testenv.StartConfiguredVault(tb)
	// The loopback test server's certificate carries 127.0.0.1, which the
	// role allows only when asked to.
	o := setup.Defaults()
	o.ServerIPSANs = []string{"127.0.0.1", "::1"}
	if _, err := setup.EnsureServerRole(context.Background(), v.Admin, o, setup.DefaultServerRole, []string{"localhost", "app.test"}); err != nil {
		tb.Fatalf("ensure server role: %v", err)
	}
	return &testVault{Vault: v, nginx: mustToken(tb, v, setup.NginxPolicyName)}
}

// mustToken returns a client whose token holds exactly policies (plus default).
func mustToken(tb testing.TB, v *testenv.Vault, policies ...string) *vaultapi.Client {
	tb.Helper()
	s, err := v.Admin.Auth().Token().Create(&vaultapi.TokenCreateRequest{Policies: policies, TTL: "1h"})
	if err != nil {
		tb.Fatalf("create token: %v", err)
	}
	c, err := v.Admin.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}

// mustUserToken logs user in through userpass, as the portal does.
func mustUserToken(tb testing.TB, v *testenv.Vault, user string) *vaultapi.Client {
	tb.Helper()
	c, err := v.Admin.Clone()
	if err != nil {
		tb.Fatal(err)
	}
	c.ClearToken()
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]any{"password": v.Password(tb, user)})
	if err != nil {
		tb.Fatalf("login %s: %v", user, err)
	}
	c.SetToken(s.Auth.ClientToken)
	return c
}

// userCert is a client certificate from pki/issue/user-auth.
type userCert struct {
	tls    tls.Certificate
	leaf   *x509.Certificate
	serial string // Vault's colon form
}

// mustUserCert issues a certificate for user with the user's own token.
func mustUserCert(tb testing.TB, v *testenv.Vault, user string) userCert {
	tb.Helper()
	s, err := mustUserToken(tb, v, user).Logical().Write("pki/issue/user-auth", map[string]any{
		"common_name": user + "@example.com", "ttl": "86400s", "private_key_format": "pkcs8",
	})
	if err != nil {
		tb.Fatalf("issue for %s: %v", user, err)
	}
	certPEM, _ := s.Data["certificate"].(string)
	keyPEM, _ := s.Data["private_key"].(string)
	pair, err := tls.X509KeyPair([]byte(certPEM), []byte(keyPEM))
	if err != nil {
		tb.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		tb.Fatal(err)
	}
	pair.Leaf = leaf
	serial, _ := s.Data["serial_number"].(string)
	return userCert{tls: pair, leaf: leaf, serial: serial}
}

// mustRevoke revokes serial with the admin token, as helpdesk or the portal would.
func mustRevoke(tb testing.TB, v *testenv.Vault, serial string) {
	tb.Helper()
	if _, err := v.Admin.Logical().Write("pki/revoke", map[string]any{"serial_number": serial}); err != nil {
		tb.Fatalf("revoke %s: %v", serial, err)
	}
}

func testConfig(dir string) nginxcerts.Config {
	return nginxcerts.Config{
		Dir:         dir,
		ServerName:  "localhost",
		IPSANs:      []string{"127.0.0.1"},
		PKIMount:    nginxcerts.DefaultPKIMount,
		RootMount:   nginxcerts.DefaultRootMount,
		ServerMount: nginxcerts.DefaultServerMount,
		Role:        nginxcerts.DefaultRole,
	}
}

func mustSync(tb testing.TB, c *vaultapi.Client, cfg nginxcerts.Config, now time.Time) *nginxcerts.Result {
	tb.Helper()
	res, err := nginxcerts.Sync(context.Background(), c, cfg, now)
	if err != nil {
		tb.Fatalf("sync: %v", err)
	}
	return res
}

// changedFiles lists the base names of the files res wrote.
func changedFiles(res *nginxcerts.Result) []string {
	var out []string
	for _, f := range res.Files {
		if f.Changed {
			out = append(out, filepath.Base(f.Path))
		}
	}
	return out
}

func mustRead(tb testing.TB, path string) []byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func mustCerts(tb testing.TB, p []byte) []*x509.Certificate {
	tb.Helper()
	var out []*x509.Certificate
	for _, b := range mustPEM(tb, p, "CERTIFICATE") {
		c, err := x509.ParseCertificate(b)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

func mustCRLs(tb testing.TB, p []byte) []*x509.RevocationList {
	tb.Helper()
	var out []*x509.RevocationList
	for _, b := range mustPEM(tb, p, "X509 CRL") {
		crl, err := x509.ParseRevocationList(b)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, crl)
	}
	return out
}

// mustPEM returns the DER of every block in p, failing on any other type or
// on trailing garbage, so that a file Nginx would half-read fails the test.
func mustPEM(tb testing.TB, p []byte, typ string) [][]byte {
	tb.Helper()
	var out [][]byte
	for {
		var b *pem.Block
		b, p = pem.Decode(p)
		if b == nil {
			break
		}
		if b.Type != typ {
			tb.Fatalf("PEM block %q, want only %q", b.Type, typ)
		}
		out = append(out, b.Bytes)
	}
	if strings.TrimSpace(string(p)) != "" {
		tb.Fatalf("trailing data after PEM blocks: %q", p)
	}
	return out
}

// isRevoked reports whether serial is on any of crls.
func isRevoked(crls []*x509.RevocationList, c *x509.Certificate) bool {
	for _, crl := range crls {
		for _, e := range crl.RevokedCertificateEntries {
			if e.SerialNumber.Cmp(c.SerialNumber) == 0 {
				return true
			}
		}
	}
	return false
}

// snapshot records every file in dir with its content, to show that a failed
// run left the directory alone.
func snapshot(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			tb.Fatal(err)
		}
		out[e.Name()] = fi.Mode().String() + " " + string(mustRead(tb, filepath.Join(dir, e.Name())))
	}
	return out
}
