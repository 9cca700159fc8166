package bundle

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

func mustCA(tb testing.TB) (*ecdsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return k, c
}

func mustLeaf(tb testing.TB, caKey *ecdsa.PrivateKey, ca *x509.Certificate) (*ecdsa.PrivateKey, *x509.Certificate) {
	tb.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice@example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return k, c
}

func TestEncodeRoundTrip(t *testing.T) {
	caKey, ca := mustCA(t)
	key, leaf := mustLeaf(t, caKey, ca)
	for _, enc := range []Encryption{Modern, Compat} {
		t.Run(string(enc), func(t *testing.T) {
			const pw = "correct horse battery"
			pfx, err := Encode(key, leaf, []*x509.Certificate{ca}, pw, enc)
			if err != nil {
				t.Fatal(err)
			}
			gotKey, gotCert, chain, err := pkcs12.DecodeChain(pfx, pw)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !gotKey.(*ecdsa.PrivateKey).Equal(key) || !gotCert.Equal(leaf) || len(chain) != 1 || !chain[0].Equal(ca) {
				t.Fatal("round trip lost the key, the certificate or the chain")
			}
			if _, _, err := pkcs12.Decode(pfx, "wrong password!!"); err == nil {
				t.Fatal("decoded with the wrong password")
			}
			// OpenSSL 3 without -legacy must read both profiles.
			path := filepath.Join(t.TempDir(), "x.p12")
			if err := os.WriteFile(path, pfx, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("openssl", "pkcs12", "-in", path, "-passin", "pass:"+pw, "-nodes", "-info").CombinedOutput()
			if err != nil {
				t.Fatalf("openssl pkcs12: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "alice@example.com") {
				t.Fatalf("openssl output lacks the subject:\n%s", out)
			}
			wantAlg := map[Encryption]string{Modern: "AES-256-CBC", Compat: "pbeWithSHA1And3-KeyTripleDES-CBC"}[enc]
			if !strings.Contains(string(out), wantAlg) {
				t.Fatalf("openssl output lacks %s:\n%s", wantAlg, out)
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	caKey, ca := mustCA(t)
	key, leaf := mustLeaf(t, caKey, ca)
	tests := []struct {
		name     string
		password string
	}{
		{"empty password", ""},
		{"11 characters", "abcdefghijk"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Encode(key, leaf, nil, tt.password, Modern); err == nil {
				t.Fatal("want an error")
			}
		})
	}
}

func TestParseEncryption(t *testing.T) {
	tests := []struct {
		in   string
		want Encryption
		ok   bool
	}{
		{"", Modern, true}, {"modern", Modern, true}, {"compat", Compat, true},
		{"legacyrc2", "", false}, {"MODERN", "", false},
	}
	for _, tt := range tests {
		got, err := ParseEncryption(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseEncryption(%q) = %q, %v", tt.in, got, err)
		}
	}
}
