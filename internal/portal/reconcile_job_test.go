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
// role's, for a portal user (its names matched case-insensitively, as
// Vault matches them), past the grace, unrevoked and unexpired, is a
// candidate for automatic revocation; one in that shape for an address in
// the users' domain that names no portal user is a candidate to hold
// (user ""); each other kind is left alone.
func TestAttributable(t *testing.T) {
	const none, hold = "(none)", ""
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
		want    string // the user, hold (attributed to nobody) or none
	}{
		{"a user certificate past the grace", func(*x509.Certificate) {}, false, "alice"},
		{"without the email SAN", func(c *x509.Certificate) { c.EmailAddresses = nil }, false, "alice"},
		{"upper-case CN", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "ALICE@example.com", []string{"ALICE@example.com"}
		}, false, "alice"},
		{"mixed-case domain", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "alice@Example.COM", []string{"alice@Example.COM"}
		}, false, "alice"},
		{"kelvin sign, CN only", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "\u212Aate@example.com", nil
		}, false, "kate"},
		{"email SAN in another case", func(c *x509.Certificate) { c.EmailAddresses = []string{"Alice@example.com"} }, false, "alice"},
		{"an address that names no user", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "ops+alerts@example.com", []string{"ops+alerts@example.com"}
		}, false, hold},
		{"non-foldable non-ASCII", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "\u1D00lice@example.com", nil
		}, false, hold},
		{"an email SAN of another user", func(c *x509.Certificate) {
			c.EmailAddresses = append(c.EmailAddresses, "bob@example.com")
		}, false, hold},
		{"younger than the grace", func(c *x509.Certificate) { c.NotBefore = now.Add(-grace + time.Minute) }, false, none},
		{"unattributed, younger than the grace", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "ops+alerts@example.com", nil
			c.NotBefore = now.Add(-grace + time.Minute)
		}, false, none},
		{"revoked already", func(*x509.Certificate) {}, true, none},
		{"expired", func(c *x509.Certificate) { c.NotAfter = now.Add(-time.Minute) }, false, none},
		{"a CA", func(c *x509.Certificate) { c.IsCA, c.BasicConstraintsValid = true, true }, false, none},
		{"a server certificate", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses, c.DNSNames = "localhost", nil, []string{"localhost"}
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		}, false, none},
		{"client and server", func(c *x509.Certificate) {
			c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
		}, false, none},
		{"any key usage", func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageAny} }, false, none},
		{"another domain", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses = "alice@example.org", []string{"alice@example.org"}
		}, false, none},
		{"not an address", func(c *x509.Certificate) { c.Subject.CommonName, c.EmailAddresses = "build-bot", nil }, false, none},
		{"an email in another domain too", func(c *x509.Certificate) {
			c.EmailAddresses = append(c.EmailAddresses, "alice@example.org")
		}, false, none},
		{"a DNS name too", func(c *x509.Certificate) { c.DNSNames = []string{"alice.example.com"} }, false, none},
		{"an IP address too", func(c *x509.Certificate) { c.IPAddresses = []net.IP{net.ParseIP("192.0.2.1")} }, false, none},
		{"a URI too", func(c *x509.Certificate) {
			c.URIs = []*url.URL{{Scheme: "spiffe", Host: "example.com", Path: "/alice"}}
		}, false, none},
		{"unattributed with a DNS name", func(c *x509.Certificate) {
			c.Subject.CommonName, c.EmailAddresses, c.DNSNames = "ops+alerts@example.com", nil, []string{"ops.example.com"}
		}, false, none},
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
			got := none
			if c != nil {
				got = c.user
			}
			if got != tc.want {
				t.Fatalf("candidate for %q, want %q (%+v)", got, tc.want, c)
			}
			if c != nil && (c.serial != tc.name || c.subject == "" || c.evidence == "") {
				t.Errorf("candidate %+v", c)
			}
		})
	}
	if c, err := s.attributable(context.Background(), "gone", now, grace); c != nil || err != nil {
		t.Errorf("a certificate tidied away: %v %v", c, err)
	}
}
