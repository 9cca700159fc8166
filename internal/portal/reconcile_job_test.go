package portal

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/certportal/certportal/internal/vault"
)

// certVault hands out stored certificates by serial: what reconciliation
// reads from Vault, for the attribution rules alone.
type certVault struct {
	certs map[string]*vault.StoredCertificate
}

func (certVault) Revoke(context.Context, string, string) error               { return nil }
func (certVault) ListUsers(context.Context, string) ([]string, error)        { return nil, nil }
func (certVault) ListCertificates(context.Context, string) ([]string, error) { return nil, nil }
func (certVault) ListRevokedCertificates(context.Context, string) ([]string, error) {
	return nil, nil
}
func (v certVault) ReadCertificate(_ context.Context, _, serial string) (*vault.StoredCertificate, error) {
	c, ok := v.certs[serial]
	if !ok {
		return nil, vault.ErrNotFound
	}
	return c, nil
}

// TestAttributable: only a certificate that is unmistakably the users'
// role's, for a portal user, past the grace, unrevoked and unexpired, is a
// candidate for automatic revocation; each other kind is left alone.
func TestAttributable(t *testing.T) {
	now := time.Now()
	grace := time.Hour
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	// user is what the user-auth role issues for alice: CN and email SAN
	// alice@example.com, client authentication only.
	user := func() *x509.Certificate {
		return &x509.Certificate{
			Subject: pkix.Name{CommonName: "alice@example.com"}, EmailAddresses: []string{"alice@example.com"},
			NotBefore: now.Add(-2 * grace), NotAfter: now.Add(24 * time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
		}
	}
	cases := []struct {
		name    string
		change  func(*x509.Certificate)
		revoked bool
		want    bool
	}{
		{"a user certificate past the grace", func(*x509.Certificate) {}, false, true},
		{"without the email SAN", func(c *x509.Certificate) { c.EmailAddresses = nil }, false, true},
		{"younger than the grace", func(c *x509.Certificate) { c.NotBefore = now.Add(-grace + time.Minute) }, false, false},
		{"revoked already", func(*x509.Certificate) {}, true, false},
		{"expired", func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Minute) }, false, false},
		{"a CA", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = true, true }, false, false},
		{"a server certificate", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses, c.DNSNames = "localhost", nil, []string{"localhost"}
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, false, false},
		{"client and server", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}, false, false},
		{"any key usage", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, false, false},
		{"another domain", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "alice@example.org", []string{"alice@example.org"}
		}, false, false},
		{"not a user name", func(c *x509.Certificate) { c.Subject.CommonName, c.EmailAddresses = "build-bot", nil }, false, false},
		{"another email too", func(c *x509.Certificate) { c.EmailAddresses = append(c.EmailAddresses, "bob@example.com") }, false, false},
		{"a DNS name too", func(c *x509.Certificate) { c.DNSNames = []string{"alice.example.com"} }, false, false},
		{"an IP address too", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("192.0.2.1")} }, false, false},
		{"a URI too", func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/alice"}}
		}, false, false},
	}
	certs := map[string]*vault.StoredCertificate{}
	for i, tc := range cases {
		tmpl := user()
		tmpl.SerialNumber = big.NewInt(int64(i + 1))
		tc.change(tmpl)
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		sc := &vault.StoredCertificate{Certificate: c}
		if tc.revoked {
			sc.RevokedAt = now.Add(-time.Minute)
		}
		certs[tc.name] = sc
	}
	s := NewService(nil, certVault{certs}, nil, Options{PKIMount: "pki", EmailDomain: "example.com"}, slog.New(slog.DiscardHandler))
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := s.attributable(context.Background(), tc.name, now, grace)
			if err != nil {
				t.Fatal(err)
			}
			if got := c != nil; got != tc.want {
				t.Fatalf("candidate %v, want %v", got, tc.want)
			}
			if c != nil && (c.user != "alice" || c.subject != "alice@example.com" || c.evidence == "") {
				t.Errorf("candidate %+v", c)
			}
		})
	}
	if c, err := s.attributable(context.Background(), "gone", now, grace); c != nil || err != nil {
		t.Errorf("a certificate tidied away: %v %v", c, err)
	}
}
