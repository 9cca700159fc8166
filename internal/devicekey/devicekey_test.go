package devicekey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pkcs12 "software.sslmate.com/src/go-pkcs12"
)

// TestRoundTrip: the module's key, CSR and .p12 — what the browser runs —
// signed by a CA here, open with go-pkcs12 and OpenSSL 3 without -legacy in
// both encodings; a certificate for another key and a short password are
// refused.
func TestRoundTrip(t *testing.T) {
	k, err := New()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := k.CSR("alice@example.com")
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode([]byte(csrPEM))
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil || csr.CheckSignature() != nil || csr.Subject.CommonName != "alice@example.com" || len(csr.Extensions) != 0 {
		t.Fatalf("csr: %v %+v", err, csr)
	}
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"}, IsCA: true, BasicConstraintsValid: true,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	ca, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "alice@example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		ca, csr.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}))
	chainPEM := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	const pw = "correct horse battery staple"
	for _, enc := range []string{"modern", "compat"} {
		data, err := k.P12(certPEM, chainPEM, pw, enc)
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		key, cert, chain, err := pkcs12.DecodeChain(data, pw)
		if err != nil || !key.(*ecdsa.PrivateKey).Equal(k.priv) || cert.Subject.CommonName != "alice@example.com" || len(chain) != 1 {
			t.Fatalf("%s: decode: %v", enc, err)
		}
		path := filepath.Join(t.TempDir(), "a.p12")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("openssl", "pkcs12", "-in", path, "-passin", "pass:"+pw, "-nodes").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "PRIVATE KEY") {
			t.Fatalf("%s: openssl: %v\n%s", enc, err, out)
		}
	}
	if _, err := k.P12(certPEM, chainPEM, "short", "modern"); !errors.Is(err, ErrPassword) {
		t.Errorf("short password: %v", err)
	}
	if _, err := k.P12(certPEM, chainPEM, "emoji 😀 password long", "modern"); !errors.Is(err, ErrPassword) {
		t.Errorf("non-BMP password: %v", err)
	}
	other, _ := New()
	if _, err := other.P12(certPEM, chainPEM, pw, "modern"); !errors.Is(err, ErrCertificate) {
		t.Errorf("certificate of another key: %v", err)
	}
}
